//! Continuation tokens: where a paged query stopped, opaque to callers.
//!
//! A token is hex of a small JSON record and its xxh3-64. The record names the query it
//! belongs to (a fingerprint of collection, query text and parameters), the access path it
//! was read with, the position of the last row returned (bytes that order rows on that
//! path) and what is left of `OFFSET`/`LIMIT`. Positions are values, not cursors, so a
//! token still works after a restart; rows written after it was made are seen if they
//! sort after its position.

use serde::{Deserialize, Serialize};
use twox_hash::XxHash3_64;

use crate::error::{DbError, Result};

const TOKEN_VERSION: u8 = 1;

/// Where a query stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Token {
    /// Format version.
    pub(crate) v: u8,
    /// The query it belongs to.
    pub(crate) fp: u64,
    /// The access path: `scan`, or `index:NAME@TABLE` (`:desc` when read backwards).
    pub(crate) access: String,
    /// The position of the last row returned, in the access path's order (hex).
    pub(crate) pos: String,
    /// Rows of `OFFSET` still to skip.
    pub(crate) skip: u64,
    /// Rows still allowed by `TOP`/`LIMIT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) left: Option<u64>,
}

impl Token {
    pub(crate) fn new(fp: u64, access: &str, pos: &[u8], skip: u64, left: Option<u64>) -> Self {
        Token {
            v: TOKEN_VERSION,
            fp,
            access: access.to_string(),
            pos: hex::encode(pos),
            skip,
            left,
        }
    }

    pub(crate) fn encode(&self) -> String {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        let check = XxHash3_64::oneshot(&bytes);
        bytes.extend_from_slice(&check.to_le_bytes());
        hex::encode(bytes)
    }

    /// Reads a token made for the query with fingerprint `fp`.
    pub(crate) fn decode(text: &str, fp: u64) -> Result<(Token, Vec<u8>)> {
        let malformed = || DbError::invalid("continuation", "malformed continuation token");
        let bytes = hex::decode(text.trim()).map_err(|_| malformed())?;
        if bytes.len() < 9 {
            return Err(malformed());
        }
        let (body, check) = bytes.split_at(bytes.len() - 8);
        let mut word = [0u8; 8];
        word.copy_from_slice(check);
        if XxHash3_64::oneshot(body) != u64::from_le_bytes(word) {
            return Err(malformed());
        }
        let token: Token = serde_json::from_slice(body).map_err(|_| malformed())?;
        if token.v != TOKEN_VERSION {
            return Err(malformed());
        }
        if token.fp != fp {
            return Err(DbError::invalid(
                "continuation",
                "the continuation token belongs to another query, collection or parameters",
            ));
        }
        let pos = hex::decode(&token.pos).map_err(|_| malformed())?;
        Ok((token, pos))
    }
}

/// The fingerprint of a query on a collection with its parameters.
pub(crate) fn fingerprint(collection_table: u64, text: &str, params: &[u8]) -> u64 {
    let mut h = XxHash3_64::with_seed(collection_table);
    std::hash::Hasher::write(&mut h, text.as_bytes());
    std::hash::Hasher::write(&mut h, &[0]);
    std::hash::Hasher::write(&mut h, params);
    std::hash::Hasher::finish(&h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let t = Token::new(42, "scan", b"\x00abc", 3, Some(7));
        let text = t.encode();
        let (back, pos) = Token::decode(&text, 42).unwrap();
        assert_eq!(back, t);
        assert_eq!(pos, b"\x00abc");
        assert!(
            Token::decode(&text, 43)
                .unwrap_err()
                .to_string()
                .contains("another")
        );
        let mut damaged = text.clone().into_bytes();
        damaged[10] = if damaged[10] == b'0' { b'1' } else { b'0' };
        let damaged = String::from_utf8(damaged).unwrap();
        assert!(
            Token::decode(&damaged, 42)
                .unwrap_err()
                .to_string()
                .contains("malformed")
        );
        assert!(Token::decode("zz", 42).is_err());
        assert!(Token::decode("", 42).is_err());
        assert_ne!(fingerprint(1, "a", b""), fingerprint(2, "a", b""));
        assert_ne!(fingerprint(1, "a", b"x"), fingerprint(1, "a", b""));
    }

    proptest::proptest! {
        #[test]
        fn foreign_text_is_refused_without_panicking(text in "[0-9a-f]{0,120}|\\PC{0,60}") {
            proptest::prop_assert!(Token::decode(&text, 1).is_err());
            proptest::prop_assert!(crate::engine::feed::decode_token(&text, 1).is_err());
        }
    }
}
