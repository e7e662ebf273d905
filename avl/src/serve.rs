//! `avl serve`: every service in one process.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use avl_core::credentials::{ROOT_CREDENTIALS_FILE, load_or_create_root};
use avl_core::serve::{
    AllowAll, AnonymousAccess, Authenticator, Authorizer, ServeConfig, Server, ShutdownSignal,
    SigV4Authenticator, SuperuserOnly, TlsFiles,
};
use avl_core::{Credentials, Error, KeyStore, Result, Service, StaticKeys};

use crate::system::System;

/// Root key pair from the environment, when both halves are set.
const ENV_ROOT_ACCESS_KEY_ID: &str = "AVL_ROOT_ACCESS_KEY_ID";
const ENV_ROOT_SECRET_ACCESS_KEY: &str = "AVL_ROOT_SECRET_ACCESS_KEY";
/// The lock file that keeps two servers off one data directory.
const LOCK_FILE: &str = "avl.lock";

pub(crate) struct ServeArgs {
    pub(crate) data_dir: PathBuf,
    pub(crate) listen: SocketAddr,
    pub(crate) tls: Option<TlsFiles>,
    pub(crate) s3_listen: SocketAddr,
    pub(crate) s3_domains: Vec<String>,
    pub(crate) no_auth: bool,
    /// Multipart uploads older than this are aborted (zero: never).
    pub(crate) abandoned_uploads_after: std::time::Duration,
}

/// Aborts the object store's multipart uploads older than `age`, now and then, for as
/// long as the server runs: their parts' space comes back.
async fn reclaim_abandoned_uploads(store: avl_storage::Store, age: std::time::Duration) {
    let every = (age / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(3600),
    );
    let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
    loop {
        tokio::time::sleep(every).await;
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.abort_stale_uploads(age_ms)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(uploads = n, "aborted abandoned multipart uploads"),
            Ok(Err(e)) => tracing::warn!(error = %e, "reclaiming abandoned uploads failed"),
            Err(e) => tracing::warn!(error = %e, "reclaiming abandoned uploads stopped"),
        }
    }
}

/// Creates the data directory, checks it is writable, and locks it for this process.
fn open_data_dir(dir: &Path) -> Result<(PathBuf, File)> {
    let fail = |e: std::io::Error| {
        Error::unavailable(format!("cannot use data directory {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let dir = dir.canonicalize().map_err(fail)?;
    let probe = dir.join(".write-probe");
    File::create(&probe).map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    let lock = File::create(dir.join(LOCK_FILE)).map_err(fail)?;
    match lock.try_lock() {
        Ok(()) => Ok((dir, lock)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::unavailable(format!(
            "data directory {} is in use by another avl process",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(fail(e)),
    }
}

/// The root key pair: from the environment, else from (or newly written to) the data
/// directory. The bool says whether it was just created.
fn root_credentials(data_dir: &Path) -> Result<(Credentials, bool)> {
    let id = std::env::var(ENV_ROOT_ACCESS_KEY_ID)
        .ok()
        .filter(|v| !v.is_empty());
    let secret = std::env::var(ENV_ROOT_SECRET_ACCESS_KEY)
        .ok()
        .filter(|v| !v.is_empty());
    match (id, secret) {
        (Some(id), Some(secret)) => Ok((
            Credentials::new(id, secret)
                .map_err(|e| e.context("root credentials from the environment"))?,
            false,
        )),
        (None, None) => load_or_create_root(data_dir),
        _ => Err(Error::invalid_input(
            ENV_ROOT_ACCESS_KEY_ID,
            format!(
                "set both {ENV_ROOT_ACCESS_KEY_ID} and {ENV_ROOT_SECRET_ACCESS_KEY}, or neither"
            ),
        )),
    }
}

/// Server-sent events of a queue subscription: `GET /v1/queue/events?pattern=P[&from=
/// beginning]`, one `message` event per delivery (its JSON in `data`).
const QUEUE_EVENTS_PATH: &str = "/v1/queue/events";
/// Event streams open at once; more are refused (each waits on the blocking pool).
const QUEUE_EVENT_STREAMS: usize = 64;

/// A query parameter, decoded.
fn query_value(parts: &http::request::Parts, name: &str) -> Option<String> {
    parts.uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            urlencoding::decode(&v.replace('+', " "))
                .map(|v| v.into_owned())
                .unwrap_or_default()
        })
    })
}

/// The event stream of a subscription.
async fn queue_events(
    engine: avl_queue::Engine,
    slots: Arc<tokio::sync::Semaphore>,
    parts: http::request::Parts,
) -> Result<axum::response::Response> {
    use futures_util::StreamExt;
    let pattern = query_value(&parts, "pattern")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::invalid_input("pattern", "required: ?pattern=game.*.events"))?;
    let start = match query_value(&parts, "from").as_deref() {
        None | Some("end") => avl_queue::StartAt::End,
        Some("beginning") => avl_queue::StartAt::Beginning,
        Some(other) => {
            return Err(Error::invalid_input(
                "from",
                format!("`{other}`: beginning or end"),
            ));
        }
    };
    let permit = slots
        .try_acquire_owned()
        .map_err(|_| Error::unavailable("too many event streams at once; try again"))?;
    let subscription = engine.subscribe(&pattern, start).map_err(Error::from)?;
    let events = subscription.into_stream().map(move |delivery| {
        let _held = &permit;
        let delivery = delivery.map_err(Error::from)?;
        let data = serde_json::to_string(&delivery)
            .map_err(|e| Error::internal(format!("a delivery: {e}")))?;
        Ok::<_, Error>(bytes::Bytes::from(format!(
            "id: {}/{}/{}\nevent: message\ndata: {data}\n\n",
            delivery.topic, delivery.partition, delivery.record.offset
        )))
    });
    let mut response = axum::response::Response::new(axum::body::Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    Ok(response)
}

/// Everything that can fail at start-up happens here, before anything is printed or
/// logged, so a failed start is one line.
pub(crate) async fn run(args: ServeArgs) -> Result<()> {
    // Listening for signals starts now, so one sent as soon as we announce is not lost.
    let signals = ShutdownSignal::install();
    let (data_dir, _lock) = open_data_dir(&args.data_dir)?;
    let (root, created) = root_credentials(&data_dir)?;
    let keys: Arc<dyn KeyStore> = Arc::new(StaticKeys::root(root.clone()));
    let (authenticator, authorizer): (Arc<dyn Authenticator>, Arc<dyn Authorizer>) = if args.no_auth
    {
        (Arc::new(AnonymousAccess), Arc::new(AllowAll))
    } else {
        (
            Arc::new(SigV4Authenticator::new(Arc::clone(&keys))),
            Arc::new(SuperuserOnly),
        )
    };
    let db = aviladb::Engine::open(data_dir.join(aviladb::DATA_SUBDIR))
        .map_err(|e| Error::from(e).context("cannot open the document database"))?;
    let store = avl_storage::Store::open(data_dir.join(avl_storage::DATA_SUBDIR))
        .map_err(|e| Error::from(e).context("cannot open the object store"))?;
    let queue = avl_queue::Engine::open(data_dir.join(avl_queue::DATA_SUBDIR))
        .map_err(|e| Error::from(e).context("cannot open the queue"))?;
    let services = vec![
        System::NAME.to_string(),
        aviladb::DbService::NAME.to_string(),
        avl_storage::StorageService::NAME.to_string(),
        avl_queue::QueueService::NAME.to_string(),
        "s3".to_string(),
    ];
    let system = Arc::new(System::new(&data_dir, services));
    let mut config = ServeConfig::new(args.listen);
    if let Some(tls) = args.tls.clone() {
        config = config.with_tls(tls);
    }
    let server = Server::builder(authenticator, authorizer)
        .mount(system)
        .mount(Arc::new(aviladb::DbService::new(db)))
        .mount(Arc::new(avl_storage::StorageService::new(store.clone())))
        .mount(Arc::new(avl_queue::QueueService::new(queue.clone())))
        .get_route(
            QUEUE_EVENTS_PATH,
            avl_queue::QueueService::NAME,
            "Subscribe",
            |parts| query_value(parts, "pattern").unwrap_or_default(),
            {
                let slots = Arc::new(tokio::sync::Semaphore::new(QUEUE_EVENT_STREAMS));
                move |parts| queue_events(queue.clone(), Arc::clone(&slots), parts)
            },
        )
        .bind(config)
        .await?;
    let reclaimer = (!args.abandoned_uploads_after.is_zero()).then(|| {
        tokio::spawn(reclaim_abandoned_uploads(
            store.clone(),
            args.abandoned_uploads_after,
        ))
    });
    let s3 = avl_storage::s3::bind(
        store,
        avl_storage::s3::S3Options {
            listen: args.s3_listen,
            tls: args.tls,
            domains: args.s3_domains,
            keys,
            allow_anonymous: args.no_auth,
        },
    )
    .await
    .map_err(|e| e.context("cannot start the S3 front"))?;

    println!("AVL {}", env!("CARGO_PKG_VERSION"));
    println!("data directory: {}", data_dir.display());
    if created {
        println!(
            "root credentials created and saved to {} (mode 0600); shown once:",
            data_dir.join(ROOT_CREDENTIALS_FILE).display()
        );
        println!("  export AVL_ACCESS_KEY_ID={}", root.access_key_id);
        println!(
            "  export AVL_SECRET_ACCESS_KEY={}",
            root.secret_access_key.expose()
        );
    }
    if args.no_auth {
        println!(
            "WARNING: authentication is off (--no-auth): anyone who can connect has every right"
        );
    }
    println!("listening on {}", server.url());
    println!("S3 listening on {}", s3.url());
    // Tests and scripts read the lines above as they come.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    tracing::info!(url = %server.url(), data_dir = %data_dir.display(), "serving");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = async move {
        let which = signals.recv().await;
        tracing::info!(signal = which, "shutting down");
        println!("received {which}, shutting down");
        let _ = std::io::stdout().flush();
        let _ = stop.send(true);
    };
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let (api, s3, ()) = tokio::join!(
        server.run(until_stopped(stopped.clone())),
        s3.run(until_stopped(stopped)),
        signal,
    );
    if let Some(task) = reclaimer {
        task.abort();
    }
    api?;
    s3?;
    println!("stopped");
    Ok(())
}
