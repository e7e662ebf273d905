//! A multipart upload's object checksum from its parts' checksums, as S3 makes it:
//! `COMPOSITE` (the checksum of the parts' checksums, `-N` after it) for CRC32, CRC32C,
//! SHA1 and SHA256, or `FULL_OBJECT` (the CRC of the whole object's bytes, combined
//! from the parts' CRCs without reading them) for CRC32, CRC32C and CRC64NVME.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use s3s::dto::ChecksumType;
use s3s::{S3Result, s3_error};

use crate::engine::{Checksum, UploadChecksum};
use crate::error::StorageError;

/// The checksum CreateMultipartUpload asks for, checked as S3 checks it.
pub(super) fn requested(
    algorithm: Option<&str>,
    kind: Option<&str>,
) -> S3Result<Option<UploadChecksum>> {
    let Some(algorithm) = algorithm else {
        if kind.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
            ));
        }
        return Ok(None);
    };
    let algorithm = super::body::known(algorithm).ok_or_else(|| {
        s3_error!(
            InvalidRequest,
            "Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
        )
    })?;
    let full_object = match kind {
        None => algorithm == "CRC64NVME",
        Some(k) if k.eq_ignore_ascii_case(ChecksumType::FULL_OBJECT) => true,
        Some(k) if k.eq_ignore_ascii_case(ChecksumType::COMPOSITE) => false,
        Some(_) => {
            return Err(s3_error!(
                InvalidRequest,
                "Value for x-amz-checksum-type header is invalid."
            ));
        }
    };
    if full_object && matches!(algorithm, "SHA1" | "SHA256") {
        return Err(s3_error!(
            InvalidRequest,
            "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.",
            algorithm.to_ascii_lowercase()
        ));
    }
    if !full_object && algorithm == "CRC64NVME" {
        return Err(s3_error!(
            InvalidRequest,
            "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."
        ));
    }
    Ok(Some(UploadChecksum {
        algorithm: algorithm.to_string(),
        full_object,
    }))
}

/// The checksum type S3 names for a kept checksum: composite values end in `-N`
/// (base64 has no `-`).
pub(super) fn kind_of(c: &Checksum) -> ChecksumType {
    ChecksumType::from_static(if c.value.contains('-') {
        ChecksumType::COMPOSITE
    } else {
        ChecksumType::FULL_OBJECT
    })
}

/// The object's checksum from its parts' (size, checksum), in order; `None` when a part
/// has no checksum of the upload's algorithm (only parts an older build stored).
pub(super) fn combine(
    wanted: &UploadChecksum,
    parts: &[(u64, Option<Checksum>)],
) -> Result<Option<Checksum>, StorageError> {
    let mut digests = Vec::with_capacity(parts.len());
    for (size, sum) in parts {
        let Some(sum) = sum.as_ref().filter(|c| c.algorithm == wanted.algorithm) else {
            return Ok(None);
        };
        let digest = BASE64
            .decode(&sum.value)
            .map_err(|_| StorageError::Corrupted(format!("a part's {} checksum", sum.algorithm)))?;
        digests.push((*size, digest));
    }
    let value = if wanted.full_object {
        let (algorithm, width) = match wanted.algorithm.as_str() {
            "CRC32" => (crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4),
            "CRC32C" => (crc_fast::CrcAlgorithm::Crc32Iscsi, 4),
            "CRC64NVME" => (crc_fast::CrcAlgorithm::Crc64Nvme, 8),
            _ => return Ok(None),
        };
        let mut whole: Option<u64> = None;
        for (size, digest) in &digests {
            if digest.len() != width {
                return Err(StorageError::Corrupted(
                    "a part's CRC has another width".into(),
                ));
            }
            let crc = digest
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            whole = Some(match whole {
                None => crc,
                Some(w) => crc_fast::checksum_combine(algorithm, w, crc, *size),
            });
        }
        let bytes = whole.unwrap_or(0).to_be_bytes();
        BASE64.encode(&bytes[8 - width..])
    } else {
        if wanted.algorithm == "CRC64NVME" {
            return Ok(None);
        }
        let Some(mut hasher) = super::body::hasher_for(&wanted.algorithm) else {
            return Ok(None);
        };
        for (_, digest) in &digests {
            hasher.update(digest);
        }
        let value = super::body::finish(hasher);
        format!("{value}-{}", parts.len())
    };
    Ok(Some(Checksum {
        algorithm: wanted.algorithm.clone(),
        value,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn crc(algorithm: crc_fast::CrcAlgorithm, width: usize, data: &[u8]) -> String {
        let v = crc_fast::checksum(algorithm, data).to_be_bytes();
        BASE64.encode(&v[8 - width..])
    }

    /// FULL_OBJECT is the CRC of the whole object's bytes, whatever the parts' sizes;
    /// COMPOSITE the checksum of the parts' raw checksums, then `-N`.
    #[test]
    fn full_object_crcs_equal_the_whole_objects_and_composites_hash_the_parts() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let cuts = [0, 3000, 3001, 9000, 10_000];
        for (name, algorithm, width) in [
            ("CRC32", crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4),
            ("CRC32C", crc_fast::CrcAlgorithm::Crc32Iscsi, 4),
            ("CRC64NVME", crc_fast::CrcAlgorithm::Crc64Nvme, 8),
        ] {
            let parts: Vec<(u64, Option<Checksum>)> = cuts
                .windows(2)
                .map(|w| {
                    let part = &data[w[0]..w[1]];
                    let value = crc(algorithm, width, part);
                    let sum = Checksum {
                        algorithm: name.into(),
                        value,
                    };
                    (part.len() as u64, Some(sum))
                })
                .collect();
            let wanted = UploadChecksum {
                algorithm: name.into(),
                full_object: true,
            };
            let whole = combine(&wanted, &parts).unwrap().unwrap();
            assert_eq!(whole.value, crc(algorithm, width, &data), "{name}");
            if name != "CRC64NVME" {
                let composite = UploadChecksum {
                    algorithm: name.into(),
                    full_object: false,
                };
                let raw: Vec<u8> = parts
                    .iter()
                    .flat_map(|(_, c)| BASE64.decode(&c.as_ref().unwrap().value).unwrap())
                    .collect();
                let expected = format!("{}-4", crc(algorithm, width, &raw));
                assert_eq!(
                    combine(&composite, &parts).unwrap().unwrap().value,
                    expected
                );
            }
        }
        // A part without a checksum of that algorithm: no object checksum.
        let wanted = UploadChecksum {
            algorithm: "CRC32".into(),
            full_object: true,
        };
        assert_eq!(combine(&wanted, &[(5, None)]).unwrap(), None);
    }

    #[test]
    fn requests_are_checked_as_s3_checks_them() {
        let ok = |a, k| {
            requested(a, k)
                .unwrap()
                .map(|u| (u.algorithm, u.full_object))
        };
        assert_eq!(ok(Some("crc32"), None), Some(("CRC32".into(), false)));
        assert_eq!(
            ok(Some("CRC64NVME"), None),
            Some(("CRC64NVME".into(), true))
        );
        assert_eq!(
            ok(Some("CRC32C"), Some("FULL_OBJECT")),
            Some(("CRC32C".into(), true))
        );
        assert_eq!(ok(None, None), None);
        for (a, k) in [
            (None, Some("COMPOSITE")),
            (Some("MD5"), None),
            (Some("SHA256"), Some("FULL_OBJECT")),
            (Some("CRC64NVME"), Some("COMPOSITE")),
            (Some("CRC32"), Some("PARTIAL")),
        ] {
            assert!(requested(a, k).is_err(), "{a:?} {k:?}");
        }
    }
}
