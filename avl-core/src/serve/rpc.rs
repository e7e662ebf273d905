//! The endpoint of a mounted service: `POST /v1/{service}`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use axum::body::Body as HttpBody;
use axum::extract::{Request as HttpRequest, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::{HeaderValue, Method, StatusCode, header};
use sha2::{Digest, Sha256};

use super::Gate;
use super::auth::{Action, Decision};
use super::observe::{Outcome, RequestId, error_response};
use crate::body::{Body, ByteStream};
use crate::error::{Error, Result};
use crate::service::{Context, Message, Request, Service};
use crate::wire::{self, BodyKind, Encoded};

pub(crate) struct Mounted<S> {
    pub(crate) service: Arc<S>,
    pub(crate) gate: Arc<Gate>,
}

pub(crate) async fn handle<S: Service>(
    State(mounted): State<Arc<Mounted<S>>>,
    request: HttpRequest,
) -> Response {
    let request_id = RequestId::of(&request);
    let mut outcome = Outcome::new(S::NAME, "unknown");
    let result = serve_one(&mounted, request, &request_id, &mut outcome).await;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            outcome.code = Some(error.code());
            error_response(error, &request_id)
        }
    };
    response.extensions_mut().insert(outcome);
    response
}

async fn serve_one<S: Service>(
    mounted: &Mounted<S>,
    request: HttpRequest,
    request_id: &str,
    outcome: &mut Outcome,
) -> Result<Response> {
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        return Err(Error::invalid_input(
            "method",
            format!("service endpoints take POST, not {}", parts.method),
        ));
    }
    let authenticated = mounted.gate.authenticator.authenticate(&parts).await?;
    outcome.principal = Some(authenticated.principal.id.clone());

    let limit = mounted.service.max_request_bytes();
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(too_large(limit));
    }
    let stream: ByteStream = Box::pin(Checked::new(
        body.into_data_stream()
            .map_err(|e| Error::invalid_input("body", format!("request body interrupted: {e}"))),
        limit,
        authenticated.payload_sha256,
    ));
    let content_type = header_str(&parts.headers, header::CONTENT_TYPE.as_str());
    let (mut message, payload): (S::Request, Option<(BodyKind, ByteStream)>) = match content_type {
        Some(wire::CONTENT_TYPE_JSON) => {
            let head = Body::Stream(stream).collect(limit).await?;
            check_message(&head, authenticated.message_sha256)?;
            (wire::decode_message(&head)?, None)
        }
        Some(wire::CONTENT_TYPE_FRAMED) => {
            let kind = header_str(&parts.headers, wire::HEADER_BODY_KIND)
                .and_then(BodyKind::parse)
                .ok_or_else(|| {
                    Error::invalid_input(
                        wire::HEADER_BODY_KIND,
                        "a framed body needs `avl-body: bytes` or `avl-body: stream`",
                    )
                })?;
            let (head, rest) = wire::split_framed(stream, limit).await?;
            check_message(&head, authenticated.message_sha256)?;
            (wire::decode_message(&head)?, Some((kind, rest)))
        }
        other => {
            return Err(Error::invalid_input(
                "content-type",
                format!(
                    "expected {} or {}, got {}",
                    wire::CONTENT_TYPE_JSON,
                    wire::CONTENT_TYPE_FRAMED,
                    other.unwrap_or("none")
                ),
            ));
        }
    };
    outcome.operation = message.operation();
    let resource = message.resource();
    let action = Action {
        service: S::NAME,
        operation: message.operation(),
    };
    if mounted
        .gate
        .authorizer
        .authorize(&authenticated.principal, &action, &resource)
        == Decision::Deny
    {
        let on = if resource.is_empty() {
            String::new()
        } else {
            format!(" on {resource}")
        };
        return Err(Error::forbidden(format!(
            "{} may not {action}{on}",
            authenticated.principal.id
        )));
    }
    if let Some((kind, rest)) = payload {
        let body = match kind {
            // Reading to the end also completes the payload hash check.
            BodyKind::Bytes => Body::Bytes(Body::Stream(rest).collect(limit).await?),
            BodyKind::Stream => Body::Stream(rest),
        };
        message.set_body(body)?;
    }
    let context = Context {
        principal: authenticated.principal,
        request_id: request_id.to_string(),
    };
    let response = mounted.service.call(context, message).await?;
    encode_response(response)
}

/// Checks the message against the hash its credential vouches for, before it is decoded
/// or acted on (the payload, if unsigned, is the service's to judge).
fn check_message(head: &[u8], expected: Option<[u8; 32]>) -> Result<()> {
    match expected {
        Some(expected) if <[u8; 32]>::from(Sha256::digest(head)) != expected => {
            Err(Error::unauthenticated(format!(
                "message does not match its signed {}",
                wire::HEADER_MESSAGE_SHA256
            )))
        }
        _ => Ok(()),
    }
}

fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn too_large(limit: u64) -> Error {
    Error::too_large(format!("request exceeds the limit of {limit} bytes"))
}

fn encode_response<M: Message>(message: M) -> Result<Response> {
    let encoded = Encoded::new(message)?;
    let (content_type, kind) = encoded.content_type();
    let (chunks, stream) = encoded.into_chunks();
    let body = match stream {
        None if chunks.len() == 1 => HttpBody::from(chunks.into_iter().next().unwrap_or_default()),
        None => HttpBody::from_stream(futures_util::stream::iter(
            chunks.into_iter().map(Ok::<Bytes, Error>),
        )),
        Some(s) => HttpBody::from_stream(
            futures_util::stream::iter(chunks.into_iter().map(Ok::<Bytes, Error>)).chain(s),
        ),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(kind) = kind {
        headers.insert(
            wire::HEADER_BODY_KIND,
            HeaderValue::from_static(kind.as_str()),
        );
    }
    Ok(response)
}

/// A request body stream that fails past `limit` bytes and, when the signature covers
/// the body, fails at its end if the bytes do not hash to what was signed.
struct Checked<St> {
    inner: St,
    limit: u64,
    seen: u64,
    expected: Option<[u8; 32]>,
    hasher: Option<Sha256>,
    done: bool,
}

impl<St> Checked<St> {
    fn new(inner: St, limit: u64, expected: Option<[u8; 32]>) -> Self {
        Checked {
            inner,
            limit,
            seen: 0,
            hasher: expected.map(|_| Sha256::new()),
            expected,
            done: false,
        }
    }
}

impl<St: Stream<Item = Result<Bytes>> + Unpin> Stream for Checked<St> {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.limit {
                    self.done = true;
                    return Poll::Ready(Some(Err(too_large(self.limit))));
                }
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                if let (Some(h), Some(expected)) = (self.hasher.take(), self.expected) {
                    let actual: [u8; 32] = h.finalize().into();
                    if actual != expected {
                        return Poll::Ready(Some(Err(Error::unauthenticated(
                            "request body does not match its signed x-amz-content-sha256",
                        ))));
                    }
                }
                Poll::Ready(None)
            }
        }
    }
}
