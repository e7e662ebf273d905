//! AVL Queue: event streams and pub/sub topics inside the application's process, with
//! the guarantees of Kafka-style logs: partitioned append-only logs with offsets, keys
//! that pick partitions, consumer groups' committed offsets, and acknowledged messages
//! that are on disk (group commit: concurrent producers share each sync).
//!
//! ```
//! use avl_queue::{Engine, Message, TopicConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let queue = Engine::open(dir.path())?;
//! queue.create_topic("game.events", TopicConfig::with_partitions(4))?;
//! let at = queue.publish("game.events", Message::new("player joined").with_key("p1"))?;
//! let records = queue.read("game.events", at.partition, at.offset, 10, usize::MAX)?;
//! assert_eq!(records[0].value, b"player joined");
//! queue.commit_offset("scores", "game.events", at.partition, at.offset + 1)?;
//! assert_eq!(queue.lag("scores", "game.events")?.iter().map(|l| l.lag).sum::<u64>(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Beside the streams, SQS-like queues: leases with single-use receipt handles, FIFO
//! groups, deduplication, delays and dead letters ([`Engine::create_queue`]). The same
//! calls reach a served engine through [`QueueClient`] (`avl serve` mounts
//! [`QueueService`]).

mod api;
mod engine;
mod error;
mod service;

pub use api::{
    EntryResult, QueueRequest, QueueResponse, QueueSummary, TopicSummary, VisibilityEntry,
};
pub use engine::{
    Clock, Compaction, Compression, DEDUP_WINDOW_MS, DeadLetter, Delivery, Durability, Engine,
    FILE_NAME, Lag, MAX_BATCH, MAX_BATCH_BYTES, MAX_DELAY_SECS, MAX_HEADERS, MAX_ID_LEN,
    MAX_MESSAGE_BYTES_LIMIT, MAX_NAME_LEN, MAX_PARTITIONS, MAX_QUEUE_BATCH, MAX_RECEIVE_WAIT,
    MAX_SEGMENT_BYTES, MAX_SESSION_TIMEOUT, MAX_TOTAL_PARTITIONS, MAX_VISIBILITY_SECS, ManualClock,
    Membership, Message, PartitionInfo, Published, QueueConfig, QueueStats, Received, Record,
    Retention, SeekTo, SendMessage, StartAt, Subscription, SystemClock, TopicConfig, check_name,
    partition_for_key, topic_matches,
};
pub use error::{QueueError, Result};
pub use service::{DATA_SUBDIR, MAX_READ_WAIT, QueueClient, QueueService};
