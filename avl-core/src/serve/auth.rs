//! The authentication and authorization hooks every mounted route goes through.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;

use crate::credentials::KeyStore;
use crate::error::{Error, Result};
use crate::service::Principal;
use crate::sigv4::{self, RequestParts};
use crate::wire;

/// Who a request comes from, and what its body must hash to.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The caller.
    pub principal: Principal,
    /// The SHA-256 the request body must have, when the credential covers the body; the
    /// serve plumbing checks it as the body is read and fails the request on a mismatch.
    pub payload_sha256: Option<[u8; 32]>,
    /// The SHA-256 the message JSON must have, when the credential covers it separately
    /// (the `avl-message-sha256` header); checked before the message is decoded.
    pub message_sha256: Option<[u8; 32]>,
}

/// Decides who sent a request, from its head alone (the body is not read yet).
///
/// `avl serve` starts with [`SigV4Authenticator`] over the root key pair; avl-auth plugs
/// its users, API keys and tokens in here.
pub trait Authenticator: Send + Sync + 'static {
    /// The caller of `request`, or an [`crate::ErrorCode::Unauthenticated`] error.
    fn authenticate<'a>(
        &'a self,
        request: &'a http::request::Parts,
    ) -> BoxFuture<'a, Result<Authenticated>>;
}

/// An operation on a service, as authorization sees it: `service:Operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action<'a> {
    /// The service name, e.g. `db`.
    pub service: &'a str,
    /// The operation, e.g. `PutDocument`.
    pub operation: &'a str,
}

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.operation)
    }
}

/// An authorization decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refused: the request fails with [`crate::ErrorCode::Forbidden`].
    Deny,
}

/// Decides whether a principal may perform an action on a resource. Runs for every
/// request after its message is decoded and before the service sees it.
pub trait Authorizer: Send + Sync + 'static {
    /// The decision for `principal` doing `action` on `resource` (a path inside the
    /// service, empty for the service as a whole).
    fn authorize(&self, principal: &Principal, action: &Action<'_>, resource: &str) -> Decision;
}

/// Allows the root and in-process principals and nobody else: the policy until avl-auth
/// brings roles.
#[derive(Debug, Clone, Copy, Default)]
pub struct SuperuserOnly;

impl Authorizer for SuperuserOnly {
    fn authorize(&self, principal: &Principal, _action: &Action<'_>, _resource: &str) -> Decision {
        if principal.is_superuser() {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

/// Allows everything. Only for endpoints whose operator turned authorization off.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &Principal, _: &Action<'_>, _: &str) -> Decision {
        Decision::Allow
    }
}

/// Checks SigV4 signatures (the HTTP transport's) against a [`KeyStore`].
pub struct SigV4Authenticator {
    keys: Arc<dyn KeyStore>,
    service: &'static str,
}

impl SigV4Authenticator {
    /// Checks signatures for the platform transport's service name ([`sigv4::SERVICE`]).
    pub fn new(keys: Arc<dyn KeyStore>) -> Self {
        SigV4Authenticator {
            keys,
            service: sigv4::SERVICE,
        }
    }
}

impl Authenticator for SigV4Authenticator {
    fn authenticate<'a>(
        &'a self,
        request: &'a http::request::Parts,
    ) -> BoxFuture<'a, Result<Authenticated>> {
        Box::pin(async move {
            let parts = RequestParts {
                method: &request.method,
                path: request.uri.path(),
                query: request.uri.query().unwrap_or(""),
                headers: &request.headers,
            };
            let verified =
                sigv4::verify(&parts, self.service, self.keys.as_ref(), SystemTime::now())?;
            let payload_sha256 = if verified.payload_hash == sigv4::UNSIGNED_PAYLOAD {
                None
            } else {
                Some(parse_sha256(&verified.payload_hash).ok_or_else(|| {
                    Error::unauthenticated(
                        "x-amz-content-sha256 must be a hex SHA-256 or UNSIGNED-PAYLOAD",
                    )
                })?)
            };
            let signed_message_hash = verified
                .signed_headers
                .iter()
                .any(|h| h == wire::HEADER_MESSAGE_SHA256)
                .then(|| request.headers.get(wire::HEADER_MESSAGE_SHA256))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .and_then(parse_sha256);
            if payload_sha256.is_none() && signed_message_hash.is_none() {
                // Without it, an unsigned body would leave the message itself unsigned:
                // anyone who saw the headers could replay them with another message.
                return Err(Error::unauthenticated(format!(
                    "a request with an unsigned payload must sign the {} header",
                    wire::HEADER_MESSAGE_SHA256
                )));
            }
            Ok(Authenticated {
                principal: verified.principal,
                payload_sha256,
                message_sha256: signed_message_hash,
            })
        })
    }
}

fn parse_sha256(hex_text: &str) -> Option<[u8; 32]> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut hash).ok()?;
    Some(hash)
}

/// Lets every request in as [`Principal::anonymous`]: authentication turned off, by
/// name, by the operator.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnonymousAccess;

impl Authenticator for AnonymousAccess {
    fn authenticate<'a>(
        &'a self,
        _request: &'a http::request::Parts,
    ) -> BoxFuture<'a, Result<Authenticated>> {
        Box::pin(async {
            Ok(Authenticated {
                principal: Principal::anonymous(),
                payload_sha256: None,
                message_sha256: None,
            })
        })
    }
}
