//! A message as the log stores it: length, CRC-32C, then the body.
//!
//! ```text
//! u32 body length | u32 CRC-32C of the body | body:
//!   u64 offset | u64 timestamp (ms) | u64 producer id (0: none) | u64 sequence
//!   | u32 key length (u32::MAX: no key) | key
//!   | u16 header count | (u16 name length | name | u32 value length | value)*
//!   | u32 value length | value
//! ```
//!
//! All little-endian. A record whose length runs past the end of the file, or whose CRC
//! does not match, ends the log there (a torn tail after a crash).

use serde::{Deserialize, Serialize};

/// Bytes as base64 text on the wire (JSON would spell them as arrays of numbers).
pub(crate) mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }

    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            bytes: &Option<Vec<u8>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match bytes {
                Some(b) => s.serialize_some(&STANDARD.encode(b)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|t| STANDARD.decode(t).map_err(serde::de::Error::custom))
                .transpose()
        }
    }

    pub(crate) mod headers {
        use super::*;
        use serde::Serialize;

        pub(crate) fn serialize<S: Serializer>(
            headers: &[(String, Vec<u8>)],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let encoded: Vec<(&str, String)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), STANDARD.encode(v)))
                .collect();
            encoded.serialize(s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<(String, Vec<u8>)>, D::Error> {
            Vec::<(String, String)>::deserialize(d)?
                .into_iter()
                .map(|(n, v)| {
                    STANDARD
                        .decode(v)
                        .map(|v| (n, v))
                        .map_err(serde::de::Error::custom)
                })
                .collect()
        }
    }
}

/// What a producer sends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Picks the partition (the same key, the same partition); also what compaction keeps
    /// the latest value of.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64::option")]
    pub key: Option<Vec<u8>>,
    /// The payload.
    #[serde(with = "b64")]
    pub value: Vec<u8>,
    /// Headers, in order (names need not be unique).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "b64::headers")]
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Message {
    /// A message with only a value.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Message {
            value: value.into(),
            ..Message::default()
        }
    }

    /// With a key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// With one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Bytes it takes in the log, its framing included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + 8
            + 8
            + 16
            + 4
            + self.key.as_ref().map_or(0, Vec::len)
            + 2
            + self
                .headers
                .iter()
                .map(|(n, v)| 2 + n.len() + 4 + v.len())
                .sum::<usize>()
            + 4
            + self.value.len()
    }
}

/// A message read back, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its offset in the partition.
    pub offset: u64,
    /// When it was appended (ms since the Unix epoch).
    pub timestamp_ms: u64,
    /// Its key.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64::option")]
    pub key: Option<Vec<u8>>,
    /// Its value.
    #[serde(with = "b64")]
    pub value: Vec<u8>,
    /// Its headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "b64::headers")]
    pub headers: Vec<(String, Vec<u8>)>,
    /// The idempotent producer and sequence number it was published with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<(u64, u64)>,
}

/// Length and CRC before each body.
pub(crate) const HEADER_LEN: usize = 8;

pub(crate) fn crc(body: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, body) as u32
}

/// Appends `message` as a record at `offset` to `out`.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    offset: u64,
    timestamp_ms: u64,
    producer: Option<(u64, u64)>,
    message: &Message,
) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    let (id, sequence) = producer.unwrap_or((0, 0));
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    match &message.key {
        Some(k) => {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k);
        }
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
    out.extend_from_slice(&(message.headers.len() as u16).to_le_bytes());
    for (name, value) in &message.headers {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&(message.value.len() as u32).to_le_bytes());
    out.extend_from_slice(&message.value);
    let body_len = (out.len() - start - HEADER_LEN) as u32;
    let sum = crc(&out[start + HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
}

/// What is at the start of `bytes`.
pub(crate) enum Decoded {
    /// A whole, checked record, and its length with framing.
    Record(Record, usize),
    /// A compressed batch, checked and expanded: its records (consecutive offsets) and
    /// its length with framing.
    Batch(Vec<Record>, usize),
    /// Not a whole record: the log ends here (more bytes may be needed, or the tail is
    /// torn).
    End,
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.bytes.split_at_checked(n)?;
        self.bytes = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2)?.try_into().ok().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
}

/// The length field's top bit marks a compressed batch: `u64 first offset | u32 count |
/// an avila-compress frame` of the batch's records encoded as above.
pub(crate) const BATCH_FLAG: u32 = 1 << 31;
/// The most bytes a compressed batch may expand to.
const MAX_BATCH_EXPANDED: u64 = 80 << 20;

/// The body length a header declares (without the batch flag).
pub(crate) fn declared_len(head: &[u8]) -> Option<usize> {
    let raw = u32::from_le_bytes(head.get(..4)?.try_into().ok()?);
    Some((raw & !BATCH_FLAG) as usize)
}

/// Wraps `records` (encoded by [`encode`], offsets `first..first + count`) into one
/// compressed batch appended to `out`.
pub(crate) fn encode_batch(
    out: &mut Vec<u8>,
    first: u64,
    count: u32,
    records: &[u8],
    codec: avila_compress::Codec,
) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    avila_compress::compress_into(records, codec, out);
    let body_len = (out.len() - start - HEADER_LEN) as u32;
    let sum = crc(&out[start + HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&(body_len | BATCH_FLAG).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
}

/// Decodes the record (or compressed batch) at the start of `bytes`, if a whole one is
/// there and checks out.
pub(crate) fn decode(bytes: &[u8]) -> Decoded {
    let Some(head) = bytes.get(..HEADER_LEN) else {
        return Decoded::End;
    };
    let raw = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let len = (raw & !BATCH_FLAG) as usize;
    let sum = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let Some(body) = bytes.get(HEADER_LEN..HEADER_LEN + len) else {
        return Decoded::End;
    };
    if crc(body) != sum {
        return Decoded::End;
    }
    if raw & BATCH_FLAG != 0 {
        return match expand(body) {
            Some(records) => Decoded::Batch(records, HEADER_LEN + len),
            None => Decoded::End,
        };
    }
    match parse(body) {
        Some(record) => Decoded::Record(record, HEADER_LEN + len),
        None => Decoded::End,
    }
}

/// A compressed batch's records, checked: as many as it says, offsets consecutive.
fn expand(body: &[u8]) -> Option<Vec<Record>> {
    let mut c = Cursor { bytes: body };
    let first = c.u64()?;
    let count = c.u32()?;
    let inner =
        avila_compress::decompress(c.bytes, &avila_compress::Limits::new(MAX_BATCH_EXPANDED))
            .ok()?;
    let mut records = Vec::with_capacity((count as usize).min(10_000));
    let mut at = 0;
    while at < inner.len() {
        let Decoded::Record(r, n) = decode(&inner[at..]) else {
            return None;
        };
        if r.offset != first + records.len() as u64 {
            return None;
        }
        records.push(r);
        at += n;
    }
    (records.len() == count as usize).then_some(records)
}

fn parse(body: &[u8]) -> Option<Record> {
    let mut c = Cursor { bytes: body };
    let offset = c.u64()?;
    let timestamp_ms = c.u64()?;
    let id = c.u64()?;
    let sequence = c.u64()?;
    let producer = (id != 0).then_some((id, sequence));
    let key = match c.u32()? {
        u32::MAX => None,
        n => Some(c.take(n as usize)?.to_vec()),
    };
    let count = c.u16()?;
    let mut headers = Vec::with_capacity(usize::from(count).min(64));
    for _ in 0..count {
        let n = c.u16()?;
        let name = std::str::from_utf8(c.take(usize::from(n))?)
            .ok()?
            .to_string();
        let v = c.u32()?;
        headers.push((name, c.take(v as usize)?.to_vec()));
    }
    let v = c.u32()?;
    let value = c.take(v as usize)?.to_vec();
    if !c.bytes.is_empty() {
        return None;
    }
    Some(Record {
        offset,
        timestamp_ms,
        key,
        value,
        headers,
        producer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_round_trip_and_damage_ends_the_log(
            key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            value in proptest::collection::vec(any::<u8>(), 0..300),
            headers in proptest::collection::vec(("[a-z-]{0,12}", proptest::collection::vec(any::<u8>(), 0..20)), 0..4),
            offset in any::<u64>(),
            flip in any::<prop::sample::Index>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let message = Message { key, value, headers };
            let mut out = Vec::new();
            let producer = (offset % 3 == 0).then_some((offset | 1, offset / 2));
            encode(&mut out, offset, 42, producer, &message);
            prop_assert_eq!(out.len(), message.encoded_len());
            let Decoded::Record(r, len) = decode(&out) else { panic!("a whole record") };
            prop_assert_eq!(len, out.len());
            prop_assert_eq!((r.offset, r.timestamp_ms), (offset, 42));
            prop_assert_eq!(&r.key, &message.key);
            prop_assert_eq!(&r.value, &message.value);
            prop_assert_eq!(&r.headers, &message.headers);
            prop_assert_eq!(r.producer, producer);
            // A batch of it, compressed, expands to the same records.
            let mut inner = Vec::new();
            encode(&mut inner, offset, 42, producer, &message);
            let mut second = message.clone();
            second.value.extend_from_slice(b"second");
            encode(&mut inner, offset.wrapping_add(1), 43, None, &second);
            let mut batch = Vec::new();
            encode_batch(&mut batch, offset, 2, &inner, avila_compress::Codec::Zstd);
            if offset < u64::MAX {
                let Decoded::Batch(rs, n) = decode(&batch) else { panic!("a whole batch") };
                prop_assert_eq!(n, batch.len());
                prop_assert_eq!(rs.len(), 2);
                prop_assert_eq!(&rs[1].value, &second.value);
                let at = cut.index(batch.len());
                prop_assert!(matches!(decode(&batch[..at]), Decoded::End));
            }
            // Any cut is an end; any flipped bit is an end.
            let at = cut.index(out.len());
            prop_assert!(matches!(decode(&out[..at]), Decoded::End));
            let mut bad = out.clone();
            let i = flip.index(bad.len());
            bad[i] ^= 0x10;
            prop_assert!(matches!(decode(&bad), Decoded::End));
        }
    }
}
