//! `connect()`: one call that gives a client its transport from configuration.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::service::OpenLocal;
use crate::transport::{LocalTransport, Transport};

type Registry = HashMap<(TypeId, PathBuf), Weak<dyn Any + Send + Sync>>;

static OPEN_ENGINES: Mutex<Option<Registry>> = Mutex::new(None);

/// The engine of service `S` on `data_dir`, shared by every caller in this process: a
/// second open of the same directory returns the engine already open instead of fighting
/// it for the files.
pub fn open_shared<S: OpenLocal>(data_dir: &Path) -> Result<Arc<S>> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Error::from(e).context(format!(
            "cannot create data directory {}",
            data_dir.display()
        ))
    })?;
    let canonical = data_dir.canonicalize().map_err(|e| {
        Error::from(e).context(format!(
            "cannot resolve data directory {}",
            data_dir.display()
        ))
    })?;
    let key = (TypeId::of::<S>(), canonical.clone());
    // A poisoned lock only means another thread panicked while holding it; the map of
    // weak references is still consistent.
    let mut guard = OPEN_ENGINES.lock().unwrap_or_else(|p| p.into_inner());
    let registry = guard.get_or_insert_with(HashMap::new);
    if let Some(engine) = registry.get(&key).and_then(Weak::upgrade)
        && let Ok(engine) = engine.downcast::<S>()
    {
        return Ok(engine);
    }
    let engine = Arc::new(S::open_local(&canonical)?);
    let erased: Arc<dyn Any + Send + Sync> = engine.clone();
    registry.retain(|_, w| w.strong_count() > 0);
    registry.insert(key, Arc::downgrade(&erased));
    Ok(engine)
}

/// The transport to service `S` that `config` names: HTTP to `config.endpoint` when one
/// is set, otherwise the engine opened in-process on `config.data_dir`.
///
/// ```no_run
/// # async fn demo<S: avl_core::OpenLocal>() -> avl_core::Result<()> {
/// let config = avl_core::ClientConfig::load()?; // AVL_ENDPOINT, AVL_DATA_DIR, ...
/// let transport = avl_core::connect::<S>(&config)?;
/// let client = avl_core::Client::new(transport);
/// # Ok(()) }
/// ```
pub fn connect<S: OpenLocal>(config: &ClientConfig) -> Result<Arc<dyn Transport<S>>> {
    match &config.endpoint {
        Some(endpoint) => remote::<S>(endpoint, config),
        None => {
            let engine = open_shared::<S>(&config.data_dir)?;
            let target = format!("local:{}", config.data_dir.display());
            Ok(Arc::new(LocalTransport::new(engine, target)))
        }
    }
}

#[cfg(feature = "client-http")]
fn remote<S: OpenLocal>(endpoint: &str, config: &ClientConfig) -> Result<Arc<dyn Transport<S>>> {
    let credentials = config.credentials.clone().ok_or_else(|| {
        Error::unauthenticated(format!(
            "endpoint {endpoint} is configured without credentials: run `avl configure` or set {} and {}",
            crate::config::ENV_ACCESS_KEY_ID,
            crate::config::ENV_SECRET_ACCESS_KEY
        ))
    })?;
    let transport = crate::transport::http::HttpTransport::<S>::new(
        endpoint,
        credentials,
        &config.region,
        config.ca_file.as_deref(),
    )?;
    Ok(Arc::new(transport))
}

#[cfg(not(feature = "client-http"))]
fn remote<S: OpenLocal>(endpoint: &str, _config: &ClientConfig) -> Result<Arc<dyn Transport<S>>> {
    Err(Error::invalid_input(
        "endpoint",
        format!(
            "endpoint {endpoint} is configured, but this build has no HTTP transport (enable the `client-http` feature)"
        ),
    ))
}
