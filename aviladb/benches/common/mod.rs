//! What the AvilaDB benches share: the document set.

#![allow(dead_code)]

use std::time::Duration;

use criterion::Criterion;
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
