//! Typed documents: a value of the caller's type with its system properties.

use std::ops::{Deref, DerefMut};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{DbError, Result};

/// A stored document of type `T` and its system properties.
#[derive(Debug, Clone, PartialEq)]
pub struct Document<T = Value> {
    /// The ETag: pass it as `if_match` to write only if the document has not changed.
    pub etag: String,
    /// Commit time, seconds since the Unix epoch.
    pub ts: u64,
    /// Commit sequence number of the last write.
    pub seq: u64,
    /// The document.
    pub body: T,
}

impl<T> Deref for Document<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.body
    }
}

impl<T> DerefMut for Document<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.body
    }
}

fn misfit(e: serde_json::Error) -> DbError {
    DbError::invalid("document", format!("does not fit the type asked for: {e}"))
}

impl<T: DeserializeOwned> Document<T> {
    /// Reads a document as returned over the wire (with `_etag`, `_ts`, `_seq`) as `T`;
    /// the system properties go to the `Document`, not into `T`.
    pub fn from_value(value: Value) -> Result<Self> {
        let Value::Object(mut map) = value else {
            return Err(DbError::Corrupted("document is not an object".into()));
        };
        let etag = match map.remove("_etag") {
            Some(Value::String(etag)) => etag,
            _ => return Err(DbError::Corrupted("document without _etag".into())),
        };
        let ts = map.remove("_ts").and_then(|v| v.as_u64()).unwrap_or(0);
        let seq = map.remove("_seq").and_then(|v| v.as_u64()).unwrap_or(0);
        let body = serde_json::from_value(Value::Object(map)).map_err(misfit)?;
        Ok(Document {
            etag,
            ts,
            seq,
            body,
        })
    }
}

impl<T: DeserializeOwned> Document<T> {
    /// Reads a stored document as `T` straight from its JSON.
    pub(crate) fn from_raw(raw: crate::engine::RawDocument) -> Result<Self> {
        Ok(Document {
            etag: crate::engine::etag_of(raw.seq),
            ts: raw.ts_micros / 1_000_000,
            seq: raw.seq,
            body: serde_json::from_str(crate::engine::json_text(&raw.json)?).map_err(misfit)?,
        })
    }
}

/// What `insert`, `upsert` and `replace` take: a reference to anything serde serializes (a
/// typed document, or a `Value` the caller keeps), built into a JSON value; or a
/// `serde_json::Value` given away, stored as it is, without that copy.
pub trait IntoDocument {
    /// The document as a JSON value.
    fn into_document(self) -> Result<Value>;
}

impl<T: Serialize + ?Sized> IntoDocument for &T {
    fn into_document(self) -> Result<Value> {
        serde_json::to_value(self).map_err(|e| DbError::invalid("document", e.to_string()))
    }
}

/// `serde_json::to_value` of a `Value` is the same value: taking it as it is stores what
/// the reference would, without building a copy.
impl IntoDocument for Value {
    fn into_document(self) -> Result<Value> {
        Ok(self)
    }
}
