//! The on-disk forms: document keys, and document records (format version 1).
//!
//! ```text
//! key     canonical JSON of the partition-key value, 0x00, the id (UTF-8)
//! record  version (1 byte: 1, or 2 with a ttl), commit sequence (u64 LE), commit time in
//!         µs (u64 LE), [version 2: the document's `ttl` in seconds (i64 LE)],
//!         the document's JSON as an avila-compress frame (Auto/Hot, xxh3-checked)
//! ```
//! Documents without a `ttl` property are written as version 1, so TTL costs nothing to
//! those that do not use it.
//! Canonical JSON never holds a raw 0x00 (JSON escapes control characters), so the first
//! 0x00 of a key ends the partition key, and keys of one partition sort together.

use avila_compress::{Codec, Decoder, Encoder, Limits, Profile};
use serde_json::{Map, Value};

use crate::error::{DbError, Result};

/// A record without a ttl.
pub(crate) const RECORD_VERSION: u8 = 1;
/// A record with the document's ttl in its header.
pub(crate) const RECORD_VERSION_TTL: u8 = 2;
const HEADER: usize = 1 + 8 + 8;
const HEADER_TTL: usize = HEADER + 8;

/// What a record's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) seq: u64,
    pub(crate) ts_micros: u64,
    /// The document's own `ttl` (seconds; -1 never expires), if it has one.
    pub(crate) ttl: Option<i64>,
    len: usize,
}

impl Header {
    /// The header of a record without a ttl.
    pub(crate) fn of(seq: u64, ts_micros: u64) -> Header {
        Header {
            seq,
            ts_micros,
            ttl: None,
            len: HEADER,
        }
    }
}

/// Reads a record's header without touching its body.
pub(crate) fn header(bytes: &[u8]) -> Result<Header> {
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (len, ttl) = match bytes.first() {
        Some(&RECORD_VERSION) if bytes.len() >= HEADER => (HEADER, None),
        Some(&RECORD_VERSION_TTL) if bytes.len() >= HEADER_TTL => {
            (HEADER_TTL, Some(word(HEADER) as i64))
        }
        Some(&(RECORD_VERSION | RECORD_VERSION_TTL)) | None => {
            return Err(DbError::Corrupted("document record is truncated".into()));
        }
        Some(other) => {
            return Err(DbError::UnsupportedFormat(format!(
                "document record version {other} (this build reads {RECORD_VERSION} and {RECORD_VERSION_TTL})"
            )));
        }
    };
    Ok(Header {
        seq: word(1),
        ts_micros: word(9),
        ttl,
        len,
    })
}

/// The `ttl` property of a document: absent, -1 (never expires) or a positive number of
/// seconds.
pub(crate) fn ttl_of(body: &Map<String, Value>) -> Result<Option<i64>> {
    match body.get("ttl") {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(t) if t == -1 || t > 0 => Ok(Some(t)),
            _ => Err(DbError::invalid(
                "ttl",
                "must be -1 (never expires) or a positive whole number of seconds",
            )),
        },
        Some(_) => Err(DbError::invalid(
            "ttl",
            "must be -1 (never expires) or a positive whole number of seconds",
        )),
    }
}

/// When documents expire: the collection's default ttl and the time now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expiry {
    pub(crate) default_ttl: Option<i64>,
    pub(crate) now_micros: u64,
}

impl Expiry {
    /// The time a document written at `ts_micros` with its own `ttl` expires, if ever.
    pub(crate) fn expires_at(
        default_ttl: Option<i64>,
        ts_micros: u64,
        ttl: Option<i64>,
    ) -> Option<u64> {
        match ttl.or(default_ttl) {
            Some(t) if t > 0 => {
                Some(ts_micros.saturating_add((t as u64).saturating_mul(1_000_000)))
            }
            _ => None,
        }
    }

    /// Whether the record with header `h` has expired.
    pub(crate) fn expired(&self, h: &Header) -> bool {
        self.expired_at(h.ts_micros, h.ttl)
    }

    /// Whether a record written at `ts_micros` with its own `ttl` has expired.
    pub(crate) fn expired_at(&self, ts_micros: u64, ttl: Option<i64>) -> bool {
        Expiry::expires_at(self.default_ttl, ts_micros, ttl).is_some_and(|at| self.now_micros >= at)
    }
}
/// The largest document, as compact JSON: 4 MiB.
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;
/// The deepest a document may nest objects and arrays, itself counted as the first
/// level. JSON parsers stop somewhere (serde_json at 128 levels, counting every message
/// a document travels in over the network), and a stored document no reader could parse
/// would fail every read and query of its collection.
pub const MAX_DOCUMENT_DEPTH: usize = 100;

/// A document's top-level object, serialized exactly as serde_json serializes it, but
/// refusing (with [`TOO_DEEP`]) objects and arrays nested past [`MAX_DOCUMENT_DEPTH`]: the
/// check costs no walk of its own.
pub(crate) struct Limited<'a>(pub(crate) &'a serde_json::Map<String, serde_json::Value>);

/// The error [`Limited`] fails with.
pub(crate) const TOO_DEEP: &str = "nested too deep";

/// A value with `levels` levels of containers left.
struct Nested<'a>(&'a serde_json::Value, usize);

impl serde::Serialize for Limited<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, &Nested(v, MAX_DOCUMENT_DEPTH - 1))?;
        }
        map.end()
    }
}

impl serde::Serialize for Nested<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap, SerializeSeq};
        use serde_json::Value;
        let Nested(value, levels) = *self;
        match value {
            Value::Array(_) | Value::Object(_) if levels == 0 => Err(S::Error::custom(TOO_DEEP)),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&Nested(v, levels - 1))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut out = s.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    out.serialize_entry(k, &Nested(v, levels - 1))?;
                }
                out.end()
            }
            other => other.serialize(s),
        }
    }
}

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
    // By hand: every document read makes one, and `format!` costs several times this.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..16)
        .rev()
        .map(|nibble| char::from(HEX[((seq >> (nibble * 4)) & 0xf) as usize]))
        .collect()
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
pub(crate) fn encode_unstamped(json: &[u8], ttl: Option<i64>) -> Vec<u8> {
    let codec = if json.len() >= COMPRESS_FROM {
        Codec::Auto(Profile::Hot)
    } else {
        Codec::None
    };
    let mut out = Vec::with_capacity(HEADER_TTL + json.len() + avila_compress::MAX_OVERHEAD);
    match ttl {
        None => {
            out.push(RECORD_VERSION);
            out.resize(HEADER, 0);
        }
        Some(t) => {
            out.push(RECORD_VERSION_TTL);
            out.resize(HEADER, 0);
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
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
    let mut record = encode_unstamped(json, None);
    stamp(&mut record, seq, ts_micros);
    record
}

/// A record's header and JSON, checked but not parsed.
pub(crate) fn decode_raw(bytes: &[u8]) -> Result<(Header, Vec<u8>)> {
    let h = header(bytes)?;
    let limits = Limits::new(MAX_DOCUMENT_BYTES as u64);
    let json = Decoder::new()
        .decode(&bytes[h.len..], &limits)
        .map_err(|e| DbError::Corrupted(format!("document body: {e}")))?;
    Ok((h, json))
}

/// A record's header and JSON, checked; the JSON is lent out of `bytes` when the record
/// is stored uncompressed.
pub(crate) fn decode_borrowed(bytes: &[u8]) -> Result<(Header, std::borrow::Cow<'_, [u8]>)> {
    let h = header(bytes)?;
    let limits = Limits::new(MAX_DOCUMENT_BYTES as u64);
    let json = Decoder::new()
        .decode_borrowed(&bytes[h.len..], &limits)
        .map_err(|e| DbError::Corrupted(format!("document body: {e}")))?;
    Ok((h, json))
}

/// The document callers see, from its header and JSON: its fields plus `_etag`, `_ts`
/// and `_seq`.
pub(crate) fn document_from(h: &Header, json: &[u8]) -> Result<Value> {
    Ok(record_from(h, json)?.into_document())
}

/// A stored document's JSON as text: checked as UTF-8 once, whole, so the parser need not
/// check each string it reads (as it does reading bytes).
pub(crate) fn json_text(json: &[u8]) -> Result<&str> {
    std::str::from_utf8(json).map_err(|e| DbError::Corrupted(format!("document body: {e}")))
}

fn record_from(h: &Header, json: &[u8]) -> Result<Record> {
    let body = match serde_json::from_str(json_text(json)?) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(DbError::Corrupted("document body is not an object".into())),
        Err(e) => return Err(DbError::Corrupted(format!("document body: {e}"))),
    };
    Ok(Record {
        seq: h.seq,
        ts_micros: h.ts_micros,
        body,
    })
}

/// The document with only the top-level `fields` of its body (and its system
/// properties); the others are skipped by the parser, not built.
pub(crate) fn document_fields(h: &Header, json: &[u8], fields: &[String]) -> Result<Value> {
    let body =
        pick_fields(json, fields).map_err(|e| DbError::Corrupted(format!("document body: {e}")))?;
    Ok(Record {
        seq: h.seq,
        ts_micros: h.ts_micros,
        body,
    }
    .into_document())
}

/// The top-level `fields` of a JSON object, each built as a `Value`; the others are
/// skipped by the parser, not built. A repeated key keeps its last value, as a whole
/// parse does.
fn pick_fields(json: &[u8], fields: &[String]) -> serde_json::Result<Map<String, Value>> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Pick<'f>(&'f [String]);
    impl<'de> Visitor<'de> for Pick<'_> {
        type Value = Map<String, Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if self.0.iter().any(|f| f.as_str() == key) {
                    out.insert(key.into_owned(), map.next_value::<Value>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(out)
        }
    }
    impl<'de> DeserializeSeed<'de> for Pick<'_> {
        type Value = Map<String, Value>;
        fn deserialize<D: Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    let text = std::str::from_utf8(json).map_err(serde::de::Error::custom)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let picked = Pick(fields).deserialize(&mut de)?;
    de.end()?;
    Ok(picked)
}

/// The canonical partition-key bytes and the id of a document key (see [`doc_key`]).
pub(crate) fn key_parts(key: &[u8]) -> Result<(&[u8], &str)> {
    let at = key
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| DbError::Corrupted("document key".into()))?;
    let id = std::str::from_utf8(&key[at + 1..])
        .map_err(|e| DbError::Corrupted(format!("document key: {e}")))?;
    Ok((&key[..at], id))
}

/// The id part of a document key.
pub(crate) fn id_of_key(key: &[u8]) -> Result<String> {
    key_parts(key).map(|(_, id)| id.to_string())
}

/// Decodes a record, checking its version and checksum.
pub(crate) fn decode(bytes: &[u8]) -> Result<Record> {
    let (h, json) = decode_raw(bytes)?;
    record_from(&h, &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limited_writes_what_serde_json_writes_and_refuses_only_past_the_depth() {
        let doc = json!({
            "id": "a\"b\\c\u{1}é😀",
            "n": [1, -2, 3.5, 1e300, 18446744073709551615u64, -9223372036854775808i64],
            "o": {"z": null, "a": true, "m": {"x": [[], {}, [[{"y": "deep"}]]]}},
            "empty": {},
            "s": "",
        });
        let body = doc.as_object().unwrap();
        assert_eq!(
            serde_json::to_vec(&Limited(body)).unwrap(),
            serde_json::to_vec(body).unwrap()
        );
        // `levels` counts the document itself: containers inside it nest up to the limit.
        let nest = |levels: usize| {
            let mut v = json!("leaf");
            for i in 1..levels {
                v = if i % 2 == 0 {
                    json!({"k": v})
                } else {
                    json!([v])
                };
            }
            json!({"x": v})
        };
        let ok = nest(MAX_DOCUMENT_DEPTH);
        let bytes = serde_json::to_vec(&Limited(ok.as_object().unwrap())).unwrap();
        assert_eq!(bytes, serde_json::to_vec(&ok).unwrap());
        let deep = nest(MAX_DOCUMENT_DEPTH + 1);
        let e = serde_json::to_vec(&Limited(deep.as_object().unwrap())).unwrap_err();
        assert_eq!(e.to_string(), TOO_DEEP);
    }

    #[test]
    fn etags_are_the_sequence_number_in_sixteen_hex_digits() {
        for seq in [0, 1, 7, 0xabc, 0x0123_4567_89ab_cdef, u64::MAX] {
            assert_eq!(etag_of(seq), format!("{seq:016x}"));
        }
    }

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
        assert_eq!(header(&bytes).unwrap().seq, 7);
        let with_ttl = {
            let mut r = encode_unstamped(&json, Some(30));
            stamp(&mut r, 9, 5_000_000);
            r
        };
        let h = header(&with_ttl).unwrap();
        assert_eq!((h.seq, h.ts_micros, h.ttl), (9, 5_000_000, Some(30)));
        assert_eq!(Value::Object(decode(&with_ttl).unwrap().body), doc);
        let expiry = Expiry {
            default_ttl: Some(100),
            now_micros: 35_000_000,
        };
        assert!(expiry.expired(&h));
        assert!(
            !Expiry {
                now_micros: 34_999_999,
                ..expiry
            }
            .expired(&h)
        );
        assert!(
            !expiry.expired(&header(&bytes).unwrap()),
            "default 100 s from a 1.79e9 s write"
        );
        assert!(
            !Expiry {
                default_ttl: None,
                now_micros: u64::MAX
            }
            .expired(&header(&bytes).unwrap())
        );

        let mut damaged = bytes.clone();
        let n = damaged.len();
        damaged[n - 12] ^= 1;
        assert!(matches!(decode(&damaged), Err(DbError::Corrupted(_))));
        assert!(matches!(
            decode(&with_ttl[..20]),
            Err(DbError::Corrupted(_))
        ));
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
