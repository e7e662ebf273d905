//! S3 bodies: the digests an upload must match (`Content-MD5`, `x-amz-checksum-*` in a
//! header or the trailer), checked before the store commits; the crossing itself is
//! [`crate::bridge`]'s.

use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use s3s::checksum::ChecksumHasher;
use s3s::dto::StreamingBlob;
use s3s::{S3Result, TrailingHeaders, s3_error};
use tokio::sync::Semaphore;

use crate::bridge;
use crate::engine::{BodyDigest, Checksum, Finish, ObjectReader};
use crate::error::StorageError;

/// The checksum algorithms S3 names.
const ALGORITHMS: [&str; 5] = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];

/// What a body must turn out to be.
pub(super) struct Expected {
    /// `Content-MD5`, decoded.
    md5: Option<Vec<u8>>,
    /// The checksum to compute and keep, if any.
    algorithm: Option<&'static str>,
    /// Its value from a header.
    value: Option<String>,
    /// Or from the body's trailer: the trailer's header name.
    trailer: Option<(String, TrailingHeaders)>,
}

impl Expected {
    /// From the request: `Content-MD5`, one `x-amz-checksum-*` header, or one announced in
    /// `x-amz-trailer`, or only an algorithm to compute (`x-amz-sdk-checksum-algorithm`).
    pub(super) fn of(
        headers: &http::HeaderMap,
        content_md5: Option<&str>,
        given: Vec<(&'static str, String)>,
        algorithm: Option<&str>,
        trailers: Option<TrailingHeaders>,
    ) -> S3Result<Expected> {
        let md5 = match content_md5 {
            None => None,
            Some(v) => Some(
                BASE64
                    .decode(v.trim())
                    .ok()
                    .filter(|d| d.len() == 16)
                    .ok_or_else(|| {
                        s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid.")
                    })?,
            ),
        };
        if given.len() > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
            ));
        }
        let mut expected = Expected {
            md5,
            algorithm: None,
            value: None,
            trailer: None,
        };
        if let Some((name, value)) = given.into_iter().next() {
            expected.algorithm = Some(name);
            expected.value = Some(value);
            return Ok(expected);
        }
        let announced = headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        if let Some(header) = announced
            && let Some(name) = header.strip_prefix("x-amz-checksum-")
        {
            let name = known(name).ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "The trailer names an unknown checksum: {header}"
                )
            })?;
            let Some(trailers) = trailers else {
                return Err(s3_error!(
                    InvalidRequest,
                    "x-amz-trailer needs an aws-chunked body with a trailer"
                ));
            };
            expected.algorithm = Some(name);
            expected.trailer = Some((header, trailers));
            return Ok(expected);
        }
        if let Some(a) = algorithm {
            expected.algorithm = Some(known(a).ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "Value for x-amz-sdk-checksum-algorithm header is invalid."
                )
            })?);
        }
        Ok(expected)
    }

    /// Nothing given to compare with: only `algorithm` (a name [`known`] accepts) to
    /// compute and keep, as for a part copied into an upload that asked for one.
    pub(super) fn compute(algorithm: &str) -> Expected {
        Expected {
            md5: None,
            algorithm: known(algorithm),
            value: None,
            trailer: None,
        }
    }

    /// A part of an upload created with a checksum algorithm: a part that gives none
    /// gets one computed; one that gives another algorithm is refused, as S3 does.
    pub(super) fn upload_algorithm(&mut self, algorithm: &str) -> S3Result<()> {
        match self.algorithm {
            None => self.algorithm = known(algorithm),
            Some(given) if given == algorithm => {}
            Some(given) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                    algorithm.to_ascii_lowercase(),
                    given.to_ascii_lowercase()
                ));
            }
        }
        Ok(())
    }

    pub(super) fn hasher(&self) -> Option<ChecksumHasher> {
        hasher_for(self.algorithm?)
    }

    /// Checks the digest and the computed checksum; answers the checksum to keep.
    pub(super) fn check(
        &self,
        digest: &BodyDigest,
        hasher: Option<ChecksumHasher>,
    ) -> Result<Option<Checksum>, StorageError> {
        if let Some(md5) = &self.md5
            && hex::encode(md5) != digest.md5
        {
            return Err(StorageError::BadDigest(
                "The Content-MD5 you specified did not match what we received.".into(),
            ));
        }
        let (Some(algorithm), Some(hasher)) = (self.algorithm, hasher) else {
            return Ok(None);
        };
        let value = finish(hasher);
        let wanted = match (&self.value, &self.trailer) {
            (Some(v), _) => Some(v.clone()),
            (None, Some((name, trailers))) => {
                let found = trailers
                    .read(|h| {
                        h.get(name.as_str())
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    })
                    .flatten();
                Some(found.ok_or_else(|| {
                    StorageError::BadDigest(format!("the body's trailer has no {name}"))
                })?)
            }
            (None, None) => None,
        };
        if let Some(wanted) = wanted
            && wanted.trim() != value
        {
            return Err(StorageError::BadDigest(format!(
                "The {algorithm} you specified did not match the calculated checksum."
            )));
        }
        Ok(Some(Checksum {
            algorithm: algorithm.to_string(),
            value,
        }))
    }
}

/// A hasher of the one checksum `algorithm` (a name [`known`] accepts, any case).
pub(super) fn hasher_for(algorithm: &str) -> Option<ChecksumHasher> {
    let mut h = ChecksumHasher::default();
    match known(algorithm)? {
        "CRC32" => h.crc32 = Some(Default::default()),
        "CRC32C" => h.crc32c = Some(Default::default()),
        "CRC64NVME" => h.crc64nvme = Some(Default::default()),
        "SHA1" => h.sha1 = Some(Default::default()),
        _ => h.sha256 = Some(Default::default()),
    }
    Some(h)
}

/// The value (base64) of the one checksum a [`hasher_for`] hasher computes.
pub(super) fn finish(hasher: ChecksumHasher) -> String {
    let sums = hasher.finalize();
    [
        sums.checksum_crc32,
        sums.checksum_crc32c,
        sums.checksum_crc64nvme,
        sums.checksum_sha1,
        sums.checksum_sha256,
    ]
    .into_iter()
    .flatten()
    .next()
    .unwrap_or_default()
}

pub(super) fn known(name: &str) -> Option<&'static str> {
    ALGORITHMS
        .into_iter()
        .find(|a| a.eq_ignore_ascii_case(name))
}

/// The request's `x-amz-checksum-*` headers that are set, by algorithm.
pub(super) fn checksums_in(
    crc32: Option<&String>,
    crc32c: Option<&String>,
    crc64nvme: Option<&String>,
    sha1: Option<&String>,
    sha256: Option<&String>,
) -> Vec<(&'static str, String)> {
    [crc32, crc32c, crc64nvme, sha1, sha256]
        .into_iter()
        .zip(ALGORITHMS)
        .filter_map(|(v, name)| v.map(|v| (name, v.clone())))
        .collect()
}

/// Streams `body` into `write` (handed a reader of it and the `finish` that checks what
/// it was against `expected`), through [`bridge::write_body`].
pub(super) async fn write_body<T: Send + 'static>(
    slots: &Semaphore,
    body: Option<StreamingBlob>,
    length: Option<u64>,
    expected: Expected,
    write: impl FnOnce(&mut dyn Read, Finish<'_>) -> Result<T, StorageError> + Send + 'static,
) -> S3Result<T> {
    let hasher = Arc::new(Mutex::new(expected.hasher()));
    let seen = Arc::clone(&hasher);
    let observer: bridge::Observer = Box::new(move |piece| {
        if let Some(h) = seen.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            h.update(piece);
        }
    });
    bridge::write_body(slots, body, length, Some(observer), move |reader| {
        write(reader, &mut |digest| {
            let computed = hasher.lock().unwrap_or_else(PoisonError::into_inner).take();
            expected.check(digest, computed)
        })
    })
    .await
    .map_err(super::s3_error)
}

/// An object's bytes as a response body.
pub(super) fn object_stream(reader: ObjectReader) -> StreamingBlob {
    StreamingBlob::wrap(bridge::read_pieces(reader))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DATA: &[u8] = b"123456789";
    /// Each algorithm's value for `DATA` (the standard check values), base64.
    const VECTORS: [(&str, &str); 5] = [
        ("CRC32", "y/Q5Jg=="),
        ("CRC32C", "4waSgw=="),
        ("CRC64NVME", "rosUhgp5mIg="),
        ("SHA1", "98O8HYCOBHMq32eZZczDTKeuNEE="),
        ("SHA256", "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU="),
    ];

    fn run(expected: &Expected) -> Result<Option<Checksum>, StorageError> {
        let mut hasher = expected.hasher();
        if let Some(h) = hasher.as_mut() {
            h.update(&DATA[..4]);
            h.update(&DATA[4..]);
        }
        let digest = BodyDigest {
            size: DATA.len() as u64,
            md5: String::new(),
        };
        expected.check(&digest, hasher)
    }

    fn given(algorithm: &'static str, value: &str) -> Expected {
        let headers = http::HeaderMap::new();
        Expected::of(&headers, None, vec![(algorithm, value.into())], None, None).unwrap()
    }

    /// Every algorithm S3 names is computed right, kept, and checked against what a
    /// request says.
    #[test]
    fn every_algorithm_is_computed_and_checked() {
        for (algorithm, value) in VECTORS {
            let kept = run(&Expected::compute(algorithm)).unwrap().unwrap();
            assert_eq!(
                (kept.algorithm.as_str(), kept.value.as_str()),
                (algorithm, value)
            );
            assert_eq!(run(&given(algorithm, value)).unwrap(), Some(kept));
            assert!(matches!(
                run(&given(algorithm, "AAAAAA==")),
                Err(StorageError::BadDigest(_))
            ));
        }
        assert_eq!(run(&Expected::compute("MD5")).unwrap(), None);
    }
}
