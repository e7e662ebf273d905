//! What builds of other formats left: the file's format version (what this build writes,
//! and what it refuses), and query tokens of an older build.

use redb::ReadableDatabase;
use serde_json::json;

use super::commit::META;
use super::{ChangeFeedMode, Engine, FILE_NAME, FORMAT_KEY, FORMAT_VERSION};
use crate::DbError;

fn format_of(dir: &std::path::Path) -> u64 {
    let raw = redb::Database::open(dir.join(FILE_NAME)).unwrap();
    let txn = raw.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    meta.get(FORMAT_KEY).unwrap().unwrap().value()
}

fn set_format(dir: &std::path::Path, version: u64) {
    let raw = redb::Database::open(dir.join(FILE_NAME)).unwrap();
    let txn = raw.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert(FORMAT_KEY, version)
        .unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_history_of_all_versions_moves_the_file_to_format_2_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        let db = engine.database("d");
        db.create().unwrap();
        let c = db.create_collection("c", "/id").unwrap();
        c.insert(json!({"id": "a"})).unwrap();
        c.set_change_feed(ChangeFeedMode::LatestVersion, None)
            .unwrap();
    }
    // Nothing newer used: a build of format 1 can still open it.
    assert_eq!(format_of(dir.path()), 1);
    {
        let engine = Engine::open(dir.path()).unwrap();
        let c = engine.database("d").collection("c");
        c.set_change_feed(ChangeFeedMode::AllVersions, None)
            .unwrap();
        c.insert(json!({"id": "b"})).unwrap();
    }
    assert_eq!(format_of(dir.path()), 2);
    // Set back, the file stays at 2 (this build reads it either way).
    {
        let engine = Engine::open(dir.path()).unwrap();
        let c = engine.database("d").collection("c");
        assert!(c.get::<serde_json::Value>("b", "b").unwrap().is_some());
        c.set_change_feed(ChangeFeedMode::LatestVersion, None)
            .unwrap();
    }
    assert_eq!(format_of(dir.path()), FORMAT_VERSION);
}

#[test]
fn a_newer_format_is_refused_and_an_older_one_opens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        engine.database("d").create().unwrap();
    }
    set_format(dir.path(), FORMAT_VERSION + 1);
    let e = Engine::open(dir.path()).unwrap_err();
    assert!(matches!(e, DbError::UnsupportedFormat(_)), "{e}");
    assert!(e.to_string().contains("format version 3"), "{e}");
    // Refused without a change: the file still says 3.
    assert_eq!(format_of(dir.path()), FORMAT_VERSION + 1);
    set_format(dir.path(), 1);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(engine.list_databases().unwrap(), vec!["d".to_string()]);
}

#[test]
fn a_format_1_file_that_holds_a_history_moves_to_2_when_opened() {
    // As a build that kept histories without moving the format left it.
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        let db = engine.database("d");
        db.create().unwrap();
        let c = db.create_collection("c", "/id").unwrap();
        c.set_change_feed(ChangeFeedMode::AllVersions, None)
            .unwrap();
        c.insert(json!({"id": "a"})).unwrap();
    }
    set_format(dir.path(), 1);
    {
        let engine = Engine::open(dir.path()).unwrap();
        let c = engine.database("d").collection("c");
        assert!(c.get::<serde_json::Value>("a", "a").unwrap().is_some());
    }
    assert_eq!(format_of(dir.path()), 2);
}

#[test]
fn a_query_token_of_an_older_build_is_refused_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    let db = engine.database("d");
    db.create().unwrap();
    let c = db.create_collection("c", "/id").unwrap();
    c.create_index("by_n", &["/n"], false).unwrap();
    for i in 0..5 {
        c.insert(json!({"id": format!("k{i}"), "n": i})).unwrap();
    }
    let sql = "SELECT * FROM c WHERE c.n >= 0";
    let options = |continuation| crate::PageOptions {
        max_items: Some(2),
        continuation,
    };
    let token = c.query(sql, options(None)).unwrap().continuation.unwrap();
    // The same token as a build before `index:NAME@TABLE` wrote it: `index:NAME`.
    let bytes = hex::decode(&token).unwrap();
    let mut body: serde_json::Value = serde_json::from_slice(&bytes[..bytes.len() - 8]).unwrap();
    let access = body["access"].as_str().unwrap().to_string();
    assert!(access.starts_with("index:by_n@"), "{access}");
    body["access"] = json!("index:by_n");
    let mut old = serde_json::to_vec(&body).unwrap();
    let check = twox_hash::XxHash3_64::oneshot(&old);
    old.extend_from_slice(&check.to_le_bytes());
    let e = c.query(sql, options(Some(hex::encode(old)))).unwrap_err();
    assert!(matches!(e, DbError::InvalidInput { .. }), "{e}");
    assert!(e.to_string().contains("older build"), "{e}");
    // The token as made reads on.
    assert!(c.query(sql, options(Some(token))).is_ok());
}
