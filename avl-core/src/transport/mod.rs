//! Transports carry a request to a service and its response back.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::error::Result;
use crate::service::{Context, Service};

#[cfg(feature = "client-http")]
pub(crate) mod http;

/// Carries requests of service `S` to it and the responses back.
pub trait Transport<S: Service>: Send + Sync + 'static {
    /// Sends one request and waits for its response.
    fn call(&self, request: S::Request) -> BoxFuture<'_, Result<S::Response>>;

    /// Where requests go, for messages: `local:<data dir>` or the endpoint URL.
    fn target(&self) -> String;
}

/// The in-process transport: the request value goes straight to the engine, with no
/// serialization and no copy of its payload.
pub struct LocalTransport<S> {
    service: Arc<S>,
    target: String,
}

impl<S> LocalTransport<S> {
    /// A transport to `service`, described as `target` in messages.
    pub fn new(service: Arc<S>, target: impl Into<String>) -> Self {
        LocalTransport {
            service,
            target: target.into(),
        }
    }

    /// The engine behind this transport.
    pub fn service(&self) -> &Arc<S> {
        &self.service
    }
}

impl<S: Service> Transport<S> for LocalTransport<S> {
    fn call(&self, request: S::Request) -> BoxFuture<'_, Result<S::Response>> {
        Box::pin(self.service.call(Context::in_process(), request))
    }

    fn target(&self) -> String {
        self.target.clone()
    }
}

/// A typed handle on a service through some transport: what service crates wrap in their
/// own client types.
pub struct Client<S: Service> {
    transport: Arc<dyn Transport<S>>,
}

impl<S: Service> Clone for Client<S> {
    fn clone(&self) -> Self {
        Client {
            transport: Arc::clone(&self.transport),
        }
    }
}

impl<S: Service> std::fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("service", &S::NAME)
            .field("target", &self.transport.target())
            .finish()
    }
}

impl<S: Service> Client<S> {
    /// A client over `transport`.
    pub fn new(transport: Arc<dyn Transport<S>>) -> Self {
        Client { transport }
    }

    /// A client calling `service` in this process.
    pub fn local(service: Arc<S>) -> Self {
        Client::new(Arc::new(LocalTransport::new(service, "local")))
    }

    /// Sends one request.
    pub async fn call(&self, request: S::Request) -> Result<S::Response> {
        self.transport.call(request).await
    }

    /// Where requests go.
    pub fn target(&self) -> String {
        self.transport.target()
    }
}
