//! What the AvilaDB benches share: the document set.

#![allow(dead_code)]

use std::time::Duration;

use aviladb::{Collection, Engine, WriteOp};
use criterion::Criterion;
use rusqlite::{Connection, params};
use serde_json::{Value, json};

pub(crate) fn doc_count() -> usize {
    std::env::var("AVILADB_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// A document of about 1 KiB: a player profile; `team` holds exactly 100 players.
pub(crate) fn document(i: usize) -> Value {
    let region = ["sa-east-1", "us-east-1", "eu-west-1", "ap-south-1"][i % 4];
    json!({
        "id": format!("player-{i:08}"),
        "region": region,
        "name": format!("Player Number {i}"),
        "level": i % 100,
        "score": (i * 7919) % 1_000_000,
        "guild": format!("guild-{}", i % 500),
        "team": i / 100,
        "inventory": (0..12).map(|k| json!({"item": format!("item-{}", (i + k) % 997), "qty": k + 1})).collect::<Vec<_>>(),
        "bio": "Plays every evening after work; prefers support roles and long quests in the northern map.",
        "settings": {"sound": true, "music": 0.7, "language": "pt-BR", "hints": false},
    })
}

pub(crate) fn key_of(i: usize) -> (Value, String) {
    let d = document(i);
    (d["region"].clone(), d["id"].as_str().unwrap().to_string())
}

/// The criterion settings of the AvilaDB benches.
pub(crate) fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

/// Documents `0..n` into `players`, upserted 100 to a write.
pub(crate) fn load(players: &Collection, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        players
            .write(
                chunk
                    .iter()
                    .map(|&i| WriteOp::Upsert {
                        document: document(i),
                        if_match: None,
                    })
                    .collect(),
            )
            .unwrap();
    }
}

/// SQLite as its users run it for this job: WAL, `synchronous=FULL`, the JSON as a text
/// column, a primary key on (partition key, id) and an expression index on `$.team`.
pub(crate) fn sqlite(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS docs (pk TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (pk, id));
         CREATE INDEX IF NOT EXISTS docs_team ON docs (json_extract(body, '$.team'));",
    )
    .unwrap();
    conn
}

/// SQLite's insert of one document.
pub(crate) const SQLITE_INSERT: &str = "INSERT INTO docs (pk, id, body) VALUES (?1, ?2, ?3)";

/// Document `i` into SQLite through `insert` (a prepared [`SQLITE_INSERT`]), its JSON
/// serialized as part of the work.
pub(crate) fn sqlite_insert(insert: &mut rusqlite::Statement<'_>, i: usize) {
    let doc = document(i);
    let body = serde_json::to_string(&doc).unwrap();
    insert
        .execute(params![
            doc["region"].as_str().unwrap(),
            doc["id"].as_str().unwrap(),
            body
        ])
        .unwrap();
}

/// SQLite's indexed equality query.
pub(crate) const SQLITE_TEAM: &str =
    "SELECT body FROM docs WHERE json_extract(body, '$.team') = ?1";

/// The 100 documents of `team` from SQLite through `query` (a prepared [`SQLITE_TEAM`]),
/// each parsed into a `Value` as AvilaDB answers.
pub(crate) fn sqlite_team(query: &mut rusqlite::Statement<'_>, team: usize) -> Vec<Value> {
    let rows: Vec<Value> = query
        .query_map(params![team as i64], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|body| serde_json::from_str(&body.unwrap()).unwrap())
        .collect();
    assert_eq!(rows.len(), 100);
    rows
}

/// Documents `0..n` into SQLite, 10,000 to a transaction.
pub(crate) fn load_sqlite(conn: &Connection, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let txn = conn.unchecked_transaction().unwrap();
        {
            let mut insert = txn.prepare_cached(SQLITE_INSERT).unwrap();
            for &i in chunk {
                sqlite_insert(&mut insert, i);
            }
        }
        txn.commit().unwrap();
    }
}

/// The two peers in `dir`, each holding documents `0..n`: AvilaDB's `players` collection
/// (partition key `/region`, an index on `/team`) and SQLite (see [`sqlite`]).
pub(crate) fn peers(dir: &std::path::Path, n: usize) -> (Collection, Connection) {
    let engine = Engine::open(dir.join("avl")).unwrap();
    let db = engine.database("bench");
    db.create().unwrap();
    let players = db.create_collection("players", "/region").unwrap();
    players.create_index("by_team", &["/team"], false).unwrap();
    let conn = sqlite(&dir.join("sqlite.db"));
    load(&players, n);
    load_sqlite(&conn, n);
    (players, conn)
}
