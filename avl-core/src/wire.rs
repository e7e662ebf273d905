//! How messages and payloads travel over HTTP: the one format the HTTP transport and the
//! serve plumbing share.
//!
//! A request is `POST /v1/{service}`; a response is `200`. Without a payload the body is
//! the message as JSON (`application/json`). With one, the body is framed
//! (`application/vnd.avl.framed`): a 4-byte big-endian length, the message as JSON, then
//! the payload; the `avl-body` header says whether the payload was bytes or a stream, so
//! the receiver hands the service the same kind. The `avl-message-sha256` header carries
//! the hash of the message JSON, signed with the rest of the headers. Errors are any
//! other status with a JSON body `{code, message, request_id}`.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{StreamExt, stream};

use crate::body::{Body, ByteStream};
use crate::error::{Error, ErrorCode, Result};
use crate::service::Message;

/// Content type of a body that is the message alone.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// Content type of a framed body: length, message, payload.
pub const CONTENT_TYPE_FRAMED: &str = "application/vnd.avl.framed";
/// Header naming the payload kind of a framed body: `bytes` or `stream`.
pub const HEADER_BODY_KIND: &str = "avl-body";
/// Header carrying the hex SHA-256 of the message JSON. The HTTP transport always sends it
/// and signs it, so the message is covered even when the payload is not (streams and
/// large bodies travel as `UNSIGNED-PAYLOAD`).
pub const HEADER_MESSAGE_SHA256: &str = "avl-message-sha256";
/// Header carrying the request id on every response.
pub const HEADER_REQUEST_ID: &str = "x-request-id";
/// The path prefix of service endpoints.
pub const SERVICE_PATH_PREFIX: &str = "/v1/";

/// The kind of payload a framed body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Held in memory by the sender; the receiver collects it into `Body::Bytes`.
    Bytes,
    /// Streamed by the sender; the receiver hands on a `Body::Stream`.
    Stream,
}

impl BodyKind {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyKind::Bytes => "bytes",
            BodyKind::Stream => "stream",
        }
    }

    /// Parses a header value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bytes" => Some(BodyKind::Bytes),
            "stream" => Some(BodyKind::Stream),
            _ => None,
        }
    }
}

/// A message ready to send: its JSON, and its payload if any.
pub struct Encoded {
    /// The message as JSON.
    pub head: Bytes,
    /// The payload taken out of the message.
    pub body: Body,
}

impl Encoded {
    /// Takes the payload out of `message` and serializes the rest.
    pub fn new<M: Message>(mut message: M) -> Result<Self> {
        let body = message.take_body();
        let head = serde_json::to_vec(&message)
            .map_err(|e| Error::internal(format!("cannot encode message: {e}")))?;
        Ok(Encoded {
            head: Bytes::from(head),
            body,
        })
    }

    /// The content type and payload kind this message travels with.
    pub fn content_type(&self) -> (&'static str, Option<BodyKind>) {
        match self.body {
            Body::Empty => (CONTENT_TYPE_JSON, None),
            Body::Bytes(_) => (CONTENT_TYPE_FRAMED, Some(BodyKind::Bytes)),
            Body::Stream(_) => (CONTENT_TYPE_FRAMED, Some(BodyKind::Stream)),
        }
    }

    /// The 4-byte length and the JSON that start a framed body.
    pub fn frame_prefix(&self) -> Bytes {
        let mut prefix = BytesMut::with_capacity(4 + self.head.len());
        prefix.extend_from_slice(&(self.head.len() as u32).to_be_bytes());
        prefix.extend_from_slice(&self.head);
        prefix.freeze()
    }

    /// Exact length of the HTTP body, when known without reading a stream.
    pub fn http_len(&self) -> Option<u64> {
        match &self.body {
            Body::Empty => Some(self.head.len() as u64),
            Body::Bytes(b) => Some(4 + self.head.len() as u64 + b.len() as u64),
            Body::Stream(_) => None,
        }
    }

    /// The HTTP body as chunks: JSON alone, or prefix then payload (never copied).
    pub fn into_chunks(self) -> (Vec<Bytes>, Option<ByteStream>) {
        if self.body.is_empty() {
            return (vec![self.head], None);
        }
        let prefix = self.frame_prefix();
        match self.body {
            Body::Bytes(b) => (vec![prefix, b], None),
            Body::Stream(s) => (vec![prefix], Some(s)),
            Body::Empty => (vec![prefix], None),
        }
    }
}

/// Decodes a message from its JSON, reporting where it is malformed.
pub fn decode_message<M: Message>(head: &[u8]) -> Result<M> {
    serde_json::from_slice(head).map_err(|e| {
        Error::invalid_input(
            "message",
            format!(
                "malformed message at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

/// Splits a framed body into its JSON message and the payload stream that follows,
/// reading no further than the message; refuses a message longer than `head_limit`.
pub async fn split_framed(mut body: ByteStream, head_limit: u64) -> Result<(Bytes, ByteStream)> {
    let mut buf = BytesMut::new();
    let mut need: Option<usize> = None;
    loop {
        if need.is_none() && buf.len() >= 4 {
            let len = u64::from(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            if len > head_limit {
                return Err(Error::too_large(format!(
                    "message of {len} bytes exceeds the limit of {head_limit}"
                )));
            }
            buf.advance(4);
            need = Some(len as usize);
        }
        if let Some(n) = need
            && buf.len() >= n
        {
            let head = buf.split_to(n).freeze();
            let rest = buf.freeze();
            let tail: ByteStream = if rest.is_empty() {
                body
            } else {
                Box::pin(stream::once(async move { Ok(rest) }).chain(body))
            };
            return Ok((head, tail));
        }
        match body.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk?),
            None => {
                return Err(Error::invalid_input(
                    "body",
                    "framed body ended inside its message",
                ));
            }
        }
    }
}

/// The JSON body of an error response.
pub fn error_body(error: &Error) -> Vec<u8> {
    // An Error always serializes: it holds only strings and a code.
    serde_json::to_vec(error).unwrap_or_else(|_| b"{\"code\":\"Internal\"}".to_vec())
}

/// Reads an error response body; a body that is not one becomes an error of the status.
pub fn parse_error(status: u16, body: &[u8], request_id: Option<&str>) -> Error {
    let mut error = serde_json::from_slice::<Error>(body).unwrap_or_else(|_| {
        let code = ErrorCode::ALL
            .into_iter()
            .find(|c| c.http_status() == status)
            .unwrap_or(ErrorCode::Internal);
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        Error::new(code, format!("HTTP {status}: {text}"))
    });
    if error.request_id().is_none()
        && let Some(id) = request_id
    {
        error = error.with_request_id(id);
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Probe {
        a: Option<String>,
        b: Vec<u32>,
    }
    impl Message for Probe {}

    fn chunks(parts: &[&[u8]]) -> ByteStream {
        let owned: Vec<Result<Bytes>> = parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        Box::pin(stream::iter(owned))
    }

    async fn rest(s: ByteStream) -> Vec<u8> {
        Body::Stream(s).collect(1 << 20).await.unwrap().to_vec()
    }

    #[tokio::test]
    async fn framed_bodies_split_at_any_chunking() {
        let mut frame = 5u32.to_be_bytes().to_vec();
        frame.extend_from_slice(b"{\"a\":");
        frame.extend_from_slice(b"payload bytes");
        for cut1 in 0..frame.len() {
            for cut2 in cut1..frame.len() {
                let s = chunks(&[&frame[..cut1], &frame[cut1..cut2], &frame[cut2..]]);
                let (head, tail) = split_framed(s, 100).await.unwrap();
                assert_eq!(&head[..], b"{\"a\":");
                assert_eq!(rest(tail).await, b"payload bytes");
            }
        }
    }

    #[tokio::test]
    async fn framed_bodies_refuse_long_or_short_messages() {
        let mut frame = 1000u32.to_be_bytes().to_vec();
        frame.extend_from_slice(&[b'x'; 10]);
        let e = split_framed(chunks(&[&frame]), 100).await.err().unwrap();
        assert_eq!(e.code(), ErrorCode::TooLarge);
        let e = split_framed(chunks(&[&frame]), 10_000).await.err().unwrap();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        let e = split_framed(chunks(&[&[0, 0]]), 10).await.err().unwrap();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
    }

    #[test]
    fn foreign_error_bodies_keep_the_status_meaning() {
        let e = parse_error(404, b"<html>nope</html>", Some("r9"));
        assert_eq!(e.code(), ErrorCode::NotFound);
        assert_eq!(e.request_id(), Some("r9"));
        let e = parse_error(502, b"", None);
        assert_eq!(e.code(), ErrorCode::Internal);
        let ours = error_body(&Error::conflict("etag"));
        assert_eq!(parse_error(412, &ours, None).code(), ErrorCode::Conflict);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic_the_decoders(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            cut in 0usize..300,
        ) {
            let cut = cut.min(bytes.len());
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let s = chunks(&[&bytes[..cut], &bytes[cut..]]);
                if let Ok((head, tail)) = split_framed(s, 1000).await {
                    let _ = decode_message::<Probe>(&head);
                    let _ = Body::Stream(tail).collect(1000).await;
                }
            });
            let _ = decode_message::<Probe>(&bytes);
            let _ = parse_error(400, &bytes, None);
        }
    }
}
