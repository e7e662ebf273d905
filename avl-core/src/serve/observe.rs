//! Request ids, spans, metrics and the access log, around every served request.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tracing::Instrument;

use crate::error::{Error, ErrorCode};
use crate::service::new_request_id;
use crate::wire;

/// Counter of served requests, labelled `service`, `op`, `outcome`.
pub const METRIC_REQUESTS: &str = "avl_requests_total";
/// Histogram of time to response head, in seconds, labelled like [`METRIC_REQUESTS`].
pub const METRIC_DURATION: &str = "avl_request_duration_seconds";
/// The `tracing` target of the one-line-per-request access log.
pub const ACCESS_LOG_TARGET: &str = "avl::access";

/// The id of the request being served (a request extension).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id the middleware gave `request` (empty outside it).
    pub(crate) fn of(request: &Request) -> String {
        request
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default()
    }
}

/// The peer address of the connection (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// What a handler reports about a request, for metrics and the access log (a response
/// extension).
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) service: &'static str,
    pub(crate) operation: &'static str,
    pub(crate) code: Option<ErrorCode>,
    pub(crate) principal: Option<String>,
}

impl Outcome {
    pub(crate) fn new(service: &'static str, operation: &'static str) -> Self {
        Outcome {
            service,
            operation,
            code: None,
            principal: None,
        }
    }
}

/// The JSON error response `{code, message, request_id}` with the code's status.
pub(crate) fn error_response(error: Error, request_id: &str) -> Response {
    let status = StatusCode::from_u16(error.code().http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error = error.with_request_id(request_id);
    let mut response = (status, wire::error_body(&error)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(wire::CONTENT_TYPE_JSON),
    );
    response.extensions_mut().insert(error.code());
    response
}

/// An incoming `x-request-id` is kept if it is short and plain; otherwise a new one.
fn request_id_of(request: &Request) -> String {
    request
        .headers()
        .get(wire::HEADER_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map_or_else(new_request_id, str::to_owned)
}

/// The metrics label of a request no service handled.
fn route_name(path: &str) -> &'static str {
    match path {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        _ => "other",
    }
}

/// The middleware: id, span, metrics, access log line, `x-request-id` on the response.
pub(crate) async fn observe(mut request: Request, next: Next) -> Response {
    let request_id = request_id_of(&request);
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let peer = request.extensions().get::<PeerAddr>().map(|p| p.0);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %request_id);
    let start = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = start.elapsed();

    let outcome = response
        .extensions()
        .get::<Outcome>()
        .cloned()
        .unwrap_or_else(|| Outcome::new("http", route_name(&path)));
    let code = outcome
        .code
        .or_else(|| response.extensions().get::<ErrorCode>().copied())
        .map_or("ok", ErrorCode::as_str);
    let labels = [
        ("service", outcome.service),
        ("op", outcome.operation),
        ("outcome", code),
    ];
    metrics::counter!(METRIC_REQUESTS, &labels).increment(1);
    metrics::histogram!(METRIC_DURATION, &labels).record(elapsed.as_secs_f64());
    let status = response.status().as_u16();
    let principal = outcome.principal.as_deref().unwrap_or("-");
    let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
    span.in_scope(|| {
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            %method,
            path,
            status,
            service = outcome.service,
            op = outcome.operation,
            outcome = code,
            principal,
            peer,
            duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(wire::HEADER_REQUEST_ID, v);
    }
    response
}
