//! Every served request is counted and timed through the `metrics` facade, labelled with
//! service, operation and outcome. Its own test binary: it installs a global recorder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use avl_core::ErrorCode;
use avl_core::serve::{METRIC_DURATION, METRIC_REQUESTS};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use support::NotesRequest as Req;
use support::server::{Options, start};

fn labels_of(key: &CompositeKey) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = key
        .key()
        .labels()
        .map(|l| (l.key().to_string(), l.value().to_string()))
        .collect();
    labels.sort();
    labels
}

fn find<'a>(
    snapshot: &'a [(CompositeKey, DebugValue)],
    kind: MetricKind,
    name: &str,
    op: &str,
    outcome: &str,
) -> Option<&'a DebugValue> {
    snapshot.iter().find_map(|(key, value)| {
        let labels = labels_of(key);
        let want = vec![
            ("op".to_string(), op.to_string()),
            ("outcome".to_string(), outcome.to_string()),
            ("service".to_string(), "notes".to_string()),
        ];
        (key.kind() == kind && key.key().name() == name && labels == want).then_some(value)
    })
}

#[tokio::test]
async fn served_requests_are_counted_and_timed_by_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let server = start(Options::default()).await;
    let client = server.root_client();
    for _ in 0..3 {
        client.call(Req::Echo { text: "x".into() }).await.unwrap();
    }
    let e = client
        .call(Req::Get {
            key: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    let e = client
        .call(Req::Fail {
            code: ErrorCode::RateLimited,
            field: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::RateLimited);
    server.shutdown().await;

    let snapshot: Vec<(CompositeKey, DebugValue)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _unit, _desc, value)| (key, value))
        .collect();
    let count = |op, outcome| find(&snapshot, MetricKind::Counter, METRIC_REQUESTS, op, outcome);
    assert_eq!(count("Echo", "ok"), Some(&DebugValue::Counter(3)));
    assert_eq!(count("Get", "NotFound"), Some(&DebugValue::Counter(1)));
    assert_eq!(count("Fail", "RateLimited"), Some(&DebugValue::Counter(1)));
    match find(
        &snapshot,
        MetricKind::Histogram,
        METRIC_DURATION,
        "Echo",
        "ok",
    ) {
        Some(DebugValue::Histogram(samples)) => {
            assert_eq!(samples.len(), 3);
            assert!(
                samples
                    .iter()
                    .all(|s| s.into_inner() > 0.0 && s.into_inner() < 60.0)
            );
        }
        other => panic!("no latency histogram: {other:?}"),
    }
}
