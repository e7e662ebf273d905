//! Listing a bucket, as S3's ListObjectsV2 does (V1's marker is `start_after`):
//! lexicographic by key bytes, with a prefix, a delimiter that rolls keys up into common
//! prefixes, pages of at most 1000 entries, and continuation tokens.

use redb::ReadOnlyTable;
use serde::{Deserialize, Serialize};

use super::object_key;
use crate::error::{Result, StorageError};

/// The most entries (objects and common prefixes) in one page.
pub const MAX_KEYS: usize = 1000;

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOptions {
    /// Only keys that start with this.
    #[serde(default)]
    pub prefix: String,
    /// Roll keys that contain this after the prefix up into common prefixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// The most entries in the page (at most [`MAX_KEYS`]; `None`: 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<usize>,
    /// Only keys after this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_after: Option<String>,
    /// The token of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
    /// ListObjects (V1)'s marker: entries after it. A marker that is one of this
    /// listing's common prefixes (V1's `NextMarker` when a page ends on one) resumes
    /// after every key under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSummary {
    /// The key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// The ETag (hex, without quotes).
    pub etag: String,
    /// When it was stored (ms since the Unix epoch).
    pub last_modified_ms: u64,
}

/// A page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPage {
    /// Objects, in key order.
    pub objects: Vec<ObjectSummary>,
    /// Common prefixes (with the delimiter at their end), in order.
    pub common_prefixes: Vec<String>,
    /// Whether more entries follow.
    pub is_truncated: bool,
    /// The token for the next page, when truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_continuation: Option<String>,
}

/// What a listing reads of an object's record: the parser skips its chunk list.
#[derive(Deserialize)]
struct Summary {
    size: u64,
    etag: String,
    last_modified_ms: u64,
}

/// Where a page ended: after a key, or after every key under a common prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
enum After {
    Key(String),
    Prefix(String),
}

fn encode_token(bucket: &str, after: &After) -> String {
    let (kind, text) = match after {
        After::Key(k) => (b'k', k),
        After::Prefix(p) => (b'p', p),
    };
    let mut raw = bucket.as_bytes().to_vec();
    raw.push(0);
    raw.push(kind);
    raw.extend_from_slice(text.as_bytes());
    hex::encode(raw)
}

fn decode_token(bucket: &str, token: &str) -> Result<After> {
    let bad = || {
        StorageError::invalid(
            "continuation-token",
            "is not a token of this bucket's listing",
        )
    };
    let raw = hex::decode(token).map_err(|_| bad())?;
    let rest = raw
        .strip_prefix(bucket.as_bytes())
        .and_then(|r| r.strip_prefix(&[0u8][..]))
        .ok_or_else(bad)?;
    let (&kind, text) = rest.split_first().ok_or_else(bad)?;
    let text = String::from_utf8(text.to_vec()).map_err(|_| bad())?;
    match kind {
        b'k' => Ok(After::Key(text)),
        b'p' => Ok(After::Prefix(text)),
        _ => Err(bad()),
    }
}

/// The smallest key above every key that starts with `prefix` (`None`: there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub(super) fn list(
    objects: &ReadOnlyTable<&'static [u8], &'static [u8]>,
    bucket: &str,
    o: &ListOptions,
) -> Result<ListPage> {
    // More than 1000 is 1000, as in S3.
    let max = o.max_keys.unwrap_or(MAX_KEYS).min(MAX_KEYS);
    let delimiter = o.delimiter.as_deref().filter(|d| !d.is_empty());
    let rolled_up = |m: &str| {
        delimiter.is_some_and(|d| {
            m.strip_prefix(o.prefix.as_str())
                .and_then(|rest| rest.find(d).map(|i| i + d.len() == rest.len()))
                .unwrap_or(false)
        })
    };
    let mut after = match (&o.continuation, &o.start_after, &o.marker) {
        (Some(t), _, _) => Some(decode_token(bucket, t)?),
        (None, Some(s), _) => Some(After::Key(s.clone())),
        (None, None, Some(m)) if rolled_up(m) => Some(After::Prefix(m.clone())),
        (None, None, Some(m)) => Some(After::Key(m.clone())),
        (None, None, None) => None,
    };
    let base = object_key(bucket, "");
    let mut start = object_key(bucket, &o.prefix);
    let resume = match &after {
        Some(After::Key(k)) => Some(object_key(bucket, k)),
        // After every key under the prefix: seek past them.
        Some(After::Prefix(p)) => match prefix_end(&object_key(bucket, p)) {
            Some(end) => Some(end),
            None => return Ok(ListPage::default()),
        },
        None => None,
    };
    if let Some(from) = resume
        && from > start
    {
        start = from;
    }
    let mut page = ListPage::default();
    if max == 0 {
        return Ok(page);
    }
    let mut count = 0usize;
    // One range per run of keys; a common prefix ends the run and the next one starts
    // past every key under it (a seek, not a walk over them).
    'runs: loop {
        let mut next_run = None;
        for row in objects.range(start.as_slice()..)? {
            let (k, v) = row?;
            let Some(raw) = k.value().strip_prefix(base.as_slice()) else {
                break 'runs;
            };
            if !raw.starts_with(o.prefix.as_bytes()) {
                break 'runs;
            }
            let key = std::str::from_utf8(raw)
                .map_err(|_| StorageError::Corrupted("an object key is not UTF-8".into()))?;
            if let Some(After::Key(a)) = &after
                && key <= a.as_str()
            {
                continue;
            }
            let rolled = delimiter.and_then(|d| {
                key[o.prefix.len()..]
                    .find(d)
                    .map(|i| key[..o.prefix.len() + i + d.len()].to_string())
            });
            if count == max {
                page.is_truncated = true;
                break 'runs;
            }
            count += 1;
            match rolled {
                Some(cp) => {
                    next_run = Some(prefix_end(&object_key(bucket, &cp)));
                    page.common_prefixes.push(cp.clone());
                    after = Some(After::Prefix(cp));
                    break;
                }
                None => {
                    let record: Summary = serde_json::from_slice(v.value())
                        .map_err(|e| StorageError::Corrupted(format!("object record: {e}")))?;
                    page.objects.push(ObjectSummary {
                        key: key.to_string(),
                        size: record.size,
                        etag: record.etag,
                        last_modified_ms: record.last_modified_ms,
                    });
                    after = Some(After::Key(key.to_string()));
                }
            }
        }
        match next_run {
            Some(Some(next)) => start = next,
            _ => break,
        }
    }
    if page.is_truncated {
        page.next_continuation = after.as_ref().map(|a| encode_token(bucket, a));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_belong_to_their_bucket() {
        let t = encode_token("photos", &After::Prefix("2026/".into()));
        assert_eq!(
            decode_token("photos", &t).unwrap(),
            After::Prefix("2026/".into())
        );
        assert!(decode_token("videos", &t).is_err());
        assert!(decode_token("photos", "zz").is_err());
        assert!(decode_token("photos", &hex::encode("photos\0x")).is_err());
    }
}
