//! Payloads that travel beside a request or response: bytes or a stream of bytes.

use std::fmt;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};

use crate::error::{Error, Result};

/// A stream of payload chunks; an `Err` item aborts the transfer.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// A payload carried beside a message: nothing, bytes held in memory, or a stream.
///
/// The local transport hands a `Body` over as it is (no copy of `Bytes`, streams stay
/// streams); the HTTP transport sends bytes with a length and streams chunked.
#[derive(Default)]
pub enum Body {
    /// No payload.
    #[default]
    Empty,
    /// A payload already in memory.
    Bytes(Bytes),
    /// A payload produced (or consumed) a chunk at a time.
    Stream(ByteStream),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Body::Stream(..)"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Bytes(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::Bytes(Bytes::from(v))
    }
}

impl Body {
    /// A body streaming from `stream`.
    pub fn from_stream(stream: impl Stream<Item = Result<Bytes>> + Send + 'static) -> Self {
        Body::Stream(Box::pin(stream))
    }

    /// Whether this is [`Body::Empty`].
    pub fn is_empty(&self) -> bool {
        matches!(self, Body::Empty)
    }

    /// The whole payload in memory, failing with [`crate::ErrorCode::TooLarge`] past `limit`
    /// bytes (checked as chunks arrive, so a long stream is never buffered whole).
    pub async fn collect(self, limit: u64) -> Result<Bytes> {
        match self {
            Body::Empty => Ok(Bytes::new()),
            Body::Bytes(b) if b.len() as u64 > limit => Err(too_large(limit)),
            Body::Bytes(b) => Ok(b),
            Body::Stream(mut s) => {
                let mut buf = BytesMut::new();
                while let Some(chunk) = s.next().await {
                    let chunk = chunk?;
                    if (buf.len() + chunk.len()) as u64 > limit {
                        return Err(too_large(limit));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(buf.freeze())
            }
        }
    }

    /// The payload as a stream, whatever it was.
    pub fn into_stream(self) -> ByteStream {
        match self {
            Body::Empty => Box::pin(stream::empty()),
            Body::Bytes(b) => Box::pin(stream::once(async move { Ok(b) })),
            Body::Stream(s) => s,
        }
    }
}

fn too_large(limit: u64) -> Error {
    Error::too_large(format!("payload exceeds the limit of {limit} bytes"))
}
