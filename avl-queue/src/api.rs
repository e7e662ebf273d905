//! The queue's protocol on the platform transport: one request and one response type,
//! the same in-process and over HTTP (bytes travel as base64 in the JSON).

use avl_core::{Body, Message as WireMessage, Request};
use serde::{Deserialize, Serialize};

use crate::engine::{
    Lag, Membership, Message, PartitionInfo, Published, QueueConfig, QueueStats, Received, Record,
    SeekTo, SendMessage, StartAt, TopicConfig,
};

/// A request to the queue service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op")]
#[non_exhaustive]
pub enum QueueRequest {
    /// Creates a topic.
    CreateTopic {
        /// Its name.
        topic: String,
        /// Partitions, durability, limits.
        #[serde(default)]
        config: TopicConfig,
    },
    /// Deletes a topic with its messages and offsets.
    DeleteTopic {
        /// Its name.
        topic: String,
    },
    /// The topics.
    ListTopics,
    /// A topic's partitions.
    DescribeTopic {
        /// Its name.
        topic: String,
    },
    /// Publishes messages (keys pick partitions; round robin without).
    Publish {
        /// The topic.
        topic: String,
        /// Up to 10,000 messages.
        messages: Vec<Message>,
    },
    /// Records of one partition from an offset on.
    Read {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The first offset wanted.
        offset: u64,
        /// At most this many records.
        max: usize,
        /// Wait up to this long (at most 20 s) for a record when there is none.
        #[serde(default)]
        wait_ms: u64,
    },
    /// Records where a group resumes in a partition.
    CommitOffset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The next offset the group will read.
        offset: u64,
    },
    /// Moves a group's committed position (one partition, or every one); answered
    /// with its lag from there.
    Seek {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// One partition (every one when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<u32>,
        /// Where.
        to: SeekTo,
    },
    /// Joins (or renews) a member of a group on a topic.
    JoinGroup {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The member's id.
        member: String,
        /// Dropped after this long without a heartbeat (at most 300 s).
        session_timeout_ms: u64,
    },
    /// Keeps a member alive; answers its current assignment.
    Heartbeat {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The member's id.
        member: String,
    },
    /// Takes a member out of its group.
    LeaveGroup {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The member's id.
        member: String,
    },
    /// A member commits an offset of a partition it owns in its generation.
    CommitAsMember {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The member and its generation.
        membership: Membership,
        /// The partition.
        partition: u32,
        /// The next offset the group will read.
        offset: u64,
    },
    /// The first offset at or after a time.
    OffsetForTime {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Milliseconds since the Unix epoch.
        timestamp_ms: u64,
    },
    /// Creates a queue.
    CreateQueue {
        /// Its name.
        queue: String,
        /// Standard or FIFO, timeouts, dead letters.
        #[serde(default)]
        config: QueueConfig,
    },
    /// Deletes a queue and its messages.
    DeleteQueue {
        /// Its name.
        queue: String,
    },
    /// The queues.
    ListQueues,
    /// Sends up to 10 messages.
    Send {
        /// The queue.
        queue: String,
        /// The messages.
        messages: Vec<SendMessage>,
    },
    /// Receives up to 10 messages, leasing them.
    Receive {
        /// The queue.
        queue: String,
        /// 1 to 10.
        max: usize,
        /// The lease, instead of the queue's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visibility_timeout_secs: Option<u64>,
        /// Wait up to this long (at most 20 s) for a message.
        #[serde(default)]
        wait_ms: u64,
    },
    /// Deletes (acknowledges) received messages by receipt handle.
    DeleteMessages {
        /// The queue.
        queue: String,
        /// Up to 10 handles.
        receipt_handles: Vec<String>,
    },
    /// Changes a received message's visibility (heartbeat, or nack with a delay).
    ChangeVisibility {
        /// The queue.
        queue: String,
        /// Its handle.
        receipt_handle: String,
        /// Hidden this much longer (0: visible now).
        secs: u64,
    },
    /// Changes the visibility of up to 10 received messages in one commit.
    ChangeVisibilityBatch {
        /// The queue.
        queue: String,
        /// A handle and its new visibility each.
        entries: Vec<VisibilityEntry>,
    },
    /// Moves a dead-letter queue's messages back to their queues.
    Redrive {
        /// The dead-letter queue.
        queue: String,
    },
    /// Drops every message of a queue.
    Purge {
        /// The queue.
        queue: String,
    },
    /// A queue's counts.
    QueueStats {
        /// The queue.
        queue: String,
    },
    /// Every message of the topics matching a pattern, streamed as they are published
    /// (the answer's body: one JSON [`Delivery`](crate::Delivery) per line).
    Subscribe {
        /// NATS-style: `*` one token, `>` the rest.
        pattern: String,
        /// From the end (default) or the beginning.
        #[serde(default)]
        start: StartAt,
    },
    /// Where a group stands in each partition of a topic.
    Lag {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
    },
}

impl WireMessage for QueueRequest {}

impl Request for QueueRequest {
    fn operation(&self) -> &'static str {
        match self {
            QueueRequest::CreateTopic { .. } => "CreateTopic",
            QueueRequest::DeleteTopic { .. } => "DeleteTopic",
            QueueRequest::ListTopics => "ListTopics",
            QueueRequest::DescribeTopic { .. } => "DescribeTopic",
            QueueRequest::Publish { .. } => "Publish",
            QueueRequest::Read { .. } => "Read",
            QueueRequest::CommitOffset { .. } => "CommitOffset",
            QueueRequest::Lag { .. } => "Lag",
            QueueRequest::Seek { .. } => "Seek",
            QueueRequest::JoinGroup { .. } => "JoinGroup",
            QueueRequest::Heartbeat { .. } => "Heartbeat",
            QueueRequest::LeaveGroup { .. } => "LeaveGroup",
            QueueRequest::CommitAsMember { .. } => "CommitAsMember",
            QueueRequest::OffsetForTime { .. } => "OffsetForTime",
            QueueRequest::CreateQueue { .. } => "CreateQueue",
            QueueRequest::DeleteQueue { .. } => "DeleteQueue",
            QueueRequest::ListQueues => "ListQueues",
            QueueRequest::Send { .. } => "Send",
            QueueRequest::Receive { .. } => "Receive",
            QueueRequest::DeleteMessages { .. } => "DeleteMessages",
            QueueRequest::ChangeVisibility { .. } => "ChangeVisibility",
            QueueRequest::ChangeVisibilityBatch { .. } => "ChangeVisibilityBatch",
            QueueRequest::Redrive { .. } => "Redrive",
            QueueRequest::Purge { .. } => "Purge",
            QueueRequest::QueueStats { .. } => "QueueStats",
            QueueRequest::Subscribe { .. } => "Subscribe",
        }
    }

    fn resource(&self) -> String {
        match self {
            QueueRequest::CreateTopic { topic, .. }
            | QueueRequest::DeleteTopic { topic }
            | QueueRequest::DescribeTopic { topic }
            | QueueRequest::Publish { topic, .. }
            | QueueRequest::Read { topic, .. }
            | QueueRequest::OffsetForTime { topic, .. } => topic.clone(),
            QueueRequest::CommitOffset { group, topic, .. }
            | QueueRequest::Lag { group, topic }
            | QueueRequest::Seek { group, topic, .. }
            | QueueRequest::JoinGroup { group, topic, .. }
            | QueueRequest::Heartbeat { group, topic, .. }
            | QueueRequest::LeaveGroup { group, topic, .. }
            | QueueRequest::CommitAsMember { group, topic, .. } => format!("{topic}/{group}"),
            QueueRequest::CreateQueue { queue, .. }
            | QueueRequest::DeleteQueue { queue }
            | QueueRequest::Send { queue, .. }
            | QueueRequest::Receive { queue, .. }
            | QueueRequest::DeleteMessages { queue, .. }
            | QueueRequest::ChangeVisibility { queue, .. }
            | QueueRequest::ChangeVisibilityBatch { queue, .. }
            | QueueRequest::Redrive { queue }
            | QueueRequest::Purge { queue }
            | QueueRequest::QueueStats { queue } => format!("queues/{queue}"),
            QueueRequest::Subscribe { pattern, .. } => pattern.clone(),
            QueueRequest::ListTopics | QueueRequest::ListQueues => String::new(),
        }
    }
}

/// A queue in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSummary {
    /// Its name.
    pub name: String,
    /// How it behaves.
    pub config: QueueConfig,
}

/// A received message's new visibility, in a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisibilityEntry {
    /// Its receipt handle.
    pub receipt_handle: String,
    /// Hidden this much longer (0: visible now).
    pub secs: u64,
}

/// One entry of a batch: done, or why not (a stable code and a message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EntryResult<T> {
    /// Done.
    Ok {
        /// What it answered.
        ok: T,
    },
    /// Failed; the others in the batch are unaffected.
    Err {
        /// The platform error code.
        code: String,
        /// What went wrong.
        message: String,
    },
}

impl<T> From<crate::Result<T>> for EntryResult<T> {
    fn from(r: crate::Result<T>) -> Self {
        match r {
            Ok(ok) => EntryResult::Ok { ok },
            Err(e) => EntryResult::Err {
                code: e.code().as_str().to_string(),
                message: e.to_string(),
            },
        }
    }
}

/// A topic in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSummary {
    /// Its name.
    pub name: String,
    /// How it is kept.
    pub config: TopicConfig,
}

/// The queue service's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind")]
#[non_exhaustive]
pub enum QueueResponse {
    /// Done.
    Done,
    /// The topics.
    Topics {
        /// By name.
        topics: Vec<TopicSummary>,
    },
    /// A topic's partitions.
    Partitions {
        /// By number.
        partitions: Vec<PartitionInfo>,
    },
    /// Where each published message went, in order.
    Published {
        /// One per message.
        published: Vec<Published>,
    },
    /// Records read.
    Records {
        /// In offset order.
        records: Vec<Record>,
    },
    /// A member's assignment.
    Membership {
        /// It.
        membership: Membership,
    },
    /// An offset.
    Offset {
        /// It.
        offset: u64,
    },
    /// The queues.
    Queues {
        /// By name.
        queues: Vec<QueueSummary>,
    },
    /// A result per message sent: its id, or why not.
    SentMessages {
        /// In order.
        results: Vec<EntryResult<u64>>,
    },
    /// Received messages.
    ReceivedMessages {
        /// Leased to the caller.
        messages: Vec<Received>,
    },
    /// A result per handle deleted.
    Deleted {
        /// In order.
        results: Vec<EntryResult<()>>,
    },
    /// A result per visibility changed.
    Changed {
        /// In order.
        results: Vec<EntryResult<()>>,
    },
    /// How many messages moved.
    Moved {
        /// Count.
        moved: u64,
    },
    /// A queue's counts.
    Stats {
        /// Them.
        stats: QueueStats,
    },
    /// A subscription's deliveries, streamed in the body as JSON lines until the
    /// caller hangs up.
    Deliveries {
        /// The stream.
        #[serde(skip)]
        body: Body,
    },
    /// A group's lag.
    Lag {
        /// Per partition.
        lag: Vec<Lag>,
    },
}

impl WireMessage for QueueResponse {
    fn take_body(&mut self) -> Body {
        match self {
            QueueResponse::Deliveries { body } => std::mem::take(body),
            _ => Body::Empty,
        }
    }

    fn set_body(&mut self, received: Body) -> avl_core::Result<()> {
        match self {
            QueueResponse::Deliveries { body } => {
                *body = received;
                Ok(())
            }
            _ if received.is_empty() => Ok(()),
            _ => Err(avl_core::Error::invalid_input(
                "body",
                "only Deliveries carries a payload",
            )),
        }
    }
}
