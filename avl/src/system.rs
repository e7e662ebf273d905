//! The `system` service: what a deployment is and who is asking. It answers
//! `avl status`, in-process or through a server, and proves the client path end to end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use avl_core::{Context, Message, OpenLocal, Request, Result, Service};
use serde::{Deserialize, Serialize};

/// Requests of the system service.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op")]
pub(crate) enum SystemRequest {
    /// The deployment's status.
    Status,
}

impl Message for SystemRequest {}

impl Request for SystemRequest {
    fn operation(&self) -> &'static str {
        match self {
            SystemRequest::Status => "Status",
        }
    }
}

/// The answer to [`SystemRequest::Status`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Status {
    /// The avl version answering.
    pub(crate) version: String,
    /// Its data directory.
    pub(crate) data_dir: PathBuf,
    /// Seconds since the service started.
    pub(crate) uptime_secs: u64,
    /// Who asked, as the service saw it.
    pub(crate) principal: String,
    /// The services it runs.
    pub(crate) services: Vec<String>,
}

impl Message for Status {}

/// The system service of one data directory.
#[derive(Debug)]
pub(crate) struct System {
    data_dir: PathBuf,
    started: Instant,
    services: Vec<String>,
}

impl System {
    pub(crate) fn new(data_dir: &Path, services: Vec<String>) -> Self {
        System {
            data_dir: data_dir.to_path_buf(),
            started: Instant::now(),
            services,
        }
    }
}

impl Service for System {
    const NAME: &'static str = "system";
    type Request = SystemRequest;
    type Response = Status;

    async fn call(&self, context: Context, request: SystemRequest) -> Result<Status> {
        match request {
            SystemRequest::Status => Ok(Status {
                version: env!("CARGO_PKG_VERSION").to_string(),
                data_dir: self.data_dir.clone(),
                uptime_secs: self.started.elapsed().as_secs(),
                principal: context.principal.id,
                services: self.services.clone(),
            }),
        }
    }
}

impl OpenLocal for System {
    fn open_local(data_dir: &Path) -> Result<Self> {
        Ok(System::new(data_dir, vec![System::NAME.to_string()]))
    }
}
