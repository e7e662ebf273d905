//! The HTTP transport: requests signed with SigV4, sent to a served endpoint.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method};
use sha2::{Digest, Sha256};

use crate::body::{Body, ByteStream};
use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::service::{Message, Request, Service};
use crate::sigv4;
use crate::transport::Transport;
use crate::wire::{self, BodyKind, Encoded};

/// Bodies up to this size are hashed into the signature; larger and streamed ones are
/// sent as `UNSIGNED-PAYLOAD` (use TLS for those, as S3 clients do).
pub(crate) const SIGNED_PAYLOAD_LIMIT: u64 = 8 << 20;
/// The default for [`HttpTransport::with_response_limit`].
pub(crate) const DEFAULT_RESPONSE_LIMIT: u64 = 256 << 20;

/// Sends requests of service `S` to `{endpoint}/v1/{S::NAME}`.
pub struct HttpTransport<S> {
    client: reqwest::Client,
    url: String,
    host: HeaderValue,
    path: String,
    credentials: Credentials,
    region: String,
    response_limit: u64,
    _service: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for HttpTransport<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("url", &self.url)
            .field("access_key_id", &self.credentials.access_key_id)
            .finish_non_exhaustive()
    }
}

impl<S: Service> HttpTransport<S> {
    /// A transport to `endpoint` (`http://host:port` or `https://...`), signing with
    /// `credentials` for `region`; `ca_file` adds trusted CA certificates (PEM) to the
    /// platform's.
    pub fn new(
        endpoint: &str,
        credentials: Credentials,
        region: &str,
        ca_file: Option<&Path>,
    ) -> Result<Self> {
        crate::config::validate_endpoint(endpoint)?;
        let base = endpoint.trim_end_matches('/');
        let url = format!("{base}{}{}", wire::SERVICE_PATH_PREFIX, S::NAME);
        let uri: http::Uri = url
            .parse()
            .map_err(|e| Error::invalid_input("endpoint", format!("{e}")))?;
        let authority = uri
            .authority()
            .ok_or_else(|| Error::invalid_input("endpoint", "no host"))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| Error::invalid_input("endpoint", "host is not a valid header"))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(ca_file)?)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::internal(format!("cannot build HTTP client: {e}")))?;
        Ok(HttpTransport {
            client,
            path: uri.path().to_string(),
            url,
            host,
            credentials,
            region: region.to_string(),
            response_limit: DEFAULT_RESPONSE_LIMIT,
            _service: PhantomData,
        })
    }

    /// The most a response may hold in memory: its message, and its payload when that
    /// arrives as bytes (a streamed payload is the caller's to bound as it reads).
    /// Larger responses fail with [`crate::ErrorCode::TooLarge`]. Default 256 MiB.
    pub fn with_response_limit(mut self, bytes: u64) -> Self {
        self.response_limit = bytes;
        self
    }

    async fn send(&self, request: S::Request) -> Result<S::Response> {
        let resource = request.resource();
        let operation = request.operation();
        let encoded = Encoded::new(request)?;
        let (content_type, kind) = encoded.content_type();
        let length = encoded.http_len();
        let message_hash = sigv4::sha256_hex(&encoded.head);
        let mut headers = HeaderMap::new();
        headers.insert(
            wire::HEADER_MESSAGE_SHA256,
            HeaderValue::from_str(&message_hash)
                .map_err(|_| Error::internal("hex is a valid header value"))?,
        );
        headers.insert(http::header::HOST, self.host.clone());
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        if let Some(kind) = kind {
            headers.insert(
                wire::HEADER_BODY_KIND,
                HeaderValue::from_static(kind.as_str()),
            );
        }
        let (chunks, stream) = encoded.into_chunks();
        let payload_hash = match length {
            Some(len) if len <= SIGNED_PAYLOAD_LIMIT => {
                let mut hasher = Sha256::new();
                for chunk in &chunks {
                    hasher.update(chunk);
                }
                hex::encode(hasher.finalize())
            }
            _ => sigv4::UNSIGNED_PAYLOAD.to_string(),
        };
        sigv4::sign(
            &Method::POST,
            &self.path,
            "",
            &mut headers,
            &payload_hash,
            &sigv4::Signer {
                credentials: &self.credentials,
                region: &self.region,
                service: sigv4::SERVICE,
            },
            SystemTime::now(),
        )?;
        let body = match (stream, length) {
            (None, Some(len)) => reqwest::Body::wrap(Chunks::new(chunks, len)),
            (stream, _) => {
                let head = futures_util::stream::iter(chunks.into_iter().map(Ok::<Bytes, Error>));
                match stream {
                    Some(s) => reqwest::Body::wrap_stream(head.chain(s)),
                    None => reqwest::Body::wrap_stream(head),
                }
            }
        };
        let response = self
            .client
            .post(&self.url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e, operation, &resource))?;
        let status = response.status();
        let request_id = response
            .headers()
            .get(wire::HEADER_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limit = self.response_limit;
        let body_stream = |response: reqwest::Response| -> ByteStream {
            Box::pin(
                response
                    .bytes_stream()
                    .map_err(|e| Error::unavailable(format!("response interrupted: {e}"))),
            )
        };
        if !status.is_success() {
            let body = Body::Stream(body_stream(response))
                .collect(64 << 10)
                .await
                .unwrap_or_default();
            return Err(wire::parse_error(
                status.as_u16(),
                &body,
                request_id.as_deref(),
            ));
        }
        let content_type = header_str(response.headers(), http::header::CONTENT_TYPE.as_str());
        let kind = header_str(response.headers(), wire::HEADER_BODY_KIND);
        let tag = |e: Error| match &request_id {
            Some(id) => e.with_request_id(id.clone()),
            None => e,
        };
        if content_type.as_deref() == Some(wire::CONTENT_TYPE_FRAMED) {
            let kind = kind
                .as_deref()
                .and_then(BodyKind::parse)
                .ok_or_else(|| tag(Error::internal("framed response without a body kind")))?;
            let (head, rest) = wire::split_framed(body_stream(response), limit)
                .await
                .map_err(tag)?;
            let mut message: S::Response = wire::decode_message(&head).map_err(tag)?;
            let body = match kind {
                BodyKind::Bytes => {
                    Body::Bytes(Body::Stream(rest).collect(limit).await.map_err(tag)?)
                }
                BodyKind::Stream => Body::Stream(rest),
            };
            message.set_body(body).map_err(tag)?;
            Ok(message)
        } else {
            let body = Body::Stream(body_stream(response))
                .collect(limit)
                .await
                .map_err(tag)?;
            wire::decode_message(&body).map_err(|e| {
                tag(Error::internal(format!(
                    "undecodable response: {}",
                    e.message()
                )))
            })
        }
    }

    fn unreachable(&self, e: reqwest::Error, operation: &str, resource: &str) -> Error {
        let mut cause: &dyn std::error::Error = &e;
        let mut text = e.to_string();
        while let Some(source) = cause.source() {
            text = format!("{text}: {source}");
            cause = source;
        }
        let what = if resource.is_empty() {
            operation.to_string()
        } else {
            format!("{operation} {resource}")
        };
        Error::unavailable(format!("{what} via {}: {text}", self.url))
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl<S: Service> Transport<S> for HttpTransport<S> {
    fn call(&self, request: S::Request) -> BoxFuture<'_, Result<S::Response>> {
        Box::pin(self.send(request))
    }

    fn target(&self) -> String {
        self.url.clone()
    }
}

/// rustls with the ring provider, the platform's roots, and any extra CA from `ca_file`.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra: Vec<CertificateDer<'static>> = match ca_file {
        None => Vec::new(),
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| Error::invalid_input("ca_file", format!("{}: {e}", path.display())))?,
    };
    if ca_file.is_some() && extra.is_empty() {
        return Err(Error::invalid_input(
            "ca_file",
            "no certificates in the file",
        ));
    }
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| Error::internal(format!("cannot load trusted certificates: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

/// A request body of chunks already in memory, with an exact length (no chunked
/// encoding, no copy into one buffer).
struct Chunks {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl Chunks {
    fn new(chunks: Vec<Bytes>, len: u64) -> Self {
        Chunks {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
            remaining: len,
        }
    }
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>>>> {
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}
