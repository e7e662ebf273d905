//! Serve plumbing: mount services behind the authentication and authorization hooks, with
//! request ids, body limits, health checks, metrics, access logs, optional TLS, and a
//! graceful shutdown that lets in-flight requests finish.
//!
//! ```no_run
//! # async fn demo<S: avl_core::Service>(engine: std::sync::Arc<S>, keys: avl_core::StaticKeys) -> avl_core::Result<()> {
//! use std::sync::Arc;
//! use avl_core::serve::{ServeConfig, Server, SigV4Authenticator, SuperuserOnly, shutdown_signal};
//!
//! let server = Server::builder(Arc::new(SigV4Authenticator::new(Arc::new(keys))), Arc::new(SuperuserOnly))
//!     .mount(engine)
//!     .bind(ServeConfig::new("127.0.0.1:4510".parse().unwrap()))
//!     .await?;
//! println!("listening on {}", server.url());
//! server.run(async { shutdown_signal().await; }).await
//! # }
//! ```

mod auth;
mod observe;
mod rpc;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use auth::{
    Action, AllowAll, AnonymousAccess, Authenticated, Authenticator, Authorizer, Decision,
    SigV4Authenticator, SuperuserOnly,
};
pub use observe::{ACCESS_LOG_TARGET, METRIC_DURATION, METRIC_REQUESTS, PeerAddr, RequestId};
pub use tls::TlsFiles;

use crate::error::{Error, Result};
use crate::service::Service;
use crate::wire;
use observe::error_response;

/// The hooks every mounted route goes through.
pub(crate) struct Gate {
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
}

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The address to bind (`127.0.0.1:4510` by default in `avl serve`; port 0 picks one).
    pub listen: SocketAddr,
    /// TLS certificate and key; plain HTTP without them.
    pub tls: Option<TlsFiles>,
    /// How long shutdown waits for in-flight requests before closing connections.
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request head (HTTP/1).
    pub header_timeout: Duration,
    /// The most connections served at once; further clients wait in the listen queue.
    pub max_connections: usize,
}

impl ServeConfig {
    /// Plain HTTP on `listen`, 30 s shutdown grace, 30 s header timeout, 4096 connections.
    pub fn new(listen: SocketAddr) -> Self {
        ServeConfig {
            listen,
            tls: None,
            shutdown_grace: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }

    /// With TLS from these PEM files.
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }
}

type ReadyCheck = Box<dyn Fn() -> Result<()> + Send + Sync>;

/// Collects services to serve; [`ServerBuilder::bind`] turns it into a [`Server`].
pub struct ServerBuilder {
    gate: Arc<Gate>,
    router: Router,
    ready_checks: Vec<(&'static str, ReadyCheck)>,
    /// Serves the router alone: no health routes, no fallback of ours.
    bare: bool,
}

/// Shared between the routes and the accept loop.
struct ServerState {
    shutting_down: AtomicBool,
    ready_checks: Vec<(&'static str, ReadyCheck)>,
}

impl ServerBuilder {
    /// Mounts `service` at `POST /v1/{S::NAME}`, behind authentication and authorization.
    ///
    /// # Panics
    /// If a service of the same name is already mounted: a wiring mistake, not input.
    pub fn mount<S: Service>(mut self, service: Arc<S>) -> Self {
        let path = format!("{}{}", wire::SERVICE_PATH_PREFIX, S::NAME);
        assert!(
            !self.ready_checks.iter().any(|(name, _)| *name == S::NAME),
            "service `{}` mounted twice",
            S::NAME
        );
        let check_service = Arc::clone(&service);
        self.ready_checks
            .push((S::NAME, Box::new(move || check_service.ready())));
        let mounted = Arc::new(rpc::Mounted {
            service,
            gate: Arc::clone(&self.gate),
        });
        self.router = self
            .router
            .route(&path, any(rpc::handle::<S>).with_state(mounted));
        self
    }

    /// Serves `GET {path}` with `handler`, behind the same authentication and
    /// authorization as mounted services (the action is `service:operation`, the
    /// resource what `resource` finds in the query): for answers that are not a service
    /// message, such as a server-sent event stream. The handler gets the request's head
    /// and answers the whole HTTP response.
    pub fn get_route<H, Fut>(
        mut self,
        path: &str,
        service: &'static str,
        operation: &'static str,
        resource: fn(&http::request::Parts) -> String,
        handler: H,
    ) -> Self
    where
        H: Fn(http::request::Parts) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        let gate = Arc::clone(&self.gate);
        let route = move |request: Request| {
            let gate = Arc::clone(&gate);
            let handler = handler.clone();
            async move {
                let request_id = RequestId::of(&request);
                let (parts, _) = request.into_parts();
                let answer = async {
                    let authenticated = gate.authenticator.authenticate(&parts).await?;
                    let action = Action { service, operation };
                    let on = resource(&parts);
                    if gate
                        .authorizer
                        .authorize(&authenticated.principal, &action, &on)
                        == Decision::Deny
                    {
                        return Err(Error::forbidden(format!(
                            "{} may not {action} on {on}",
                            authenticated.principal.id
                        )));
                    }
                    handler(parts).await
                }
                .await;
                answer.unwrap_or_else(|e| error_response(e, &request_id))
            }
        };
        self.router = self.router.route(path, get(route));
        self
    }

    /// Binds the listener and loads TLS, so a bad address, a port in use or malformed
    /// TLS files are reported before anything runs.
    pub async fn bind(self, config: ServeConfig) -> Result<Server> {
        let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            let reason = match e.kind() {
                std::io::ErrorKind::AddrInUse => "address already in use".to_string(),
                std::io::ErrorKind::AddrNotAvailable => "address not available".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            };
            Error::unavailable(format!("cannot listen on {}: {reason}", config.listen))
        })?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(ServerState {
            shutting_down: AtomicBool::new(false),
            ready_checks: self.ready_checks,
        });
        let router = if self.bare {
            self.router
        } else {
            self.router
                .route("/healthz", get(healthz))
                .route("/readyz", get(readyz).with_state(Arc::clone(&state)))
                .fallback(not_found)
        };
        let router = router.layer(axum::middleware::from_fn(observe::observe));
        Ok(Server {
            listener,
            local_addr,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            router,
            state,
            config,
        })
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let request_id = RequestId::of(&request);
    if state.shutting_down.load(Ordering::Acquire) {
        return error_response(Error::unavailable("shutting down"), &request_id);
    }
    for (name, check) in &state.ready_checks {
        if let Err(e) = check() {
            return error_response(e.context(format!("service {name} not ready")), &request_id);
        }
    }
    "ready\n".into_response()
}

async fn not_found(request: Request) -> Response {
    let request_id = RequestId::of(&request);
    error_response(
        Error::not_found(format!("no endpoint at {}", request.uri().path())),
        &request_id,
    )
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    state: Arc<ServerState>,
    config: ServeConfig,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A builder whose routes all go through `authenticator` and `authorizer`.
    pub fn builder(
        authenticator: Arc<dyn Authenticator>,
        authorizer: Arc<dyn Authorizer>,
    ) -> ServerBuilder {
        ServerBuilder {
            gate: Arc::new(Gate {
                authenticator,
                authorizer,
            }),
            router: Router::new(),
            ready_checks: Vec::new(),
            bare: false,
        }
    }

    /// A builder for a front that speaks another protocol on its own listener and checks
    /// its own credentials (the S3 front): `router` answers every request, with the same
    /// TLS, connection limits, access log and graceful shutdown as the platform API, and
    /// no routes of ours beside it. A service mounted on it is refused to everyone.
    pub fn builder_for(router: Router) -> ServerBuilder {
        ServerBuilder {
            gate: Arc::new(Gate {
                authenticator: Arc::new(AnonymousAccess),
                authorizer: Arc::new(SuperuserOnly),
            }),
            router,
            ready_checks: Vec::new(),
            bare: true,
        }
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL clients use: `http://addr` or `https://addr`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Serves until `shutdown` completes; then stops accepting, answers `/readyz` with 503,
    /// lets in-flight requests finish (up to the grace period) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.header_timeout);
        // HTTP/2 has no header timeout: pings find dead peers, and the connection cap
        // below bounds the live ones.
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.config.max_connections.max(1),
        ));
        let mut shutdown = std::pin::pin!(shutdown);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            // Reap finished connection tasks so the set only holds live ones.
            while connections.try_join_next().is_some() {}
            let slot = tokio::select! {
                slot = Arc::clone(&slots).acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            };
            let (tcp, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let router = self.router.clone();
            let service =
                hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(PeerAddr(peer));
                    router.clone().oneshot(request.map(axum::body::Body::new))
                });
            let builder = builder.clone();
            let watcher = graceful.watcher();
            match &self.tls {
                None => {
                    connections.spawn(async move {
                        let _slot = slot;
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                        if let Err(e) = watcher.watch(conn.into_owned()).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    connections.spawn(async move {
                        let _slot = slot;
                        let handshake =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                        let stream = match handshake.await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        if let Err(e) = watcher.watch(conn.into_owned()).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
            }
        }
        self.state.shutting_down.store(true, Ordering::Release);
        drop(self.listener);
        tracing::info!("shutting down: waiting for in-flight requests");
        match tokio::time::timeout(self.config.shutdown_grace, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => {
                tracing::warn!(
                    grace_secs = self.config.shutdown_grace.as_secs_f64(),
                    connections = connections.len(),
                    "grace period over; closing remaining connections"
                );
                connections.abort_all();
            }
        }
        while connections.join_next().await.is_some() {}
        Ok(())
    }

    /// Serves on a task of the current tokio runtime until [`Spawned::shutdown`] (or until
    /// the handle is dropped): for embedding a server beside other work, and for tests.
    pub fn spawn(self) -> Spawned {
        let url = self.url();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async {
            let _ = stopped.await;
        }));
        Spawned {
            url,
            stop: Some(stop),
            task,
        }
    }
}

/// A server running on its own task (see [`Server::spawn`]).
#[derive(Debug)]
pub struct Spawned {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Spawned {
    /// The base URL clients use.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops it as [`Server::run`] stops, and waits until it has.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(crate::Error::internal(format!(
                "the server task failed: {e}"
            ))),
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, listened for from the moment it is made: make it before
/// announcing the server, so a signal sent right after start is not lost.
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl std::fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShutdownSignal")
    }
}

impl ShutdownSignal {
    /// Starts listening (needs a Tokio runtime). A signal that cannot be listened for is
    /// simply never received.
    pub fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            ShutdownSignal {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignal {}
    }

    /// Completes on the first signal, returning its name.
    pub async fn recv(mut self) -> &'static str {
        #[cfg(unix)]
        {
            let interrupt = async {
                match self.interrupt.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let terminate = async {
                match self.terminate.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = interrupt => "SIGINT",
                _ = terminate => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM, returning which; listens from its first poll
/// (see [`ShutdownSignal`] to listen earlier).
pub async fn shutdown_signal() -> &'static str {
    ShutdownSignal::install().recv().await
}
