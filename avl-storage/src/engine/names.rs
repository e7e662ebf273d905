//! S3's rules for bucket names and object keys.

use crate::error::{Result, StorageError};

/// The longest object key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a bucket name: 3-63 characters of lowercase letters, digits, dots and
/// hyphens, starting and ending with a letter or digit, no `..`, not an IPv4 address.
pub fn check_bucket(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(StorageError::InvalidBucketName {
            name: name.chars().take(80).collect(),
            reason: reason.to_string(),
        })
    };
    if !(3..=63).contains(&name.len()) {
        return bad("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("only lowercase letters, digits, dots and hyphens");
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return bad("must start and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return bad("no two adjacent periods, nor a period next to a hyphen");
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return bad("must not look like an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") || name.ends_with("-s3alias") {
        return bad("uses a prefix or suffix S3 reserves");
    }
    Ok(())
}

/// Checks an object key: 1 to [`MAX_KEY_BYTES`] bytes of UTF-8 (a `&str` is UTF-8
/// already). Any character S3 allows is allowed, `../` included: keys never become paths.
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StorageError::invalid("key", "must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StorageError::KeyTooLong {
            len: key.len(),
            max: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3() {
        for ok in ["abc", "my-bucket", "my.bucket.1", "a1b", &"a".repeat(63)] {
            assert!(check_bucket(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "-abc",
            "abc-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "a_b",
            "xn--abc",
            "abc-s3alias",
            "ábc",
        ] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_any_utf8_up_to_1024_bytes() {
        assert!(check_key("../../etc/passwd").is_ok());
        assert!(check_key("a/b/c ü 😀").is_ok());
        assert!(check_key(&"k".repeat(1024)).is_ok());
        assert!(check_key(&"k".repeat(1025)).is_err());
        assert!(check_key("").is_err());
    }
}
