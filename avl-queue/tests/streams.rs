//! The stream engine against a model: what was published is read back at its offsets,
//! across segment files and reopenings; torn tails are cut; damage is reported and never
//! served; bad input is refused with nothing written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use avl_queue::{Durability, Engine, Message, QueueError, TopicConfig, partition_for_key};
use proptest::prelude::*;

fn config(partitions: u32, durability: Durability, segment_bytes: u64) -> TopicConfig {
    TopicConfig {
        partitions,
        durability,
        segment_bytes,
        ..TopicConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Publish(Option<u8>, Vec<u8>),
    Batch(Vec<(Option<u8>, Vec<u8>)>),
    Read(u32, u64, usize),
    Commit(u32, u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let value = proptest::collection::vec(any::<u8>(), 0..600);
    let key = proptest::option::of(0u8..6);
    prop_oneof![
        4 => (key.clone(), value.clone()).prop_map(|(k, v)| Op::Publish(k, v)),
        2 => proptest::collection::vec((key, value), 0..12).prop_map(Op::Batch),
        3 => (0u32..3, 0u64..40, 0usize..20).prop_map(|(p, o, m)| Op::Read(p, o, m)),
        1 => (0u32..3, 0u64..40).prop_map(|(p, o)| Op::Commit(p, o)),
        1 => Just(Op::Reopen),
    ]
}

fn message(key: Option<u8>, value: &[u8]) -> Message {
    let mut m = Message::new(value.to_vec()).with_header("n", vec![value.len() as u8]);
    m.key = key.map(|k| vec![k]);
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn reads_match_what_was_published(
        ops in proptest::collection::vec(op(), 1..40),
        always in any::<bool>(),
        compressed in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let durability = if always { Durability::Always } else { Durability::Never };
        let mut engine = Engine::open(dir.path()).unwrap();
        // Small segments: reads and recovery cross segment files.
        let mut topic = config(3, durability, 4096);
        if compressed {
            topic.compression = avl_queue::Compression::Zstd;
        }
        engine.create_topic("t", topic).unwrap();
        let mut model: Vec<Vec<Message>> = vec![Vec::new(); 3];
        let mut committed: BTreeMap<u32, u64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Publish(k, v) => {
                    let m = message(k, &v);
                    let at = engine.publish("t", m.clone()).unwrap();
                    if let Some(k) = k {
                        prop_assert_eq!(at.partition, partition_for_key(&[k], 3));
                    }
                    let log = &mut model[at.partition as usize];
                    prop_assert_eq!(at.offset, log.len() as u64);
                    log.push(m);
                }
                Op::Batch(items) => {
                    let batch: Vec<Message> = items.iter().map(|(k, v)| message(*k, v)).collect();
                    let at = engine.publish_batch("t", batch.clone()).unwrap();
                    prop_assert_eq!(at.len(), batch.len());
                    for (m, p) in batch.into_iter().zip(at) {
                        let log = &mut model[p.partition as usize];
                        prop_assert_eq!(p.offset, log.len() as u64);
                        log.push(m);
                    }
                }
                Op::Read(p, offset, max) => {
                    let log = &model[p as usize];
                    match engine.read("t", p, offset, max, usize::MAX) {
                        Ok(records) => {
                            prop_assert!(offset <= log.len() as u64);
                            let want = &log[offset as usize..(offset as usize + max).min(log.len())];
                            prop_assert_eq!(records.len(), want.len());
                            for (i, (r, m)) in records.iter().zip(want).enumerate() {
                                prop_assert_eq!(r.offset, offset + i as u64);
                                prop_assert_eq!(&r.key, &m.key);
                                prop_assert_eq!(&r.value, &m.value);
                                prop_assert_eq!(&r.headers, &m.headers);
                            }
                        }
                        Err(QueueError::OffsetOutOfRange { .. }) => {
                            prop_assert!(offset > log.len() as u64);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                Op::Commit(p, offset) => {
                    match engine.commit_offset("g", "t", p, offset) {
                        Ok(()) => {
                            prop_assert!(offset <= model[p as usize].len() as u64);
                            committed.insert(p, offset);
                        }
                        Err(QueueError::OffsetOutOfRange { .. }) => {
                            prop_assert!(offset > model[p as usize].len() as u64);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                Op::Reopen => {
                    drop(engine);
                    engine = Engine::open(dir.path()).unwrap();
                }
            }
        }
        for (p, log) in model.iter().enumerate() {
            let info = engine.partitions("t").unwrap()[p].clone();
            prop_assert_eq!((info.start, info.end), (0, log.len() as u64));
            if committed.is_empty() {
                // A group that never committed is not known.
                prop_assert!(
                    matches!(engine.lag("g", "t"), Err(QueueError::NoSuchGroup { .. })),
                    "an unknown group"
                );
                continue;
            }
            let lag = &engine.lag("g", "t").unwrap()[p];
            prop_assert_eq!(lag.committed, committed.get(&(p as u32)).copied());
            prop_assert_eq!(lag.lag, log.len() as u64 - lag.committed.unwrap_or(0));
        }
    }
}

/// A store with topic `t` holding ten messages of 100 bytes (`i` repeated) in one
/// segment, closed; answers the segment's path.
fn ten_messages(dir: &std::path::Path) -> std::path::PathBuf {
    let engine = Engine::open(dir).unwrap();
    engine
        .create_topic("t", config(1, Durability::Always, 1 << 20))
        .unwrap();
    for i in 0..10u8 {
        engine.publish("t", Message::new(vec![i; 100])).unwrap();
    }
    dir.join("topics/t/0").join(format!("{:020}.log", 0))
}

#[test]
fn a_torn_tail_is_cut_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let segment = ten_messages(dir.path());
    let len = std::fs::metadata(&segment).unwrap().len();
    // Half of the last record, as a crash mid-write leaves it, then junk.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    f.set_len(len - 60).unwrap();
    drop(f);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(engine.partitions("t").unwrap()[0].end, 9);
    let at = engine.publish("t", Message::new("after")).unwrap();
    assert_eq!(at.offset, 9);
    let all = engine.read("t", 0, 0, 100, usize::MAX).unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all[9].value, b"after");
    assert_eq!(all[8].value, vec![8u8; 100]);
}

/// Flips the bits of `mask` in the byte at `at` of `path`.
fn flip(path: &std::path::Path, at: usize, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= mask;
    std::fs::write(path, &bytes).unwrap();
}

fn values(records: &[avl_queue::Record]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.value.clone()).collect()
}

#[test]
fn damage_mid_segment_is_reported_never_served_nor_skipped() {
    // A flipped bit in a value, then in a length field (the next record must be found
    // byte by byte), then in a compressed batch.
    for (case, at_in_record) in [("value", 100usize), ("length", 1)] {
        let dir = tempfile::tempdir().unwrap();
        let segment = ten_messages(dir.path());
        let record = std::fs::metadata(&segment).unwrap().len() as usize / 10;
        flip(&segment, 4 * record + at_in_record, 0x04);
        for round in 0..2 {
            let engine = Engine::open(dir.path()).unwrap();
            let info = &engine.partitions("t").unwrap()[0];
            assert_eq!(
                info.end,
                10 + round,
                "{case}: nothing after the damage is lost"
            );
            assert_eq!(info.damaged, vec![(4, 5)], "{case}");
            // A read from before stops short of it; one of it is an error; one after
            // it reads.
            let before = engine.read("t", 0, 0, 100, usize::MAX).unwrap();
            assert_eq!(
                values(&before),
                (0..4u8).map(|i| vec![i; 100]).collect::<Vec<_>>()
            );
            match engine.read("t", 0, 4, 100, usize::MAX) {
                Err(
                    e @ QueueError::Damaged {
                        partition: 0,
                        from: 4,
                        to: 5,
                    },
                ) => {
                    assert_eq!(e.code(), avl_core::ErrorCode::Corrupted);
                    assert!(e.to_string().contains("seek to 5"), "{e}");
                }
                other => panic!("{case}: {other:?}"),
            }
            let after = engine.read("t", 0, 5, 100, usize::MAX).unwrap();
            assert_eq!(after.len(), 5 + round as usize, "{case}");
            assert_eq!(after[0].value, vec![5u8; 100]);
            assert_eq!(after[4].value, vec![9u8; 100]);
            // Offsets go on after the end, never over what is damaged.
            let next = engine.publish("t", Message::new("more")).unwrap();
            assert_eq!(next.offset, 10 + round, "{case}");
            // Seeking by time and compaction pass over it.
            assert_eq!(engine.offset_for_time("t", 0, 0).unwrap(), 0);
        }
    }

    // A subscription reports the damage once and goes on after it.
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("topics/t/0").join(format!("{:020}.log", 0));
    {
        let engine = Engine::open(dir.path()).unwrap();
        let mut c = config(1, Durability::Always, 1 << 20);
        c.compression = avl_queue::Compression::Zstd;
        engine.create_topic("t", c).unwrap();
        engine.publish("t", Message::new("first")).unwrap();
        let batch: Vec<Message> = (0..5u8).map(|i| Message::new(vec![i; 300])).collect();
        engine.publish_batch("t", batch).unwrap();
        engine.publish("t", Message::new("last")).unwrap();
    }
    let len = std::fs::metadata(&segment).unwrap().len() as usize;
    // The middle of the file is inside the compressed batch (offsets 1..6).
    flip(&segment, len / 2, 0x01);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(engine.partitions("t").unwrap()[0].damaged, vec![(1, 6)]);
    let mut sub = engine
        .subscribe("t", avl_queue::StartAt::Beginning)
        .unwrap();
    let first = sub.next(Duration::from_secs(1)).unwrap().unwrap();
    assert_eq!(first.record.value, b"first");
    assert!(matches!(
        sub.next(Duration::from_secs(1)),
        Err(QueueError::Damaged { from: 1, to: 6, .. })
    ));
    let last = sub.next(Duration::from_secs(1)).unwrap().unwrap();
    assert_eq!(
        (last.record.offset, &last.record.value[..]),
        (6, &b"last"[..])
    );
}

#[test]
fn damage_at_the_end_of_a_closed_segment_is_reported_and_later_segments_stay() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        // Four records of 1,050 bytes per segment.
        engine
            .create_topic("t", config(1, Durability::Always, 4096))
            .unwrap();
        for i in 0..12u8 {
            engine.publish("t", Message::new(vec![i; 1000])).unwrap();
        }
    }
    let part = dir.path().join("topics/t/0");
    let first = part.join(format!("{:020}.log", 0));
    let len = std::fs::metadata(&first).unwrap().len() as usize;
    // The last record of the first segment, and nothing whole after it there.
    flip(&first, len - 10, 0x80);
    let engine = Engine::open(dir.path()).unwrap();
    let info = &engine.partitions("t").unwrap()[0];
    assert_eq!((info.end, info.damaged.clone()), (12, vec![(3, 4)]));
    assert_eq!(
        std::fs::metadata(&first).unwrap().len() as usize,
        len,
        "not cut"
    );
    assert_eq!(engine.read("t", 0, 0, 100, usize::MAX).unwrap().len(), 3);
    assert!(matches!(
        engine.read("t", 0, 3, 100, usize::MAX),
        Err(QueueError::Damaged { from: 3, to: 4, .. })
    ));
    let rest = engine.read("t", 0, 4, 100, usize::MAX).unwrap();
    assert_eq!(
        values(&rest),
        (4..12u8).map(|i| vec![i; 1000]).collect::<Vec<_>>()
    );
    // A segment file lost in the middle is reported the same way.
    drop(engine);
    std::fs::remove_file(part.join(format!("{:020}.log", 4))).unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(engine.partitions("t").unwrap()[0].damaged, vec![(3, 8)]);
    assert!(matches!(
        engine.read("t", 0, 5, 1, usize::MAX),
        Err(QueueError::Damaged { from: 3, to: 8, .. })
    ));
    assert_eq!(engine.read("t", 0, 8, 100, usize::MAX).unwrap().len(), 4);
}

#[test]
fn segments_roll_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .create_topic("t", config(1, Durability::Never, 4096))
        .unwrap();
    let batch: Vec<Message> = (0..500u32)
        .map(|i| Message::new(i.to_le_bytes().repeat(50)))
        .collect();
    engine.publish_batch("t", batch).unwrap();
    for i in 0..500u32 {
        engine
            .publish("t", Message::new(i.to_le_bytes().repeat(3)))
            .unwrap();
    }
    let files = std::fs::read_dir(dir.path().join("topics/t/0"))
        .unwrap()
        .count();
    // A batch is never split across files; the singles after it roll every 4 KiB.
    assert!(files >= 6, "{files} segment files");
    for from in [0u64, 1, 250, 499, 500, 777, 999, 1000] {
        let got = engine.read("t", 0, from, 2000, usize::MAX).unwrap();
        assert_eq!(got.len() as u64, 1000 - from);
        for (i, r) in got.iter().enumerate() {
            let n = from + i as u64;
            assert_eq!(r.offset, n);
            let v = (n % 500) as u32;
            let reps = if n < 500 { 50 } else { 3 };
            assert_eq!(r.value, v.to_le_bytes().repeat(reps));
        }
    }
    // A byte budget (records as stored) stops a read after the record that passes it.
    let per = Message::new(vec![0u8; 200]).encoded_len();
    let some = engine.read("t", 0, 0, 1000, per + 1).unwrap();
    assert_eq!(some.len(), 2);
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(engine.read("t", 0, 990, 100, usize::MAX).unwrap().len(), 10);
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    for bad in ["", ".", "..", "has space", "a/b", &"x".repeat(250), "ação"] {
        let e = engine
            .create_topic(bad, TopicConfig::default())
            .unwrap_err();
        assert!(
            matches!(e, QueueError::InvalidArgument { .. }),
            "{bad}: {e}"
        );
    }
    for bad in [
        TopicConfig::with_partitions(0),
        TopicConfig::with_partitions(5000),
        TopicConfig {
            max_message_bytes: 17 << 20,
            ..TopicConfig::default()
        },
        TopicConfig {
            durability: Durability::Interval(0),
            ..TopicConfig::default()
        },
    ] {
        assert!(matches!(
            engine.create_topic("t", bad).unwrap_err(),
            QueueError::InvalidArgument { .. }
        ));
    }
    engine
        .create_topic(
            "t",
            TopicConfig {
                partitions: 2,
                max_message_bytes: 1000,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    assert!(matches!(
        engine
            .create_topic("t", TopicConfig::default())
            .unwrap_err(),
        QueueError::TopicExists(_)
    ));
    let big = Message::new(vec![0u8; 1001]);
    assert!(matches!(
        engine.publish("t", big.clone()).unwrap_err(),
        QueueError::TooLarge { .. }
    ));
    // One bad message fails the whole batch before anything is written.
    assert!(matches!(
        engine
            .publish_batch("t", vec![Message::new("fine"), big])
            .unwrap_err(),
        QueueError::TooLarge { .. }
    ));
    let mut headers = Message::new("h");
    for i in 0..65 {
        headers = headers.with_header(format!("h{i}"), "v");
    }
    assert!(matches!(
        engine.publish("t", headers).unwrap_err(),
        QueueError::InvalidArgument { field, .. } if field == "headers"
    ));
    assert!(matches!(
        engine
            .publish_batch("t", vec![Message::new("x"); 10_001])
            .unwrap_err(),
        QueueError::InvalidArgument { field, .. } if field == "messages"
    ));
    assert!(engine.partitions("t").unwrap().iter().all(|p| p.end == 0));
    assert!(matches!(
        engine.publish("nope", Message::new("x")).unwrap_err(),
        QueueError::NoSuchTopic(_)
    ));
    assert!(matches!(
        engine.read("t", 2, 0, 1, 1).unwrap_err(),
        QueueError::NoSuchPartition { .. }
    ));
    assert!(matches!(
        engine.read("t", 0, 1, 1, 1).unwrap_err(),
        QueueError::OffsetOutOfRange {
            partition: 0,
            offset: 1,
            start: 0,
            end: 0
        }
    ));
    assert!(engine.commit_offset("g", "t", 0, 5).is_err());
    assert!(engine.commit_offset("bad group", "t", 0, 0).is_err());
}

#[test]
fn readers_wait_for_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.create_topic("t", TopicConfig::default()).unwrap();
    let producer = engine.clone();
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        producer.publish("t", Message::new("late")).unwrap();
    });
    let got = engine
        .read_wait("t", 0, 0, 10, Duration::from_secs(20))
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, b"late");
    handle.join().unwrap();
    // Nothing comes: the wait ends empty.
    let none = engine
        .read_wait("t", 0, 1, 10, Duration::from_millis(20))
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn topics_are_deleted_with_their_offsets_and_interval_topics_sync() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .create_topic(
            "t",
            TopicConfig {
                durability: Durability::Interval(5),
                ..TopicConfig::default()
            },
        )
        .unwrap();
    engine
        .create_topic("other", TopicConfig::default())
        .unwrap();
    engine.publish("t", Message::new("a")).unwrap();
    engine.publish("other", Message::new("b")).unwrap();
    engine.commit_offset("g", "t", 0, 1).unwrap();
    engine.commit_offset("g", "other", 0, 1).unwrap();
    assert_eq!(engine.list_topics().len(), 2);
    engine.delete_topic("t").unwrap();
    assert!(!dir.path().join("topics/t").exists());
    engine.create_topic("t", TopicConfig::default()).unwrap();
    assert_eq!(engine.committed_offset("g", "t", 0).unwrap(), None);
    assert_eq!(engine.committed_offset("g", "other", 0).unwrap(), Some(1));
    assert_eq!(engine.partitions("t").unwrap()[0].end, 0);
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(engine.list_topics().len(), 2);
    assert_eq!(
        engine.read("other", 0, 0, 10, usize::MAX).unwrap()[0].value,
        b"b"
    );
}

#[test]
fn retention_drops_whole_segments_from_the_head() {
    use avl_queue::Retention;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    let with = |retention: Retention| TopicConfig {
        segment_bytes: 4096,
        durability: Durability::Never,
        retention,
        ..TopicConfig::default()
    };
    engine
        .create_topic(
            "count",
            with(Retention {
                max_messages: Some(100),
                ..Retention::default()
            }),
        )
        .unwrap();
    engine
        .create_topic(
            "bytes",
            with(Retention {
                max_bytes: Some(10_000),
                ..Retention::default()
            }),
        )
        .unwrap();
    engine
        .create_topic(
            "age",
            with(Retention {
                max_age_ms: Some(1),
                ..Retention::default()
            }),
        )
        .unwrap();
    engine
        .create_topic("all", with(Retention::default()))
        .unwrap();
    for topic in ["count", "bytes", "age", "all"] {
        for i in 0..500u32 {
            engine
                .publish(topic, Message::new(i.to_le_bytes().repeat(25)))
                .unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(5));
    assert!(engine.apply_retention().unwrap() > 0);
    let kept = |topic: &str| {
        let p = engine.partitions(topic).unwrap()[0].clone();
        (p.start, p.end)
    };
    let (start, end) = kept("count");
    assert!(end - start >= 100 && end - start < 150, "{start}..{end}");
    let (start, end) = kept("bytes");
    let per = Message::new(vec![0u8; 100]).encoded_len() as u64;
    assert!(
        (end - start) * per >= 10_000 - 4096 && start > 0,
        "{start}..{end}"
    );
    let (start, end) = kept("age");
    assert!(
        end - start < 40,
        "only the active segment is left: {start}..{end}"
    );
    assert_eq!(kept("all"), (0, 500));
    // What is left reads as before; what went is out of range.
    let (start, _) = kept("count");
    let first = engine.read("count", 0, start, 1, usize::MAX).unwrap();
    assert_eq!(first[0].value, (start as u32).to_le_bytes().repeat(25));
    assert!(matches!(
        engine
            .read("count", 0, start - 1, 1, usize::MAX)
            .unwrap_err(),
        QueueError::OffsetOutOfRange { .. }
    ));
    let lag = engine
        .seek("g", "count", None, avl_queue::SeekTo::Beginning)
        .unwrap();
    assert_eq!(lag[0].lag, 500 - start);
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(engine.partitions("count").unwrap()[0].start, start);
    assert_eq!(
        engine
            .publish("count", Message::new("next"))
            .unwrap()
            .offset,
        500
    );
}

#[test]
fn an_idempotent_producer_makes_no_duplicates_across_resends_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .create_topic("t", config(2, Durability::Always, 4096))
        .unwrap();
    let producer = Engine::new_producer_id();
    let batch = |from: u32, n: u32| -> Vec<Message> {
        (from..from + n)
            .map(|i| Message::new(format!("m{i}")))
            .collect()
    };
    let first = engine
        .publish_idempotent("t", 0, producer, 0, &batch(0, 3))
        .unwrap();
    assert_eq!(first, [0, 1, 2]);
    // The answer was lost: the same batch again changes nothing and answers the same.
    assert_eq!(
        engine
            .publish_idempotent("t", 0, producer, 0, &batch(0, 3))
            .unwrap(),
        first
    );
    // A resend that overlaps new messages writes only the new ones.
    let mixed = engine
        .publish_idempotent("t", 0, producer, 2, &batch(2, 3))
        .unwrap();
    assert_eq!(mixed, [2, 3, 4]);
    // Another producer, and plain messages, in between.
    engine
        .publish_idempotent("t", 0, Engine::new_producer_id(), 0, &batch(100, 1))
        .unwrap();
    engine.publish_to("t", 0, &batch(200, 1)).unwrap();
    // A gap is refused and writes nothing.
    let e = engine
        .publish_idempotent("t", 0, producer, 9, &batch(9, 1))
        .unwrap_err();
    assert!(
        matches!(
            e,
            QueueError::OutOfOrderSequence {
                expected: 5,
                got: 9,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        engine
            .publish_idempotent("t", 0, 0, 0, &batch(0, 1))
            .is_err()
    );
    drop(engine);
    // The numbers are in the log: a restart remembers them.
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(
        engine
            .publish_idempotent("t", 0, producer, 3, &batch(3, 3))
            .unwrap(),
        [3, 4, 7]
    );
    let values: Vec<String> = engine
        .read("t", 0, 0, 100, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.value).unwrap())
        .collect();
    assert_eq!(values, ["m0", "m1", "m2", "m3", "m4", "m100", "m200", "m5"]);
    let r = &engine.read("t", 0, 7, 1, usize::MAX).unwrap()[0];
    assert_eq!(r.producer, Some((producer, 5)));
}

#[test]
fn a_deleted_topic_takes_no_more_writes_and_stray_files_are_not_segments() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .create_topic("t", config(1, Durability::Never, 4096))
        .unwrap();
    let writer = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            let mut refused = 0;
            for i in 0..20_000u32 {
                match engine.publish("t", Message::new(i.to_le_bytes().repeat(8))) {
                    Ok(_) => {}
                    Err(QueueError::TopicDeleted | QueueError::NoSuchTopic(_)) => refused += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            refused
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    engine.delete_topic("t").unwrap();
    engine
        .create_topic("t", config(1, Durability::Never, 4096))
        .unwrap();
    writer.join().unwrap();
    // Whatever the writer put in the new topic is whole and dense.
    let info = engine.partitions("t").unwrap()[0].clone();
    assert_eq!(
        engine
            .read("t", 0, 0, usize::MAX, usize::MAX)
            .unwrap()
            .len() as u64,
        info.end
    );
    engine.publish("t", Message::new("fine")).unwrap();
    drop(engine);
    // Files that only look like segments are left alone.
    let part = dir.path().join("topics/t/0");
    std::fs::write(part.join("0.log"), b"not a segment").unwrap();
    std::fs::write(part.join("+1.log"), b"nor this").unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    let end = engine.partitions("t").unwrap()[0].end;
    assert_eq!(
        engine.read("t", 0, end - 1, 1, usize::MAX).unwrap()[0].value,
        b"fine"
    );
    assert!(part.join("0.log").exists());
}

#[test]
fn group_members_share_partitions_and_stale_ones_are_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .create_topic("t", config(4, Durability::Never, 4096))
        .unwrap();
    engine.publish_to("t", 1, &[Message::new("x")]).unwrap();
    let long = Duration::from_secs(60);
    let a = engine.join_group("g", "t", "a", long).unwrap();
    assert_eq!((a.partitions.as_slice(), a.members), (&[0, 1, 2, 3][..], 1));
    let b = engine
        .join_group("g", "t", "b", Duration::from_secs(2))
        .unwrap();
    assert!(b.generation > a.generation);
    let a2 = engine.heartbeat("g", "t", "a").unwrap();
    assert_eq!(a2.generation, b.generation);
    let mut all: Vec<u32> = a2.partitions.iter().chain(&b.partitions).copied().collect();
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2, 3], "every partition has one owner");
    assert!(!a2.partitions.is_empty() && !b.partitions.is_empty());
    // A's old membership is fenced: it may not commit where B now reads.
    let moved = *b.partitions.first().unwrap();
    let e = engine.commit_as_member(&a, "g", "t", moved, 0).unwrap_err();
    assert!(matches!(e, QueueError::StaleGeneration { .. }), "{e}");
    // In the current generation, a partition another member owns is refused, by name.
    let e = engine
        .commit_as_member(&a2, "g", "t", moved, 0)
        .unwrap_err();
    assert!(
        matches!(e, QueueError::NotOwner { partition, .. } if partition == moved),
        "{e}"
    );
    assert_eq!(e.code(), avl_core::ErrorCode::Conflict);
    engine.commit_as_member(&b, "g", "t", moved, 0).unwrap();
    // B stops heartbeating: its session runs out and A gets everything back.
    std::thread::sleep(Duration::from_millis(2500));
    let a3 = engine.heartbeat("g", "t", "a").unwrap();
    assert_eq!((a3.partitions.len(), a3.members), (4, 1));
    assert!(a3.generation > b.generation);
    assert!(matches!(
        engine.heartbeat("g", "t", "b").unwrap_err(),
        QueueError::UnknownMember(_)
    ));
    assert!(matches!(
        engine.commit_as_member(&b, "g", "t", moved, 0).unwrap_err(),
        QueueError::UnknownMember(_)
    ));
    engine.commit_as_member(&a3, "g", "t", 1, 1).unwrap();
    assert_eq!(engine.committed_offset("g", "t", 1).unwrap(), Some(1));
    // Leaving hands partitions over at once.
    engine.join_group("g", "t", "c", long).unwrap();
    engine.leave_group("g", "t", "a").unwrap();
    let c = engine.heartbeat("g", "t", "c").unwrap();
    assert_eq!(c.partitions, [0, 1, 2, 3]);
    assert!(engine.join_group("g", "t", "", long).is_err());
    assert!(engine.join_group("g", "t", "d", Duration::ZERO).is_err());
    assert!(engine.join_group("g", "nope", "d", long).is_err());
}

#[test]
fn seeking_by_time_finds_the_first_message_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .create_topic("t", config(1, Durability::Never, 4096))
        .unwrap();
    for i in 0..200u32 {
        engine
            .publish("t", Message::new(i.to_le_bytes().repeat(20)))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(5));
    let records = engine.read("t", 0, 0, 1000, usize::MAX).unwrap();
    let later = records.last().unwrap().timestamp_ms + 2;
    engine.publish("t", Message::new("later")).unwrap();
    assert_eq!(engine.offset_for_time("t", 0, 0).unwrap(), 0);
    let mid = records[120].timestamp_ms;
    let found = engine.offset_for_time("t", 0, mid).unwrap();
    assert_eq!(
        found,
        records
            .iter()
            .find(|r| r.timestamp_ms >= mid)
            .unwrap()
            .offset
    );
    assert_eq!(engine.offset_for_time("t", 0, later).unwrap(), 200);
    assert_eq!(engine.offset_for_time("t", 0, u64::MAX).unwrap(), 201);
}

#[test]
fn a_group_seeks_to_the_beginning_the_end_an_offset_or_a_time() {
    use avl_queue::SeekTo;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .create_topic("t", config(2, Durability::Never, 4096))
        .unwrap();
    // Two keys that land in different partitions: 5 messages each.
    let p0 = partition_for_key(&[0], 2);
    let other = (1u8..).find(|k| partition_for_key(&[*k], 2) != p0).unwrap();
    for i in 0..10u8 {
        let key = if i % 2 == 0 { 0 } else { other };
        engine
            .publish("t", Message::new(vec![i]).with_key(vec![key]))
            .unwrap();
    }
    // A group nobody joined or committed for is unknown.
    assert!(matches!(
        engine.lag("g", "t"),
        Err(QueueError::NoSuchGroup { .. })
    ));
    let lag = engine.seek("g", "t", None, SeekTo::End).unwrap();
    assert!(lag.iter().all(|l| l.lag == 0 && l.committed == Some(5)));
    let lag = engine.seek("g", "t", Some(p0), SeekTo::Beginning).unwrap();
    assert_eq!(lag[p0 as usize].lag, 5);
    assert_eq!(lag[1 - p0 as usize].lag, 0, "the other partition stays");
    let lag = engine.seek("g", "t", Some(p0), SeekTo::Offset(3)).unwrap();
    assert_eq!(lag[p0 as usize].committed, Some(3));
    assert_eq!(engine.committed_offset("g", "t", p0).unwrap(), Some(3));
    // By time: the first message at or after it.
    let records = engine.read("t", p0, 0, 10, usize::MAX).unwrap();
    let at = records[2].timestamp_ms;
    let want = records
        .iter()
        .find(|r| r.timestamp_ms >= at)
        .unwrap()
        .offset;
    let lag = engine.seek("g", "t", Some(p0), SeekTo::Time(at)).unwrap();
    assert_eq!(lag[p0 as usize].committed, Some(want));
    let lag = engine.seek("g", "t", None, SeekTo::Time(u64::MAX)).unwrap();
    assert!(lag.iter().all(|l| l.lag == 0));
    // Out of range, an unknown partition or topic: errors, nothing moved.
    assert!(matches!(
        engine.seek("g", "t", Some(p0), SeekTo::Offset(6)),
        Err(QueueError::OffsetOutOfRange { offset: 6, .. })
    ));
    // One more message in one partition: offset 6 fits it, not the other, so neither
    // moves.
    engine
        .publish("t", Message::new("one more").with_key(vec![0]))
        .unwrap();
    assert!(matches!(
        engine.seek("g", "t", None, SeekTo::Offset(6)),
        Err(QueueError::OffsetOutOfRange { offset: 6, .. })
    ));
    assert_eq!(engine.committed_offset("g", "t", p0).unwrap(), Some(5));
    engine.seek("g", "t", None, SeekTo::Offset(5)).unwrap();
    assert!(matches!(
        engine.seek("g", "t", Some(7), SeekTo::End),
        Err(QueueError::NoSuchPartition { .. })
    ));
    assert!(matches!(
        engine.seek("g", "nope", None, SeekTo::End),
        Err(QueueError::NoSuchTopic(_))
    ));
    assert_eq!(engine.committed_offset("g", "t", p0).unwrap(), Some(5));
}

#[test]
fn patterns_match_like_nats() {
    use avl_queue::topic_matches;
    assert!(topic_matches("game.*.events", "game.eu.events"));
    assert!(!topic_matches("game.*.events", "game.eu.west.events"));
    assert!(!topic_matches("game.*.events", "game.events"));
    assert!(topic_matches("game.>", "game.eu.events"));
    assert!(topic_matches("game.>", "game.scores"));
    assert!(!topic_matches("game.>", "game"));
    assert!(topic_matches("scores", "scores"));
    assert!(!topic_matches("scores", "scores.eu"));
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    for bad in ["", "a.>.b", "a b", "a.**", "a/b"] {
        assert!(
            engine.subscribe(bad, avl_queue::StartAt::End).is_err(),
            "{bad}"
        );
    }
    // Every topic name can be named by a pattern, empty tokens included.
    assert!(topic_matches("a..b", "a..b"));
    assert!(topic_matches(".hidden", ".hidden"));
    assert!(topic_matches("a.*.b", "a..b"));
    engine.create_topic("a..b", TopicConfig::default()).unwrap();
    engine.publish("a..b", Message::new("found")).unwrap();
    let mut sub = engine
        .subscribe("a..b", avl_queue::StartAt::Beginning)
        .unwrap();
    let got = sub.next(Duration::from_secs(1)).unwrap().unwrap();
    assert_eq!(got.record.value, b"found");
}

#[test]
fn subscriptions_wake_on_new_messages_in_matching_topics() {
    use avl_queue::StartAt;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .create_topic("game.eu.events", config(2, Durability::Always, 1 << 20))
        .unwrap();
    engine
        .create_topic("game.scores", TopicConfig::default())
        .unwrap();
    engine
        .publish("game.eu.events", Message::new("before"))
        .unwrap();
    let mut from_now = engine.subscribe("game.*.events", StartAt::End).unwrap();
    let mut everything = engine.subscribe("game.>", StartAt::Beginning).unwrap();
    assert!(from_now.next(Duration::from_millis(20)).unwrap().is_none());
    let producer = engine.clone();
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        producer
            .publish("game.eu.events", Message::new("live"))
            .unwrap();
        producer.publish("game.scores", Message::new("10")).unwrap();
        // A topic created after the subscriptions is followed too.
        producer
            .create_topic("game.us.events", TopicConfig::default())
            .unwrap();
        producer
            .publish("game.us.events", Message::new("new topic"))
            .unwrap();
    });
    let got = from_now.next(Duration::from_secs(20)).unwrap().unwrap();
    assert_eq!(
        (got.topic.as_str(), got.record.value.as_slice()),
        ("game.eu.events", &b"live"[..])
    );
    handle.join().unwrap();
    let got = from_now.next(Duration::from_secs(20)).unwrap().unwrap();
    assert_eq!(got.topic, "game.us.events");
    assert_eq!(got.record.value, b"new topic");
    assert!(from_now.next(Duration::from_millis(20)).unwrap().is_none());
    let mut seen = Vec::new();
    while let Some(d) = everything.next(Duration::from_millis(200)).unwrap() {
        seen.push(String::from_utf8(d.record.value).unwrap());
    }
    seen.sort();
    assert_eq!(seen, ["10", "before", "live", "new topic"]);
}

#[test]
fn a_topic_created_again_is_followed_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.create_topic("rc", TopicConfig::default()).unwrap();
    let old: Vec<Message> = (0..5).map(|i| Message::new(format!("old{i}"))).collect();
    engine.publish_batch("rc", old).unwrap();
    let mut sub = engine
        .subscribe("rc", avl_queue::StartAt::Beginning)
        .unwrap();
    for _ in 0..5 {
        sub.next(Duration::from_secs(1)).unwrap().unwrap();
    }
    // Deleted, created and written again between two looks: none of it is skipped.
    engine.delete_topic("rc").unwrap();
    engine.create_topic("rc", TopicConfig::default()).unwrap();
    let new: Vec<Message> = (0..8).map(|i| Message::new(format!("new{i}"))).collect();
    engine.publish_batch("rc", new).unwrap();
    let mut got = Vec::new();
    while let Some(d) = sub.next(Duration::from_millis(300)).unwrap() {
        got.push(String::from_utf8(d.record.value).unwrap());
    }
    let want: Vec<String> = (0..8).map(|i| format!("new{i}")).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_is_an_async_stream() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine
        .create_topic("chat.room1", TopicConfig::default())
        .unwrap();
    let stream = engine
        .subscribe("chat.*", avl_queue::StartAt::End)
        .unwrap()
        .into_stream();
    let producer = engine.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..3 {
            std::thread::sleep(Duration::from_millis(20));
            producer
                .publish("chat.room1", Message::new(format!("hi {i}")))
                .unwrap();
        }
    });
    let got: Vec<String> = tokio::time::timeout(
        Duration::from_secs(20),
        stream
            .take(3)
            .map(|d| String::from_utf8(d.unwrap().record.value).unwrap())
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(got, ["hi 0", "hi 1", "hi 2"]);
}

#[test]
fn compressed_batches_take_less_room_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    for (name, compression) in [
        ("plain", avl_queue::Compression::None),
        ("packed", avl_queue::Compression::Zstd),
    ] {
        engine
            .create_topic(
                name,
                TopicConfig {
                    compression,
                    ..TopicConfig::default()
                },
            )
            .unwrap();
        for b in 0..20u32 {
            let batch: Vec<Message> = (0..50u32)
                .map(|i| {
                    Message::new(format!(
                        "{{\"level\":\"info\",\"msg\":\"player joined\",\"n\":{}}}",
                        b * 50 + i
                    ))
                    .with_key(format!("p{}", i % 7))
                })
                .collect();
            engine.publish_to(name, 0, &batch).unwrap();
        }
    }
    let size = |name: &str| -> u64 {
        std::fs::read_dir(dir.path().join("topics").join(name).join("0"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    assert!(
        size("packed") * 3 < size("plain"),
        "{} vs {}",
        size("packed"),
        size("plain")
    );
    for name in ["plain", "packed"] {
        for from in [0u64, 1, 49, 50, 777, 999] {
            let got = engine.read(name, 0, from, 1000, usize::MAX).unwrap();
            assert_eq!(got.len() as u64, 1000 - from);
            assert_eq!(got[0].offset, from);
            assert!(String::from_utf8_lossy(&got[0].value).contains(&format!("\"n\":{from}}}")));
        }
    }
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(engine.partitions("packed").unwrap()[0].end, 1000);
    assert_eq!(
        engine.read("packed", 0, 999, 1, usize::MAX).unwrap().len(),
        1
    );
}

#[test]
fn compaction_keeps_the_latest_message_of_each_key() {
    use avl_queue::Compaction;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    let make = |tombstone_retention_ms| TopicConfig {
        segment_bytes: 4096,
        durability: Durability::Never,
        compaction: Some(Compaction {
            tombstone_retention_ms,
        }),
        ..TopicConfig::default()
    };
    engine.create_topic("profiles", make(3_600_000)).unwrap();
    engine.create_topic("short", make(0)).unwrap();
    for topic in ["profiles", "short"] {
        for round in 0..30u32 {
            for player in 0..10u32 {
                let m =
                    Message::new(format!("p{player} score {round}")).with_key(format!("p{player}"));
                engine.publish(topic, m).unwrap();
            }
            engine
                .publish(topic, Message::new(format!("no key {round}")))
                .unwrap();
        }
        // p3 is deleted; the tombstone is the last word on it.
        engine
            .publish(topic, Message::new("").with_key("p3"))
            .unwrap();
        // More after it, so the tombstone's segment is closed too.
        for i in 0..60u32 {
            engine
                .publish(
                    topic,
                    Message::new(format!("filler {i} {}", "x".repeat(40))),
                )
                .unwrap();
        }
        // Two values of a key in the active segment: compaction leaves that segment be.
        for v in ["active 1", "active 2"] {
            engine
                .publish(topic, Message::new(v).with_key("live"))
                .unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(5));
    for topic in ["profiles", "short"] {
        let before = engine.read(topic, 0, 0, 100_000, usize::MAX).unwrap();
        let removed = engine.compact(topic).unwrap();
        assert!(removed > 250, "{topic}: {removed} removed");
        let after = engine.read(topic, 0, 0, 100_000, usize::MAX).unwrap();
        assert_eq!(before.len() - removed, after.len());
        // Offsets still rise; each key's latest value is there, once.
        assert!(after.windows(2).all(|w| w[0].offset < w[1].offset));
        for player in 0..10u32 {
            let key = format!("p{player}").into_bytes();
            let kept: Vec<_> = after
                .iter()
                .filter(|r| r.key.as_deref() == Some(&key[..]))
                .collect();
            if player == 3 {
                let tombstones = usize::from(topic == "profiles");
                assert_eq!(kept.len(), tombstones, "{topic}: p3 {kept:?}");
            } else {
                assert_eq!(kept.len(), 1, "{topic}: p{player}");
                assert_eq!(kept[0].value, format!("p{player} score 29").into_bytes());
            }
        }
        assert_eq!(
            after.iter().filter(|r| r.key.is_none()).count(),
            90,
            "messages without a key all stay"
        );
        let live: Vec<&[u8]> = after
            .iter()
            .filter(|r| r.key.as_deref() == Some(b"live"))
            .map(|r| r.value.as_slice())
            .collect();
        assert_eq!(live, [&b"active 1"[..], b"active 2"], "{topic}");
        // Reads from any offset, gaps included, and a second pass removes nothing.
        let from = after[5].offset - 1;
        let got = engine.read(topic, 0, from, 3, usize::MAX).unwrap();
        assert_eq!(got[0].offset, after[5].offset);
        assert_eq!(engine.compact(topic).unwrap(), 0);
    }
    let count = engine
        .read("short", 0, 0, 100_000, usize::MAX)
        .unwrap()
        .len();
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(
        engine
            .read("short", 0, 0, 100_000, usize::MAX)
            .unwrap()
            .len(),
        count
    );
    let next = engine
        .publish("short", Message::new("after").with_key("p1"))
        .unwrap();
    assert_eq!(next.offset, 393, "offsets go on where they were");
    // Each segment kept only its own offsets: nothing overlapped and was set aside.
    for topic in ["profiles", "short"] {
        let part = dir.path().join("topics").join(topic).join("0");
        for entry in std::fs::read_dir(&part).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(name.ends_with(".log"), "{topic}: {name}");
        }
    }
}

#[test]
fn a_zeroed_tail_ends_the_log_where_the_zeros_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .create_topic("t", config(1, Durability::Always, 1 << 20))
            .unwrap();
        for i in 0..5u8 {
            engine.publish("t", Message::new(vec![i; 50])).unwrap();
        }
    }
    // What a file system may leave after a crash: the file longer, the end zeros.
    let segment = dir.path().join("topics/t/0").join(format!("{:020}.log", 0));
    let len = std::fs::metadata(&segment).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    f.set_len(len + 4096).unwrap();
    drop(f);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(engine.partitions("t").unwrap()[0].end, 5);
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        len,
        "the zeros are cut"
    );
    assert_eq!(engine.publish("t", Message::new("next")).unwrap().offset, 5);
    assert_eq!(engine.read("t", 0, 0, 10, usize::MAX).unwrap().len(), 6);
}
