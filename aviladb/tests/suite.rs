//! One suite, in-process and through a server: the client API behaves the same over both
//! transports. Bad input gets a clear error and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aviladb::query::builder::{Select, field, param};
use aviladb::{
    Client, DbError, DbService, DocKey, Engine, FeedOptions, FeedStart, PageOptions, PatchOp,
    QuerySpec, WriteOp,
};
use avl_core::serve::{AllowAll, AnonymousAccess, ServeConfig, Server};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Player {
    id: String,
    region: String,
    score: i64,
    #[serde(default)]
    tags: Vec<String>,
}

fn player(id: &str, region: &str, score: i64) -> Player {
    Player {
        id: id.into(),
        region: region.into(),
        score,
        tags: vec![],
    }
}

fn code(e: &DbError) -> avl_core::ErrorCode {
    e.code()
}

async fn suite(client: &Client) {
    use avl_core::ErrorCode as C;
    // Databases and collections.
    client.create_database("gamedb").await.unwrap();
    assert_eq!(
        code(&client.create_database("gamedb").await.unwrap_err()),
        C::AlreadyExists
    );
    let db = client.database("gamedb");
    let players = db.create_collection("players", "/region").await.unwrap();
    assert_eq!(
        code(
            &db.create_collection("players", "/region")
                .await
                .unwrap_err()
        ),
        C::AlreadyExists
    );
    db.create_collection("events", "/id").await.unwrap();
    let names: Vec<String> = db
        .collections()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["events", "players"]);
    assert_eq!(client.list_databases().await.unwrap(), vec!["gamedb"]);

    // Insert, get with system properties, typed and raw.
    let w = players
        .insert(&player("p1", "sa-east-1", 10))
        .await
        .unwrap();
    assert_eq!(w.id, "p1");
    let etag1 = w.etag.clone().unwrap();
    let got = players
        .get::<Player>("sa-east-1", "p1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.body, player("p1", "sa-east-1", 10));
    assert_eq!(got.etag, etag1);
    assert_eq!(got.seq, w.seq);
    assert!(got.ts > 1_700_000_000);
    // Typed reads put the system properties beside the body; the wire form has them inside.
    let typed = players
        .get::<Value>("sa-east-1", "p1")
        .await
        .unwrap()
        .unwrap();
    assert!(typed.body.get("_etag").is_none());
    let wire = client
        .call(aviladb::DbRequest::Get {
            database: "gamedb".into(),
            collection: "players".into(),
            partition_key: json!("sa-east-1"),
            id: "p1".into(),
        })
        .await
        .unwrap();
    let aviladb::DbResponse::Document {
        document: Some(raw),
    } = wire
    else {
        panic!("{wire:?}")
    };
    assert_eq!(raw["_etag"], json!(etag1));
    assert_eq!(raw["_seq"], json!(w.seq));
    assert!(raw["_ts"].as_u64().unwrap() > 1_700_000_000);
    assert!(
        players
            .get::<Player>("us-east-1", "p1")
            .await
            .unwrap()
            .is_none(),
        "other partition"
    );
    assert_eq!(
        code(
            &players
                .insert(&player("p1", "sa-east-1", 0))
                .await
                .unwrap_err()
        ),
        C::AlreadyExists
    );

    // ETags: a write with the current ETag goes through and moves the ETag; a stale one is a
    // Conflict that changes nothing.
    let w2 = players
        .replace(&player("p1", "sa-east-1", 20), Some(&etag1))
        .await
        .unwrap();
    let etag2 = w2.etag.unwrap();
    assert_ne!(etag1, etag2);
    let e = players
        .replace(&player("p1", "sa-east-1", 99), Some(&etag1))
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::Conflict);
    assert_eq!(
        players
            .get::<Player>("sa-east-1", "p1")
            .await
            .unwrap()
            .unwrap()
            .score,
        20
    );
    assert_eq!(
        code(
            &players
                .delete("sa-east-1", "p1", Some(&etag1))
                .await
                .unwrap_err()
        ),
        C::Conflict
    );
    // An upsert takes an ETag too: a stale one, or one for a document that does not
    // exist, changes nothing; the current one writes.
    let e = players
        .upsert_if_match(&player("p1", "sa-east-1", 77), Some(&etag1))
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::Conflict);
    let e = players
        .upsert_if_match(&player("p9", "sa-east-1", 77), Some(&etag2))
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::Conflict);
    assert!(
        players
            .get::<Player>("sa-east-1", "p9")
            .await
            .unwrap()
            .is_none()
    );
    let w3 = players
        .upsert_if_match(&player("p1", "sa-east-1", 20), Some(&etag2))
        .await
        .unwrap();
    assert_ne!(w3.etag.unwrap(), etag2);
    assert_eq!(
        code(
            &players
                .replace(&player("nobody", "sa-east-1", 1), None)
                .await
                .unwrap_err()
        ),
        C::NotFound
    );

    // Upsert, patch, delete.
    players.upsert(&player("p2", "sa-east-1", 5)).await.unwrap();
    players.upsert(&player("p2", "sa-east-1", 6)).await.unwrap();
    let patched = players
        .patch(
            "sa-east-1",
            "p2",
            vec![
                PatchOp::Increment {
                    path: "/score".into(),
                    value: json!(4),
                },
                PatchOp::Set {
                    path: "/tags".into(),
                    value: json!(["mvp"]),
                },
            ],
            None,
        )
        .await
        .unwrap();
    let p2 = players
        .get::<Player>("sa-east-1", "p2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p2.score, p2.tags.clone(), p2.etag.clone()),
        (10, vec!["mvp".to_string()], patched.etag.unwrap())
    );
    let e = players
        .patch(
            "sa-east-1",
            "p2",
            vec![PatchOp::Set {
                path: "/region".into(),
                value: json!("us"),
            }],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::InvalidInput);
    players
        .delete("sa-east-1", "p2", Some(&p2.etag))
        .await
        .unwrap();
    assert!(
        players
            .get::<Player>("sa-east-1", "p2")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        code(&players.delete("sa-east-1", "p2", None).await.unwrap_err()),
        C::NotFound
    );

    // Batches: atomic, results per operation; a bad operation fails the batch and writes nothing.
    let results = players
        .write(vec![
            WriteOp::Insert {
                document: json!({"id": "b1", "region": "eu", "score": 1}),
            },
            WriteOp::Insert {
                document: json!({"id": "b2", "region": "eu", "score": 2}),
            },
            WriteOp::Patch {
                partition_key: json!("eu"),
                id: "b1".into(),
                operations: vec![PatchOp::Increment {
                    path: "/score".into(),
                    value: json!(10),
                }],
                if_match: None,
            },
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0].seq < results[1].seq && results[1].seq < results[2].seq);
    let e = players
        .write(vec![
            WriteOp::Insert {
                document: json!({"id": "b3", "region": "eu", "score": 3}),
            },
            WriteOp::Insert {
                document: json!({"id": "b1", "region": "eu", "score": 0}),
            },
        ])
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::AlreadyExists);
    assert!(e.to_string().contains("operation 1"), "{e}");
    assert!(
        players.get::<Value>("eu", "b3").await.unwrap().is_none(),
        "nothing of a failed batch"
    );
    // A stale ETag on a patch or a delete fails its batch the same way.
    let b2 = players.get::<Value>("eu", "b2").await.unwrap().unwrap();
    for stale in [
        WriteOp::Patch {
            partition_key: json!("eu"),
            id: "b1".into(),
            operations: set("/score", json!(99)),
            if_match: Some(results[0].etag.clone().unwrap()),
        },
        WriteOp::Delete {
            partition_key: json!("eu"),
            id: "b1".into(),
            if_match: Some(results[0].etag.clone().unwrap()),
        },
    ] {
        let e = players
            .write(vec![
                WriteOp::Replace {
                    document: json!({"id": "b2", "region": "eu", "score": 50}),
                    if_match: Some(b2.etag.clone()),
                },
                stale,
            ])
            .await
            .unwrap_err();
        assert_eq!(code(&e), C::Conflict, "{e}");
        assert!(e.to_string().contains("operation 1"), "{e}");
        let now = players.get::<Value>("eu", "b2").await.unwrap().unwrap();
        assert_eq!((now.etag, &now.body["score"]), (b2.etag.clone(), &json!(2)));
        let b1 = players.get::<Value>("eu", "b1").await.unwrap().unwrap();
        assert_eq!(b1.body["score"], 11);
    }
    let keys = vec![
        DocKey {
            partition_key: json!("eu"),
            id: "b1".into(),
        },
        DocKey {
            partition_key: json!("eu"),
            id: "missing".into(),
        },
        DocKey {
            partition_key: json!("eu"),
            id: "b2".into(),
        },
    ];
    let many = players.get_many::<Player>(keys).await.unwrap();
    assert_eq!(
        many.iter()
            .map(|d| d.as_ref().map(|d| d.score))
            .collect::<Vec<_>>(),
        vec![Some(11), None, Some(2)]
    );
    // 100 keys at most, as a batch write takes 100 operations at most.
    let hundred: Vec<DocKey> = (0..=100)
        .map(|i| DocKey {
            partition_key: json!("eu"),
            id: format!("k{i}"),
        })
        .collect();
    assert_eq!(
        players
            .get_many::<Player>(hundred[..100].to_vec())
            .await
            .unwrap()
            .len(),
        100
    );
    let e = players.get_many::<Player>(hundred).await.unwrap_err();
    assert_eq!(code(&e), C::InvalidInput, "{e}");
    let ops: Vec<WriteOp> = (0..=100)
        .map(|i| WriteOp::Insert {
            document: json!({"id": format!("k{i}"), "region": "eu", "score": 0}),
        })
        .collect();
    let e = players.write(ops).await.unwrap_err();
    assert_eq!(code(&e), C::InvalidInput, "{e}");
    assert!(players.get::<Player>("eu", "k0").await.unwrap().is_none());

    // Bad input: each a clear error with a field, nothing changed.
    let bad: Vec<(Value, &str)> = vec![
        (json!([1, 2]), "document"),
        (json!("text"), "document"),
        (json!({"region": "eu"}), "id"),
        (json!({"id": 7, "region": "eu"}), "id"),
        (json!({"id": "a/b", "region": "eu"}), "id"),
        (json!({"id": "nopk"}), "partition_key"),
        (json!({"id": "objpk", "region": {"a": 1}}), "partition_key"),
    ];
    for (doc, field) in bad {
        let e = players
            .write(vec![WriteOp::Insert {
                document: doc.clone(),
            }])
            .await
            .unwrap_err();
        match &e {
            DbError::InvalidInput { field: f, .. } => assert_eq!(f, field, "{doc}: {e}"),
            other => panic!("{doc}: expected InvalidInput on {field}, got {other:?}"),
        }
    }
    // Bad names of databases, collections and indexes: InvalidInput, nothing created.
    let databases = client.list_databases().await.unwrap();
    let collections = db.collections().await.unwrap();
    for name in ["", "bad name", "-x", &"x".repeat(129), "ação", "a/b"] {
        assert_eq!(
            code(&client.create_database(name).await.unwrap_err()),
            C::InvalidInput,
            "{name:?}"
        );
        assert_eq!(
            code(&db.create_collection(name, "/id").await.unwrap_err()),
            C::InvalidInput,
            "{name:?}"
        );
        assert_eq!(
            code(
                &players
                    .create_index(name, &["/score"], false)
                    .await
                    .unwrap_err()
            ),
            C::InvalidInput,
            "{name:?}"
        );
    }
    assert_eq!(client.list_databases().await.unwrap(), databases);
    // (A collection's info holds its indexes.)
    assert_eq!(db.collections().await.unwrap(), collections);
    assert_eq!(
        code(&db.create_collection("c", "region").await.unwrap_err()),
        C::InvalidInput
    );
    assert_eq!(
        code(
            &db.collection("nope")
                .get::<Value>("x", "y")
                .await
                .unwrap_err()
        ),
        C::NotFound
    );
    assert_eq!(
        code(
            &client
                .database("nodb")
                .collection("c")
                .insert(&json!({"id": "x"}))
                .await
                .unwrap_err()
        ),
        C::NotFound
    );
    let too_many: Vec<WriteOp> = (0..101)
        .map(|i| WriteOp::Insert {
            document: json!({"id": format!("m{i}"), "region": "x"}),
        })
        .collect();
    assert_eq!(
        code(&players.write(too_many).await.unwrap_err()),
        C::InvalidInput
    );

    // Size: exactly 4 MiB of JSON is stored (and compressed); one byte more is TooLarge.
    let frame = serde_json::to_vec(&json!({"id": "big", "region": "eu", "pad": ""}))
        .unwrap()
        .len();
    let exact = json!({"id": "big", "region": "eu", "pad": "a".repeat(aviladb::MAX_DOCUMENT_BYTES - frame)});
    assert_eq!(
        serde_json::to_vec(&exact).unwrap().len(),
        aviladb::MAX_DOCUMENT_BYTES
    );
    players.insert(&exact).await.unwrap();
    let back = players.get::<Value>("eu", "big").await.unwrap().unwrap();
    assert_eq!(
        back.body["pad"].as_str().unwrap().len(),
        aviladb::MAX_DOCUMENT_BYTES - frame
    );
    let over = json!({"id": "big2", "region": "eu", "pad": "a".repeat(aviladb::MAX_DOCUMENT_BYTES - frame + 1)});
    assert_eq!(code(&players.insert(&over).await.unwrap_err()), C::TooLarge);
    assert!(players.get::<Value>("eu", "big2").await.unwrap().is_none());
    // A patch whose result would pass 4 MiB is TooLarge too, and changes nothing.
    let e = players
        .patch("eu", "big", set("/more", json!("x")), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::TooLarge, "{e}");
    let kept = players.get::<Value>("eu", "big").await.unwrap().unwrap();
    assert!(kept.body.get("more").is_none());
    assert_eq!(kept.etag, back.etag);

    // Drop is complete: a re-created collection is empty.
    players.drop_collection().await.unwrap();
    assert_eq!(
        code(&players.get::<Value>("eu", "b1").await.unwrap_err()),
        C::NotFound
    );
    let players = db.create_collection("players", "/region").await.unwrap();
    assert!(players.get::<Value>("eu", "b1").await.unwrap().is_none());
    db.drop_database().await.unwrap();
    assert!(client.list_databases().await.unwrap().is_empty());
    assert_eq!(code(&db.collections().await.unwrap_err()), C::NotFound);
}

fn page(max: usize, token: Option<String>) -> PageOptions {
    PageOptions {
        max_items: Some(max),
        continuation: token,
    }
}

async fn query_suite(client: &Client) {
    use avl_core::ErrorCode as C;
    client.create_database("qdb").await.unwrap();
    let db = client.database("qdb");
    let players = db.create_collection("players", "/region").await.unwrap();
    let regions = ["sa", "us", "eu"];
    let mut all = Vec::new();
    for i in 0..30i64 {
        let mut doc = json!({
            "id": format!("p{i:02}"),
            "region": regions[i as usize % 3],
            "score": (i * 7) % 11,
            "name": if i % 2 == 0 { format!("Ana {i}") } else { format!("bruno {i}") },
            "tags": if i % 4 == 0 { json!(["pro", "br"]) } else { json!(["casual"]) },
            "stats": {"wins": i, "ratio": i as f64 / 4.0},
        });
        if i % 5 == 0 {
            doc["vip"] = json!(true);
        }
        all.push(doc.clone());
        let batch = vec![WriteOp::Insert { document: doc }];
        players.write(batch).await.unwrap();
    }
    let ids = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };

    // Filters with parameters; results in key order (partition key, then id).
    let rows: Vec<Value> = players
        .query_all(
            QuerySpec::new("SELECT * FROM c WHERE c.region = @r AND c.score >= @min")
                .param("r", "sa")
                .param("@min", 5),
        )
        .await
        .unwrap();
    let mut want: Vec<&Value> = all
        .iter()
        .filter(|d| d["region"] == "sa" && d["score"].as_i64().unwrap() >= 5)
        .collect();
    want.sort_by_key(|d| d["id"].as_str().unwrap().to_string());
    assert_eq!(
        ids(&rows),
        want.iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    assert!(
        rows.iter()
            .all(|r| r["_etag"].is_string() && r["_seq"].is_u64())
    );

    // ORDER BY on two paths, paged in small pages: the pages join into the whole answer.
    let text = "SELECT c.id, c.score FROM c ORDER BY c.score DESC, c.id";
    let whole: Vec<Value> = players.query_all(text).await.unwrap();
    let mut expected: Vec<(i64, String)> = all
        .iter()
        .map(|d| {
            (
                -d["score"].as_i64().unwrap(),
                d["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(
        ids(&whole),
        expected.iter().map(|e| e.1.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        whole[0],
        json!({"id": expected[0].1, "score": -expected[0].0})
    );
    let mut joined = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let p = players.query(text, page(7, token)).await.unwrap();
        assert!(p.items.len() <= 7);
        joined.extend(p.items);
        pages += 1;
        token = p.continuation;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(joined, whole);

    // OFFSET/LIMIT and TOP, across pages too.
    let offset: Vec<Value> = players
        .query_all("SELECT VALUE c.id FROM c ORDER BY c.stats.wins OFFSET 5 LIMIT 10")
        .await
        .unwrap();
    assert_eq!(
        offset,
        (5..15)
            .map(|i| json!(format!("p{i:02}")))
            .collect::<Vec<_>>()
    );
    let first = players
        .query(
            "SELECT VALUE c.id FROM c ORDER BY c.stats.wins OFFSET 5 LIMIT 10",
            page(4, None),
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 4);
    let second = players
        .query(
            "SELECT VALUE c.id FROM c ORDER BY c.stats.wins OFFSET 5 LIMIT 10",
            page(100, first.continuation),
        )
        .await
        .unwrap();
    assert_eq!(second.items, offset[4..].to_vec());
    assert!(second.continuation.is_none());
    let top: Vec<Value> = players
        .query_all("SELECT TOP 3 VALUE c.stats.wins FROM c ORDER BY c.stats.wins DESC")
        .await
        .unwrap();
    assert_eq!(top, vec![json!(29), json!(28), json!(27)]);

    // Operators and functions.
    for (filter, count) in [
        ("c.region IN ('sa', 'eu')", 20),
        ("c.region NOT IN ('sa', 'eu')", 10),
        ("c.stats.wins BETWEEN 10 AND 19", 10),
        ("STARTSWITH(c.name, 'ana', true)", 15),
        ("STARTSWITH(c.name, 'ana')", 0),
        ("CONTAINS(c.name, 'runo')", 15),
        ("ARRAY_CONTAINS(c.tags, 'pro')", 8),
        ("c.tags[0] = 'casual'", 22),
        ("IS_DEFINED(c.vip)", 6),
        ("NOT IS_DEFINED(c.vip)", 24),
        ("c.vip = true OR c.stats.ratio > 7", 7),
        ("c.stats.wins % 2 = 0 AND c['region'] != 'us'", 10),
        ("c.missing = 1", 0),
    ] {
        let n: Vec<Value> = players
            .query_all(format!("SELECT VALUE COUNT(1) FROM c WHERE {filter}"))
            .await
            .unwrap();
        assert_eq!(n, vec![json!(count)], "{filter}");
    }

    // Aggregates over the whole result.
    let agg: Vec<Value> = players
        .query_all("SELECT COUNT(1) AS n, SUM(c.stats.wins) AS total, MIN(c.score) AS low, MAX(c.name) AS last, AVG(c.stats.wins) AS mean FROM c")
        .await
        .unwrap();
    assert_eq!(
        agg,
        vec![json!({"n": 30, "total": 435, "low": 0, "last": "bruno 9", "mean": 14.5})]
    );
    let empty: Vec<Value> = players
        .query_all("SELECT VALUE AVG(c.score) FROM c WHERE c.region = 'nowhere'")
        .await
        .unwrap();
    assert!(empty.is_empty());

    // Projections: names from paths, aliases, $n for expressions, objects and arrays.
    let rows: Vec<Value> = players
        .query_all("SELECT c.id, c.stats.wins AS w, c.score * 2, {'r': c.region, 'x': c.nope} AS o, [c.id, c.tags[0]] AS a FROM c WHERE c.id = 'p04'")
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![json!({"id": "p04", "w": 4, "$1": 12, "o": {"r": "us"}, "a": ["p04", "pro"]})]
    );

    // The typed builder writes the same queries.
    #[derive(Debug, Deserialize, PartialEq)]
    struct Row {
        id: String,
        score: i64,
    }
    let built: Vec<Row> = players
        .query_all(
            Select::fields([(field("id"), None), (field("score"), None)])
                .filter(
                    field("region")
                        .eq(param("r"))
                        .and(field("stats.wins").lt(10)),
                )
                .order_by_desc("score")
                .order_by("id")
                .param("r", "us"),
        )
        .await
        .unwrap();
    let by_text: Vec<Row> = players
        .query_all(QuerySpec::new("SELECT c.id, c.score FROM c WHERE c.region = @r AND c.stats.wins < 10 ORDER BY c.score DESC, c.id").param("r", "us"))
        .await
        .unwrap();
    assert!(!built.is_empty());
    assert_eq!(built, by_text);

    // Plans.
    let plan = players
        .explain("SELECT * FROM c WHERE c.score > 3 ORDER BY c.score")
        .await
        .unwrap();
    assert_eq!(
        (plan.access.as_str(), plan.order.as_str(), plan.filter),
        ("scan", "sort", true)
    );

    // Bad input: each a clear InvalidInput.
    let bad = |e: DbError| -> String {
        assert_eq!(code(&e), C::InvalidInput, "{e}");
        e.to_string()
    };
    let e = bad(players
        .query("SELECT * FROM c WHERE c.x = ", page(10, None))
        .await
        .unwrap_err());
    assert!(e.contains("line 1, column 29"), "{e}");
    let e = bad(players
        .query("SELECT * FROM c WHERE c.x = @nope", page(10, None))
        .await
        .unwrap_err());
    assert!(e.contains("@nope"), "{e}");
    let e = bad(players
        .query("SELECT * FROM c", page(10, Some("not-a-token".into())))
        .await
        .unwrap_err());
    assert!(e.contains("malformed"), "{e}");
    let foreign = players
        .query("SELECT * FROM c", page(2, None))
        .await
        .unwrap()
        .continuation;
    let e = bad(players
        .query(
            "SELECT * FROM c WHERE c.score > 1",
            page(2, foreign.clone()),
        )
        .await
        .unwrap_err());
    assert!(e.contains("another query"), "{e}");
    let other = db.create_collection("other", "/id").await.unwrap();
    other.insert(&json!({"id": "o1"})).await.unwrap();
    let e = bad(other
        .query("SELECT * FROM c", page(2, foreign))
        .await
        .unwrap_err());
    assert!(e.contains("another query"), "{e}");
    assert_eq!(
        code(
            &db.collection("nope")
                .query("SELECT * FROM c", page(1, None))
                .await
                .unwrap_err()
        ),
        C::NotFound
    );
    db.drop_database().await.unwrap();
}

async fn index_suite(client: &Client) {
    use avl_core::ErrorCode as C;
    client.create_database("idb").await.unwrap();
    let db = client.database("idb");
    let indexed = db.create_collection("players", "/region").await.unwrap();
    let plain = db.create_collection("twin", "/region").await.unwrap();
    for i in 0..40i64 {
        let region = ["sa", "us", "eu", "ap"][i as usize % 4];
        let doc = json!({
            "id": format!("p{i:02}"),
            "region": region,
            "score": (i * 13) % 17,
            "email": format!("p{i}@example.com"),
            "level": if i % 3 == 0 { json!(null) } else { json!(i % 5) },
        });
        indexed.insert(&doc).await.unwrap();
        plain.insert(&doc).await.unwrap();
    }
    // Created on a populated collection: backfilled.
    assert_eq!(
        indexed
            .create_index("by_region_score", &["/region", "/score"], false)
            .await
            .unwrap(),
        40
    );
    assert_eq!(
        indexed
            .create_index("by_email", &["/email"], true)
            .await
            .unwrap(),
        40
    );
    assert_eq!(
        code(
            &indexed
                .create_index("by_email", &["/level"], false)
                .await
                .unwrap_err()
        ),
        C::AlreadyExists
    );
    // A unique index over shared values is refused, and nothing changes.
    assert_eq!(
        code(
            &indexed
                .create_index("level_unique", &["/level"], true)
                .await
                .unwrap_err()
        ),
        C::Conflict
    );
    for bad in [vec![], vec!["nope"], vec!["/_ts"], vec!["/a", "/a"]] {
        assert_eq!(
            code(&indexed.create_index("bad", &bad, false).await.unwrap_err()),
            C::InvalidInput,
            "{bad:?}"
        );
    }
    let info = db.collections().await.unwrap();
    let names: Vec<&str> = info
        .iter()
        .find(|c| c.name == "players")
        .unwrap()
        .indexes
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["by_region_score", "by_email"]);

    // The planner uses the index for equality, range and ORDER BY; answers equal a scan's.
    let cases = [
        (
            "SELECT c.id, c.score FROM c WHERE c.region = 'sa' ORDER BY c.score DESC",
            "index",
            "index",
        ),
        (
            "SELECT c.id, c.score FROM c WHERE c.region = @r AND c.score > 3 AND c.score <= 12 ORDER BY c.score",
            "index",
            "index",
        ),
        (
            "SELECT c.id FROM c WHERE c.region = 'eu' AND c.score BETWEEN 2 AND 9",
            "index",
            "none",
        ),
        (
            "SELECT c.id FROM c WHERE c.email = 'p7@example.com'",
            "index",
            "none",
        ),
        (
            "SELECT c.id, c.region FROM c WHERE c.region > 'eu' ORDER BY c.region",
            "index",
            "index",
        ),
        (
            "SELECT c.id, c.score FROM c WHERE c.region IN ('us') ORDER BY c.id",
            "index",
            "sort",
        ),
        // IN lists read one index range per value (pages resume across them).
        (
            "SELECT c.id, c.score FROM c WHERE c.region IN ('sa', 'eu') AND c.score > 3 ORDER BY c.id",
            "index",
            "sort",
        ),
        (
            "SELECT c.id FROM c WHERE c.region IN ('ap', 'us', 'zz', 'ap')",
            "index",
            "none",
        ),
        (
            "SELECT c.id, c.score FROM c WHERE c.region IN (@r, 'eu') ORDER BY c.score DESC",
            "index",
            "sort",
        ),
        ("SELECT c.id FROM c WHERE c.score = 3", "scan", "none"),
    ];
    for (text, access, order) in cases {
        let spec = QuerySpec::new(text).param("r", "us");
        let plan = indexed.explain(spec.clone()).await.unwrap();
        assert_eq!(
            (plan.access.as_str(), plan.order.as_str()),
            (access, order),
            "{text}"
        );
        let via_index: Vec<Value> = indexed.query_all(spec.clone()).await.unwrap();
        let via_scan: Vec<Value> = plain.query_all(spec.clone()).await.unwrap();
        assert!(!via_index.is_empty(), "{text}");
        // Ties may come in another order; the sort keys may not, nor the rows.
        let sort_key = ["score", "region"]
            .into_iter()
            .find(|k| text.contains(&format!("ORDER BY c.{k}")));
        if let Some(k) = sort_key {
            let keys = |rows: &[Value]| rows.iter().map(|r| r[k].clone()).collect::<Vec<_>>();
            assert_eq!(keys(&via_index), keys(&via_scan), "{text}");
        }
        if text.contains("ORDER BY c.id") {
            assert_eq!(via_index, via_scan, "{text}");
        }
        let mut a = via_index.clone();
        let mut b = via_scan.clone();
        a.sort_by_key(|r| r["id"].to_string());
        b.sort_by_key(|r| r["id"].to_string());
        assert_eq!(a, b, "{text}");
        // Small pages through the index join into the whole answer.
        let mut joined = Vec::new();
        let mut token = None;
        loop {
            let p = indexed.query(spec.clone(), page(3, token)).await.unwrap();
            joined.extend(p.items);
            token = p.continuation;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(joined, via_index, "{text}");
    }

    // Writes keep indexes current: a changed score moves, a deleted document goes.
    indexed
        .patch(
            "sa",
            "p00",
            vec![PatchOp::Set {
                path: "/score".into(),
                value: json!(100),
            }],
            None,
        )
        .await
        .unwrap();
    indexed.delete("sa", "p04", None).await.unwrap();
    let top: Vec<Value> = indexed
        .query_all("SELECT VALUE c.id FROM c WHERE c.region = 'sa' ORDER BY c.score DESC")
        .await
        .unwrap();
    assert_eq!(top[0], json!("p00"));
    assert!(!top.contains(&json!("p04")));

    // Unique: a second holder is Conflict; a batch may move a value from one document to
    // another; a batch that would repeat one changes nothing.
    let taken = json!({"id": "x1", "region": "sa", "email": "p1@example.com"});
    assert_eq!(
        code(&indexed.insert(&taken).await.unwrap_err()),
        C::Conflict
    );
    assert!(indexed.get::<Value>("sa", "x1").await.unwrap().is_none());
    indexed
        .write(vec![
            WriteOp::Patch {
                partition_key: json!("us"),
                id: "p01".into(),
                operations: vec![PatchOp::Set {
                    path: "/email".into(),
                    value: json!("moved@example.com"),
                }],
                if_match: None,
            },
            WriteOp::Insert {
                document: taken.clone(),
            },
        ])
        .await
        .unwrap();
    let e = indexed
        .write(vec![
            WriteOp::Insert {
                document: json!({"id": "y1", "region": "eu", "email": "same@example.com"}),
            },
            WriteOp::Insert {
                document: json!({"id": "y2", "region": "eu", "email": "same@example.com"}),
            },
        ])
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::Conflict);
    assert!(e.to_string().contains("operation 1"), "{e}");
    assert!(indexed.get::<Value>("eu", "y1").await.unwrap().is_none());
    let holder: Vec<Value> = indexed
        .query_all("SELECT VALUE c.id FROM c WHERE c.email = 'p1@example.com'")
        .await
        .unwrap();
    assert_eq!(holder, vec![json!("x1")]);
    // Documents without the path are not held to uniqueness.
    indexed
        .insert(&json!({"id": "n1", "region": "ap"}))
        .await
        .unwrap();
    indexed
        .insert(&json!({"id": "n2", "region": "ap"}))
        .await
        .unwrap();

    // Dropped: the planner scans again; a token made through the index is refused.
    let p = indexed
        .query("SELECT * FROM c WHERE c.region = 'sa'", page(2, None))
        .await
        .unwrap();
    indexed.drop_index("by_region_score").await.unwrap();
    assert_eq!(
        code(&indexed.drop_index("by_region_score").await.unwrap_err()),
        C::NotFound
    );
    let plan = indexed
        .explain("SELECT * FROM c WHERE c.region = 'sa'")
        .await
        .unwrap();
    assert_eq!(plan.access, "scan");
    assert_eq!(
        code(
            &indexed
                .query(
                    "SELECT * FROM c WHERE c.region = 'sa'",
                    page(2, p.continuation.clone())
                )
                .await
                .unwrap_err()
        ),
        C::InvalidInput
    );
    // Declared again under the same name, it is another index: the token is still
    // refused, not resumed at its old position in the new one's entries.
    indexed
        .create_index("by_region_score", &["/region", "/score"], false)
        .await
        .unwrap();
    let plan = indexed
        .explain("SELECT * FROM c WHERE c.region = 'sa'")
        .await
        .unwrap();
    assert_eq!(plan.access, "index");
    let e = indexed
        .query(
            "SELECT * FROM c WHERE c.region = 'sa'",
            page(2, p.continuation),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::InvalidInput, "{e}");
    assert!(e.to_string().contains("gone"), "{e}");
    indexed.drop_index("by_region_score").await.unwrap();

    // Created: a token made by a scan goes on with the scan, exactly where it stopped,
    // though the planner now prefers the new index.
    let later = db.create_collection("later", "/id").await.unwrap();
    for i in 0..5 {
        later
            .insert(json!({"id": format!("r{i}"), "team": "x"}))
            .await
            .unwrap();
    }
    later.insert(json!({"id": "o", "team": "y"})).await.unwrap();
    let sql = "SELECT VALUE c.id FROM c WHERE c.team = 'x'";
    let first = later.query(sql, page(2, None)).await.unwrap();
    assert_eq!(later.explain(sql).await.unwrap().access, "scan");
    later
        .create_index("by_team", &["/team"], false)
        .await
        .unwrap();
    assert_eq!(later.explain(sql).await.unwrap().access, "index");
    let mut ids = first.items.clone();
    let mut token = first.continuation;
    while let Some(t) = token {
        let p = later.query(sql, page(2, Some(t))).await.unwrap();
        ids.extend(p.items);
        token = p.continuation;
    }
    let want: Vec<Value> = (0..5).map(|i| json!(format!("r{i}"))).collect();
    assert_eq!(ids, want);
    let mut fresh = later.query_all::<Value>(sql).await.unwrap();
    fresh.sort_by_key(|v| v.to_string());
    assert_eq!(fresh, want);
    db.drop_database().await.unwrap();
}

fn feed(start: FeedStart, max: usize, deletes: bool) -> FeedOptions {
    FeedOptions {
        start,
        max_items: Some(max),
        include_deletes: deletes,
    }
}

async fn feed_suite(client: &Client) {
    use avl_core::ErrorCode as C;
    use futures_util::StreamExt;
    client.create_database("fdb").await.unwrap();
    let db = client.database("fdb");
    let events = db.create_collection("events", "/id").await.unwrap();
    let empty = events
        .changes(feed(FeedStart::Beginning, 10, true), None)
        .await
        .unwrap();
    assert!(empty.changes.is_empty());
    for id in ["a", "b", "c"] {
        events.insert(json!({"id": id, "v": 1})).await.unwrap();
    }
    events
        .patch(
            "a",
            "a",
            vec![PatchOp::Set {
                path: "/v".into(),
                value: json!(2),
            }],
            None,
        )
        .await
        .unwrap();
    events.delete("b", "b", None).await.unwrap();
    // Commit order; the latest version of each document; deletes only when asked.
    let page = events
        .changes(feed(FeedStart::Beginning, 10, false), None)
        .await
        .unwrap();
    let seen: Vec<(String, i64)> = page
        .changes
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["v"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, vec![("c".to_string(), 1), ("a".to_string(), 2)]);
    assert!(page.changes.iter().all(|c| c["_etag"].is_string()));
    let with_deletes = events
        .changes(feed(FeedStart::Beginning, 10, true), None)
        .await
        .unwrap();
    assert_eq!(with_deletes.changes.len(), 3);
    let tombstone = &with_deletes.changes[2];
    assert_eq!(
        (
            tombstone["id"].as_str(),
            tombstone["_pk"].as_str(),
            tombstone["_deleted"].as_bool()
        ),
        (Some("b"), Some("b"), Some(true))
    );
    assert!(
        tombstone["_seq"].as_u64().unwrap() > with_deletes.changes[1]["_seq"].as_u64().unwrap()
    );
    // Pages of one chain through continuation tokens; nothing new reads as empty.
    let mut token = None;
    let mut chained = Vec::new();
    for _ in 0..5 {
        let start = token
            .clone()
            .map_or(FeedStart::Beginning, FeedStart::Continuation);
        let p = events.changes(feed(start, 1, true), None).await.unwrap();
        chained.extend(p.changes);
        token = Some(p.continuation);
    }
    assert_eq!(chained, with_deletes.changes);
    // From now: only later changes.
    let now = events
        .changes(feed(FeedStart::Now, 10, true), None)
        .await
        .unwrap();
    assert!(now.changes.is_empty());
    events.upsert(&json!({"id": "d", "v": 1})).await.unwrap();
    let later = events
        .changes(
            feed(FeedStart::Continuation(now.continuation.clone()), 10, true),
            None,
        )
        .await
        .unwrap();
    assert_eq!(later.changes.len(), 1);
    assert_eq!(later.changes[0]["id"], "d");
    // Long polling: an empty read waits for the next commit.
    let writer = events.clone();
    let write_soon = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        writer.insert(&json!({"id": "e", "v": 1})).await.unwrap();
    });
    let waited = events
        .changes(
            feed(
                FeedStart::Continuation(later.continuation.clone()),
                10,
                true,
            ),
            Some(std::time::Duration::from_secs(15)),
        )
        .await
        .unwrap();
    write_soon.await.unwrap();
    assert_eq!(waited.changes.len(), 1);
    assert_eq!(waited.changes[0]["id"], "e");
    // The stream wakes on new commits.
    let mut stream = Box::pin(events.change_stream(feed(
        FeedStart::Continuation(waited.continuation.clone()),
        10,
        true,
    )));
    let writer = events.clone();
    let writes = tokio::spawn(async move {
        for id in ["f", "g"] {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            writer.insert(&json!({"id": id})).await.unwrap();
        }
        writer.delete("f", "f", None).await.unwrap();
    });
    let mut streamed = Vec::new();
    for _ in 0..3 {
        let change = stream.next().await.unwrap().unwrap();
        streamed.push((
            change["id"].as_str().unwrap().to_string(),
            change["_deleted"].as_bool(),
        ));
    }
    writes.await.unwrap();
    assert_eq!(
        streamed,
        vec![
            ("f".to_string(), None),
            ("g".to_string(), None),
            ("f".to_string(), Some(true))
        ]
    );
    // Tokens of another collection, or damaged ones, are refused.
    let other = db.create_collection("other", "/id").await.unwrap();
    for token in [
        now.continuation.clone(),
        "f1abc".to_string(),
        "garbage".to_string(),
    ] {
        let e = other
            .changes(feed(FeedStart::Continuation(token), 10, true), None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), C::InvalidInput, "{e}");
    }

    // All versions: every write's version and every delete, in commit order, from when
    // the mode was set (the changes before it as the feed had them); a continuation goes
    // on from there, across the switch; setting the mode back drops the history.
    let log = db.create_collection("log", "/id").await.unwrap();
    let start = log
        .changes(feed(FeedStart::Now, 10, true), None)
        .await
        .unwrap();
    log.insert(json!({"id": "before", "v": 0})).await.unwrap();
    log.insert(json!({"id": "old", "v": 0})).await.unwrap();
    log.upsert(json!({"id": "old", "v": 1})).await.unwrap();
    log.set_change_feed(aviladb::ChangeFeedMode::AllVersions, None)
        .await
        .unwrap();
    let info = db
        .collections()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "log")
        .unwrap();
    assert_eq!(info.change_feed, aviladb::ChangeFeedMode::AllVersions);
    log.insert(json!({"id": "a", "v": 1})).await.unwrap();
    log.upsert(json!({"id": "a", "v": 2})).await.unwrap();
    let first = log
        .changes(feed(FeedStart::Beginning, 10, true), None)
        .await
        .unwrap();
    log.patch("a", "a", set("/v", json!(3)), None)
        .await
        .unwrap();
    log.write(vec![
        WriteOp::Upsert {
            document: json!({"id": "b", "v": 1}),
            if_match: None,
        },
        WriteOp::Upsert {
            document: json!({"id": "b", "v": 2}),
            if_match: None,
        },
    ])
    .await
    .unwrap();
    log.delete("a", "a", None).await.unwrap();
    let versions = |page: &aviladb::ChangePage| -> Vec<(String, Option<i64>, bool)> {
        page.changes
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_string(),
                    c["v"].as_i64(),
                    c["_deleted"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    };
    let all = log
        .changes(feed(FeedStart::Beginning, 10, true), None)
        .await
        .unwrap();
    let a = |v| ("a".to_string(), Some(v), false);
    let b = |v| ("b".to_string(), Some(v), false);
    let gone = ("a".to_string(), None, true);
    let before = vec![
        ("before".to_string(), Some(0), false),
        ("old".to_string(), Some(1), false),
    ];
    assert_eq!(
        versions(&all),
        [
            before.clone(),
            vec![a(1), a(2), a(3), b(1), b(2), gone.clone()]
        ]
        .concat()
    );
    // A reader whose position was taken before the switch misses nothing.
    let mut seen = Vec::new();
    let mut token = start.continuation;
    loop {
        let page = log
            .changes(feed(FeedStart::Continuation(token), 3, true), None)
            .await
            .unwrap();
        if page.changes.is_empty() {
            break;
        }
        seen.extend(versions(&page));
        token = page.continuation;
    }
    assert_eq!(seen, versions(&all));
    let seqs: Vec<u64> = all
        .changes
        .iter()
        .map(|c| c["_seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(
        versions(&first),
        [before.clone(), vec![a(1), a(2)]].concat()
    );
    let rest = log
        .changes(
            feed(FeedStart::Continuation(first.continuation), 10, false),
            None,
        )
        .await
        .unwrap();
    assert_eq!(versions(&rest), vec![a(3), b(1), b(2)]);
    let now = log
        .changes(feed(FeedStart::Now, 10, true), None)
        .await
        .unwrap();
    assert!(now.changes.is_empty());
    log.set_change_feed(aviladb::ChangeFeedMode::LatestVersion, None)
        .await
        .unwrap();
    let latest = log
        .changes(feed(FeedStart::Beginning, 10, true), None)
        .await
        .unwrap();
    assert_eq!(versions(&latest), [before, vec![b(2), gone]].concat());
    db.drop_database().await.unwrap();
}

async fn transaction_suite(client: &Client) {
    use avl_core::ErrorCode as C;
    client.create_database("shop").await.unwrap();
    let db = client.database("shop");
    let wallets = db.create_collection("wallets", "/id").await.unwrap();
    let items = db.create_collection("items", "/owner").await.unwrap();
    wallets
        .insert(&json!({"id": "ana", "coins": 10}))
        .await
        .unwrap();
    wallets
        .insert(&json!({"id": "bia", "coins": 10}))
        .await
        .unwrap();
    let coins = |v: &Value| v["coins"].as_i64().unwrap();

    // Queries in a transaction read its snapshot, and what they matched is checked at
    // the commit.
    let rich = "SELECT * FROM c WHERE c.coins >= 10";
    let mut tx = db.begin().await.unwrap();
    let page = tx
        .query("wallets", rich, aviladb::PageOptions::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    wallets
        .insert(&json!({"id": "cris", "coins": 50}))
        .await
        .unwrap();
    let again = tx
        .query(
            "wallets",
            "SELECT VALUE COUNT(1) FROM c",
            aviladb::PageOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(again.items, [json!(2)], "the snapshot does not see cris");
    tx.insert("items", json!({"id": "bonus", "owner": "ana"}))
        .unwrap();
    // cris is a phantom (not protected): the commit goes through.
    tx.commit().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    tx.query("wallets", rich, aviladb::PageOptions::default())
        .await
        .unwrap();
    wallets
        .upsert(&json!({"id": "cris", "coins": 49}))
        .await
        .unwrap();
    tx.insert("items", json!({"id": "bonus2", "owner": "ana"}))
        .unwrap();
    let e = tx.commit().await.unwrap_err();
    assert_eq!(
        code(&e),
        C::Conflict,
        "a document the query matched changed"
    );
    assert!(items.get::<Value>("ana", "bonus2").await.unwrap().is_none());
    items.delete("ana", "bonus", None).await.unwrap();
    wallets.delete("cris", "cris", None).await.unwrap();

    // Across collections and partitions, atomically.
    let mut tx = db.begin().await.unwrap();
    let ana = tx
        .get::<Value>("wallets", "ana", "ana")
        .await
        .unwrap()
        .unwrap();
    let bia = tx
        .get::<Value>("wallets", "bia", "bia")
        .await
        .unwrap()
        .unwrap();
    tx.upsert("wallets", json!({"id": "ana", "coins": coins(&ana) - 3}))
        .unwrap();
    tx.upsert("wallets", json!({"id": "bia", "coins": coins(&bia) + 3}))
        .unwrap();
    tx.insert("items", json!({"id": "sword", "owner": "bia"}))
        .unwrap();
    let results = tx.commit().await.unwrap();
    assert_eq!(results.len(), 3);
    let get = |c: &aviladb::ClientCollection, id: &'static str| {
        let c = c.clone();
        async move { c.get::<Value>(id, id).await.unwrap().unwrap().body }
    };
    assert_eq!(coins(&get(&wallets, "ana").await), 7);
    assert_eq!(coins(&get(&wallets, "bia").await), 13);
    assert!(items.get::<Value>("bia", "sword").await.unwrap().is_some());

    // Snapshot reads: a change after begin is not seen, and makes the commit fail.
    let mut tx = db.begin().await.unwrap();
    wallets
        .upsert(&json!({"id": "ana", "coins": 100}))
        .await
        .unwrap();
    let seen = tx
        .get::<Value>("wallets", "ana", "ana")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(coins(&seen), 7);
    tx.insert("items", json!({"id": "shield", "owner": "ana"}))
        .unwrap();
    let e = tx.commit().await.unwrap_err();
    assert_eq!(code(&e), C::Conflict, "{e}");
    assert!(items.get::<Value>("ana", "shield").await.unwrap().is_none());

    // Write skew is refused: two transactions read both wallets, each writes one.
    let mut t1 = db.begin().await.unwrap();
    let mut t2 = db.begin().await.unwrap();
    for t in [&mut t1, &mut t2] {
        t.get::<Value>("wallets", "ana", "ana").await.unwrap();
        t.get::<Value>("wallets", "bia", "bia").await.unwrap();
    }
    t1.upsert("wallets", json!({"id": "ana", "coins": 0}))
        .unwrap();
    t2.upsert("wallets", json!({"id": "bia", "coins": 0}))
        .unwrap();
    t1.commit().await.unwrap();
    assert_eq!(code(&t2.commit().await.unwrap_err()), C::Conflict);
    assert_eq!(coins(&get(&wallets, "bia").await), 13);

    // A document read as absent must still be absent.
    let mut tx = db.begin().await.unwrap();
    assert!(
        tx.get::<Value>("wallets", "caio", "caio")
            .await
            .unwrap()
            .is_none()
    );
    tx.insert("wallets", json!({"id": "caio", "coins": 1}))
        .unwrap();
    wallets
        .insert(&json!({"id": "caio", "coins": 50}))
        .await
        .unwrap();
    assert_eq!(code(&tx.commit().await.unwrap_err()), C::Conflict);
    assert_eq!(coins(&get(&wallets, "caio").await), 50);

    // One failing write fails them all.
    let mut tx = db.begin().await.unwrap();
    tx.upsert("wallets", json!({"id": "ana", "coins": 999}))
        .unwrap();
    tx.insert("items", json!({"id": "sword", "owner": "bia"}))
        .unwrap();
    let e = tx.commit().await.unwrap_err();
    assert_eq!(code(&e), C::AlreadyExists, "{e}");
    assert_eq!(coins(&get(&wallets, "ana").await), 0);

    // Read-only transactions commit when nothing they read changed; an aborted one's
    // snapshot is gone.
    let mut tx = db.begin().await.unwrap();
    tx.get::<Value>("wallets", "ana", "ana").await.unwrap();
    assert!(tx.commit().await.unwrap().is_empty());
    let mut tx = db.begin().await.unwrap();
    tx.get::<Value>("wallets", "ana", "ana").await.unwrap();
    let aborted = db.begin().await.unwrap();
    aborted.abort().await.unwrap();
    assert_eq!(
        code(&client.database("nodb").begin().await.unwrap_err()),
        C::NotFound
    );
    let e = tx.get::<Value>("nope", "x", "x").await.unwrap_err();
    assert_eq!(code(&e), C::NotFound, "{e}");
    db.drop_database().await.unwrap();
}

/// An engine on a clock the test moves (starting at the real time).
fn clocked(dir: &std::path::Path) -> (Engine, aviladb::ManualClock) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let clock = aviladb::ManualClock::new(now);
    let engine = Engine::open_with(
        dir,
        aviladb::EngineOptions {
            clock: Arc::new(clock.clone()),
            ..aviladb::EngineOptions::default()
        },
    )
    .unwrap();
    (engine, clock)
}

async fn ttl_suite(client: &Client, engine: &Engine, clock: &aviladb::ManualClock) {
    use avl_core::ErrorCode as C;
    client.create_database("tdb").await.unwrap();
    let db = client.database("tdb");
    let sessions = db.create_collection("sessions", "/id").await.unwrap();
    sessions
        .create_index("by_user", &["/user"], false)
        .await
        .unwrap();
    let count = |c: &aviladb::ClientCollection| {
        let c = c.clone();
        async move {
            c.query_all::<Value>("SELECT VALUE COUNT(1) FROM c WHERE c.user = 'ana'")
                .await
                .unwrap()[0]
                .as_u64()
                .unwrap()
        }
    };
    // A document's own ttl, without a collection default.
    sessions
        .insert(&json!({"id": "s1", "user": "ana", "ttl": 10}))
        .await
        .unwrap();
    sessions
        .insert(&json!({"id": "s2", "user": "ana", "ttl": -1}))
        .await
        .unwrap();
    sessions
        .insert(&json!({"id": "s3", "user": "ana"}))
        .await
        .unwrap();
    let feed_now = sessions
        .changes(feed(FeedStart::Beginning, 10, false), None)
        .await
        .unwrap();
    assert_eq!(feed_now.changes.len(), 3);
    clock.advance_secs(9);
    assert!(sessions.get::<Value>("s1", "s1").await.unwrap().is_some());
    clock.advance_secs(1);
    // Expired: invisible to every read at once.
    assert!(sessions.get::<Value>("s1", "s1").await.unwrap().is_none());
    let many = sessions
        .get_many::<Value>(vec![DocKey {
            partition_key: json!("s1"),
            id: "s1".into(),
        }])
        .await
        .unwrap();
    assert!(many[0].is_none());
    assert_eq!(count(&sessions).await, 2);
    let all: Vec<Value> = sessions
        .query_all("SELECT VALUE c.id FROM c")
        .await
        .unwrap();
    assert_eq!(all, vec![json!("s2"), json!("s3")]);
    let changes = sessions
        .changes(feed(FeedStart::Beginning, 10, false), None)
        .await
        .unwrap();
    assert_eq!(changes.changes.len(), 2);
    let mut tx = db.begin().await.unwrap();
    assert!(
        tx.get::<Value>("sessions", "s1", "s1")
            .await
            .unwrap()
            .is_none()
    );
    tx.abort().await.unwrap();
    // For writes it is gone too: replace is NotFound, insert takes its place.
    assert_eq!(
        code(
            &sessions
                .replace(&json!({"id": "s1", "user": "bia"}), None)
                .await
                .unwrap_err()
        ),
        C::NotFound
    );
    sessions
        .insert(&json!({"id": "s1", "user": "bia", "ttl": 5}))
        .await
        .unwrap();
    assert_eq!(
        sessions
            .get::<Value>("s1", "s1")
            .await
            .unwrap()
            .unwrap()
            .body["user"],
        "bia"
    );
    // A collection default applies to documents without their own ttl, at once.
    sessions.set_default_ttl(Some(60)).await.unwrap();
    assert_eq!(
        code(&sessions.set_default_ttl(Some(0)).await.unwrap_err()),
        C::InvalidInput
    );
    // s3 was written 10 s ago: it has 50 s left.
    clock.advance_secs(49);
    assert!(sessions.get::<Value>("s3", "s3").await.unwrap().is_some());
    clock.advance_secs(1);
    assert!(sessions.get::<Value>("s3", "s3").await.unwrap().is_none());
    assert!(
        sessions.get::<Value>("s2", "s2").await.unwrap().is_some(),
        "ttl -1 never expires"
    );
    assert_eq!(count(&sessions).await, 1);
    // Bad ttl values are refused.
    for bad in [json!(0), json!(-2), json!("10"), json!(1.5)] {
        let e = sessions
            .insert(&json!({"id": "bad", "ttl": bad}))
            .await
            .unwrap_err();
        assert_eq!(code(&e), C::InvalidInput, "{bad}");
    }
    // Space is reclaimed: expired documents leave storage, indexes and the feed (as
    // deletes).
    assert_eq!(engine.reclaim_expired().unwrap(), 2);
    assert_eq!(engine.reclaim_expired().unwrap(), 0);
    let changes = sessions
        .changes(feed(FeedStart::Beginning, 10, true), None)
        .await
        .unwrap();
    let deleted: Vec<&str> = changes
        .changes
        .iter()
        .filter(|c| c["_deleted"] == json!(true))
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(deleted.len(), 2, "{changes:?}");
    // Turning TTL off: nothing left expires by default.
    sessions.set_default_ttl(None).await.unwrap();
    sessions
        .insert(&json!({"id": "s4", "user": "ana"}))
        .await
        .unwrap();
    clock.advance_secs(1_000_000);
    assert!(sessions.get::<Value>("s4", "s4").await.unwrap().is_some());

    // A history with a retention: versions and deletes older than it are trimmed when
    // the writer reclaims; newer ones stay.
    let audit = db.create_collection("audit", "/id").await.unwrap();
    for bad in [
        (aviladb::ChangeFeedMode::AllVersions, Some(0)),
        (aviladb::ChangeFeedMode::LatestVersion, Some(60)),
    ] {
        let e = audit.set_change_feed(bad.0, bad.1).await.unwrap_err();
        assert_eq!(code(&e), C::InvalidInput, "{e}");
    }
    // One document from before the switch: it stays in the latest-version part.
    audit.insert(json!({"id": "pre", "v": 0})).await.unwrap();
    audit
        .set_change_feed(aviladb::ChangeFeedMode::AllVersions, Some(60))
        .await
        .unwrap();
    audit.insert(json!({"id": "a", "v": 1})).await.unwrap();
    audit.insert(json!({"id": "gone", "v": 1})).await.unwrap();
    audit.delete("gone", "gone", None).await.unwrap();
    clock.advance_secs(30);
    audit.upsert(json!({"id": "a", "v": 2})).await.unwrap();
    clock.advance_secs(31);
    audit.upsert(json!({"id": "a", "v": 3})).await.unwrap();
    let history = |audit: aviladb::ClientCollection| async move {
        audit
            .changes(feed(FeedStart::Beginning, 100, true), None)
            .await
            .unwrap()
            .changes
            .iter()
            .map(|c| (c["id"].as_str().unwrap().to_string(), c["v"].as_i64()))
            .collect::<Vec<_>>()
    };
    assert_eq!(history(audit.clone()).await.len(), 6);
    // Readers positioned after one change (in the part before the switch) and after
    // four (the last of the three versions and deletes the retention will trim).
    let token_after = |n: usize| {
        let audit = audit.clone();
        async move {
            audit
                .changes(feed(FeedStart::Beginning, n, true), None)
                .await
                .unwrap()
                .continuation
        }
    };
    let (early, late) = (token_after(1).await, token_after(4).await);
    engine.reclaim_expired().unwrap();
    assert_eq!(
        history(audit.clone()).await,
        vec![
            ("pre".to_string(), Some(0)),
            ("a".to_string(), Some(2)),
            ("a".to_string(), Some(3))
        ]
    );
    // The early reader lost changes it had not read: it is told so, not skipped ahead.
    let e = audit
        .changes(
            feed(FeedStart::Continuation(early.clone()), 100, true),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::Conflict, "{e}");
    assert!(e.to_string().contains("retention"), "{e}");
    // The late one lost nothing.
    let page = audit
        .changes(feed(FeedStart::Continuation(late), 100, true), None)
        .await
        .unwrap();
    assert_eq!(page.changes.len(), 2);
    // A reader that starts after the trim lost nothing either: page by page, it reads
    // what is left, to the end and past it.
    let mut start = FeedStart::Beginning;
    let mut read = Vec::new();
    for _ in 0..4 {
        let page = audit.changes(feed(start, 1, true), None).await.unwrap();
        read.extend(page.changes.iter().map(|c| c["v"].clone()));
        start = FeedStart::Continuation(page.continuation);
    }
    assert_eq!(read, vec![json!(0), json!(2), json!(3)]);
    // Dropping the history forgets what was trimmed from it: a history kept again
    // later does not hold the old trim against the old token.
    audit
        .set_change_feed(aviladb::ChangeFeedMode::LatestVersion, None)
        .await
        .unwrap();
    audit
        .set_change_feed(aviladb::ChangeFeedMode::AllVersions, Some(60))
        .await
        .unwrap();
    audit
        .changes(feed(FeedStart::Continuation(early), 100, true), None)
        .await
        .unwrap();
    db.drop_database().await.unwrap();
}

/// Clustered vectors from a fixed seed: `n` of `dim` numbers around 4 centres.
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 10_000) as f32 / 10_000.0 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..4)
        .map(|_| (0..dim).map(|_| next() * 4.0).collect())
        .collect();
    (0..n)
        .map(|i| centres[i % 4].iter().map(|c| c + next() * 0.5).collect())
        .collect()
}

fn brute_force(
    metric: aviladb::VectorMetric,
    docs: &[(String, Vec<f32>, bool)],
    query: &[f32],
    k: usize,
    only_pt: bool,
) -> Vec<String> {
    let mut scored: Vec<(f32, &String)> = docs
        .iter()
        .filter(|(_, _, pt)| !only_pt || *pt)
        .map(|(id, v, _)| (metric.distance(v, query), id))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(k)
        .map(|(_, id)| id.clone())
        .collect()
}

async fn vector_suite(client: &Client) {
    use aviladb::{VectorIndexInfo, VectorMetric, VectorQuery};
    use avl_core::ErrorCode as C;
    client.create_database("vdb").await.unwrap();
    let db = client.database("vdb");
    let vectors = clustered(240, 8, 7);
    let mut docs = Vec::new();
    // A graph whose candidate list covers this little data: searches are exact (the
    // graph itself is tested against brute force in tests/vectors.rs).
    let wide = aviladb::graph::GraphParams {
        m: 8,
        ef_construction: 64,
        ef_search: 256,
    };
    // (A dot-product graph is not exact even this wide: its recall is tested in
    // tests/vectors.rs.)
    for (metric, flat) in [
        (VectorMetric::Cosine, false),
        (VectorMetric::Euclidean, false),
        (VectorMetric::Cosine, true),
        (VectorMetric::Euclidean, true),
        (VectorMetric::DotProduct, true),
    ] {
        let define = || {
            let index = VectorIndexInfo::new("embedding", 8, metric).unwrap();
            if flat {
                index.flat()
            } else {
                index.with_params(wide).unwrap()
            }
        };
        let name =
            format!("memories-{metric:?}-{}", if flat { "flat" } else { "hnsw" }).to_lowercase();
        let memories = db.create_collection(&name, "/id").await.unwrap();
        docs.clear();
        for (i, v) in vectors.iter().enumerate() {
            let id = format!("m{i:03}");
            let pt = i % 3 == 0;
            memories
                .insert(&json!({"id": id, "lang": if pt { "pt" } else { "en" }, "embedding": v}))
                .await
                .unwrap();
            docs.push((id, v.clone(), pt));
        }
        memories
            .insert(&json!({"id": "no-vector", "lang": "pt"}))
            .await
            .unwrap();
        // Created on a populated collection: filled from the documents.
        let indexed = memories.create_vector_index(define()).await.unwrap();
        assert_eq!(indexed, 240);
        let search = |vector: Vec<f32>, k: usize, filter: Option<&str>| {
            let memories = memories.clone();
            let query = VectorQuery {
                path: "/embedding".into(),
                vector,
                k,
                filter: filter.map(str::to_string),
                parameters: serde_json::Map::from_iter([("lang".to_string(), json!("pt"))]),
                ef: None,
                fields: None,
            };
            async move { memories.vector_search(query).await }
        };
        let ids = |hits: &[aviladb::VectorHit]| -> Vec<String> {
            hits.iter()
                .map(|h| h.document["id"].as_str().unwrap().to_string())
                .collect()
        };
        // Exact: the same answers as brute force, with and without a filter.
        for q in clustered(6, 8, 99) {
            let hits = search(q.clone(), 10, None).await.unwrap();
            assert_eq!(
                ids(&hits),
                brute_force(metric, &docs, &q, 10, false),
                "{metric:?}"
            );
            assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
            let hits = search(q.clone(), 10, Some("c.lang = @lang")).await.unwrap();
            assert_eq!(
                ids(&hits),
                brute_force(metric, &docs, &q, 10, true),
                "{metric:?} filtered"
            );
        }
        // The same search in SQL, Cosmos DB's way: VectorDistance is a similarity for
        // cosine and dot product (higher is closer) and a distance for euclidean; ORDER BY
        // VectorDistance puts the closest first.
        let q = clustered(1, 8, 1234).remove(0);
        let rows: Vec<Value> = memories
            .query_all(
                QuerySpec::new(
                    "SELECT TOP 5 c.id, VectorDistance(c.embedding, @q) AS score FROM c \
                     WHERE c.lang = 'pt' ORDER BY VectorDistance(c.embedding, @q)",
                )
                .param("q", json!(q)),
            )
            .await
            .unwrap();
        let sql_ids: Vec<String> = rows
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            sql_ids,
            brute_force(metric, &docs, &q, 5, true),
            "{metric:?} in SQL"
        );
        let scores: Vec<f64> = rows.iter().map(|r| r["score"].as_f64().unwrap()).collect();
        let best = &docs.iter().find(|d| d.0 == sql_ids[0]).unwrap().1;
        let want = f64::from(match metric {
            VectorMetric::Cosine => 1.0 - metric.distance(best, &q),
            VectorMetric::Euclidean => metric.distance(best, &q),
            VectorMetric::DotProduct => -metric.distance(best, &q),
        });
        assert!(
            (scores[0] - want).abs() < 1e-4,
            "{metric:?}: {} vs {want}",
            scores[0]
        );
        // A replaced vector is found at its new place only; a deleted document never.
        let moved = vec![9.0, -9.0, 9.0, -9.0, 9.0, -9.0, 9.0, -9.0];
        memories
            .upsert(&json!({"id": "m005", "lang": "en", "embedding": moved}))
            .await
            .unwrap();
        let hits = search(moved.clone(), 1, None).await.unwrap();
        assert_eq!(ids(&hits), ["m005"]);
        memories.delete("m005", "m005", None).await.unwrap();
        let hits = search(moved.clone(), 240, None).await.unwrap();
        assert!(!ids(&hits).contains(&"m005".to_string()));
        assert_eq!(hits.len(), 239, "{metric:?} flat: {flat}");
        // Bad vectors fail the write and change nothing.
        for bad in [
            json!([1, 2, 3]),
            json!([]),
            json!("text"),
            json!([1e300, 0, 0, 0, 0, 0, 0, 0]),
        ] {
            let e = memories
                .insert(&json!({"id": "bad", "embedding": bad}))
                .await
                .unwrap_err();
            assert_eq!(code(&e), C::InvalidInput, "{bad}");
            assert!(memories.get::<Value>("bad", "bad").await.unwrap().is_none());
        }
        // Bad searches.
        for (vector, k) in [
            (vec![1.0; 3], 5),
            (vec![1.0; 8], 0),
            (vec![1.0; 8], 1_000_000),
        ] {
            let e = search(vector, k, None).await.unwrap_err();
            assert_eq!(code(&e), C::InvalidInput, "{e}");
        }
        let e = search(vec![f32::NAN; 8], 5, None).await.unwrap_err();
        assert_eq!(code(&e), C::InvalidInput);
        let e = memories
            .vector_search(VectorQuery {
                path: "/nope".into(),
                vector: vec![1.0; 8],
                k: 1,
                filter: None,
                parameters: serde_json::Map::new(),
                ef: None,
                fields: None,
            })
            .await
            .unwrap_err();
        assert_eq!(code(&e), C::NotFound);
        assert_eq!(
            code(&memories.create_vector_index(define()).await.unwrap_err()),
            C::AlreadyExists
        );
        memories.drop_vector_index("embedding").await.unwrap();
        assert_eq!(
            code(&search(vec![1.0; 8], 1, None).await.unwrap_err()),
            C::NotFound
        );
    }
    db.drop_database().await.unwrap();
}

/// A document of `depth` levels: itself, then arrays inside arrays.
fn nested(id: &str, depth: usize) -> Value {
    let mut x = json!(1);
    for _ in 1..depth {
        x = json!([x]);
    }
    json!({"id": id, "region": "eu", "x": x})
}

/// A patch of one set.
fn set(path: &str, value: Value) -> Vec<PatchOp> {
    vec![PatchOp::Set {
        path: path.into(),
        value,
    }]
}

/// Limits on what a document may be, and keys no patch may move.
async fn limits_suite(client: &Client) {
    use avl_core::ErrorCode as C;
    client.create_database("ldb").await.unwrap();
    let db = client.database("ldb");
    let docs = db.create_collection("docs", "/region").await.unwrap();
    // Errors read the same through both transports: the code once, then the message.
    let e = db
        .collection("nope")
        .get::<Value>("eu", "x")
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::NotFound);
    assert!(
        e.to_string()
            .starts_with("collection `nope` does not exist"),
        "{e}"
    );
    assert_eq!(
        avl_core::Error::from(e).to_string().split(": ").next(),
        Some("NotFound")
    );

    // The deepest document allowed is stored and read back every way; one level more is
    // refused, as is a patch that would nest it deeper, and nothing changes.
    let deepest = aviladb::MAX_DOCUMENT_DEPTH;
    docs.insert(nested("deep", deepest)).await.unwrap();
    let e = docs
        .insert(nested("deeper", deepest + 1))
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::InvalidInput, "{e}");
    assert!(e.to_string().contains("levels deep"), "{e}");
    let e = docs.upsert(nested("deep", deepest + 1)).await.unwrap_err();
    assert_eq!(code(&e), C::InvalidInput, "{e}");
    let e = docs
        .patch(
            "eu",
            "deep",
            set("/y", nested("y", deepest + 1)["x"].clone()),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::InvalidInput, "{e}");
    let got = docs.get::<Value>("eu", "deep").await.unwrap().unwrap();
    assert_eq!(got.body["x"], nested("deep", deepest)["x"]);
    assert!(got.body.get("y").is_none());
    assert!(docs.get::<Value>("eu", "deeper").await.unwrap().is_none());
    let all = docs.query_all::<Value>("SELECT * FROM c").await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["x"], nested("deep", deepest)["x"]);
    let changes = docs
        .changes(feed(FeedStart::Beginning, 10, true), None)
        .await
        .unwrap();
    assert_eq!(changes.changes.len(), 1);
    let mut tx = db.begin().await.unwrap();
    assert!(
        tx.get::<Value>("docs", "eu", "deep")
            .await
            .unwrap()
            .is_some()
    );
    tx.insert("docs", nested("deeper", deepest + 1)).unwrap();
    assert_eq!(code(&tx.commit().await.unwrap_err()), C::InvalidInput);
    assert!(docs.get::<Value>("eu", "deeper").await.unwrap().is_none());

    // A transaction may read more documents than a batch holds: 150 through a query,
    // checked at its commit.
    let many = db.create_collection("many", "/id").await.unwrap();
    for chunk in 0..3 {
        let ops = (0..50)
            .map(|i| WriteOp::Insert {
                document: json!({"id": format!("m{}", chunk * 50 + i), "n": 1}),
            })
            .collect();
        many.write(ops).await.unwrap();
    }
    for conflict in [false, true] {
        let mut tx = db.begin().await.unwrap();
        let page = tx
            .query(
                "many",
                "SELECT * FROM c WHERE c.n = 1",
                aviladb::PageOptions {
                    max_items: Some(1000),
                    continuation: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.items.len(), 150);
        tx.upsert("many", json!({"id": "total", "n": 150})).unwrap();
        if conflict {
            many.upsert(json!({"id": "m149", "n": 1})).await.unwrap();
            assert_eq!(code(&tx.commit().await.unwrap_err()), C::Conflict);
        } else {
            tx.commit().await.unwrap();
            many.delete("total", "total", None).await.unwrap();
        }
    }
    assert!(many.get::<Value>("total", "total").await.unwrap().is_none());

    // A nested partition key: neither its parent nor the key itself can be patched; a
    // sibling can, and the document keeps its key.
    let people = db
        .create_collection("people", "/address/city")
        .await
        .unwrap();
    let first = people
        .insert(json!({"id": "a", "address": {"city": "sp", "zip": "01000"}}))
        .await
        .unwrap();
    for op in [
        PatchOp::Set {
            path: "/address".into(),
            value: json!({"city": "rj"}),
        },
        PatchOp::Remove {
            path: "/address".into(),
        },
        PatchOp::Set {
            path: "/address/city".into(),
            value: json!("rj"),
        },
    ] {
        let e = people.patch("sp", "a", vec![op], None).await.unwrap_err();
        assert_eq!(code(&e), C::InvalidInput, "{e}");
        assert!(e.to_string().contains("cannot be patched"), "{e}");
    }
    let kept = people.get::<Value>("sp", "a").await.unwrap().unwrap();
    assert_eq!(kept.etag, first.etag.unwrap());
    people
        .patch("sp", "a", set("/address/zip", json!("02000")), None)
        .await
        .unwrap();
    let moved = people.get::<Value>("sp", "a").await.unwrap().unwrap();
    assert_eq!(moved.body["address"], json!({"city": "sp", "zip": "02000"}));
    assert!(people.get::<Value>("rj", "a").await.unwrap().is_none());

    // A float key whose shortest JSON text serde_json's default parser reads back one
    // digit off: patching another field leaves it alone, and the patch goes through.
    let floats = db.create_collection("floats", "/f").await.unwrap();
    let f = 1.071_566_039_146_582_6e-75_f64;
    floats
        .insert(json!({"id": "x", "f": f, "n": 1}))
        .await
        .unwrap();
    floats
        .patch(
            f,
            "x",
            vec![PatchOp::Increment {
                path: "/n".into(),
                value: json!(1),
            }],
            None,
        )
        .await
        .unwrap();
    let x = floats.get::<Value>(f, "x").await.unwrap().unwrap();
    assert_eq!(x.body["n"], 2);
    // And a float reads back as the very float stored.
    assert_eq!(x.body["f"].as_f64(), Some(f));

    // A key inside an array: removing an element before it would shift it, so the patch
    // is refused; appending after it is not.
    let tagged = db.create_collection("tagged", "/tags/1").await.unwrap();
    tagged
        .insert(json!({"id": "t", "tags": ["x", "y"]}))
        .await
        .unwrap();
    let e = tagged
        .patch(
            "y",
            "t",
            vec![PatchOp::Remove {
                path: "/tags/0".into(),
            }],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), C::InvalidInput, "{e}");
    assert!(e.to_string().contains("partition key"), "{e}");
    tagged
        .patch("y", "t", set("/tags/2", json!("z")), None)
        .await
        .unwrap();
    let t = tagged.get::<Value>("y", "t").await.unwrap().unwrap();
    assert_eq!(t.body["tags"], json!(["x", "y", "z"]));
    db.drop_database().await.unwrap();
}

#[tokio::test]
async fn suite_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, clock) = clocked(dir.path());
    let client = Client::local(engine.clone());
    ttl_suite(&client, &engine, &clock).await;
    suite(&client).await;
    query_suite(&client).await;
    index_suite(&client).await;
    feed_suite(&client).await;
    transaction_suite(&client).await;
    vector_suite(&client).await;
    limits_suite(&client).await;
}

#[tokio::test]
async fn suite_through_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, clock) = clocked(dir.path());
    let service = Arc::new(DbService::new(engine.clone()));
    let server = Server::builder(Arc::new(AnonymousAccess), Arc::new(AllowAll))
        .mount(service)
        .bind(ServeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
        .spawn();
    let creds = avl_core::Credentials::new("AVLTEST", "not-checked-by-anonymous").unwrap();
    let client = Client::connect(&avl_core::ClientConfig::remote(
        server.url().to_string(),
        creds,
    ))
    .unwrap();
    assert!(client.target().starts_with("http://"));
    ttl_suite(&client, &engine, &clock).await;
    suite(&client).await;
    query_suite(&client).await;
    index_suite(&client).await;
    feed_suite(&client).await;
    transaction_suite(&client).await;
    vector_suite(&client).await;
    limits_suite(&client).await;
    server.shutdown().await.unwrap();
}

#[test]
fn documents_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        let db = engine.database("d");
        db.create().unwrap();
        let c = db.create_collection("c", "/id").unwrap();
        c.insert(json!({"id": "keep", "n": 1})).unwrap();
    }
    let engine = Engine::open(dir.path()).unwrap();
    let doc = engine
        .database("d")
        .collection("c")
        .get::<Value>("keep", "keep")
        .unwrap()
        .unwrap();
    assert_eq!(doc.body["n"], 1);
    // A second engine on the same files in this process is refused, not corrupted.
    assert!(Engine::open(dir.path()).is_err());
}

#[test]
fn continuation_tokens_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let text = "SELECT VALUE c.id FROM c WHERE c.n >= 3 ORDER BY c.n DESC";
    let (first, token) = {
        let engine = Engine::open(dir.path()).unwrap();
        let db = engine.database("d");
        db.create().unwrap();
        let c = db.create_collection("c", "/id").unwrap();
        for n in 0..20 {
            c.insert(json!({"id": format!("d{n}"), "n": n})).unwrap();
        }
        let p = c.query(text, page(5, None)).unwrap();
        (p.items, p.continuation.unwrap())
    };
    let engine = Engine::open(dir.path()).unwrap();
    let c = engine.database("d").collection("c");
    let mut rest = Vec::new();
    let mut token = Some(token);
    while let Some(t) = token {
        let p = c.query(text, page(5, Some(t))).unwrap();
        rest.extend(p.items);
        token = p.continuation;
    }
    let all: Vec<Value> = first.into_iter().chain(rest).collect();
    assert_eq!(
        all,
        (3..20)
            .rev()
            .map(|n| json!(format!("d{n}")))
            .collect::<Vec<_>>()
    );
}

#[test]
fn transactions_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    let db = engine.database("d");
    db.create().unwrap();
    let c = db.create_collection("c", "/id").unwrap();
    c.insert(json!({"id": "a", "n": 1})).unwrap();
    let mut tx = db.begin().unwrap();
    let a = tx.get::<Value>("c", "a", "a").unwrap().unwrap();
    tx.upsert(
        "c",
        json!({"id": "a", "n": a.body["n"].as_i64().unwrap() + 1}),
    )
    .unwrap();
    tx.insert("c", json!({"id": "b"})).unwrap();
    tx.commit().unwrap();
    assert_eq!(c.get::<Value>("a", "a").unwrap().unwrap().body["n"], 2);
    let mut stale = db.begin().unwrap();
    stale.get::<Value>("c", "a", "a").unwrap();
    c.upsert(json!({"id": "a", "n": 5})).unwrap();
    stale.delete("c", "b", "b", None).unwrap();
    assert_eq!(
        stale.commit().unwrap_err().code(),
        avl_core::ErrorCode::Conflict
    );
    assert!(c.get::<Value>("b", "b").unwrap().is_some());
    // A query in the transaction: its matches are checked at the commit.
    let mut tx = db.begin().unwrap();
    let page = tx
        .query(
            "c",
            "SELECT * FROM c WHERE c.n >= 2",
            aviladb::PageOptions::default(),
        )
        .unwrap();
    assert_eq!(page.items.len(), 1);
    c.upsert(json!({"id": "a", "n": 6})).unwrap();
    tx.delete("c", "b", "b", None).unwrap();
    assert_eq!(
        tx.commit().unwrap_err().code(),
        avl_core::ErrorCode::Conflict
    );
    // Dropped without commit: its snapshot goes with it.
    drop(db.begin().unwrap());
    // ETag conditions on a transaction's writes: checked at the commit, all or nothing.
    let a_tag = c.get::<Value>("a", "a").unwrap().unwrap().etag;
    let b_tag = c.get::<Value>("b", "b").unwrap().unwrap().etag;
    let mut tx = db.begin().unwrap();
    tx.patch("c", "a", "a", set("/n", json!(7)), Some(&a_tag))
        .unwrap();
    tx.delete("c", "b", "b", Some(&a_tag)).unwrap();
    assert_eq!(
        tx.commit().unwrap_err().code(),
        avl_core::ErrorCode::Conflict
    );
    assert_eq!(c.get::<Value>("a", "a").unwrap().unwrap().body["n"], 6);
    let mut tx = db.begin().unwrap();
    tx.patch("c", "a", "a", set("/n", json!(7)), Some(&a_tag))
        .unwrap();
    tx.upsert_if_match("c", json!({"id": "b", "x": 1}), Some(&b_tag))
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(c.get::<Value>("a", "a").unwrap().unwrap().body["n"], 7);
    assert_eq!(c.get::<Value>("b", "b").unwrap().unwrap().body["x"], 1);
    let mut tx = db.begin().unwrap();
    tx.delete("c", "b", "b", Some(&b_tag)).unwrap();
    assert_eq!(
        tx.commit().unwrap_err().code(),
        avl_core::ErrorCode::Conflict
    );
    assert!(c.get::<Value>("b", "b").unwrap().is_some());
}

#[test]
fn the_seed_example_creates_a_vector_index_and_it_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let query: Vec<f32> = (0..1536).map(|i| (i % 7) as f32).collect();
    {
        let engine = Engine::open(dir.path()).unwrap();
        let db = engine.database("chat");
        db.create().unwrap();
        let memories = db.create_collection("memories", "/user").unwrap();
        assert_eq!(memories.create_vector_index("embedding", 1536).unwrap(), 0);
        memories
            .insert(json!({"id": "m1", "user": "ana", "text": "olá", "embedding": query}))
            .unwrap();
        let other: Vec<f32> = (0..1536).map(|i| -((i % 5) as f32)).collect();
        memories
            .insert(json!({"id": "m2", "user": "ana", "embedding": other}))
            .unwrap();
    }
    let engine = Engine::open(dir.path()).unwrap();
    let memories = engine.database("chat").collection("memories");
    let hits = memories.vector_search("embedding", &query, 2).unwrap();
    assert_eq!(hits[0].document["id"], "m1");
    assert!(hits[0].distance.abs() < 1e-5);
    assert_eq!(hits.len(), 2);
}

#[test]
fn files_without_a_change_feed_get_one_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        let db = engine.database("d");
        db.create().unwrap();
        let c = db.create_collection("c", "/id").unwrap();
        for id in ["x", "y"] {
            c.insert(json!({"id": id})).unwrap();
        }
    }
    // Make the file look as one written before feeds existed.
    {
        let file = redb::Database::open(dir.path().join(aviladb::engine::FILE_NAME)).unwrap();
        let txn = file.begin_write().unwrap();
        assert!(
            txn.delete_table(redb::TableDefinition::<u64, &[u8]>::new("feed.1"))
                .unwrap()
        );
        txn.open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap()
            .remove("feed_version")
            .unwrap();
        txn.commit().unwrap();
    }
    let engine = Engine::open(dir.path()).unwrap();
    let c = engine.database("d").collection("c");
    let page = c.changes(&feed(FeedStart::Beginning, 10, false)).unwrap();
    let ids: Vec<&str> = page
        .changes
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["x", "y"]);
}

#[test]
fn the_writer_reclaims_expired_documents_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let clock = aviladb::ManualClock::new(1_800_000_000_000_000);
    let engine = Engine::open_with(
        dir.path(),
        aviladb::EngineOptions {
            clock: Arc::new(clock.clone()),
            ttl_sweep: std::time::Duration::from_millis(10),
            ..aviladb::EngineOptions::default()
        },
    )
    .unwrap();
    let db = engine.database("d");
    db.create().unwrap();
    let c = db.create_collection("c", "/id").unwrap();
    c.set_default_ttl(Some(30)).unwrap();
    c.insert(json!({"id": "short", "ttl": 1})).unwrap();
    c.insert(json!({"id": "default"})).unwrap();
    c.insert(json!({"id": "forever", "ttl": -1})).unwrap();
    clock.advance_secs(31);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let deleted = loop {
        let page = c.changes(&feed(FeedStart::Beginning, 10, true)).unwrap();
        let deleted: Vec<String> = page
            .changes
            .iter()
            .filter(|d| d["_deleted"] == json!(true))
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        if deleted.len() == 2 || std::time::Instant::now() > deadline {
            break deleted;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(deleted, ["short", "default"]);
    assert!(c.get::<Value>("forever", "forever").unwrap().is_some());
}

#[test]
fn concurrent_writers_catalog_changes_and_reads_agree() {
    // Writers commit on their own threads when the writer is free and through the
    // writer thread when it is not; catalog changes run alone in between. Every
    // acknowledged write is readable at once, duplicates fail alone, nothing is lost.
    const THREADS: usize = 12;
    const EACH: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        let db = engine.database("d");
        db.create().unwrap();
        db.create_collection("c", "/id").unwrap();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let engine = &engine;
                s.spawn(move || {
                    let c = engine.database("d").collection("c");
                    for i in 0..EACH {
                        let id = format!("{t}-{i}");
                        c.insert(json!({"id": id, "t": t})).unwrap();
                        // Acknowledged means visible to the next read.
                        let got = c.get::<Value>(id.as_str(), &id).unwrap().expect("visible");
                        assert_eq!(got.body["t"], t);
                        if i % 10 == 0 {
                            // A duplicate fails alone; the rest of its group commits.
                            let e = c.insert(json!({"id": id})).unwrap_err();
                            assert_eq!(e.code(), avl_core::ErrorCode::AlreadyExists, "{e}");
                        }
                    }
                });
            }
            let db = engine.database("d");
            for k in 0..6 {
                let name = format!("side{k}");
                db.create_collection(&name, "/id").unwrap();
                db.collection(&name).insert(json!({"id": "x"})).unwrap();
                if k % 2 == 0 {
                    db.collection(&name).drop_collection().unwrap();
                }
            }
        });
        let c = engine.database("d").collection("c");
        let rows: Vec<Value> = c
            .query_all(QuerySpec::new("SELECT VALUE c.id FROM c"))
            .unwrap();
        assert_eq!(rows.len(), THREADS * EACH);
        let mut seqs = std::collections::HashSet::new();
        let mut start = FeedStart::Beginning;
        loop {
            let page = c
                .changes(&FeedOptions {
                    start: start.clone(),
                    max_items: Some(1000),
                    include_deletes: false,
                })
                .unwrap();
            if page.changes.is_empty() {
                break;
            }
            for change in &page.changes {
                // Each write has a sequence number of its own.
                assert!(seqs.insert(change["_seq"].as_u64().unwrap()));
            }
            start = FeedStart::Continuation(page.continuation);
        }
        assert_eq!(seqs.len(), THREADS * EACH);
    }
    let engine = Engine::open(dir.path()).unwrap();
    let db = engine.database("d");
    let rows: Vec<Value> = db
        .collection("c")
        .query_all(QuerySpec::new("SELECT VALUE c.id FROM c"))
        .unwrap();
    assert_eq!(rows.len(), THREADS * EACH);
    let names: Vec<String> = engine
        .list_collections("d")
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
}

/// An indexed query over a few hundred documents: every page size gives the same rows in
/// the same order (the index's: value, then document key), expired documents stay out,
/// and a short page stops early.
#[test]
fn indexed_queries_keep_their_order_across_page_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, clock) = clocked(dir.path());
    let db = engine.database("b");
    db.create().unwrap();
    let c = db.create_collection("p", "/id").unwrap();
    c.create_index("by_team", &["/team"], false).unwrap();
    let mut ops = Vec::new();
    for i in 0..700 {
        // Every ninth expires in 10 s.
        let mut doc = json!({"id": format!("d{i:04}"), "team": i % 2, "score": i});
        if i % 9 == 0 {
            doc["ttl"] = json!(10);
        }
        ops.push(aviladb::WriteOp::Insert { document: doc });
        if ops.len() == 100 {
            c.write(std::mem::take(&mut ops)).unwrap();
        }
    }
    clock.advance_secs(20);
    let want: Vec<String> = (0..700)
        .filter(|i| i % 2 == 1 && i % 9 != 0)
        .map(|i| format!("d{i:04}"))
        .collect();
    let spec = || QuerySpec::new("SELECT * FROM c WHERE c.team = @t").param("t", 1);
    assert_eq!(c.explain(spec()).unwrap().access, "index");
    for size in [1, 7, 100, 1000] {
        let mut got = Vec::new();
        let mut token = None;
        loop {
            let p = c.query(spec(), page(size, token)).unwrap();
            assert!(p.items.len() <= size);
            for item in &p.items {
                assert_eq!(item["team"], 1);
                got.push(item["id"].as_str().unwrap().to_string());
            }
            match p.continuation {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(got, want, "pages of {size}");
    }
    let top = c
        .query_all::<Value>(QuerySpec::new("SELECT TOP 3 c.id FROM c WHERE c.team = 1"))
        .unwrap();
    assert_eq!(
        top,
        [
            json!({"id": "d0001"}),
            json!({"id": "d0003"}),
            json!({"id": "d0005"})
        ]
    );
}

/// Index reads follow neighbouring documents with one cursor step and look the others up:
/// runs of neighbours (forward and, for a descending order, backward), scattered
/// documents, holes left by deletes and expired documents all answer what a scan of an
/// unindexed collection answers, in every page size.
#[test]
fn index_reads_answer_as_scans_do_for_neighbours_and_scattered_documents() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, clock) = clocked(dir.path());
    let db = engine.database("n");
    db.create().unwrap();
    let indexed = db.create_collection("i", "/region").unwrap();
    indexed
        .create_index("by_block", &["/block"], false)
        .unwrap();
    indexed
        .create_index("by_spread", &["/spread"], false)
        .unwrap();
    let plain = db.create_collection("p", "/region").unwrap();
    for c in [&indexed, &plain] {
        let mut ops = Vec::new();
        for i in 0..600 {
            // Blocks of 50 documents written together, across two partitions; every
            // eleventh expires in 10 s.
            let mut doc = json!({
                "id": format!("d{i:04}"),
                "region": if i % 5 == 0 { "eu" } else { "sa" },
                "block": i / 50,
                "spread": (i * 7) % 13,
            });
            if i % 11 == 0 {
                doc["ttl"] = json!(10);
            }
            ops.push(aviladb::WriteOp::Insert { document: doc });
            if ops.len() == 100 {
                c.write(std::mem::take(&mut ops)).unwrap();
            }
        }
        for i in (120..180).step_by(4) {
            let region = if i % 5 == 0 { "eu" } else { "sa" };
            c.delete(region, &format!("d{i:04}"), None).unwrap();
        }
    }
    clock.advance_secs(20);
    let cases = [
        "SELECT c.id, c.block FROM c WHERE c.block = 3",
        "SELECT c.id, c.block FROM c WHERE c.block BETWEEN 2 AND 4 ORDER BY c.block",
        "SELECT c.id, c.block FROM c WHERE c.block >= 1 AND c.block < 5 ORDER BY c.block DESC",
        "SELECT c.id, c.spread FROM c WHERE c.spread = 6",
        "SELECT c.id, c.spread FROM c WHERE c.spread IN (2, 9) ORDER BY c.spread DESC",
    ];
    for text in cases {
        let spec = QuerySpec::new(text);
        assert_eq!(
            indexed.explain(spec.clone()).unwrap().access,
            "index",
            "{text}"
        );
        let sorted = |mut rows: Vec<Value>| {
            rows.sort_by_key(|r| r["id"].to_string());
            rows
        };
        let want = sorted(plain.query_all::<Value>(spec.clone()).unwrap());
        assert!(!want.is_empty(), "{text}");
        for size in [1, 6, 1000] {
            let mut got = Vec::new();
            let mut token = None;
            loop {
                let p = indexed.query(spec.clone(), page(size, token)).unwrap();
                got.extend(p.items);
                match p.continuation {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            let order = |rows: &[Value]| {
                rows.iter()
                    .map(|r| r["block"].as_i64().or(r["spread"].as_i64()))
                    .collect::<Vec<_>>()
            };
            if text.contains("DESC") {
                let keys = order(&got);
                assert!(keys.windows(2).all(|w| w[0] >= w[1]), "{text}");
            }
            assert_eq!(sorted(got), want, "{text}, pages of {size}");
        }
    }
}

/// The typed writes of an in-process collection (`insert(&T)` and the like) check and
/// store exactly what a `WriteOp` with the document as a `Value` (`serde_json::to_value`)
/// does: every check answers alike, and the stored documents read back alike, with or
/// without indexes, for partition keys at the top, nested, or an `f32`. Typed values whose
/// serialization is not the value's (an `f32` is widened to `f64` by `to_value`, a repeated
/// key is kept once, a number past 64 bits is refused) and raw JSON with whitespace are
/// among the cases: a faster typed path has to keep to this.
#[test]
fn typed_writes_check_and_store_as_value_writes_do() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Typed {
        id: String,
        region: String,
        ratio: f32,
        #[serde(flatten)]
        extra: serde_json::Map<String, Value>,
    }
    #[derive(Serialize)]
    struct Huge {
        id: String,
        region: String,
        count: u128,
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    let db = engine.database("t");
    db.create().unwrap();
    let frame = serde_json::to_vec(
        &json!({"id": "big", "region": "eu", "loc": {"region": "eu"}, "ratio": 0.5, "pad": ""}),
    )
    .unwrap()
    .len();
    let big = |id: &str, extra: usize| json!({"id": id, "region": "eu", "loc": {"region": "eu"}, "ratio": 0.5, "pad": "a".repeat(aviladb::MAX_DOCUMENT_BYTES - frame + extra)});
    let docs = vec![
        json!({"id": "a", "region": "eu", "loc": {"region": "eu"}, "ratio": 0.5, "score": 1}),
        json!({"id": "b", "region": "eu", "loc": {"region": "eu"}, "ratio": 0.5, "_etag": "x", "_ts": 5, "_seq": 9, "score": 2}),
        json!({"id": "c", "region": "sa", "loc": {"region": "sa"}, "ratio": 0.5, "ttl": 30}),
        json!({"id": "d", "region": "eu", "loc": {"region": "eu"}, "ratio": 0.5, "ttl": 0}),
        json!({"id": "e", "loc": {}}),
        json!({"region": "eu", "loc": {"region": "eu"}, "ratio": 0.5}),
        json!({"id": 5, "region": "eu", "loc": {"region": "eu"}, "ratio": 0.5}),
        json!({"id": "", "region": "eu", "loc": {"region": "eu"}, "ratio": 0.5}),
        json!({"id": "f", "region": ["eu"], "loc": {"region": ["eu"]}, "ratio": 0.5}),
        json!({"id": "a", "region": "eu", "loc": {"region": "eu"}, "ratio": 0.5}),
        json!([1, 2]),
        json!("text"),
        json!(null),
        big("big", 0),
        big("big2", 1),
    ];
    // `ratio` as an f32 (1.1 is 1.100000023841858 as a Value), and `region` twice (the
    // flattened map's comes last).
    let typed_doc = Typed {
        id: "g".into(),
        region: "eu".into(),
        ratio: 1.1,
        extra: [
            ("loc".to_string(), json!({"region": "eu"})),
            ("region".to_string(), json!("sa")),
        ]
        .into_iter()
        .collect(),
    };
    let huge = Huge {
        id: "h".into(),
        region: "eu".into(),
        count: u128::from(u64::MAX) + 1,
    };
    let spaced = big("i", 0).to_string().replacen(',', ",   ", 1);
    let raw = |text: String| serde_json::value::RawValue::from_string(text).unwrap();
    for (n, (pk, indexed)) in [
        ("/region", false),
        ("/region", true),
        ("/loc/region", true),
        ("/id", false),
        ("/ratio", false),
    ]
    .into_iter()
    .enumerate()
    {
        let typed = db.create_collection(&format!("typed{n}"), pk).unwrap();
        let plain = db.create_collection(&format!("plain{n}"), pk).unwrap();
        // Written with `Value`s given away (`insert(doc)`, no copy) where `typed` borrows.
        let given = db.create_collection(&format!("given{n}"), pk).unwrap();
        if indexed {
            typed.create_index("by_score", &["/score"], false).unwrap();
            plain.create_index("by_score", &["/score"], false).unwrap();
            given.create_index("by_score", &["/score"], false).unwrap();
        }
        let agree = |a: &aviladb::Result<aviladb::WriteResult>,
                     b: aviladb::Result<aviladb::WriteResult>,
                     what: &str| match (a, b) {
            (Ok(x), Ok(y)) => assert_eq!(x.id, y.id, "{pk}: {what}"),
            (Err(x), Err(y)) => assert_eq!(x.to_string(), y.to_string(), "{pk}: {what}"),
            (x, y) => panic!("{pk}: {what}: borrowed {x:?}, given {y:?}"),
        };
        let same = |a: aviladb::Result<aviladb::WriteResult>, doc: Value, what: &str| {
            let b = plain
                .write(vec![WriteOp::Insert { document: doc }])
                .map(|mut r| r.remove(0));
            match (a, b) {
                (Ok(x), Ok(y)) => assert_eq!(x.id, y.id),
                (Err(x), Err(y)) => assert_eq!(x.to_string(), y.to_string(), "{pk}: {what}"),
                (x, y) => panic!("{pk}: {what}: typed {x:?}, value {y:?}"),
            }
        };
        for doc in &docs {
            let borrowed = typed.insert(doc);
            agree(&borrowed, given.insert(doc.clone()), &doc.to_string());
            same(borrowed, doc.clone(), &doc.to_string());
        }
        let typed_value = serde_json::to_value(&typed_doc).unwrap();
        let borrowed = typed.insert(&typed_doc);
        agree(&borrowed, given.insert(typed_value.clone()), "typed");
        same(borrowed, typed_value, "typed");
        match serde_json::to_value(&huge) {
            Ok(v) => same(typed.insert(&huge), v, "u128"),
            Err(_) => assert!(typed.insert(&huge).is_err()),
        }
        for text in [format!("  {spaced}"), "  [1, 2]".to_string()] {
            let doc: Value = serde_json::from_str(&text).unwrap();
            let borrowed = typed.insert(&raw(text.clone()));
            agree(&borrowed, given.insert(doc.clone()), "raw");
            same(borrowed, doc, "raw");
        }
        // The typed document reads back as the type, the last `region` kept.
        let pk_value = match pk {
            "/id" => json!("g"),
            "/ratio" => json!(1.1f32),
            "/loc/region" => json!("eu"),
            _ => json!("sa"),
        };
        let back = typed
            .get::<Typed>(pk_value.clone(), "g")
            .unwrap()
            .unwrap()
            .body;
        assert_eq!(back.region, "sa");
        assert_eq!(back.ratio, 1.1f32);
        assert_eq!(
            back,
            plain.get::<Typed>(pk_value, "g").unwrap().unwrap().body
        );
        // Upserts and replaces, with a stale ETag too.
        let changed =
            json!({"id": "a", "region": "eu", "loc": {"region": "eu"}, "ratio": 0.5, "score": 7});
        typed.upsert(&changed).unwrap();
        plain.upsert(&changed).unwrap();
        given.upsert(changed.clone()).unwrap();
        let stale = typed
            .replace(&changed, Some("0000000000000001"))
            .unwrap_err();
        let stale_given = given
            .replace(changed.clone(), Some("0000000000000001"))
            .unwrap_err();
        assert_eq!(stale.to_string(), stale_given.to_string());
        let stale_plain = plain
            .replace(&changed, Some("0000000000000001"))
            .unwrap_err();
        assert_eq!(stale.to_string(), stale_plain.to_string());
        let missing = json!({"id": "zz", "region": "eu", "loc": {"region": "eu"}, "ratio": 0.5});
        assert_eq!(
            typed.replace(&missing, None).unwrap_err().to_string(),
            plain.replace(&missing, None).unwrap_err().to_string()
        );
        assert_eq!(
            typed.replace(&missing, None).unwrap_err().to_string(),
            given
                .replace(missing.clone(), None)
                .unwrap_err()
                .to_string()
        );
        let renamed =
            json!({"id": "c", "region": "sa", "loc": {"region": "sa"}, "ratio": 0.5, "score": 3});
        typed.replace(&renamed, None).unwrap();
        plain.replace(&renamed, None).unwrap();
        given.replace(renamed, None).unwrap();
        let all = |c: &aviladb::Collection| {
            let mut rows: Vec<Value> = c.query_all("SELECT * FROM c").unwrap();
            for r in &mut rows {
                let m = r.as_object_mut().unwrap();
                for p in ["_etag", "_ts", "_seq"] {
                    assert!(m.remove(p).is_some());
                }
            }
            rows.sort_by_key(|r| r["id"].to_string());
            rows
        };
        let stored = all(&typed);
        assert_eq!(stored, all(&plain), "{pk}");
        assert_eq!(stored, all(&given), "{pk}");
        // a, b, c, big, g and i; with the id as partition key, e and f too; with ratio,
        // f, but not e (no ratio).
        let expected = match pk {
            "/id" => 8,
            "/ratio" => 7,
            _ => 6,
        };
        assert_eq!(stored.len(), expected, "{pk}");
        if indexed {
            let q = || QuerySpec::new("SELECT c.id FROM c WHERE c.score = 7");
            assert_eq!(typed.explain(q()).unwrap().access, "index");
            assert_eq!(typed.query_all::<Value>(q()).unwrap(), [json!({"id": "a"})]);
        }
    }
}

/// A page stops once it holds `PAGE_BYTES` (4 MiB) of documents, whatever its item count,
/// and the next page goes on from there: for whole documents (whose stored size is known),
/// for a projection (measured as built), in key order, sorted in memory and read through
/// an index.
#[test]
fn pages_stop_at_four_mib_and_go_on_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path().join("db")).unwrap();
    let db = engine.database("big");
    db.create().unwrap();
    let c = db.create_collection("blobs", "/id").unwrap();
    // Ten documents of 1 MiB (a 1 MiB string) and ten small ones, all with n.
    let mib = "x".repeat(1 << 20);
    for i in 0..20 {
        let blob = if i % 2 == 0 {
            mib.clone()
        } else {
            "small".into()
        };
        c.insert(json!({"id": format!("d{i:02}"), "n": i, "blob": blob}))
            .unwrap();
    }
    let pages = |text: &str| -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let p = c.query(QuerySpec::new(text), page(1000, token)).unwrap();
            out.push(
                p.items
                    .iter()
                    .map(|d| d["id"].as_str().unwrap().to_string())
                    .collect(),
            );
            match p.continuation {
                Some(t) => token = Some(t),
                None => return out,
            }
        }
    };
    let ids = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|i| format!("d{i:02}")).collect()
    };
    // Four big documents reach 4 MiB: the page closes before the next row.
    let want = vec![ids(0..7), ids(7..15), ids(15..20)];
    assert_eq!(pages("SELECT * FROM c"), want);
    assert_eq!(pages("SELECT c.id, c.blob FROM c"), want);
    assert_eq!(pages("SELECT * FROM c ORDER BY c.n"), want);
    // Read through an index: the same pages.
    c.create_index("by_n", &["/n"], false).unwrap();
    let indexed = "SELECT * FROM c WHERE c.n >= 0";
    assert_eq!(c.explain(QuerySpec::new(indexed)).unwrap().access, "index");
    assert_eq!(pages(indexed), want);
    // Without the blobs, one page holds everything.
    assert_eq!(pages("SELECT c.id FROM c"), vec![ids(0..20)]);
    let all: Vec<Value> = c.query_all("SELECT * FROM c").unwrap();
    assert_eq!(all.len(), 20);
    assert!(
        all.iter()
            .all(|d| d["_etag"].as_str().is_some_and(|e| e.len() == 16))
    );

    // Change-feed pages stop at 4 MiB too (commit order is the ids' order here).
    let mut feed_pages = Vec::new();
    let mut start = FeedStart::Beginning;
    loop {
        let page = c.changes(&feed(start, 1000, false)).unwrap();
        if page.changes.is_empty() {
            break;
        }
        feed_pages.push(
            page.changes
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>(),
        );
        start = FeedStart::Continuation(page.continuation);
    }
    assert_eq!(feed_pages, want);

    // A batch get answers at most 16 MiB of JSON (MAX_BATCH_BYTES, as a batch write
    // takes): 10 MiB of documents are read, 17 MiB are TooLarge.
    let key = |id: String| DocKey {
        partition_key: json!(id),
        id,
    };
    let first: Vec<DocKey> = ids(0..20).into_iter().map(key).collect();
    assert_eq!(c.get_many::<Value>(&first).unwrap().len(), 20);
    for i in 20..27 {
        c.insert(json!({"id": format!("d{i:02}"), "n": i, "blob": mib}))
            .unwrap();
    }
    let every: Vec<DocKey> = ids(0..27).into_iter().map(key).collect();
    let e = c.get_many::<Value>(&every).unwrap_err();
    assert!(matches!(e, DbError::TooLarge(_)), "{e}");
    assert!(e.to_string().contains("fewer"), "{e}");
}
