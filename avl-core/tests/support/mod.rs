//! `Notes`: a small key-value service used to prove the transport contract. It carries
//! payloads both as bytes and as streams, fails on request with any error code, sleeps on
//! request (for shutdown tests), and can be told it is not ready.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use avl_core::{Body, Context, Error, ErrorCode, Message, OpenLocal, Request, Result, Service};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum NotesRequest {
    Put {
        key: String,
        #[serde(skip)]
        data: Body,
    },
    Get {
        key: String,
    },
    Download {
        key: String,
        chunk: usize,
    },
    List {
        prefix: String,
    },
    Delete {
        key: String,
    },
    Echo {
        text: String,
    },
    WhoAmI,
    Slow {
        millis: u64,
    },
    Fail {
        code: ErrorCode,
        field: Option<String>,
    },
}

impl Message for NotesRequest {
    fn take_body(&mut self) -> Body {
        match self {
            NotesRequest::Put { data, .. } => std::mem::take(data),
            _ => Body::Empty,
        }
    }

    fn set_body(&mut self, body: Body) -> Result<()> {
        match self {
            NotesRequest::Put { data, .. } => {
                *data = body;
                Ok(())
            }
            _ if body.is_empty() => Ok(()),
            _ => Err(Error::invalid_input("body", "only Put carries a payload")),
        }
    }
}

impl Request for NotesRequest {
    fn operation(&self) -> &'static str {
        match self {
            NotesRequest::Put { .. } => "Put",
            NotesRequest::Get { .. } => "Get",
            NotesRequest::Download { .. } => "Download",
            NotesRequest::List { .. } => "List",
            NotesRequest::Delete { .. } => "Delete",
            NotesRequest::Echo { .. } => "Echo",
            NotesRequest::WhoAmI => "WhoAmI",
            NotesRequest::Slow { .. } => "Slow",
            NotesRequest::Fail { .. } => "Fail",
        }
    }

    fn resource(&self) -> String {
        match self {
            NotesRequest::Put { key, .. }
            | NotesRequest::Get { key }
            | NotesRequest::Download { key, .. }
            | NotesRequest::Delete { key } => key.clone(),
            _ => String::new(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum NotesResponse {
    Done,
    Data {
        len: u64,
        #[serde(skip)]
        data: Body,
    },
    Keys {
        keys: Vec<String>,
    },
    Text {
        text: String,
    },
}

impl Message for NotesResponse {
    fn take_body(&mut self) -> Body {
        match self {
            NotesResponse::Data { data, .. } => std::mem::take(data),
            _ => Body::Empty,
        }
    }

    fn set_body(&mut self, body: Body) -> Result<()> {
        match self {
            NotesResponse::Data { data, .. } => {
                *data = body;
                Ok(())
            }
            _ if body.is_empty() => Ok(()),
            _ => Err(Error::invalid_input("body", "only Data carries a payload")),
        }
    }
}

pub const MAX_REQUEST: u64 = 4 << 20;

#[derive(Default)]
pub struct Notes {
    notes: Mutex<BTreeMap<String, Bytes>>,
    pub not_ready: AtomicBool,
    pub in_flight: AtomicUsize,
    pub started: tokio::sync::Notify,
}

pub static OPENED: AtomicUsize = AtomicUsize::new(0);

impl OpenLocal for Notes {
    fn open_local(data_dir: &Path) -> Result<Self> {
        OPENED.fetch_add(1, Ordering::SeqCst);
        std::fs::write(data_dir.join("notes.opened"), b"")?;
        Ok(Notes::default())
    }
}

impl Notes {
    fn get(&self, key: &str) -> Result<Bytes> {
        self.notes
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no note `{key}`")))
    }
}

impl Service for Notes {
    const NAME: &'static str = "notes";
    type Request = NotesRequest;
    type Response = NotesResponse;

    async fn call(&self, cx: Context, request: NotesRequest) -> Result<NotesResponse> {
        match request {
            NotesRequest::Put { key, data } => {
                if key.is_empty() {
                    return Err(Error::invalid_input("key", "must not be empty"));
                }
                let data = data.collect(MAX_REQUEST).await?;
                self.notes.lock().unwrap().insert(key, data);
                Ok(NotesResponse::Done)
            }
            NotesRequest::Get { key } => {
                let data = self.get(&key)?;
                Ok(NotesResponse::Data {
                    len: data.len() as u64,
                    data: Body::Bytes(data),
                })
            }
            NotesRequest::Download { key, chunk } => {
                let data = self.get(&key)?;
                let chunk = chunk.max(1);
                let len = data.len() as u64;
                let pieces: Vec<Result<Bytes>> = (0..data.len())
                    .step_by(chunk)
                    .map(|i| Ok(data.slice(i..(i + chunk).min(data.len()))))
                    .collect();
                Ok(NotesResponse::Data {
                    len,
                    data: Body::from_stream(futures_util::stream::iter(pieces)),
                })
            }
            NotesRequest::List { prefix } => Ok(NotesResponse::Keys {
                keys: self
                    .notes
                    .lock()
                    .unwrap()
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .cloned()
                    .collect(),
            }),
            NotesRequest::Delete { key } => match self.notes.lock().unwrap().remove(&key) {
                Some(_) => Ok(NotesResponse::Done),
                None => Err(Error::not_found(format!("no note `{key}`"))),
            },
            NotesRequest::Echo { text } => Ok(NotesResponse::Text { text }),
            NotesRequest::WhoAmI => Ok(NotesResponse::Text {
                text: format!(
                    "{}:{:?}:{}",
                    cx.principal.id,
                    cx.principal.kind,
                    cx.request_id.len()
                ),
            }),
            NotesRequest::Slow { millis } => {
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                self.started.notify_one();
                tokio::time::sleep(Duration::from_millis(millis)).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(NotesResponse::Done)
            }
            NotesRequest::Fail { code, field } => Err(match field {
                Some(field) => Error::invalid_input(field, "asked to fail"),
                None => Error::new(code, "asked to fail"),
            }),
        }
    }

    fn max_request_bytes(&self) -> u64 {
        MAX_REQUEST
    }

    fn ready(&self) -> Result<()> {
        if self.not_ready.load(Ordering::SeqCst) {
            Err(Error::unavailable("warming up"))
        } else {
            Ok(())
        }
    }
}

/// Payloads: bytes of `len` from a seed.
pub fn payload(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

/// A stream of `data` in chunks of `chunk` bytes.
pub fn chunked(data: Bytes, chunk: usize) -> Body {
    let pieces: Vec<Result<Bytes>> = (0..data.len())
        .step_by(chunk)
        .map(|i| Ok(data.slice(i..(i + chunk).min(data.len()))))
        .collect();
    Body::from_stream(futures_util::stream::iter(pieces))
}

pub async fn collect_stream(body: Body) -> Vec<u8> {
    match body {
        Body::Stream(mut s) => {
            let mut out = Vec::new();
            while let Some(chunk) = s.next().await {
                out.extend_from_slice(&chunk.unwrap());
            }
            out
        }
        other => other.collect(u64::MAX).await.unwrap().to_vec(),
    }
}

pub mod server {
    use std::sync::Arc;

    use avl_core::serve::{
        Authenticator, Authorizer, ServeConfig, Server, SigV4Authenticator, Spawned, SuperuserOnly,
        TlsFiles,
    };
    use avl_core::{Credentials, HttpTransport, StaticKeys};

    use super::Notes;

    pub struct Running {
        pub url: String,
        pub notes: Arc<Notes>,
        pub root: Credentials,
        pub server: Spawned,
        pub ca_file: Option<std::path::PathBuf>,
        _dir: Option<tempfile::TempDir>,
    }

    impl Running {
        pub fn transport(&self, creds: &Credentials) -> HttpTransport<Notes> {
            HttpTransport::new(
                &self.url,
                creds.clone(),
                "us-east-1",
                self.ca_file.as_deref(),
            )
            .unwrap()
        }

        pub fn root_client(&self) -> avl_core::Client<Notes> {
            avl_core::Client::new(Arc::new(self.transport(&self.root)))
        }

        pub async fn shutdown(self) {
            self.server.shutdown().await.unwrap();
        }
    }

    pub struct Options {
        pub tls: bool,
        pub keys: StaticKeys,
        pub authenticator: Option<Arc<dyn Authenticator>>,
        pub authorizer: Arc<dyn Authorizer>,
        pub grace: std::time::Duration,
    }

    pub fn root() -> Credentials {
        Credentials::new(
            "AVLROOTKEYFORTESTS01",
            "root-secret-for-tests-0123456789abcdef",
        )
        .unwrap()
    }

    impl Default for Options {
        fn default() -> Self {
            Options {
                tls: false,
                keys: StaticKeys::root(root()),
                authenticator: None,
                authorizer: Arc::new(SuperuserOnly),
                grace: std::time::Duration::from_secs(10),
            }
        }
    }

    /// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
    pub fn self_signed(dir: &std::path::Path) -> TlsFiles {
        let cert = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert.cert.pem()).unwrap();
        std::fs::write(&files.key, cert.signing_key.serialize_pem()).unwrap();
        files
    }

    pub async fn start(options: Options) -> Running {
        let notes = Arc::new(Notes::default());
        let authenticator = options
            .authenticator
            .unwrap_or_else(|| Arc::new(SigV4Authenticator::new(Arc::new(options.keys))));
        let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap());
        config.shutdown_grace = options.grace;
        let mut dir = None;
        let mut ca_file = None;
        if options.tls {
            let d = tempfile::tempdir().unwrap();
            let files = self_signed(d.path());
            ca_file = Some(files.cert.clone());
            config = config.with_tls(files);
            dir = Some(d);
        }
        let server = Server::builder(authenticator, options.authorizer)
            .mount(Arc::clone(&notes))
            .bind(config)
            .await
            .unwrap();
        let server = server.spawn();
        Running {
            url: server.url().to_string(),
            notes,
            root: root(),
            server,
            ca_file,
            _dir: dir,
        }
    }
}

/// A plain reqwest client for raw HTTP requests in tests (rustls needs its provider named).
pub fn raw_http() -> reqwest::Client {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}
