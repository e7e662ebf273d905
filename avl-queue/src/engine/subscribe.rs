//! Subscriptions: every message of every topic whose name matches a pattern, from now
//! (or the beginning), as they are published: `next` blocks until one arrives, and
//! [`Subscription::into_stream`] is the same as an async stream. Topics created after
//! the subscription that match are followed too.
//!
//! Patterns are NATS's: names are tokens separated by `.`; `*` matches exactly one
//! token, `>` (last) one or more: `game.*.events` matches `game.eu.events`, `game.>`
//! matches `game.eu.events` and `game.scores`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Engine, Record};
use crate::error::{QueueError, Result};

/// Where a subscription starts in the topics it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StartAt {
    /// Only messages published after the subscription (every message of a topic created
    /// after it).
    #[default]
    End,
    /// Everything kept.
    Beginning,
}

/// A message delivered to a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: u32,
    /// It.
    pub record: Record,
}

/// Whether `topic` matches `pattern` (see the module docs).
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('.');
    let mut t = topic.split('.');
    loop {
        match (p.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn check_pattern(pattern: &str) -> Result<()> {
    let tokens: Vec<&str> = pattern.split('.').collect();
    // Empty tokens are allowed: topic names may hold `..` or start with `.`, and a
    // pattern must be able to name them.
    let ok = !pattern.is_empty()
        && pattern.len() <= super::MAX_NAME_LEN
        && tokens.iter().enumerate().all(|(i, t)| {
            *t == "*"
                || (*t == ">" && i == tokens.len() - 1)
                || t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(QueueError::invalid(
            "pattern",
            format!(
                "`{pattern}`: tokens of A-Z a-z 0-9 _ - separated by `.`, `*` for one, `>` last for the rest"
            ),
        ))
    }
}

/// The most message bytes a subscription reads ahead of its subscriber.
const FILL_BYTES: usize = 4 << 20;

/// A subscription to the topics matching a pattern.
pub struct Subscription {
    engine: Engine,
    pattern: String,
    start: StartAt,
    /// Per (topic, partition) followed: the topic's incarnation and the next offset.
    /// In name order, so fills take turns over a stable order.
    positions: BTreeMap<(String, u32), (u64, u64)>,
    ready: VecDeque<Delivery>,
    /// Topics found after the first look were created after the subscription: all of
    /// them is new.
    looked: bool,
    /// Where the next fill starts among the partitions followed, so one with a long
    /// backlog does not take every fill's budget.
    turn: usize,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.pattern)
            .field("partitions", &self.positions.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Subscribes to every topic matching `pattern`.
    pub fn subscribe(&self, pattern: &str, start: StartAt) -> Result<Subscription> {
        check_pattern(pattern)?;
        let mut s = Subscription {
            engine: self.clone(),
            pattern: pattern.to_string(),
            start,
            positions: BTreeMap::new(),
            ready: VecDeque::new(),
            looked: false,
            turn: 0,
        };
        s.discover()?;
        Ok(s)
    }
}

impl Subscription {
    /// Follows topics that match and are not followed yet; forgets deleted ones.
    fn discover(&mut self) -> Result<()> {
        let topics: Vec<String> = self
            .engine
            .list_topics()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| topic_matches(&self.pattern, name))
            .collect();
        self.positions.retain(|(t, _), _| topics.contains(t));
        for topic in topics {
            let (Ok(partitions), Some(incarnation)) = (
                self.engine.partitions(&topic),
                self.engine.incarnation(&topic),
            ) else {
                continue;
            };
            // A topic deleted and created again since the last look is new: all of it.
            let renewed = self
                .positions
                .iter()
                .any(|((t, _), (i, _))| *t == topic && *i != incarnation);
            if renewed {
                self.positions.retain(|(t, _), _| *t != topic);
            }
            for p in partitions {
                self.positions
                    .entry((topic.clone(), p.partition))
                    .or_insert(match self.start {
                        StartAt::End if !self.looked && !renewed => (incarnation, p.end),
                        _ => (incarnation, p.start),
                    });
            }
        }
        self.looked = true;
        Ok(())
    }

    /// Reads what is there now from every partition followed.
    fn fill(&mut self, max: usize) -> Result<()> {
        let mut keys: Vec<(String, u32)> = self.positions.keys().cloned().collect();
        if !keys.is_empty() {
            let turn = self.turn % keys.len();
            keys.rotate_left(turn);
            self.turn = turn + 1;
        }
        // Bytes held for the subscriber: at most this much (and one message) at a time,
        // however many partitions have something.
        let mut held: usize = self.ready.iter().map(|d| d.record.value.len()).sum();
        for (topic, partition) in keys {
            if self.ready.len() >= max || held >= FILL_BYTES {
                break;
            }
            let Some(&(incarnation, at)) = self.positions.get(&(topic.clone(), partition)) else {
                continue;
            };
            let records = match self.engine.read_incarnation(
                &topic,
                incarnation,
                partition,
                at,
                max - self.ready.len(),
                FILL_BYTES - held,
            ) {
                Ok(Some(r)) => r,
                // Deleted and created again: the next look follows the new one.
                Ok(None) => continue,
                // Retention moved the start past us: go on from the new start.
                Err(QueueError::OffsetOutOfRange { start, .. }) if at < start => {
                    self.positions
                        .insert((topic, partition), (incarnation, start));
                    continue;
                }
                Err(QueueError::NoSuchTopic(_) | QueueError::TopicDeleted) => continue,
                // Reported once; the subscription goes on after the damage.
                Err(e @ QueueError::Damaged { to, .. }) => {
                    self.positions.insert((topic, partition), (incarnation, to));
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            if let Some(last) = records.last() {
                self.positions
                    .insert((topic.clone(), partition), (incarnation, last.offset + 1));
            }
            held += records.iter().map(|r| r.value.len()).sum::<usize>();
            self.ready
                .extend(records.into_iter().map(|record| Delivery {
                    topic: topic.clone(),
                    partition,
                    record,
                }));
        }
        Ok(())
    }

    /// The next message, waiting up to `timeout` for one.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Delivery>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(d) = self.ready.pop_front() {
                return Ok(Some(d));
            }
            let seen = self.engine.inner.notifier.current();
            self.discover()?;
            self.fill(1000)?;
            if !self.ready.is_empty() {
                continue;
            }
            let left = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Ok(None);
            }
            // Wakes on any publish in the engine (or after a second, to find new topics).
            self.engine
                .inner
                .notifier
                .wait_past(seen, left.min(Duration::from_secs(1)));
        }
    }

    /// The subscription as an async stream. Each wait runs on Tokio's blocking pool for
    /// at most a second, so a dropped stream lets go of its subscription within one.
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<Delivery>> + Send + 'static {
        futures_util::stream::unfold(Some(self), |sub| async move {
            let mut sub = sub?;
            loop {
                let waited = tokio::task::spawn_blocking(move || {
                    let next = sub.next(Duration::from_secs(1));
                    (sub, next)
                })
                .await;
                match waited {
                    Ok((back, Ok(Some(d)))) => return Some((Ok(d), Some(back))),
                    Ok((back, Ok(None))) => sub = back,
                    // Damage is reported and the stream goes on past it.
                    Ok((back, Err(e @ QueueError::Damaged { .. }))) => {
                        return Some((Err(e), Some(back)));
                    }
                    Ok((_, Err(e))) => return Some((Err(e), None)),
                    Err(e) => {
                        let stopped =
                            QueueError::Io(format!("the subscription's task stopped: {e}"));
                        return Some((Err(stopped), None));
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Durability, Message, TopicConfig};

    #[test]
    fn a_subscription_reads_ahead_a_bounded_number_of_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let config = TopicConfig {
            partitions: 8,
            durability: Durability::Never,
            max_message_bytes: 1 << 20,
            ..TopicConfig::default()
        };
        engine.create_topic("big", config).unwrap();
        for i in 0..32u8 {
            let m = Message::new(vec![i; (1 << 20) - 64]).with_key(vec![i]);
            engine.publish("big", m).unwrap();
        }
        let mut sub = engine.subscribe("big", StartAt::Beginning).unwrap();
        let mut count = 0;
        while sub.next(Duration::from_millis(100)).unwrap().is_some() {
            count += 1;
            let held: usize = sub.ready.iter().map(|d| d.record.value.len()).sum();
            assert!(held <= FILL_BYTES + (1 << 20), "{held} bytes read ahead");
        }
        assert_eq!(count, 32);
    }
}
