//! The Service pattern: a typed request and response per service, one engine that
//! answers them, whatever carried them.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::body::Body;
use crate::error::{Error, Result};

/// A request or response type of a service protocol.
///
/// The message itself is serde (JSON over the network); a large payload rides beside it
/// as a [`Body`], taken out before encoding and put back after decoding, so neither
/// transport copies or re-encodes it. Messages without a payload keep the defaults.
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// Takes the payload out of the message (leaving it without one).
    fn take_body(&mut self) -> Body {
        Body::Empty
    }

    /// Puts a received payload into the message; messages that carry none refuse one.
    fn set_body(&mut self, body: Body) -> Result<()> {
        match body {
            Body::Empty => Ok(()),
            _ => Err(Error::invalid_input(
                "body",
                "this message carries no payload",
            )),
        }
    }
}

/// A request of a service protocol: a [`Message`] that names its operation and resource,
/// for authorization, metrics and logs.
pub trait Request: Message {
    /// The operation, e.g. `"PutDocument"`: a stable name, used in metrics labels,
    /// logs and authorization actions.
    fn operation(&self) -> &'static str;

    /// The resource acted on, as a path inside the service (e.g. `"gamedb/players"`);
    /// empty for the service as a whole.
    fn resource(&self) -> String {
        String::new()
    }
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct Principal {
    /// A stable identifier: a user id, an access key id, or `root`.
    pub id: String,
    /// What kind of caller this is.
    pub kind: PrincipalKind,
}

/// The kind of a [`Principal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// The process that embeds the engine: it owns the files, so it may do anything.
    InProcess,
    /// The root key pair of a served deployment.
    Root,
    /// A user or service account known to an authenticator.
    User,
    /// Nobody: authentication was turned off by the operator.
    Anonymous,
}

impl Principal {
    /// The embedding process, used by the local transport.
    pub fn in_process() -> Self {
        Principal {
            id: "in-process".into(),
            kind: PrincipalKind::InProcess,
        }
    }

    /// The root principal of a served deployment.
    pub fn root() -> Self {
        Principal {
            id: "root".into(),
            kind: PrincipalKind::Root,
        }
    }

    /// A user or account, by id.
    pub fn user(id: impl Into<String>) -> Self {
        Principal {
            id: id.into(),
            kind: PrincipalKind::User,
        }
    }

    /// The anonymous caller of an endpoint whose authentication was turned off.
    pub fn anonymous() -> Self {
        Principal {
            id: "anonymous".into(),
            kind: PrincipalKind::Anonymous,
        }
    }

    /// Whether this principal has every right (in-process or root).
    pub fn is_superuser(&self) -> bool {
        matches!(self.kind, PrincipalKind::InProcess | PrincipalKind::Root)
    }
}

/// What a service knows about the request it is handling.
#[derive(Debug, Clone)]
pub struct Context {
    /// Who is asking (already authenticated and authorized for this request).
    pub principal: Principal,
    /// The request id: in logs, error responses and the `x-request-id` header.
    pub request_id: String,
}

impl Context {
    /// The context of an in-process call, with a fresh request id.
    pub fn in_process() -> Self {
        Context {
            principal: Principal::in_process(),
            request_id: new_request_id(),
        }
    }
}

/// A fresh request id: 16 hex digits, unique within the process and unlikely to collide
/// across processes.
pub fn new_request_id() -> String {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut buf = [0u8; 8];
        // Without OS randomness ids stay unique within the process; that is all the
        // fallback needs.
        let _ = getrandom::fill(&mut buf);
        u64::from_le_bytes(buf)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", mix(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A service: an engine that answers its own requests.
///
/// The engine behind it is synchronous and owns its files; `call` is where it meets
/// async callers (typically by moving blocking work to a blocking thread).
pub trait Service: Send + Sync + 'static {
    /// The service's name in URLs, metrics and authorization actions, e.g. `"db"`.
    const NAME: &'static str;
    /// The request type.
    type Request: Request;
    /// The response type.
    type Response: Message;

    /// Answers one request.
    fn call(
        &self,
        context: Context,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response>> + Send;

    /// The largest request (message and payload together) a server accepts for this
    /// service. Default 8 MiB.
    fn max_request_bytes(&self) -> u64 {
        8 << 20
    }

    /// Whether the service can take requests now; `/readyz` asks every mounted service.
    fn ready(&self) -> Result<()> {
        Ok(())
    }
}

/// A service that can be opened in-process on a data directory, for [`crate::connect`].
pub trait OpenLocal: Service + Sized {
    /// Opens (creating if needed) the service's files under `data_dir`.
    fn open_local(data_dir: &std::path::Path) -> Result<Self>;
}
