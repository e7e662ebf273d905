//! The queue's errors, each with a platform code.

use avl_core::{Error, ErrorCode};

/// A queue error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// No topic of that name.
    #[error("the topic `{0}` does not exist")]
    NoSuchTopic(String),
    /// The topic was deleted while this call was under way.
    #[error("the topic was deleted")]
    TopicDeleted,
    /// No queue of that name.
    #[error("the queue `{0}` does not exist")]
    NoSuchQueue(String),
    /// The queue exists already.
    #[error("the queue `{0}` already exists")]
    QueueExists(String),
    /// Not the handle of the message's current lease (malformed, deleted, or the lease
    /// ran out and the message went to another receiver).
    #[error("the receipt handle `{0}` is not valid")]
    InvalidReceiptHandle(String),
    /// The topic exists already.
    #[error("the topic `{0}` already exists")]
    TopicExists(String),
    /// No such partition in the topic.
    #[error("the topic `{topic}` has no partition {partition}")]
    NoSuchPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
    },
    /// An offset outside the partition's log (before its start, or past its end).
    #[error("offset {offset} is outside partition {partition}'s log ({start}..{end})")]
    OffsetOutOfRange {
        /// The partition.
        partition: u32,
        /// The offset asked for.
        offset: u64,
        /// The first offset kept.
        start: u64,
        /// The next offset to be written.
        end: u64,
    },
    /// An idempotent producer skipped sequence numbers (or resent ones too old to be
    /// remembered): nothing was written.
    #[error("producer {producer}: sequence {got} where {expected} was expected")]
    OutOfOrderSequence {
        /// The producer.
        producer: u64,
        /// The next sequence number the partition takes from it.
        expected: u64,
        /// The one given.
        got: u64,
    },
    /// The group never committed an offset on the topic and has no members there.
    #[error("the group `{group}` is not known on topic `{topic}`")]
    NoSuchGroup {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
    },
    /// Not a member of the group (never joined, left, or its session ran out): join
    /// again.
    #[error("`{0}` is not a member of the group: join it again")]
    UnknownMember(String),
    /// The group moved on to another generation (or the partition is another
    /// member's): heartbeat for the new assignment.
    #[error("member `{member}` is at generation {generation}, the group at {current}")]
    StaleGeneration {
        /// The member.
        member: String,
        /// The generation it gave.
        generation: u64,
        /// The group's.
        current: u64,
    },
    /// The partition is another member's in this generation.
    #[error("member `{member}` does not own partition {partition} in generation {generation}")]
    NotOwner {
        /// The member.
        member: String,
        /// The partition it committed for.
        partition: u32,
        /// The generation (the current one).
        generation: u64,
    },
    /// A message, batch, name or setting outside the limits; the field says which.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Which input.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Larger than allowed.
    #[error("{what} is {size} bytes; at most {max}")]
    TooLarge {
        /// What.
        what: String,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Stored data failed its checks.
    #[error("corrupted data: {0}")]
    Corrupted(String),
    /// Offsets `from..to` of a partition failed their checks when the log was opened:
    /// they are never served; a reader goes on by seeking to `to`.
    #[error(
        "offsets {from}..{to} of partition {partition} are damaged on disk and cannot be read; seek to {to} to go on"
    )]
    Damaged {
        /// The partition.
        partition: u32,
        /// The first damaged offset.
        from: u64,
        /// The first offset after them that reads.
        to: u64,
    },
    /// A sync failed: what was written since the last one may not be durable, so the
    /// partition takes no more writes until it is reopened.
    #[error("the partition's log cannot be made durable: {0}")]
    SyncFailed(String),
    /// The file system or the metadata database failed.
    #[error("queue storage error: {0}")]
    Io(String),
}

impl QueueError {
    /// [`QueueError::InvalidArgument`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        QueueError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The platform code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            QueueError::NoSuchTopic(_)
            | QueueError::NoSuchPartition { .. }
            | QueueError::TopicDeleted => ErrorCode::NotFound,
            QueueError::TopicExists(_) | QueueError::QueueExists(_) => ErrorCode::AlreadyExists,
            QueueError::NoSuchQueue(_) => ErrorCode::NotFound,
            QueueError::InvalidReceiptHandle(_) => ErrorCode::InvalidInput,
            QueueError::OutOfOrderSequence { .. }
            | QueueError::StaleGeneration { .. }
            | QueueError::NotOwner { .. } => ErrorCode::Conflict,
            QueueError::UnknownMember(_) | QueueError::NoSuchGroup { .. } => ErrorCode::NotFound,
            QueueError::OffsetOutOfRange { .. } | QueueError::InvalidArgument { .. } => {
                ErrorCode::InvalidInput
            }
            QueueError::TooLarge { .. } => ErrorCode::TooLarge,
            QueueError::Corrupted(_) | QueueError::Damaged { .. } => ErrorCode::Corrupted,
            QueueError::SyncFailed(_) => ErrorCode::Unavailable,
            QueueError::Io(_) => ErrorCode::Internal,
        }
    }
}

impl From<QueueError> for Error {
    fn from(e: QueueError) -> Self {
        Error::new(e.code(), e.to_string())
    }
}

impl From<std::io::Error> for QueueError {
    fn from(e: std::io::Error) -> Self {
        QueueError::Io(e.to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for QueueError {
            fn from(e: $t) -> Self {
                QueueError::Io(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A result with a [`QueueError`].
pub type Result<T> = std::result::Result<T, QueueError>;
