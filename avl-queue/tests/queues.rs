//! Queues against a model with a controllable clock: leases, expiry, redelivery, receive
//! counts, dead letters after exactly N receives, FIFO group order, deduplication at
//! 4:59 and 5:01 (and by content), delays, batches, single-use receipt handles, restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use avl_queue::{DeadLetter, Engine, ManualClock, QueueConfig, QueueError, SendMessage};
use proptest::prelude::*;

const START: u64 = 1_800_000_000_000;

fn engine(dir: &std::path::Path) -> (Engine, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at(START));
    (Engine::open_with_clock(dir, clock.clone()).unwrap(), clock)
}

fn standard() -> QueueConfig {
    QueueConfig {
        visibility_timeout_secs: 30,
        ..QueueConfig::default()
    }
}

fn no_wait() -> Duration {
    Duration::ZERO
}

#[derive(Debug, Clone)]
enum Op {
    Send(u8, u64),
    Receive(usize, Option<u64>),
    Delete(usize),
    Hide(usize, u64),
    Advance(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<u8>(), prop_oneof![Just(0u64), 1u64..20]).prop_map(|(b, d)| Op::Send(b, d)),
        3 => (1usize..=10, proptest::option::of(0u64..40)).prop_map(|(m, v)| Op::Receive(m, v)),
        2 => (0usize..8).prop_map(Op::Delete),
        1 => (0usize..8, 0u64..40).prop_map(|(h, s)| Op::Hide(h, s)),
        2 => (0u64..45).prop_map(Op::Advance),
        1 => Just(Op::Reopen),
    ]
}

/// Every message of a dead-letter queue, received and deleted: (body, receives before
/// it arrived there), sorted.
fn dead_letters(q: &Engine, queue: &str) -> Vec<(Vec<u8>, u32)> {
    let mut got = Vec::new();
    loop {
        let batch = q.receive(queue, 10, Some(600), no_wait()).unwrap();
        if batch.is_empty() {
            break;
        }
        for r in batch {
            q.delete_message(queue, &r.receipt_handle).unwrap();
            got.push((r.body, r.receive_count - 1));
        }
    }
    got.sort();
    got
}

#[derive(Debug, Clone)]
struct ModelMessage {
    body: Vec<u8>,
    visible_at: u64,
    receive_count: u32,
    /// The handle of its current lease, if one was given.
    handle: Option<String>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A standard queue with a dead-letter queue after 3 receives.
    #[test]
    fn a_standard_queue_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..50)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, mut clock) = engine(dir.path());
        q.create_queue("dead", standard()).unwrap();
        q.create_queue("jobs", QueueConfig {
            dead_letter: Some(DeadLetter { queue: "dead".into(), max_receive_count: 3 }),
            ..standard()
        }).unwrap();
        let mut now = START;
        let mut model: BTreeMap<u64, ModelMessage> = BTreeMap::new();
        let mut dead: Vec<(Vec<u8>, u32)> = Vec::new();
        // Handles ever given, live or not.
        let mut handles: Vec<(u64, String)> = Vec::new();
        for op in ops {
            match op {
                Op::Send(b, delay) => {
                    let id = q.send("jobs", SendMessage::new(vec![b]).delayed(delay)).unwrap();
                    prop_assert!(!model.contains_key(&id));
                    model.insert(id, ModelMessage { body: vec![b], visible_at: now + delay * 1000, receive_count: 0, handle: None });
                }
                Op::Receive(max, vt) => {
                    let got = q.receive("jobs", max, vt, no_wait()).unwrap();
                    // What the model offers, in the order messages became visible; those
                    // received 3 times go to the dead-letter queue instead.
                    let mut ready: Vec<(u64, u64)> = model.iter()
                        .filter(|(_, m)| m.visible_at <= now)
                        .map(|(id, m)| (m.visible_at, *id))
                        .collect();
                    ready.sort_unstable();
                    let mut want = Vec::new();
                    for (_, id) in ready {
                        if want.len() == max {
                            break;
                        }
                        let m = &model[&id];
                        if m.receive_count >= 3 {
                            let m = model.remove(&id).unwrap();
                            dead.push((m.body, m.receive_count));
                            continue;
                        }
                        want.push(id);
                    }
                    let got_ids: Vec<u64> = got.iter().map(|r| r.id).collect();
                    prop_assert_eq!(&got_ids, &want);
                    for r in got {
                        let m = model.get_mut(&r.id).unwrap();
                        m.receive_count += 1;
                        prop_assert_eq!(r.receive_count, m.receive_count);
                        prop_assert_eq!(&r.body, &m.body);
                        m.visible_at = now + vt.unwrap_or(30) * 1000;
                        m.handle = Some(r.receipt_handle.clone());
                        handles.push((r.id, r.receipt_handle));
                    }
                }
                Op::Delete(i) => {
                    let Some((id, handle)) = handles.get(i).cloned() else { continue };
                    let live = model.get(&id).is_some_and(|m| m.handle.as_deref() == Some(handle.as_str()));
                    match q.delete_message("jobs", &handle) {
                        Ok(()) => {
                            prop_assert!(live, "a stale handle deleted a message");
                            model.remove(&id);
                        }
                        Err(QueueError::InvalidReceiptHandle(_)) => prop_assert!(!live, "a live handle was refused"),
                        Err(e) => panic!("{e}"),
                    }
                }
                Op::Hide(i, secs) => {
                    let Some((id, handle)) = handles.get(i).cloned() else { continue };
                    let live = model.get(&id).is_some_and(|m| {
                        m.handle.as_deref() == Some(handle.as_str()) && m.visible_at > now
                    });
                    match q.change_visibility("jobs", &handle, secs) {
                        Ok(()) => {
                            prop_assert!(live);
                            model.get_mut(&id).unwrap().visible_at = now + secs * 1000;
                        }
                        Err(QueueError::InvalidReceiptHandle(_)) => prop_assert!(!live),
                        Err(e) => panic!("{e}"),
                    }
                }
                Op::Advance(secs) => {
                    clock.advance(Duration::from_secs(secs));
                    now += secs * 1000;
                }
                Op::Reopen => {
                    drop(q);
                    let clock2 = Arc::new(ManualClock::at(now));
                    q = Engine::open_with_clock(dir.path(), clock2.clone()).unwrap();
                    clock = clock2;
                }
            }
            let stats = q.queue_stats("jobs").unwrap();
            prop_assert_eq!(stats.available + stats.in_flight + stats.delayed, model.len() as u64);
            let dead_stats = q.queue_stats("dead").unwrap();
            prop_assert_eq!(dead_stats.available + dead_stats.delayed, dead.len() as u64);
        }
        // The dead letters are the messages received 3 times, with their counts.
        dead.sort();
        prop_assert_eq!(dead_letters(&q, "dead"), dead);
    }
}

#[derive(Debug, Clone)]
enum FifoOp {
    /// Group, body, explicit deduplication id (else by content).
    Send(u8, u8, Option<u8>),
    Receive(usize, Option<u64>),
    /// Handles by index, deleted in one batch.
    DeleteBatch(Vec<usize>),
    /// A nack: visible again in this many seconds.
    Nack(usize, u64),
    Advance(u64),
    Reopen,
}

fn fifo_op() -> impl Strategy<Value = FifoOp> {
    prop_oneof![
        4 => (0u8..3, 0u8..6, proptest::option::of(0u8..4))
            .prop_map(|(g, b, d)| FifoOp::Send(g, b, d)),
        4 => (1usize..=10, proptest::option::of(0u64..40)).prop_map(|(m, v)| FifoOp::Receive(m, v)),
        2 => proptest::collection::vec(0usize..10, 1..4).prop_map(FifoOp::DeleteBatch),
        1 => (0usize..10, 0u64..40).prop_map(|(h, s)| FifoOp::Nack(h, s)),
        2 => prop_oneof![0u64..45, 250u64..320].prop_map(FifoOp::Advance),
        1 => Just(FifoOp::Reopen),
    ]
}

#[derive(Debug, Clone)]
struct FifoMessage {
    group: u8,
    body: Vec<u8>,
    visible_at: u64,
    receive_count: u32,
    handle: Option<String>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A FIFO queue (deduplication by id and by content, a FIFO dead-letter queue after
    /// 3 receives): one message of a group out at a time, the oldest first; duplicates
    /// within 5 minutes answer the first message's id; batch deletes and nacks.
    #[test]
    fn a_fifo_queue_behaves_like_the_model(ops in proptest::collection::vec(fifo_op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, mut clock) = engine(dir.path());
        let fifo = QueueConfig { fifo: true, content_based_deduplication: true, ..standard() };
        q.create_queue("dead.fifo", fifo.clone()).unwrap();
        q.create_queue("jobs.fifo", QueueConfig {
            dead_letter: Some(DeadLetter { queue: "dead.fifo".into(), max_receive_count: 3 }),
            ..fifo
        }).unwrap();
        let mut now = START;
        let mut model: BTreeMap<u64, FifoMessage> = BTreeMap::new();
        let mut dedup: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut dead: Vec<(Vec<u8>, u32)> = Vec::new();
        let mut handles: Vec<(u64, String)> = Vec::new();
        for op in ops {
            match op {
                FifoOp::Send(group, body, id) => {
                    let body = vec![b'a' + body];
                    let mut m = SendMessage::new(body.clone()).in_group(format!("g{group}"));
                    let key = match id {
                        Some(d) => {
                            m = m.dedup(format!("d{d}"));
                            format!("d{d}")
                        }
                        None => format!("content {body:?}"),
                    };
                    let got = q.send("jobs.fifo", m).unwrap();
                    match dedup.get(&key) {
                        Some(&(first, expires)) if expires > now => {
                            prop_assert_eq!(got, first, "a duplicate within 5 minutes");
                        }
                        _ => {
                            prop_assert!(!model.contains_key(&got));
                            prop_assert!(model.keys().all(|&k| k < got), "ids rise");
                            dedup.insert(key, (got, now + 5 * 60 * 1000));
                            model.insert(got, FifoMessage { group, body, visible_at: now, receive_count: 0, handle: None });
                        }
                    }
                }
                FifoOp::Receive(max, vt) => {
                    let got = q.receive("jobs.fifo", max, vt, no_wait()).unwrap();
                    // Each group's oldest message, if it is not out on a lease; those
                    // received 3 times go to the dead-letter queue and their group's
                    // next one is looked at.
                    let mut want = Vec::new();
                    let mut leased_groups = std::collections::HashSet::new();
                    loop {
                        let mut heads = Vec::new();
                        let mut seen = std::collections::HashSet::new();
                        for (&id, m) in &model {
                            if seen.insert(m.group) && m.visible_at <= now && !leased_groups.contains(&m.group) {
                                heads.push(id);
                            }
                        }
                        if heads.is_empty() {
                            break;
                        }
                        let mut dropped = false;
                        for id in heads {
                            if want.len() == max {
                                break;
                            }
                            if model[&id].receive_count >= 3 {
                                let m = model.remove(&id).unwrap();
                                dead.push((m.body, m.receive_count));
                                dropped = true;
                                continue;
                            }
                            leased_groups.insert(model[&id].group);
                            want.push(id);
                        }
                        if !dropped || want.len() >= max {
                            break;
                        }
                    }
                    let got_ids: Vec<u64> = got.iter().map(|r| r.id).collect();
                    prop_assert_eq!(&got_ids, &want);
                    for r in got {
                        let m = model.get_mut(&r.id).unwrap();
                        m.receive_count += 1;
                        prop_assert_eq!(r.receive_count, m.receive_count);
                        prop_assert_eq!(&r.body, &m.body);
                        prop_assert_eq!(r.group_id.clone(), Some(format!("g{}", m.group)));
                        m.visible_at = now + vt.unwrap_or(30) * 1000;
                        m.handle = Some(r.receipt_handle.clone());
                        handles.push((r.id, r.receipt_handle));
                    }
                }
                FifoOp::DeleteBatch(picks) => {
                    let chosen: Vec<(u64, String)> = picks.iter().filter_map(|&i| handles.get(i).cloned()).collect();
                    if chosen.is_empty() {
                        continue;
                    }
                    let results = q.delete_message_batch(
                        "jobs.fifo",
                        chosen.iter().map(|(_, h)| h.clone()).collect(),
                    ).unwrap();
                    prop_assert_eq!(results.len(), chosen.len());
                    for ((id, handle), result) in chosen.iter().zip(results) {
                        let live = model.get(id).is_some_and(|m| m.handle.as_deref() == Some(handle.as_str()));
                        match result {
                            Ok(()) => {
                                prop_assert!(live, "a stale handle deleted a message");
                                model.remove(id);
                            }
                            Err(QueueError::InvalidReceiptHandle(_)) => prop_assert!(!live, "a live handle was refused"),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                FifoOp::Nack(i, secs) => {
                    let Some((id, handle)) = handles.get(i).cloned() else { continue };
                    let live = model.get(&id).is_some_and(|m| {
                        m.handle.as_deref() == Some(handle.as_str()) && m.visible_at > now
                    });
                    match q.nack("jobs.fifo", &handle, secs) {
                        Ok(()) => {
                            prop_assert!(live);
                            model.get_mut(&id).unwrap().visible_at = now + secs * 1000;
                        }
                        Err(QueueError::InvalidReceiptHandle(_)) => prop_assert!(!live),
                        Err(e) => panic!("{e}"),
                    }
                }
                FifoOp::Advance(secs) => {
                    clock.advance(Duration::from_secs(secs));
                    now += secs * 1000;
                }
                FifoOp::Reopen => {
                    drop(q);
                    let clock2 = Arc::new(ManualClock::at(now));
                    q = Engine::open_with_clock(dir.path(), clock2.clone()).unwrap();
                    clock = clock2;
                }
            }
            let stats = q.queue_stats("jobs.fifo").unwrap();
            prop_assert_eq!(stats.available + stats.in_flight + stats.delayed, model.len() as u64);
            let dead_stats = q.queue_stats("dead.fifo").unwrap();
            prop_assert_eq!(dead_stats.available + dead_stats.in_flight, dead.len() as u64);
        }
        // The dead letters are the messages received 3 times, with their counts.
        dead.sort();
        prop_assert_eq!(dead_letters(&q, "dead.fifo"), dead);
    }
}

#[test]
fn dead_letters_after_exactly_n_receives_and_redrive() {
    let dir = tempfile::tempdir().unwrap();
    let (q, clock) = engine(dir.path());
    q.create_queue("jobs-dlq", standard()).unwrap();
    q.create_queue(
        "jobs",
        QueueConfig {
            dead_letter: Some(DeadLetter {
                queue: "jobs-dlq".into(),
                max_receive_count: 2,
            }),
            ..standard()
        },
    )
    .unwrap();
    let mut m = SendMessage::new("poison");
    m.attributes.insert("kind".into(), "import".into());
    q.send("jobs", m).unwrap();
    for n in 1..=2 {
        let got = q.receive("jobs", 1, None, no_wait()).unwrap();
        assert_eq!(got[0].receive_count, n);
        clock.advance(Duration::from_secs(31));
    }
    // A third receive finds it gone to the dead-letter queue, with what it had.
    assert!(q.receive("jobs", 1, None, no_wait()).unwrap().is_empty());
    let dead = q.receive("jobs-dlq", 1, Some(0), no_wait()).unwrap();
    assert_eq!(dead[0].body, b"poison");
    assert_eq!(dead[0].attributes["kind"], "import");
    assert_eq!(dead[0].receive_count, 3);
    assert_eq!(q.redrive("jobs-dlq").unwrap(), 1);
    let back = q.receive("jobs", 1, None, no_wait()).unwrap();
    assert_eq!(
        (back[0].body.as_slice(), back[0].receive_count),
        (&b"poison"[..], 1)
    );
    // A dead-letter queue must exist, and be of the same kind.
    assert!(matches!(
        q.create_queue(
            "x",
            QueueConfig {
                dead_letter: Some(DeadLetter {
                    queue: "nope".into(),
                    max_receive_count: 1
                }),
                ..standard()
            }
        )
        .unwrap_err(),
        QueueError::NoSuchQueue(_)
    ));
}

#[test]
fn fifo_keeps_group_order_one_in_flight_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let (q, clock) = engine(dir.path());
    q.create_queue(
        "orders.fifo",
        QueueConfig {
            fifo: true,
            content_based_deduplication: true,
            ..standard()
        },
    )
    .unwrap();
    for (group, n) in [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)] {
        q.send(
            "orders.fifo",
            SendMessage::new(format!("{group}{n}")).in_group(group),
        )
        .unwrap();
    }
    let body = |r: &avl_queue::Received| String::from_utf8(r.body.clone()).unwrap();
    // One of each group at a time, the oldest first.
    let first: Vec<String> = q
        .receive("orders.fifo", 10, None, no_wait())
        .unwrap()
        .iter()
        .map(body)
        .collect();
    assert_eq!(first, ["a1", "b1"]);
    assert!(
        q.receive("orders.fifo", 10, None, no_wait())
            .unwrap()
            .is_empty()
    );
    // Deleting a1 frees group a for a2; b waits for b1's lease to end.
    let again = q.receive("orders.fifo", 10, Some(0), no_wait());
    assert!(again.unwrap().is_empty());
    clock.advance(Duration::from_secs(31));
    let redelivered = q.receive("orders.fifo", 10, None, no_wait()).unwrap();
    let names: Vec<String> = redelivered.iter().map(body).collect();
    assert_eq!(names, ["a1", "b1"], "expired leases come back in order");
    let a1 = redelivered.iter().find(|r| r.body == b"a1").unwrap();
    q.delete_message("orders.fifo", &a1.receipt_handle).unwrap();
    let next: Vec<String> = q
        .receive("orders.fifo", 10, None, no_wait())
        .unwrap()
        .iter()
        .map(body)
        .collect();
    assert_eq!(next, ["a2"]);
    // FIFO rules.
    assert!(
        q.send("orders.fifo", SendMessage::new("x")).is_err(),
        "a group is required"
    );
    assert!(
        q.send(
            "orders.fifo",
            SendMessage::new("x").in_group("g").delayed(5)
        )
        .is_err(),
        "no per-message delay"
    );
    assert!(
        q.send(
            "orders.fifo",
            SendMessage::new("x").in_group("g").dedup("x".repeat(129))
        )
        .is_err()
    );
}

#[test]
fn deduplication_holds_for_five_minutes_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (q, clock) = engine(dir.path());
    q.create_queue(
        "pay.fifo",
        QueueConfig {
            fifo: true,
            ..standard()
        },
    )
    .unwrap();
    let send = |q: &Engine| {
        q.send(
            "pay.fifo",
            SendMessage::new("charge 10").in_group("u1").dedup("tx-1"),
        )
    };
    let id = send(&q).unwrap();
    clock.advance(Duration::from_secs(4 * 60 + 59));
    drop(q);
    let clock = Arc::new(ManualClock::at(START + (4 * 60 + 59) * 1000));
    let q = Engine::open_with_clock(dir.path(), clock.clone()).unwrap();
    assert_eq!(
        send(&q).unwrap(),
        id,
        "a duplicate at 4:59 is the same message"
    );
    assert_eq!(q.queue_stats("pay.fifo").unwrap().available, 1);
    clock.advance(Duration::from_secs(2));
    assert_ne!(send(&q).unwrap(), id, "at 5:01 it is a new message");
    assert_eq!(q.queue_stats("pay.fifo").unwrap().available, 2);
    // Without an id, and without content-based deduplication, a FIFO send is refused.
    assert!(
        q.send("pay.fifo", SendMessage::new("x").in_group("u1"))
            .is_err()
    );
}

#[test]
fn a_handle_from_an_expired_lease_cannot_delete_the_redelivered_message() {
    let dir = tempfile::tempdir().unwrap();
    let (q, clock) = engine(dir.path());
    q.create_queue("jobs", standard()).unwrap();
    q.send("jobs", SendMessage::new("work")).unwrap();
    let first = q.receive("jobs", 1, Some(10), no_wait()).unwrap().remove(0);
    clock.advance(Duration::from_secs(11));
    let second = q.receive("jobs", 1, Some(10), no_wait()).unwrap().remove(0);
    assert_eq!(second.receive_count, 2);
    assert!(matches!(
        q.delete_message("jobs", &first.receipt_handle).unwrap_err(),
        QueueError::InvalidReceiptHandle(_)
    ));
    assert!(
        q.change_visibility("jobs", &first.receipt_handle, 5)
            .is_err()
    );
    // A heartbeat extends the live lease; a nack gives it back after a delay.
    q.change_visibility("jobs", &second.receipt_handle, 60)
        .unwrap();
    clock.advance(Duration::from_secs(30));
    assert!(q.receive("jobs", 1, None, no_wait()).unwrap().is_empty());
    q.nack("jobs", &second.receipt_handle, 5).unwrap();
    clock.advance(Duration::from_secs(6));
    let third = q.receive("jobs", 1, None, no_wait()).unwrap().remove(0);
    q.delete_message("jobs", &third.receipt_handle).unwrap();
    assert!(
        q.delete_message("jobs", &third.receipt_handle).is_err(),
        "single use"
    );
    for bad in ["", "zz", "1-", "-1", "1-2-3"] {
        assert!(q.delete_message("jobs", bad).is_err());
    }
}

#[test]
fn batches_answer_per_entry_and_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _clock) = engine(dir.path());
    q.create_queue(
        "jobs",
        QueueConfig {
            max_message_bytes: 100,
            ..standard()
        },
    )
    .unwrap();
    let results = q
        .send_batch(
            "jobs",
            vec![
                SendMessage::new("ok"),
                SendMessage::new(vec![0u8; 101]),
                SendMessage::new("late").delayed(16 * 60),
                SendMessage::new("ok too"),
            ],
        )
        .unwrap();
    assert!(results[0].is_ok() && results[3].is_ok());
    assert!(matches!(results[1], Err(QueueError::TooLarge { .. })));
    assert!(matches!(
        results[2],
        Err(QueueError::InvalidArgument { .. })
    ));
    assert_eq!(q.queue_stats("jobs").unwrap().available, 2);
    assert!(
        q.send_batch("jobs", vec![SendMessage::new("x"); 11])
            .is_err()
    );
    assert!(q.receive("jobs", 0, None, no_wait()).is_err());
    assert!(q.receive("jobs", 11, None, no_wait()).is_err());
    assert!(
        q.receive("jobs", 1, Some(12 * 3600 + 1), no_wait())
            .is_err()
    );
    assert!(q.receive("nope", 1, None, no_wait()).is_err());
    for bad in [
        QueueConfig {
            visibility_timeout_secs: 12 * 3600 + 1,
            ..standard()
        },
        QueueConfig {
            delay_secs: 901,
            ..standard()
        },
        QueueConfig {
            retention_secs: 10,
            ..standard()
        },
    ] {
        assert!(q.create_queue("bad", bad).is_err());
    }
    assert!(matches!(
        q.create_queue("jobs", standard()).unwrap_err(),
        QueueError::QueueExists(_)
    ));
    q.purge("jobs").unwrap();
    assert_eq!(q.queue_stats("jobs").unwrap(), Default::default());
    q.delete_queue("jobs").unwrap();
    assert!(q.list_queues().unwrap().is_empty());
}

#[test]
fn long_polling_wakes_on_a_send() {
    let dir = tempfile::tempdir().unwrap();
    let q = Engine::open(dir.path()).unwrap();
    q.create_queue("jobs", standard()).unwrap();
    let sender = q.clone();
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        sender.send("jobs", SendMessage::new("wake")).unwrap();
    });
    let started = std::time::Instant::now();
    let got = q.receive("jobs", 1, None, Duration::from_secs(20)).unwrap();
    assert_eq!(got[0].body, b"wake");
    assert!(started.elapsed() < Duration::from_secs(15));
    handle.join().unwrap();
    // Concurrent senders share commits and lose nothing.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    q.send("jobs", SendMessage::new(format!("{t}-{i}")))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(q.queue_stats("jobs").unwrap().available, 200);
}

#[test]
fn sweeps_drop_expired_messages_and_deduplication_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (q, clock) = engine(dir.path());
    q.create_queue(
        "short",
        QueueConfig {
            retention_secs: 60,
            ..standard()
        },
    )
    .unwrap();
    q.create_queue(
        "ids.fifo",
        QueueConfig {
            fifo: true,
            ..standard()
        },
    )
    .unwrap();
    q.send("short", SendMessage::new("old")).unwrap();
    let first = q
        .send(
            "ids.fifo",
            SendMessage::new("a").in_group("g").dedup("once"),
        )
        .unwrap();
    clock.advance(Duration::from_secs(30));
    q.send("short", SendMessage::new("newer")).unwrap();
    clock.advance(Duration::from_secs(31));
    // The old message and nothing else; then, past five minutes, the id.
    assert_eq!(q.sweep_queues().unwrap(), 1);
    assert_eq!(q.queue_stats("short").unwrap().available, 1);
    clock.advance(Duration::from_secs(5 * 60));
    assert_eq!(q.sweep_queues().unwrap(), 2, "the newer message and the id");
    let again = q
        .send(
            "ids.fifo",
            SendMessage::new("a").in_group("g").dedup("once"),
        )
        .unwrap();
    assert_ne!(again, first);
}

#[test]
fn dead_letter_edge_cases_and_receives_past_dropped_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (q, clock) = engine(dir.path());
    q.create_queue("dlq", standard()).unwrap();
    q.create_queue(
        "jobs",
        QueueConfig {
            retention_secs: 60,
            dead_letter: Some(DeadLetter {
                queue: "dlq".into(),
                max_receive_count: 1,
            }),
            ..standard()
        },
    )
    .unwrap();
    // A queue that is another's dead-letter queue cannot go.
    assert!(q.delete_queue("dlq").is_err());
    // Expired messages ahead of a fresh one do not hide it.
    for i in 0..6 {
        q.send("jobs", SendMessage::new(format!("old {i}")))
            .unwrap();
    }
    clock.advance(Duration::from_secs(61));
    q.send("jobs", SendMessage::new("fresh")).unwrap();
    let got = q.receive("jobs", 1, Some(0), no_wait()).unwrap();
    assert_eq!(got[0].body, b"fresh");
    // Received once and visible again: a receive moves it on and still answers.
    q.send("jobs", SendMessage::new("second")).unwrap();
    let got = q.receive("jobs", 1, None, no_wait()).unwrap();
    assert_eq!(
        got[0].body, b"second",
        "the dead-lettered one does not use up the receive"
    );
    assert_eq!(q.queue_stats("dlq").unwrap().available, 1);
    // Redrive leaves messages out on a lease, and those sent to the DLQ itself.
    q.send("dlq", SendMessage::new("sent here")).unwrap();
    let leased = q.receive("dlq", 1, Some(300), no_wait()).unwrap();
    assert_eq!(q.redrive("dlq").unwrap(), 0, "{:?}", leased[0].body);
    q.change_visibility("dlq", &leased[0].receipt_handle, 0)
        .unwrap();
    assert_eq!(q.redrive("dlq").unwrap(), 1);
    assert_eq!(
        q.queue_stats("dlq").unwrap().available,
        1,
        "its own message stays"
    );
}

#[test]
fn queues_without_a_sync_per_change_keep_what_they_committed_at_a_clean_close() {
    use avl_queue::Durability;
    let dir = tempfile::tempdir().unwrap();
    {
        let (q, _clock) = engine(dir.path());
        for (name, durability) in [
            ("fast", Durability::Never),
            ("batched", Durability::Interval(20)),
        ] {
            q.create_queue(
                name,
                QueueConfig {
                    durability,
                    ..standard()
                },
            )
            .unwrap();
            for i in 0..20 {
                q.send(name, SendMessage::new(format!("{i}"))).unwrap();
            }
            let got = q.receive(name, 5, None, no_wait()).unwrap();
            q.delete_message(name, &got[0].receipt_handle).unwrap();
        }
        assert!(
            q.create_queue(
                "bad",
                QueueConfig {
                    durability: Durability::Interval(0),
                    ..standard()
                }
            )
            .is_err()
        );
    }
    let (q, _clock) = engine(dir.path());
    for name in ["fast", "batched"] {
        let stats = q.queue_stats(name).unwrap();
        assert_eq!(stats.available + stats.in_flight, 19, "{name}");
    }
}

fn invalid<T: std::fmt::Debug>(r: avl_queue::Result<T>, field: &str) {
    match r {
        Err(QueueError::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
        other => panic!("{field}: {other:?}"),
    }
}

#[test]
fn batches_answer_per_entry_in_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _clock) = engine(dir.path());
    q.create_queue("jobs", standard()).unwrap();
    for b in 0..3u8 {
        q.send("jobs", SendMessage::new(vec![b])).unwrap();
    }
    let got = q.receive("jobs", 10, None, no_wait()).unwrap();
    let h: Vec<String> = got.iter().map(|r| r.receipt_handle.clone()).collect();
    // 0 or 11 entries: refused whole, nothing changed.
    invalid(q.delete_message_batch("jobs", vec![]), "receipt_handles");
    invalid(
        q.delete_message_batch("jobs", vec![h[0].clone(); 11]),
        "receipt_handles",
    );
    invalid(q.change_visibility_batch("jobs", vec![]), "entries");
    assert_eq!(q.queue_stats("jobs").unwrap().in_flight, 3);
    // A result per entry; the bad ones change nothing.
    let changed = q
        .change_visibility_batch(
            "jobs",
            vec![
                (h[0].clone(), 0),
                ("garbage".into(), 5),
                (h[1].clone(), 12 * 3600 + 1),
                (h[2].clone(), 12 * 3600),
            ],
        )
        .unwrap();
    assert!(changed[0].is_ok() && changed[3].is_ok(), "{changed:?}");
    assert!(matches!(
        changed[1],
        Err(QueueError::InvalidReceiptHandle(_))
    ));
    assert!(matches!(
        &changed[2],
        Err(QueueError::InvalidArgument { field, .. }) if field == "visibility_timeout"
    ));
    // Message 0 is back (nacked at once) under a new lease.
    let again = q.receive("jobs", 10, None, no_wait()).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].body.as_slice(), again[0].receive_count),
        (&[0u8][..], 2)
    );
    let deleted = q
        .delete_message_batch(
            "jobs",
            vec![
                h[0].clone(),
                again[0].receipt_handle.clone(),
                h[2].clone(),
                h[2].clone(),
            ],
        )
        .unwrap();
    let ok: Vec<bool> = deleted.iter().map(Result::is_ok).collect();
    assert_eq!(ok, [false, true, true, false], "{deleted:?}");
    assert_eq!(q.queue_stats("jobs").unwrap().in_flight, 1);
    // An unknown queue fails the whole batch.
    assert!(matches!(
        q.delete_message_batch("nope", vec![h[1].clone()]),
        Err(QueueError::NoSuchQueue(_))
    ));
}

#[test]
fn every_queue_limit_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _clock) = engine(dir.path());
    // Names.
    for bad in ["", "a/b", "..", "with space", &"x".repeat(250)] {
        invalid(q.create_queue(bad, standard()), "queue");
    }
    // Settings.
    invalid(
        q.create_queue(
            "q",
            QueueConfig {
                max_message_bytes: 16 * 1024 * 1024 + 1,
                ..standard()
            },
        ),
        "max_message_bytes",
    );
    invalid(
        q.create_queue(
            "q",
            QueueConfig {
                visibility_timeout_secs: 12 * 3600 + 1,
                ..standard()
            },
        ),
        "visibility_timeout_secs",
    );
    assert!(q.list_queues().unwrap().is_empty());
    // The default message limit is 1 MiB; 16 MiB can be allowed.
    q.create_queue("jobs", standard()).unwrap();
    q.send("jobs", SendMessage::new(vec![1u8; 1 << 20]))
        .unwrap();
    assert!(matches!(
        q.send("jobs", SendMessage::new(vec![1u8; (1 << 20) + 1])),
        Err(QueueError::TooLarge { max, .. }) if max == 1 << 20
    ));
    q.create_queue(
        "big",
        QueueConfig {
            max_message_bytes: 16 << 20,
            ..standard()
        },
    )
    .unwrap();
    q.send("big", SendMessage::new(vec![1u8; 16 << 20]))
        .unwrap();
    // Attributes, delays, visibility, long polls, batch sizes.
    let mut m = SendMessage::new("x");
    for i in 0..11 {
        m.attributes.insert(format!("a{i}"), "v".into());
    }
    invalid(q.send("jobs", m), "attributes");
    invalid(
        q.send("jobs", SendMessage::new("x").delayed(901)),
        "delay_secs",
    );
    q.send("jobs", SendMessage::new("x").delayed(900)).unwrap();
    invalid(
        q.receive("jobs", 1, Some(12 * 3600 + 1), no_wait()),
        "visibility_timeout",
    );
    invalid(
        q.receive("jobs", 1, None, Duration::from_millis(20_001)),
        "wait",
    );
    invalid(q.receive("jobs", 0, None, no_wait()), "max");
    invalid(q.receive("jobs", 11, None, no_wait()), "max");
    invalid(
        q.send_batch("jobs", (0..11).map(|_| SendMessage::new("x")).collect()),
        "messages",
    );
    // A 20 s long poll is allowed (a message is there: it answers at once).
    let got = q.receive("jobs", 1, None, Duration::from_secs(20)).unwrap();
    assert_eq!(got.len(), 1);
    invalid(
        q.change_visibility("jobs", &got[0].receipt_handle, 12 * 3600 + 1),
        "visibility_timeout",
    );
    assert!(matches!(
        q.delete_message("jobs", "12-34-56"),
        Err(QueueError::InvalidReceiptHandle(_))
    ));
    // FIFO ids: 128 printable characters at most.
    q.create_queue(
        "f.fifo",
        QueueConfig {
            fifo: true,
            content_based_deduplication: true,
            ..standard()
        },
    )
    .unwrap();
    let long = "x".repeat(128);
    q.send("f.fifo", SendMessage::new("a").in_group(&long).dedup(&long))
        .unwrap();
    invalid(
        q.send("f.fifo", SendMessage::new("a").in_group("x".repeat(129))),
        "group_id",
    );
    invalid(
        q.send(
            "f.fifo",
            SendMessage::new("a").in_group("g").dedup("x".repeat(129)),
        ),
        "deduplication_id",
    );
    invalid(
        q.send(
            "f.fifo",
            SendMessage::new("a").in_group("g").dedup("with space"),
        ),
        "deduplication_id",
    );
    // By content: the same body twice is one message.
    let first = q
        .send("f.fifo", SendMessage::new("same").in_group("g"))
        .unwrap();
    let second = q
        .send("f.fifo", SendMessage::new("same").in_group("h"))
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(q.queue_stats("f.fifo").unwrap().available, 2);
    // Nothing refused was stored.
    let stats = q.queue_stats("jobs").unwrap();
    assert_eq!(stats.available + stats.in_flight + stats.delayed, 2);
}

#[test]
fn redrive_leaves_messages_a_queue_of_the_other_kind_could_not_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let (q, clock) = engine(dir.path());
    q.create_queue("q-dlq", standard()).unwrap();
    q.create_queue(
        "q",
        QueueConfig {
            dead_letter: Some(DeadLetter {
                queue: "q-dlq".into(),
                max_receive_count: 1,
            }),
            ..standard()
        },
    )
    .unwrap();
    q.send("q", SendMessage::new("poison")).unwrap();
    q.receive("q", 1, None, no_wait()).unwrap();
    clock.advance(Duration::from_secs(31));
    assert!(q.receive("q", 1, None, no_wait()).unwrap().is_empty());
    assert_eq!(q.queue_stats("q-dlq").unwrap().available, 1);
    // The source comes back as a FIFO queue: a message without a group stays put.
    q.delete_queue("q").unwrap();
    q.create_queue(
        "q",
        QueueConfig {
            fifo: true,
            content_based_deduplication: true,
            ..standard()
        },
    )
    .unwrap();
    assert_eq!(q.redrive("q-dlq").unwrap(), 0);
    assert_eq!(q.queue_stats("q-dlq").unwrap().available, 1);
    // As a standard queue again, it goes back.
    q.delete_queue("q").unwrap();
    q.create_queue("q", standard()).unwrap();
    assert_eq!(q.redrive("q-dlq").unwrap(), 1);
    let back = q.receive("q", 1, None, no_wait()).unwrap();
    assert_eq!(back[0].body, b"poison");
}
