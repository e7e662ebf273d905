//! The queue's protocol on the platform transport: one request and one response type,
//! the same in-process and over HTTP (bytes travel as base64 in the JSON).

use avl_core::{Message as WireMessage, Request};
use serde::{Deserialize, Serialize};

use crate::engine::{Lag, Membership, Message, PartitionInfo, Published, Record, TopicConfig};

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
            QueueRequest::JoinGroup { .. } => "JoinGroup",
            QueueRequest::Heartbeat { .. } => "Heartbeat",
            QueueRequest::LeaveGroup { .. } => "LeaveGroup",
            QueueRequest::CommitAsMember { .. } => "CommitAsMember",
            QueueRequest::OffsetForTime { .. } => "OffsetForTime",
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
            | QueueRequest::JoinGroup { group, topic, .. }
            | QueueRequest::Heartbeat { group, topic, .. }
            | QueueRequest::LeaveGroup { group, topic, .. }
            | QueueRequest::CommitAsMember { group, topic, .. } => format!("{topic}/{group}"),
            QueueRequest::ListTopics => String::new(),
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// A group's lag.
    Lag {
        /// Per partition.
        lag: Vec<Lag>,
    },
}

impl WireMessage for QueueResponse {}
