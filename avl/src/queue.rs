//! `avl queue`: topics from the command line, in-process on the data directory or through
//! a server (`AVL_ENDPOINT`). Consumed messages are printed as JSON lines.

use std::time::Duration;

use avl_core::{Client, ClientConfig, Error, Result, connect};
use avl_queue::{
    Compaction, Compression, DeadLetter, Durability, EntryResult, Message, QueueClient,
    QueueConfig, QueueService, Record, Retention, SeekTo, SendMessage, StartAt, TopicConfig,
};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// Create a topic.
    CreateTopic {
        /// Its name.
        topic: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// When a publish is acknowledged: `always` (after a sync), `never`, or
        /// `interval:MS`.
        #[arg(long, default_value = "always")]
        durability: String,
        /// The largest message in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        max_message_bytes: usize,
        /// Drop messages older than this many seconds (whole segments at a time).
        #[arg(long)]
        retention_secs: Option<u64>,
        /// Keep about this many bytes per partition.
        #[arg(long)]
        retention_bytes: Option<u64>,
        /// Keep about this many messages per partition.
        #[arg(long)]
        retention_messages: Option<u64>,
        /// Store batches compressed: none, lz4, zstd or auto.
        #[arg(long, default_value = "none")]
        compression: String,
        /// Keep only each key's latest message (a keyed empty message deletes the key).
        #[arg(long)]
        compact: bool,
    },
    /// Delete a topic with its messages and groups' offsets.
    DeleteTopic {
        /// Its name.
        topic: String,
    },
    /// Publish one message (its value as text).
    Publish {
        /// The topic.
        topic: String,
        /// The message.
        message: String,
        /// Its key (the same key, the same partition).
        #[arg(long)]
        key: Option<String>,
        /// A header, `name=value` (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
    },
    /// Read messages as a consumer group (one JSON object per line), committing where
    /// the group got to.
    Consume {
        /// The topic.
        topic: String,
        /// The consumer group.
        #[arg(long)]
        group: String,
        /// Without a committed offset, start at the beginning (else at the end).
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many messages.
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// Wait up to this many seconds for messages when there are none.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Move a consumer group's position (every partition, or one): to the beginning,
    /// the end, an offset or a time. Prints its lag from there.
    Seek {
        /// The topic.
        topic: String,
        /// The consumer group.
        #[arg(long)]
        group: String,
        /// Only this partition.
        #[arg(long)]
        partition: Option<u32>,
        /// To the first message kept.
        #[arg(long, group = "to", required = true)]
        to_beginning: bool,
        /// To the end (only new messages).
        #[arg(long, group = "to")]
        to_end: bool,
        /// To this offset.
        #[arg(long, group = "to")]
        to_offset: Option<u64>,
        /// To the first message published at or after this time (ms since the epoch).
        #[arg(long, group = "to")]
        to_time: Option<u64>,
    },
    /// Follow every topic matching a pattern (`game.*.events`, `game.>`), printing each
    /// message as it is published (JSON lines).
    Subscribe {
        /// The pattern: `*` one token, `>` the rest.
        pattern: String,
        /// Start at the beginning of the topics (else only new messages).
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many messages.
        #[arg(long)]
        max: Option<usize>,
        /// Stop after this many seconds without a message.
        #[arg(long)]
        idle: Option<u64>,
    },
    /// Create a queue (standard, or --fifo).
    CreateQueue {
        /// Its name.
        queue: String,
        /// FIFO: order per message group, deduplication.
        #[arg(long)]
        fifo: bool,
        /// Dead-letter queue (it must exist).
        #[arg(long, requires = "max_receive_count")]
        dlq: Option<String>,
        /// Receives before a message goes to the dead-letter queue.
        #[arg(long, requires = "dlq")]
        max_receive_count: Option<u32>,
        /// Default lease of a received message, in seconds.
        #[arg(long, default_value_t = 30)]
        visibility_timeout: u64,
        /// FIFO: deduplicate by the body when no id is given.
        #[arg(long)]
        content_based_deduplication: bool,
        /// When changes are acknowledged: `always` (after a sync), `never`, or
        /// `interval:MS`.
        #[arg(long, default_value = "always")]
        durability: String,
    },
    /// Send a message to a queue (its body as text); prints its id.
    Send {
        /// The queue.
        queue: String,
        /// The body.
        message: String,
        /// FIFO: the message group.
        #[arg(long)]
        group: Option<String>,
        /// FIFO: the deduplication id.
        #[arg(long)]
        dedup_id: Option<String>,
        /// Seconds before it can be received (standard queues).
        #[arg(long)]
        delay: Option<u64>,
    },
    /// Receive messages (one JSON object per line, with its receipt_handle).
    Receive {
        /// The queue.
        queue: String,
        /// How long they stay hidden, in seconds.
        #[arg(long)]
        visibility_timeout: Option<u64>,
        /// Wait up to this many seconds (at most 20) for a message.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// At most this many (1 to 10).
        #[arg(long, default_value_t = 1)]
        max: usize,
    },
    /// Acknowledge (delete) a received message by its receipt handle.
    Ack {
        /// The queue.
        queue: String,
        /// The receipt handle.
        handle: String,
    },
    /// Dead-letter queues.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Topics, their partitions, and each group's lag when --group is given; then the
    /// queues with their counts.
    Stats {
        /// Only this topic.
        topic: Option<String>,
        /// Show this group's lag too.
        #[arg(long)]
        group: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// Move every message of a dead-letter queue back to the queue it came from.
    Redrive {
        /// The dead-letter queue.
        queue: String,
    },
}

fn durability(text: &str) -> Result<Durability> {
    match text {
        "always" => Ok(Durability::Always),
        "never" => Ok(Durability::Never),
        other => other
            .strip_prefix("interval:")
            .and_then(|ms| ms.parse().ok())
            .map(Durability::Interval)
            .ok_or_else(|| {
                Error::invalid_input(
                    "durability",
                    format!("`{other}`: always, never, or interval:MS"),
                )
            }),
    }
}

/// Bytes as JSON: text when they are UTF-8, else `{"base64": ...}`.
fn bytes_json(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::Value::String(text.to_string()),
        Err(_) => {
            use base64::Engine as _;
            serde_json::json!({"base64": base64::engine::general_purpose::STANDARD.encode(bytes)})
        }
    }
}

fn print_record(topic: &str, partition: u32, r: &Record) {
    let mut line = serde_json::json!({
        "topic": topic,
        "partition": partition,
        "offset": r.offset,
        "timestamp_ms": r.timestamp_ms,
        "value": bytes_json(&r.value),
    });
    if let Some(k) = &r.key {
        line["key"] = bytes_json(k);
    }
    if !r.headers.is_empty() {
        line["headers"] = r
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), bytes_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    out!("{line}");
}

pub(crate) async fn run(config: &ClientConfig, command: QueueCommand) -> Result<()> {
    let client = QueueClient::new(Client::new(connect::<QueueService>(config)?));
    match command {
        QueueCommand::CreateTopic {
            topic,
            partitions,
            durability: mode,
            max_message_bytes,
            retention_secs,
            retention_bytes,
            retention_messages,
            compression,
            compact,
        } => {
            let compression = match compression.as_str() {
                "none" => Compression::None,
                "lz4" => Compression::Lz4,
                "zstd" => Compression::Zstd,
                "auto" => Compression::Auto,
                other => {
                    return Err(Error::invalid_input(
                        "compression",
                        format!("`{other}`: none, lz4, zstd or auto"),
                    ));
                }
            };
            let config = TopicConfig {
                partitions,
                durability: durability(&mode)?,
                max_message_bytes,
                retention: Retention {
                    max_age_ms: retention_secs.map(|s| s.saturating_mul(1000)),
                    max_bytes: retention_bytes,
                    max_messages: retention_messages,
                },
                compression,
                compaction: compact.then(Compaction::default),
                ..TopicConfig::default()
            };
            client.create_topic(&topic, config).await?;
            out!("created topic {topic} ({partitions} partitions)");
        }
        QueueCommand::DeleteTopic { topic } => {
            client.delete_topic(&topic).await?;
            out!("deleted topic {topic}");
        }
        QueueCommand::Publish {
            topic,
            message,
            key,
            headers,
        } => {
            let mut m = Message::new(message.into_bytes());
            m.key = key.map(String::into_bytes);
            for h in headers {
                let (name, value) = h.split_once('=').ok_or_else(|| {
                    Error::invalid_input("header", format!("`{h}` is not name=value"))
                })?;
                m = m.with_header(name, value.as_bytes().to_vec());
            }
            let at = client.publish(&topic, vec![m]).await?;
            let at = at
                .first()
                .ok_or_else(|| Error::internal("a publish answered no position"))?;
            out!(
                "{}",
                serde_json::json!({"partition": at.partition, "offset": at.offset})
            );
        }
        QueueCommand::Consume {
            topic,
            group,
            from_beginning,
            max,
            wait,
        } => consume(&client, &topic, &group, from_beginning, max, wait).await?,
        QueueCommand::Subscribe {
            pattern,
            from_beginning,
            max,
            idle,
        } => {
            use futures_util::StreamExt;
            let start = if from_beginning {
                StartAt::Beginning
            } else {
                StartAt::End
            };
            let stream = client.subscribe(&pattern, start).await?;
            let mut stream = std::pin::pin!(stream);
            let mut printed = 0usize;
            while max.is_none_or(|m| printed < m) {
                let next = match idle {
                    Some(secs) => {
                        match tokio::time::timeout(Duration::from_secs(secs), stream.next()).await {
                            Ok(next) => next,
                            Err(_) => break,
                        }
                    }
                    None => stream.next().await,
                };
                let Some(delivery) = next else { break };
                let d = delivery?;
                print_record(&d.topic, d.partition, &d.record);
                printed += 1;
            }
        }
        QueueCommand::CreateQueue {
            queue,
            fifo,
            dlq,
            max_receive_count,
            visibility_timeout,
            content_based_deduplication,
            durability: mode,
        } => {
            let config = QueueConfig {
                durability: durability(&mode)?,
                fifo,
                visibility_timeout_secs: visibility_timeout,
                content_based_deduplication,
                dead_letter: dlq
                    .zip(max_receive_count)
                    .map(|(queue, max_receive_count)| DeadLetter {
                        queue,
                        max_receive_count,
                    }),
                ..QueueConfig::default()
            };
            client.create_queue(&queue, config).await?;
            out!("created queue {queue}");
        }
        QueueCommand::Send {
            queue,
            message,
            group,
            dedup_id,
            delay,
        } => {
            let m = SendMessage {
                body: message.into_bytes(),
                group_id: group,
                deduplication_id: dedup_id,
                delay_secs: delay,
                ..SendMessage::default()
            };
            let result = client
                .send(&queue, vec![m])
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::internal("a send answered nothing"))?;
            match result {
                EntryResult::Ok { ok } => out!("{}", serde_json::json!({ "id": ok })),
                EntryResult::Err { code, message } => {
                    return Err(Error::new(
                        avl_core::ErrorCode::parse(&code).unwrap_or(avl_core::ErrorCode::Internal),
                        message,
                    ));
                }
            }
        }
        QueueCommand::Seek {
            topic,
            group,
            partition,
            to_beginning: _,
            to_end,
            to_offset,
            to_time,
        } => {
            let to = match (to_end, to_offset, to_time) {
                (true, _, _) => SeekTo::End,
                (_, Some(o), _) => SeekTo::Offset(o),
                (_, _, Some(t)) => SeekTo::Time(t),
                _ => SeekTo::Beginning,
            };
            for l in client.seek(&group, &topic, partition, to).await? {
                out!(
                    "{}",
                    serde_json::to_string(&l).map_err(|e| Error::internal(e.to_string()))?
                );
            }
        }
        QueueCommand::Receive {
            queue,
            visibility_timeout,
            wait,
            max,
        } => {
            let got = client
                .receive(&queue, max, visibility_timeout, Duration::from_secs(wait))
                .await?;
            for m in got {
                let mut line = serde_json::json!({
                    "id": m.id,
                    "receipt_handle": m.receipt_handle,
                    "body": bytes_json(&m.body),
                    "receive_count": m.receive_count,
                    "sent_ms": m.sent_ms,
                });
                if let Some(g) = &m.group_id {
                    line["group"] = g.clone().into();
                }
                if !m.attributes.is_empty() {
                    line["attributes"] = serde_json::to_value(&m.attributes)
                        .map_err(|e| Error::internal(e.to_string()))?;
                }
                out!("{line}");
            }
        }
        QueueCommand::Ack { queue, handle } => {
            let results = client.delete_messages(&queue, vec![handle]).await?;
            if let Some(EntryResult::Err { code, message }) = results.into_iter().next() {
                return Err(Error::new(
                    avl_core::ErrorCode::parse(&code).unwrap_or(avl_core::ErrorCode::Internal),
                    message,
                ));
            }
            out!("deleted");
        }
        QueueCommand::Dlq {
            command: DlqCommand::Redrive { queue },
        } => {
            let moved = client.redrive(&queue).await?;
            out!("{}", serde_json::json!({ "moved": moved }));
        }
        QueueCommand::Stats { topic, group } => {
            let topics = match topic {
                Some(t) => vec![t],
                None => client
                    .list_topics()
                    .await?
                    .into_iter()
                    .map(|t| t.name)
                    .collect(),
            };
            for t in topics {
                let partitions = client.partitions(&t).await?;
                let mut line = serde_json::json!({"topic": t, "partitions": partitions});
                if let Some(g) = &group {
                    line["group"] = g.clone().into();
                    line["lag"] = serde_json::to_value(client.lag(g, &t).await?)
                        .map_err(|e| Error::internal(e.to_string()))?;
                }
                out!("{line}");
            }
            for q in client.list_queues().await? {
                let stats = client.queue_stats(&q.name).await?;
                out!(
                    "{}",
                    serde_json::json!({"queue": q.name, "fifo": q.config.fifo, "stats": stats})
                );
            }
        }
    }
    Ok(())
}

/// Joins the group as a member for this run, reads the partitions it is given from the
/// group's committed offsets (or the beginning or end), printing up to `max` messages,
/// commits after each partition's share (fenced by the member's generation), and leaves.
async fn consume(
    client: &QueueClient,
    topic: &str,
    group: &str,
    from_beginning: bool,
    max: usize,
    wait: u64,
) -> Result<()> {
    let member = format!(
        "avl-cli-{}-{}",
        std::process::id(),
        avl_queue::Engine::new_producer_id()
    );
    let membership = client
        .join_group(group, topic, &member, Duration::from_secs(30))
        .await?;
    let result = consume_as(client, topic, group, &membership, from_beginning, max, wait).await;
    let left = client.leave_group(group, topic, &member).await;
    result.and(left)
}

async fn consume_as(
    client: &QueueClient,
    topic: &str,
    group: &str,
    membership: &avl_queue::Membership,
    from_beginning: bool,
    max: usize,
    wait: u64,
) -> Result<()> {
    let lag = client.lag(group, topic).await?;
    let partitions = client.partitions(topic).await?;
    let mut positions: Vec<(u32, u64)> = Vec::new();
    for (l, p) in lag.iter().zip(&partitions) {
        if !membership.partitions.contains(&l.partition) {
            continue;
        }
        let start = match l.committed {
            Some(c) => c.max(p.start),
            None if from_beginning => p.start,
            None => p.end,
        };
        // A partition the group has no position in gets one now (where this run
        // starts), so a later run resumes there even if this one stops before it.
        if l.committed.is_none() {
            client
                .commit_as_member(membership, group, topic, l.partition, start)
                .await?;
        }
        positions.push((l.partition, start));
    }
    let mut printed = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let mut any = false;
        for (partition, offset) in positions.iter_mut() {
            if printed >= max {
                break;
            }
            let records = client
                .read(topic, *partition, *offset, max - printed, Duration::ZERO)
                .await?;
            if let Some(last) = records.last() {
                for r in &records {
                    print_record(topic, *partition, r);
                }
                printed += records.len();
                *offset = last.offset + 1;
                client
                    .commit_as_member(membership, group, topic, *partition, *offset)
                    .await?;
                any = true;
            }
        }
        if printed >= max || (!any && tokio::time::Instant::now() >= deadline) {
            return Ok(());
        }
        if !any {
            client.heartbeat(group, topic, &membership.member).await?;
            // Wait on one partition for a bit, then look at all of them again.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Some((partition, offset)) = positions.first() {
                let _ = client
                    .read(
                        topic,
                        *partition,
                        *offset,
                        1,
                        left.min(Duration::from_millis(500)),
                    )
                    .await?;
            } else {
                tokio::time::sleep(left.min(Duration::from_millis(500))).await;
            }
        }
    }
}
