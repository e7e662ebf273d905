//! The AVL platform contract, shared by every service crate.
//!
//! - [`Error`] and [`ErrorCode`]: one error taxonomy with stable codes and HTTP statuses.
//! - [`Service`], [`Request`], [`Message`]: a typed request/response per service, answered
//!   by an engine.
//! - [`Transport`]: carries requests to a service, in-process ([`LocalTransport`]: no
//!   serialization, payloads never copied) or over HTTP (feature `client-http`);
//!   [`connect`] picks one from [`ClientConfig`] (`AVL_ENDPOINT` / `AVL_DATA_DIR`).
//! - [`sigv4`]: the request signature the HTTP transport sends and servers check.
//! - `serve` (feature `serve`): mount services behind authentication and authorization,
//!   with TLS, request ids, body limits, health checks, metrics, and graceful shutdown.
//!
//! A service in a dozen lines, called in-process:
//!
//! ```
//! use avl_core::{Client, Context, Message, Request, Result, Service};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Greet { name: String }
//! impl Message for Greet {}
//! impl Request for Greet {
//!     fn operation(&self) -> &'static str { "Greet" }
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Greeting(String);
//! impl Message for Greeting {}
//!
//! struct Greeter;
//! impl Service for Greeter {
//!     const NAME: &'static str = "greeter";
//!     type Request = Greet;
//!     type Response = Greeting;
//!     async fn call(&self, _cx: Context, req: Greet) -> Result<Greeting> {
//!         Ok(Greeting(format!("olá, {}", req.name)))
//!     }
//! }
//!
//! # futures_util::FutureExt::now_or_never(async {
//! let client = Client::local(std::sync::Arc::new(Greeter));
//! let Greeting(text) = client.call(Greet { name: "Ana".into() }).await?;
//! assert_eq!(text, "olá, Ana");
//! # Ok::<(), avl_core::Error>(()) }).unwrap()?;
//! # Ok::<(), avl_core::Error>(())
//! ```

mod body;
pub mod config;
mod connect;
pub mod credentials;
mod error;
mod service;
pub mod sigv4;
mod transport;
pub mod wire;

#[cfg(feature = "serve")]
pub mod serve;

pub use body::{Body, ByteStream};
pub use config::ClientConfig;
pub use connect::{connect, open_shared};
pub use credentials::{Credentials, KeyStore, Secret, StaticKeys};
pub use error::{Error, ErrorCode, Result};
pub use service::{
    Context, Message, OpenLocal, Principal, PrincipalKind, Request, Service, new_request_id,
};
#[cfg(feature = "client-http")]
pub use transport::http::HttpTransport;
pub use transport::{Client, LocalTransport, Transport};
