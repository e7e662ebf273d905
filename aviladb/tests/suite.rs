//! One suite, in-process and through a server: the client API behaves the same over both
//! transports. Bad input gets a clear error and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aviladb::{Client, DbError, DbService, DocKey, Engine, PatchOp, WriteOp};
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
    for name in ["", "bad name", "-x", &"x".repeat(129)] {
        assert_eq!(
            code(&client.create_database(name).await.unwrap_err()),
            C::InvalidInput,
            "{name:?}"
        );
    }
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

#[tokio::test]
async fn suite_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::local(Engine::open(dir.path()).unwrap());
    suite(&client).await;
}

#[tokio::test]
async fn suite_through_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(DbService::new(Engine::open(dir.path()).unwrap()));
    let server = Server::builder(Arc::new(AnonymousAccess), Arc::new(AllowAll))
        .mount(service)
        .bind(ServeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let url = server.url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let creds = avl_core::Credentials::new("AVLTEST", "not-checked-by-anonymous").unwrap();
    let client = Client::connect(&avl_core::ClientConfig::remote(url, creds)).unwrap();
    assert!(client.target().starts_with("http://"));
    suite(&client).await;
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

#[test]
fn documents_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        let db = engine.database("d");
        db.create().unwrap();
        let c = db.create_collection("c", "/id").unwrap();
        c.insert(&json!({"id": "keep", "n": 1})).unwrap();
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
