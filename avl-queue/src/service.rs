//! The queue as an avl-core service (the engine behind every transport), and its async
//! client.

use std::path::Path;
use std::time::Duration;

use avl_core::{Context, OpenLocal, Service};
use futures_util::StreamExt;

use crate::api::{
    EntryResult, QueueRequest, QueueResponse, QueueSummary, TopicSummary, VisibilityEntry,
};
use crate::engine::{
    Delivery, Engine, Lag, MAX_MESSAGE_BYTES_LIMIT, Membership, Message, PartitionInfo, Published,
    QueueConfig, QueueStats, Received, Record, SeekTo, SendMessage, StartAt, TopicConfig,
};
use crate::error::QueueError;

/// Where the service keeps its files inside a data directory.
pub const DATA_SUBDIR: &str = "queue";
/// The longest a read waits for a record.
pub const MAX_READ_WAIT: Duration = Duration::from_secs(20);

/// The engine, answering [`QueueRequest`]s on Tokio's blocking threads (an `Always`
/// publish waits for its sync; a read may wait for a record).
#[derive(Debug, Clone)]
pub struct QueueService {
    engine: Engine,
    /// Long polls hold a blocking thread while they wait: at most this many at once (the
    /// platform shares the pool); beyond it a poll answers at once, empty or not.
    waiting: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Long polls that may wait at once.
const CONCURRENT_WAITS: usize = 64;

impl QueueService {
    /// The service over `engine`.
    pub fn new(engine: Engine) -> Self {
        QueueService {
            engine,
            waiting: std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT_WAITS)),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

fn handle(engine: &Engine, request: QueueRequest) -> Result<QueueResponse, QueueError> {
    Ok(match request {
        QueueRequest::CreateTopic { topic, config } => {
            engine.create_topic(&topic, config)?;
            QueueResponse::Done
        }
        QueueRequest::DeleteTopic { topic } => {
            engine.delete_topic(&topic)?;
            QueueResponse::Done
        }
        QueueRequest::ListTopics => QueueResponse::Topics {
            topics: engine
                .list_topics()
                .into_iter()
                .map(|(name, config)| TopicSummary { name, config })
                .collect(),
        },
        QueueRequest::DescribeTopic { topic } => QueueResponse::Partitions {
            partitions: engine.partitions(&topic)?,
        },
        QueueRequest::Publish { topic, messages } => QueueResponse::Published {
            published: engine.publish_batch(&topic, messages)?,
        },
        QueueRequest::Read {
            topic,
            partition,
            offset,
            max,
            wait_ms,
        } => {
            let max = max.clamp(1, 10_000);
            let wait = Duration::from_millis(wait_ms);
            if wait > MAX_READ_WAIT {
                return Err(QueueError::invalid(
                    "wait_ms",
                    format!("{wait_ms}; at most {}", MAX_READ_WAIT.as_millis()),
                ));
            }
            let records = if wait.is_zero() {
                engine.read(&topic, partition, offset, max, 16 << 20)?
            } else {
                engine.read_wait(&topic, partition, offset, max, wait)?
            };
            QueueResponse::Records { records }
        }
        QueueRequest::CommitOffset {
            group,
            topic,
            partition,
            offset,
        } => {
            engine.commit_offset(&group, &topic, partition, offset)?;
            QueueResponse::Done
        }
        QueueRequest::Seek {
            group,
            topic,
            partition,
            to,
        } => QueueResponse::Lag {
            lag: engine.seek(&group, &topic, partition, to)?,
        },
        QueueRequest::Lag { group, topic } => QueueResponse::Lag {
            lag: engine.lag(&group, &topic)?,
        },
        QueueRequest::JoinGroup {
            group,
            topic,
            member,
            session_timeout_ms,
        } => QueueResponse::Membership {
            membership: engine.join_group(
                &group,
                &topic,
                &member,
                Duration::from_millis(session_timeout_ms),
            )?,
        },
        QueueRequest::Heartbeat {
            group,
            topic,
            member,
        } => QueueResponse::Membership {
            membership: engine.heartbeat(&group, &topic, &member)?,
        },
        QueueRequest::LeaveGroup {
            group,
            topic,
            member,
        } => {
            engine.leave_group(&group, &topic, &member)?;
            QueueResponse::Done
        }
        QueueRequest::CommitAsMember {
            group,
            topic,
            membership,
            partition,
            offset,
        } => {
            engine.commit_as_member(&membership, &group, &topic, partition, offset)?;
            QueueResponse::Done
        }
        QueueRequest::CreateQueue { queue, config } => {
            engine.create_queue(&queue, config)?;
            QueueResponse::Done
        }
        QueueRequest::DeleteQueue { queue } => {
            engine.delete_queue(&queue)?;
            QueueResponse::Done
        }
        QueueRequest::ListQueues => QueueResponse::Queues {
            queues: engine
                .list_queues()?
                .into_iter()
                .map(|(name, config)| QueueSummary { name, config })
                .collect(),
        },
        QueueRequest::Send { queue, messages } => QueueResponse::SentMessages {
            results: engine
                .send_batch(&queue, messages)?
                .into_iter()
                .map(EntryResult::from)
                .collect(),
        },
        QueueRequest::Receive {
            queue,
            max,
            visibility_timeout_secs,
            wait_ms,
        } => QueueResponse::ReceivedMessages {
            messages: engine.receive(
                &queue,
                max,
                visibility_timeout_secs,
                Duration::from_millis(wait_ms),
            )?,
        },
        QueueRequest::DeleteMessages {
            queue,
            receipt_handles,
        } => QueueResponse::Deleted {
            results: engine
                .delete_message_batch(&queue, receipt_handles)?
                .into_iter()
                .map(EntryResult::from)
                .collect(),
        },
        QueueRequest::ChangeVisibilityBatch { queue, entries } => QueueResponse::Changed {
            results: engine
                .change_visibility_batch(
                    &queue,
                    entries
                        .into_iter()
                        .map(|e| (e.receipt_handle, e.secs))
                        .collect(),
                )?
                .into_iter()
                .map(EntryResult::from)
                .collect(),
        },
        QueueRequest::ChangeVisibility {
            queue,
            receipt_handle,
            secs,
        } => {
            engine.change_visibility(&queue, &receipt_handle, secs)?;
            QueueResponse::Done
        }
        QueueRequest::Redrive { queue } => QueueResponse::Moved {
            moved: engine.redrive(&queue)?,
        },
        QueueRequest::Purge { queue } => {
            engine.purge(&queue)?;
            QueueResponse::Done
        }
        QueueRequest::QueueStats { queue } => QueueResponse::Stats {
            stats: engine.queue_stats(&queue)?,
        },
        QueueRequest::Subscribe { .. } => {
            return Err(QueueError::invalid(
                "op",
                "a subscription is answered by the service, not the engine",
            ));
        }
        QueueRequest::OffsetForTime {
            topic,
            partition,
            timestamp_ms,
        } => QueueResponse::Offset {
            offset: engine.offset_for_time(&topic, partition, timestamp_ms)?,
        },
    })
}

impl Service for QueueService {
    const NAME: &'static str = "queue";
    type Request = QueueRequest;
    type Response = QueueResponse;

    async fn call(
        &self,
        _context: Context,
        mut request: QueueRequest,
    ) -> avl_core::Result<QueueResponse> {
        let engine = self.engine.clone();
        if let QueueRequest::Subscribe { pattern, start } = &request {
            // A subscription waits on the blocking pool as long as it lives: it holds one
            // of the waiting slots.
            let Ok(permit) = std::sync::Arc::clone(&self.waiting).try_acquire_owned() else {
                return Err(avl_core::Error::unavailable(
                    "too many subscriptions and long polls at once; try again",
                ));
            };
            let subscription = engine
                .subscribe(pattern, *start)
                .map_err(avl_core::Error::from)?;
            let lines = subscription.into_stream().map(move |delivery| {
                let _held = &permit;
                let delivery = delivery.map_err(avl_core::Error::from)?;
                let mut line = serde_json::to_vec(&delivery)
                    .map_err(|e| avl_core::Error::internal(format!("a delivery: {e}")))?;
                line.push(b'\n');
                Ok(bytes::Bytes::from(line))
            });
            return Ok(QueueResponse::Deliveries {
                body: avl_core::Body::from_stream(lines),
            });
        }
        let wait = match &mut request {
            QueueRequest::Read { wait_ms, .. } | QueueRequest::Receive { wait_ms, .. } => {
                Some(wait_ms)
            }
            _ => None,
        };
        let permit = match wait {
            Some(wait_ms) if *wait_ms > 0 => {
                let permit = std::sync::Arc::clone(&self.waiting)
                    .try_acquire_owned()
                    .ok();
                if permit.is_none() {
                    *wait_ms = 0;
                }
                permit
            }
            _ => None,
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            handle(&engine, request)
        })
        .await
        .map_err(|e| avl_core::Error::internal(format!("queue task failed: {e}")))?
        .map_err(avl_core::Error::from)
    }

    fn max_request_bytes(&self) -> u64 {
        // A batch of the largest messages, base64 in JSON.
        (MAX_MESSAGE_BYTES_LIMIT as u64) * 2 + (8 << 20)
    }
}

impl OpenLocal for QueueService {
    fn open_local(data_dir: &Path) -> avl_core::Result<Self> {
        Engine::open(data_dir.join(DATA_SUBDIR))
            .map(QueueService::new)
            .map_err(avl_core::Error::from)
    }
}

/// The queue through any transport, with the engine's calls.
#[derive(Debug, Clone)]
pub struct QueueClient {
    inner: avl_core::Client<QueueService>,
}

/// A body of JSON lines as deliveries (a line may arrive in pieces).
fn json_lines(
    body: avl_core::Body,
) -> impl futures_util::Stream<Item = avl_core::Result<Delivery>> {
    futures_util::stream::unfold(
        (body.into_stream(), Vec::<u8>::new(), false),
        |(mut stream, mut buf, done)| async move {
            loop {
                if let Some(at) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=at).collect();
                    let parsed = serde_json::from_slice::<Delivery>(&line[..line.len() - 1])
                        .map_err(|e| avl_core::Error::internal(format!("a delivery line: {e}")));
                    return Some((parsed, (stream, buf, done)));
                }
                if done {
                    return None;
                }
                match stream.next().await {
                    Some(Ok(piece)) => buf.extend_from_slice(&piece),
                    Some(Err(e)) => return Some((Err(e), (stream, buf, true))),
                    None => {
                        if buf.is_empty() {
                            return None;
                        }
                        let e = avl_core::Error::internal("the subscription ended mid-line");
                        return Some((Err(e), (stream, Vec::new(), true)));
                    }
                }
            }
        },
    )
}

fn unexpected(response: QueueResponse) -> avl_core::Error {
    avl_core::Error::internal(format!("unexpected queue response: {response:?}"))
}

impl QueueClient {
    /// A client over an avl-core client of the service.
    pub fn new(inner: avl_core::Client<QueueService>) -> Self {
        QueueClient { inner }
    }

    async fn done(&self, request: QueueRequest) -> avl_core::Result<()> {
        match self.inner.call(request).await? {
            QueueResponse::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a topic.
    pub async fn create_topic(&self, topic: &str, config: TopicConfig) -> avl_core::Result<()> {
        self.done(QueueRequest::CreateTopic {
            topic: topic.into(),
            config,
        })
        .await
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, topic: &str) -> avl_core::Result<()> {
        self.done(QueueRequest::DeleteTopic {
            topic: topic.into(),
        })
        .await
    }

    /// The topics.
    pub async fn list_topics(&self) -> avl_core::Result<Vec<TopicSummary>> {
        match self.inner.call(QueueRequest::ListTopics).await? {
            QueueResponse::Topics { topics } => Ok(topics),
            other => Err(unexpected(other)),
        }
    }

    /// A topic's partitions.
    pub async fn partitions(&self, topic: &str) -> avl_core::Result<Vec<PartitionInfo>> {
        match self
            .inner
            .call(QueueRequest::DescribeTopic {
                topic: topic.into(),
            })
            .await?
        {
            QueueResponse::Partitions { partitions } => Ok(partitions),
            other => Err(unexpected(other)),
        }
    }

    /// Publishes messages; answers where each went.
    pub async fn publish(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> avl_core::Result<Vec<Published>> {
        match self
            .inner
            .call(QueueRequest::Publish {
                topic: topic.into(),
                messages,
            })
            .await?
        {
            QueueResponse::Published { published } => Ok(published),
            other => Err(unexpected(other)),
        }
    }

    /// Up to `max` records of a partition from `offset`, waiting up to `wait` for one.
    pub async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max: usize,
        wait: Duration,
    ) -> avl_core::Result<Vec<Record>> {
        let request = QueueRequest::Read {
            topic: topic.into(),
            partition,
            offset,
            max,
            wait_ms: wait.as_millis() as u64,
        };
        match self.inner.call(request).await? {
            QueueResponse::Records { records } => Ok(records),
            other => Err(unexpected(other)),
        }
    }

    /// Records where `group` resumes in a partition.
    pub async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> avl_core::Result<()> {
        self.done(QueueRequest::CommitOffset {
            group: group.into(),
            topic: topic.into(),
            partition,
            offset,
        })
        .await
    }

    /// Moves a group's committed position; answers its lag from there.
    pub async fn seek(
        &self,
        group: &str,
        topic: &str,
        partition: Option<u32>,
        to: SeekTo,
    ) -> avl_core::Result<Vec<Lag>> {
        let request = QueueRequest::Seek {
            group: group.into(),
            topic: topic.into(),
            partition,
            to,
        };
        match self.inner.call(request).await? {
            QueueResponse::Lag { lag } => Ok(lag),
            other => Err(unexpected(other)),
        }
    }

    async fn membership(&self, request: QueueRequest) -> avl_core::Result<Membership> {
        match self.inner.call(request).await? {
            QueueResponse::Membership { membership } => Ok(membership),
            other => Err(unexpected(other)),
        }
    }

    /// Joins `member` to `group` on `topic`.
    pub async fn join_group(
        &self,
        group: &str,
        topic: &str,
        member: &str,
        session_timeout: Duration,
    ) -> avl_core::Result<Membership> {
        self.membership(QueueRequest::JoinGroup {
            group: group.into(),
            topic: topic.into(),
            member: member.into(),
            session_timeout_ms: session_timeout.as_millis() as u64,
        })
        .await
    }

    /// Keeps `member` alive; answers its current assignment.
    pub async fn heartbeat(
        &self,
        group: &str,
        topic: &str,
        member: &str,
    ) -> avl_core::Result<Membership> {
        self.membership(QueueRequest::Heartbeat {
            group: group.into(),
            topic: topic.into(),
            member: member.into(),
        })
        .await
    }

    /// Takes `member` out of its group.
    pub async fn leave_group(
        &self,
        group: &str,
        topic: &str,
        member: &str,
    ) -> avl_core::Result<()> {
        self.done(QueueRequest::LeaveGroup {
            group: group.into(),
            topic: topic.into(),
            member: member.into(),
        })
        .await
    }

    /// Commits as a member (fenced by its generation).
    pub async fn commit_as_member(
        &self,
        membership: &Membership,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> avl_core::Result<()> {
        self.done(QueueRequest::CommitAsMember {
            group: group.into(),
            topic: topic.into(),
            membership: membership.clone(),
            partition,
            offset,
        })
        .await
    }

    /// The first offset of a partition at or after `timestamp_ms`.
    pub async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: u64,
    ) -> avl_core::Result<u64> {
        let request = QueueRequest::OffsetForTime {
            topic: topic.into(),
            partition,
            timestamp_ms,
        };
        match self.inner.call(request).await? {
            QueueResponse::Offset { offset } => Ok(offset),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a queue.
    pub async fn create_queue(&self, queue: &str, config: QueueConfig) -> avl_core::Result<()> {
        self.done(QueueRequest::CreateQueue {
            queue: queue.into(),
            config,
        })
        .await
    }

    /// Sends up to 10 messages: a result per message.
    pub async fn send(
        &self,
        queue: &str,
        messages: Vec<SendMessage>,
    ) -> avl_core::Result<Vec<EntryResult<u64>>> {
        let request = QueueRequest::Send {
            queue: queue.into(),
            messages,
        };
        match self.inner.call(request).await? {
            QueueResponse::SentMessages { results } => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    /// Receives up to `max` messages, waiting up to `wait`.
    pub async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_timeout_secs: Option<u64>,
        wait: Duration,
    ) -> avl_core::Result<Vec<Received>> {
        let request = QueueRequest::Receive {
            queue: queue.into(),
            max,
            visibility_timeout_secs,
            wait_ms: wait.as_millis() as u64,
        };
        match self.inner.call(request).await? {
            QueueResponse::ReceivedMessages { messages } => Ok(messages),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes received messages: a result per handle.
    pub async fn delete_messages(
        &self,
        queue: &str,
        receipt_handles: Vec<String>,
    ) -> avl_core::Result<Vec<EntryResult<()>>> {
        let request = QueueRequest::DeleteMessages {
            queue: queue.into(),
            receipt_handles,
        };
        match self.inner.call(request).await? {
            QueueResponse::Deleted { results } => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    /// Changes a received message's visibility.
    pub async fn change_visibility(
        &self,
        queue: &str,
        receipt_handle: &str,
        secs: u64,
    ) -> avl_core::Result<()> {
        self.done(QueueRequest::ChangeVisibility {
            queue: queue.into(),
            receipt_handle: receipt_handle.into(),
            secs,
        })
        .await
    }

    /// Changes the visibility of up to 10 received messages: a result per entry.
    pub async fn change_visibility_batch(
        &self,
        queue: &str,
        entries: Vec<VisibilityEntry>,
    ) -> avl_core::Result<Vec<EntryResult<()>>> {
        let request = QueueRequest::ChangeVisibilityBatch {
            queue: queue.into(),
            entries,
        };
        match self.inner.call(request).await? {
            QueueResponse::Changed { results } => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    /// Drops every message of a queue.
    pub async fn purge(&self, queue: &str) -> avl_core::Result<()> {
        self.done(QueueRequest::Purge {
            queue: queue.into(),
        })
        .await
    }

    /// Deletes a queue and its messages.
    pub async fn delete_queue(&self, queue: &str) -> avl_core::Result<()> {
        self.done(QueueRequest::DeleteQueue {
            queue: queue.into(),
        })
        .await
    }

    /// Moves a dead-letter queue's messages back; answers how many.
    pub async fn redrive(&self, queue: &str) -> avl_core::Result<u64> {
        match self
            .inner
            .call(QueueRequest::Redrive {
                queue: queue.into(),
            })
            .await?
        {
            QueueResponse::Moved { moved } => Ok(moved),
            other => Err(unexpected(other)),
        }
    }

    /// The queues.
    pub async fn list_queues(&self) -> avl_core::Result<Vec<QueueSummary>> {
        match self.inner.call(QueueRequest::ListQueues).await? {
            QueueResponse::Queues { queues } => Ok(queues),
            other => Err(unexpected(other)),
        }
    }

    /// A queue's counts.
    pub async fn queue_stats(&self, queue: &str) -> avl_core::Result<QueueStats> {
        match self
            .inner
            .call(QueueRequest::QueueStats {
                queue: queue.into(),
            })
            .await?
        {
            QueueResponse::Stats { stats } => Ok(stats),
            other => Err(unexpected(other)),
        }
    }

    /// Every message of the topics matching `pattern`, as they are published: in-process
    /// or streamed from a server (one JSON line per message), the same.
    pub async fn subscribe(
        &self,
        pattern: &str,
        start: StartAt,
    ) -> avl_core::Result<impl futures_util::Stream<Item = avl_core::Result<Delivery>> + use<>>
    {
        let request = QueueRequest::Subscribe {
            pattern: pattern.into(),
            start,
        };
        let body = match self.inner.call(request).await? {
            QueueResponse::Deliveries { body } => body,
            other => return Err(unexpected(other)),
        };
        Ok(json_lines(body))
    }

    /// Where `group` stands in each partition of `topic`.
    pub async fn lag(&self, group: &str, topic: &str) -> avl_core::Result<Vec<Lag>> {
        match self
            .inner
            .call(QueueRequest::Lag {
                group: group.into(),
                topic: topic.into(),
            })
            .await?
        {
            QueueResponse::Lag { lag } => Ok(lag),
            other => Err(unexpected(other)),
        }
    }
}
