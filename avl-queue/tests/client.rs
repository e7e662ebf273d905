//! The async client, the same suite in-process and through a server over HTTP: batches
//! with a result per entry, seeking, purging and deleting queues, errors with their
//! codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use avl_core::ErrorCode;
use avl_core::serve::{AllowAll, AnonymousAccess, ServeConfig, Server};
use avl_queue::{
    Engine, EntryResult, Message, QueueClient, QueueConfig, QueueService, SeekTo, SendMessage,
    TopicConfig, VisibilityEntry,
};

async fn suite(client: &QueueClient) {
    // Topics: publish, seek, lag; an unknown group is NotFound.
    client
        .create_topic("t", TopicConfig::default())
        .await
        .unwrap();
    let batch: Vec<Message> = (0..5u8).map(|i| Message::new(vec![i])).collect();
    client.publish("t", batch).await.unwrap();
    assert_eq!(
        client.lag("g", "t").await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    let lag = client
        .seek("g", "t", None, SeekTo::Beginning)
        .await
        .unwrap();
    assert_eq!(lag[0].lag, 5);
    let lag = client
        .seek("g", "t", Some(0), SeekTo::Offset(3))
        .await
        .unwrap();
    assert_eq!((lag[0].committed, lag[0].lag), (Some(3), 2));
    let err = client
        .seek("g", "t", Some(0), SeekTo::Offset(9))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    let lag = client.seek("g", "t", None, SeekTo::End).await.unwrap();
    assert_eq!(lag[0].lag, 0);
    // Reads wait up to 20 s; longer is refused, as for queues.
    let err = client
        .read("t", 0, 0, 10, Duration::from_secs(21))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert_eq!(
        client
            .read("t", 0, 0, 10, Duration::from_secs(20))
            .await
            .unwrap()
            .len(),
        5
    );

    // Queues: batches answer per entry.
    client
        .create_queue("jobs", QueueConfig::default())
        .await
        .unwrap();
    let sent = client
        .send(
            "jobs",
            (0..3u8).map(|i| SendMessage::new(vec![i])).collect(),
        )
        .await
        .unwrap();
    assert!(sent.iter().all(|r| matches!(r, EntryResult::Ok { .. })));
    let got = client
        .receive("jobs", 10, None, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    let changed = client
        .change_visibility_batch(
            "jobs",
            vec![
                VisibilityEntry {
                    receipt_handle: got[0].receipt_handle.clone(),
                    secs: 0,
                },
                VisibilityEntry {
                    receipt_handle: "1-2".into(),
                    secs: 0,
                },
            ],
        )
        .await
        .unwrap();
    assert!(matches!(changed[0], EntryResult::Ok { .. }));
    assert!(
        matches!(&changed[1], EntryResult::Err { code, .. } if code == "InvalidInput"),
        "{changed:?}"
    );
    let handles: Vec<String> = got[1..].iter().map(|r| r.receipt_handle.clone()).collect();
    let deleted = client.delete_messages("jobs", handles).await.unwrap();
    assert!(deleted.iter().all(|r| matches!(r, EntryResult::Ok { .. })));
    let err = client
        .delete_messages("jobs", vec!["1-2".into(); 11])
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    let err = client
        .receive("jobs", 1, None, Duration::from_secs(21))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert_eq!(client.queue_stats("jobs").await.unwrap().available, 1);
    client.purge("jobs").await.unwrap();
    assert_eq!(client.queue_stats("jobs").await.unwrap().available, 0);
    client.delete_queue("jobs").await.unwrap();
    assert_eq!(
        client.queue_stats("jobs").await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        client.purge("jobs").await.unwrap_err().code(),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn the_client_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(QueueService::new(Engine::open(dir.path()).unwrap()));
    suite(&QueueClient::new(avl_core::Client::local(service))).await;
}

#[tokio::test]
async fn the_client_through_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(QueueService::new(Engine::open(dir.path()).unwrap()));
    let server = Server::builder(Arc::new(AnonymousAccess), Arc::new(AllowAll))
        .mount(service)
        .bind(ServeConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
        .spawn();
    let creds = avl_core::Credentials::new("AVLTEST", "not-checked-by-anonymous").unwrap();
    let config = avl_core::ClientConfig::remote(server.url().to_string(), creds);
    let transport = avl_core::connect::<QueueService>(&config).unwrap();
    suite(&QueueClient::new(avl_core::Client::new(transport))).await;
    server.shutdown().await.unwrap();
}
