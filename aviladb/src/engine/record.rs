//! The on-disk forms: document keys, and document records (format version 1).
//!
//! ```text
//! key     canonical JSON of the partition-key value, 0x00, the id (UTF-8)
//! record  version (1 byte = 1), commit sequence (u64 LE), commit time in µs (u64 LE),
//!         the document's JSON as an avila-compress frame (Auto/Hot, xxh3-checked)
//! ```
//! Canonical JSON never holds a raw 0x00 (JSON escapes control characters), so the first
//! 0x00 of a key ends the partition key, and keys of one partition sort together.

use avila_compress::{Codec, Decoder, Encoder, Limits, Profile};
use serde_json::{Map, Value};

use crate::error::{DbError, Result};

/// The record format this build writes and reads.
pub(crate) const RECORD_VERSION: u8 = 1;
const HEADER: usize = 1 + 8 + 8;
/// The largest document, as compact JSON: 4 MiB.
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;
/// The system properties added on read and stripped on write.
pub const SYSTEM_PROPERTIES: [&str; 3] = ["_etag", "_ts", "_seq"];

/// A stored document before its system properties are added.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) ts_micros: u64,
    pub(crate) body: Map<String, Value>,
}

/// The ETag of a write with sequence number `seq`.
pub fn etag_of(seq: u64) -> String {
    format!("{seq:016x}")
}

impl Record {
    /// The document as returned to callers: its fields plus `_etag`, `_ts` (seconds) and
    /// `_seq`.
    pub(crate) fn into_document(self) -> Value {
        let mut body = self.body;
        body.insert("_etag".into(), Value::String(etag_of(self.seq)));
        body.insert("_ts".into(), Value::from(self.ts_micros / 1_000_000));
        body.insert("_seq".into(), Value::from(self.seq));
        Value::Object(body)
    }
}

/// The canonical bytes of a partition-key value: integers without a fraction, other
/// numbers in shortest form, so `1` and `1.0` address the same partition.
pub(crate) fn canonical_pk(value: &Value) -> Result<Vec<u8>> {
    let canonical = match value {
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(_), _, _) | (_, Some(_), _) => Value::Number(n.clone()),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => {
                Value::from(f as i64)
            }
            _ => Value::Number(n.clone()),
        },
        Value::String(_) | Value::Bool(_) | Value::Null => value.clone(),
        Value::Array(_) | Value::Object(_) => {
            return Err(DbError::invalid(
                "partition_key",
                "must be a string, number, boolean or null, not an array or object",
            ));
        }
    };
    serde_json::to_vec(&canonical).map_err(|e| DbError::invalid("partition_key", e.to_string()))
}

/// The storage key of a document.
pub(crate) fn doc_key(pk: &Value, id: &str) -> Result<Vec<u8>> {
    let mut key = canonical_pk(pk)?;
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    Ok(key)
}

/// Documents from this size on are compressed (`Auto`, hot profile); smaller ones are
/// stored as they are, still framed and checksummed, so reads skip the decompression.
pub(crate) const COMPRESS_FROM: usize = 4096;

/// A record whose commit sequence and time are not known yet: everything else (the
/// framed, checksummed, perhaps compressed body) is made on the writer's own thread, and
/// the group-commit thread only fills in the header with [`stamp`].
pub(crate) fn encode_unstamped(json: &[u8]) -> Vec<u8> {
    let codec = if json.len() >= COMPRESS_FROM {
        Codec::Auto(Profile::Hot)
    } else {
        Codec::None
    };
    let mut out = Vec::with_capacity(HEADER + json.len() + avila_compress::MAX_OVERHEAD);
    out.push(RECORD_VERSION);
    out.resize(HEADER, 0);
    Encoder::new(codec).encode_into(json, &mut out);
    out
}

/// Fills in the commit sequence and time of a record from [`encode_unstamped`].
pub(crate) fn stamp(record: &mut [u8], seq: u64, ts_micros: u64) {
    record[1..9].copy_from_slice(&seq.to_le_bytes());
    record[9..17].copy_from_slice(&ts_micros.to_le_bytes());
}

/// Encodes a record; `json` is the document's compact JSON.
#[cfg(test)]
pub(crate) fn encode(seq: u64, ts_micros: u64, json: &[u8]) -> Vec<u8> {
    let mut record = encode_unstamped(json);
    stamp(&mut record, seq, ts_micros);
    record
}

/// A record's sequence number, commit time and JSON, checked but not parsed.
pub(crate) fn decode_raw(bytes: &[u8]) -> Result<(u64, u64, Vec<u8>)> {
    if bytes.len() < HEADER {
        return Err(DbError::Corrupted("document record is truncated".into()));
    }
    if bytes[0] != RECORD_VERSION {
        return Err(DbError::UnsupportedFormat(format!(
            "document record version {} (this build reads {RECORD_VERSION})",
            bytes[0]
        )));
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let limits = Limits::new(MAX_DOCUMENT_BYTES as u64);
    let json = Decoder::new()
        .decode(&bytes[HEADER..], &limits)
        .map_err(|e| DbError::Corrupted(format!("document body: {e}")))?;
    Ok((word(1), word(9), json))
}

/// Decodes a record, checking its version and checksum.
pub(crate) fn decode(bytes: &[u8]) -> Result<Record> {
    let (seq, ts_micros, json) = decode_raw(bytes)?;
    let body = match serde_json::from_slice(&json) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(DbError::Corrupted("document body is not an object".into())),
        Err(e) => return Err(DbError::Corrupted(format!("document body: {e}"))),
    };
    Ok(Record {
        seq,
        ts_micros,
        body,
    })
}

/// The sequence number of a record without decoding its body (for ETag checks).
pub(crate) fn record_seq(bytes: &[u8]) -> Result<u64> {
    if bytes.len() < HEADER || bytes[0] != RECORD_VERSION {
        return Err(DbError::Corrupted("document record header".into()));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[1..9]);
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_round_trip_and_detect_damage() {
        let doc = json!({"id": "p1", "region": "sa-east-1", "score": 42, "bio": "x".repeat(5000)});
        let json = serde_json::to_vec(&doc).unwrap();
        let bytes = encode(7, 1_790_000_000_123_456, &json);
        assert!(bytes.len() < json.len(), "large documents are compressed");
        let small = serde_json::to_vec(&json!({"id": "p2", "region": "sa"})).unwrap();
        assert!(
            encode(8, 0, &small).ends_with(&[]),
            "small ones are framed as they are"
        );
        let record = decode(&bytes).unwrap();
        assert_eq!(record.seq, 7);
        assert_eq!(Value::Object(record.body.clone()), doc);
        let out = record.into_document();
        assert_eq!(out["_etag"], "0000000000000007");
        assert_eq!(out["_ts"], 1_790_000_000);
        assert_eq!(out["_seq"], 7);
        assert_eq!(record_seq(&bytes).unwrap(), 7);

        let mut damaged = bytes.clone();
        let n = damaged.len();
        damaged[n - 12] ^= 1;
        assert!(matches!(decode(&damaged), Err(DbError::Corrupted(_))));
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(
            decode(&future),
            Err(DbError::UnsupportedFormat(_))
        ));
        assert!(decode(&bytes[..5]).is_err());
    }

    #[test]
    fn keys_round_trip_and_numbers_are_canonical() {
        let keys: Vec<Vec<u8>> = [
            json!("sa-east-1"),
            json!(42),
            json!(true),
            json!(null),
            json!("a\u{0}b"),
        ]
        .iter()
        .map(|pk| doc_key(pk, "p1").unwrap())
        .collect();
        // The partition key's JSON never holds a raw 0x00, so the first one ends it.
        for key in &keys {
            assert_eq!(key.iter().filter(|&&b| b == 0).count(), 1, "{key:?}");
        }
        assert_eq!(
            doc_key(&json!(1), "a").unwrap(),
            doc_key(&json!(1.0), "a").unwrap()
        );
        assert_ne!(
            doc_key(&json!(1.5), "a").unwrap(),
            doc_key(&json!(1), "a").unwrap()
        );
        assert!(doc_key(&json!([1]), "a").is_err());
        assert!(doc_key(&json!({"a": 1}), "a").is_err());
    }
}
