//! Between the store's types and s3s's.

use s3s::dto::{
    CommonPrefix, ETag, ETagCondition, EncodingType, Metadata, Object, ObjectStorageClass, Owner,
    Range, Timestamp, TimestampFormat,
};
use s3s::{S3Result, s3_error};

use crate::engine::{ByteRange, Conditions, ObjectSummary, PutOptions};

/// Milliseconds since the Unix epoch as a timestamp.
pub(super) fn timestamp(ms: u64) -> Timestamp {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .into()
}

fn millis(t: &Timestamp) -> u64 {
    let t: time::OffsetDateTime = t.clone().into();
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// An HTTP date (what an `Expires` header is kept as).
pub(super) fn http_date(t: &Timestamp) -> String {
    let mut out = Vec::new();
    let _ = t.format(TimestampFormat::HttpDate, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

pub(super) fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

pub(super) fn etag(hex: &str) -> ETag {
    ETag::Strong(hex.to_string())
}

/// A condition header as the store reads it.
pub(super) fn condition(c: &ETagCondition) -> String {
    match c {
        ETagCondition::Any => "*".to_string(),
        ETagCondition::ETag(ETag::Strong(v)) => format!("\"{v}\""),
        ETagCondition::ETag(ETag::Weak(v)) => format!("W/\"{v}\""),
    }
}

pub(super) fn read_conditions(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> Conditions {
    Conditions {
        if_match: if_match.map(condition),
        if_none_match: if_none_match.map(condition),
        if_modified_since_ms: if_modified_since.map(millis),
        if_unmodified_since_ms: if_unmodified_since.map(millis),
    }
}

pub(super) fn byte_range(r: Range) -> ByteRange {
    match r {
        Range::Int {
            first,
            last: Some(last),
        } => ByteRange::Inclusive(first, last),
        Range::Int { first, last: None } => ByteRange::From(first),
        Range::Suffix { length } => ByteRange::Suffix(length),
    }
}

/// The one owner of everything here.
pub(super) fn owner() -> Owner {
    Owner {
        display_name: Some("avl".into()),
        id: Some("avl".into()),
    }
}

pub(super) fn metadata_out(options: &PutOptions) -> Option<Metadata> {
    (!options.metadata.is_empty()).then(|| {
        options
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

pub(super) fn stored(options: &PutOptions, header: &str) -> Option<String> {
    options.headers.get(header).cloned()
}

/// Puts a kept checksum in the field of its algorithm.
pub(super) fn set_checksum(
    c: &crate::engine::Checksum,
    crc32: &mut Option<String>,
    crc32c: &mut Option<String>,
    crc64nvme: &mut Option<String>,
    sha1: &mut Option<String>,
    sha256: &mut Option<String>,
) {
    let field = match c.algorithm.as_str() {
        "CRC32" => crc32,
        "CRC32C" => crc32c,
        "CRC64NVME" => crc64nvme,
        "SHA1" => sha1,
        "SHA256" => sha256,
        _ => return,
    };
    *field = Some(c.value.clone());
}

/// Whether a listing answers keys URL-encoded (`encoding-type=url`).
pub(super) fn url_encoding(e: Option<&EncodingType>) -> S3Result<bool> {
    match e.map(EncodingType::as_str) {
        None => Ok(false),
        Some(EncodingType::URL) => Ok(true),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request: {other}"
        )),
    }
}

pub(super) fn encode_if(url: bool, s: String) -> String {
    if url {
        // Slashes stay, as S3 leaves them.
        urlencoding::encode(&s).replace("%2F", "/")
    } else {
        s
    }
}

pub(super) fn objects_out(objects: Vec<ObjectSummary>, url: bool) -> Vec<Object> {
    objects
        .into_iter()
        .map(|o| Object {
            key: Some(encode_if(url, o.key)),
            size: Some(o.size as i64),
            e_tag: Some(etag(&o.etag)),
            last_modified: Some(timestamp(o.last_modified_ms)),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect()
}

pub(super) fn prefixes_out(prefixes: Vec<String>, url: bool) -> Vec<CommonPrefix> {
    prefixes
        .into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(encode_if(url, p)),
        })
        .collect()
}
