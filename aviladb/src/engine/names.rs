//! Rules for names and ids, checked before anything touches storage.

use crate::error::{DbError, Result};

/// Longest database or collection name.
pub(crate) const MAX_NAME_LEN: usize = 128;
/// Longest document id, in bytes.
pub(crate) const MAX_ID_LEN: usize = 1023;
/// Longest partition-key path.
pub(crate) const MAX_PATH_LEN: usize = 256;

/// A database or collection name: 1 to 128 letters, digits, `_`, `-` and `.`, starting
/// with a letter or digit.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<()> {
    let bad = |reason: &str| Err(DbError::invalid(kind, format!("`{name}`: {reason}")));
    if name.is_empty() {
        return Err(DbError::invalid(kind, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!("longer than {MAX_NAME_LEN} characters"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return bad("may hold only letters, digits, `_`, `-` and `.`");
    }
    Ok(())
}

/// A document id: 1 to 1023 bytes of UTF-8, without `/`, `\`, `?`, `#` or control
/// characters (as Cosmos DB), so it is safe in a URL path and in a log line.
pub(crate) fn check_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(DbError::invalid("id", "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(DbError::invalid(
            "id",
            format!("longer than {MAX_ID_LEN} bytes"),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| matches!(c, '/' | '\\' | '?' | '#') || c.is_control())
    {
        return Err(DbError::invalid("id", format!("must not contain {c:?}")));
    }
    Ok(())
}

/// A path into a document: `/a/b/0`, as JSON Pointer, but non-empty and without escapes
/// other than `~0` and `~1`.
pub(crate) fn check_path(field: &str, path: &str) -> Result<()> {
    if !path.starts_with('/') || path.len() < 2 {
        return Err(DbError::invalid(
            field,
            format!("`{path}` must look like /field or /a/b"),
        ));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(DbError::invalid(
            field,
            format!("longer than {MAX_PATH_LEN} characters"),
        ));
    }
    if path.split('/').skip(1).any(str::is_empty) {
        return Err(DbError::invalid(
            field,
            format!("`{path}` has an empty segment"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["gamedb", "players", "a", "Game_DB-2.v1", &"x".repeat(128)] {
            assert!(check_name("database", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".hidden",
            "a b",
            "a/b",
            "ação",
            &"x".repeat(129),
            "a\0",
        ] {
            assert!(check_name("database", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids() {
        for ok in ["p1", "São Paulo", "a.b-c_d", &"é".repeat(511)] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a?b", "a#b", "a\\b", "tab\t", &"x".repeat(1024)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        for ok in ["/id", "/region", "/address/city", "/tags/0"] {
            assert!(check_path("partition_key", ok).is_ok(), "{ok}");
        }
        for bad in ["", "/", "id", "/a//b", "/a/"] {
            assert!(check_path("partition_key", bad).is_err(), "{bad:?}");
        }
    }
}
