//! File descriptors stay bounded: a closed segment holds none, and an engine holds at
//! most `MAX_TOTAL_PARTITIONS` partitions. (Its own test binary: descriptors are counted
//! for the whole process.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use avl_queue::{Durability, Engine, MAX_TOTAL_PARTITIONS, Message, QueueError, TopicConfig};

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[test]
fn closed_segments_hold_no_descriptor_and_partitions_are_capped() {
    if !std::path::Path::new("/proc/self/fd").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    let config = TopicConfig {
        durability: Durability::Never,
        segment_bytes: 4096,
        ..TopicConfig::default()
    };
    engine.create_topic("t", config).unwrap();
    let before = open_descriptors();
    // About 200 segments of 4 KiB.
    for i in 0..200u32 {
        let batch: Vec<Message> = (0..4)
            .map(|j| Message::new(vec![(i + j) as u8; 1000]))
            .collect();
        engine.publish_batch("t", batch).unwrap();
    }
    let segments = std::fs::read_dir(dir.path().join("topics/t/0"))
        .unwrap()
        .count();
    assert!(segments > 150, "{segments} segments");
    // Reading them all back opens each for the read only.
    let all = engine.read("t", 0, 0, usize::MAX, usize::MAX).unwrap();
    assert_eq!(all.len(), 800);
    assert!(
        open_descriptors() <= before + 4,
        "{} descriptors open after {segments} segments, {before} before",
        open_descriptors()
    );
    // After a reopen too.
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(
        engine
            .read("t", 0, 0, usize::MAX, usize::MAX)
            .unwrap()
            .len(),
        800
    );
    assert!(open_descriptors() <= before + 4);
    // The engine-wide cap on partitions.
    let mut made = 1u32;
    let mut n = 0;
    while made + 1024 <= MAX_TOTAL_PARTITIONS {
        let c = TopicConfig {
            partitions: 1024,
            durability: Durability::Never,
            ..TopicConfig::default()
        };
        engine.create_topic(&format!("big{n}"), c).unwrap();
        made += 1024;
        n += 1;
    }
    let c = TopicConfig {
        partitions: 1024,
        ..TopicConfig::default()
    };
    assert!(matches!(
        engine.create_topic("one-too-many", c),
        Err(QueueError::InvalidArgument { field, .. }) if field == "partitions"
    ));
    assert!(
        engine
            .list_topics()
            .iter()
            .all(|(name, _)| name != "one-too-many")
    );
}
