//! Consumer group membership: members join a group on a topic, heartbeat, and leave;
//! the topic's partitions are divided among the live members, and every change (a join,
//! a leave, a member that stops heartbeating past its session timeout) starts a new
//! generation with a new assignment. Offsets committed by a member are fenced: only the
//! partition's owner in the current generation may commit.
//!
//! Membership lives in memory (a restarted engine has no members; they join again), as
//! a Kafka coordinator's does between restarts; committed offsets are durable.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{QueueError, Result};

/// The longest session timeout a member may ask for.
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(300);

/// A member's place in its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The group's generation: it changes with every join, leave or expiry.
    pub generation: u64,
    /// The member.
    pub member: String,
    /// The partitions this member reads in this generation.
    pub partitions: Vec<u32>,
    /// How many members the group has.
    pub members: usize,
}

struct Member {
    last_seen: Instant,
    timeout: Duration,
}

#[derive(Default)]
struct Group {
    generation: u64,
    members: BTreeMap<String, Member>,
    assignment: HashMap<String, Vec<u32>>,
}

impl Group {
    /// Drops members whose session has run out; answers whether any went.
    fn expire(&mut self, now: Instant) -> bool {
        let before = self.members.len();
        self.members
            .retain(|_, m| now.saturating_duration_since(m.last_seen) <= m.timeout);
        self.members.len() != before
    }

    /// A new generation: partitions dealt round robin to the members in name order.
    fn rebalance(&mut self, partitions: u32) {
        self.generation += 1;
        self.assignment.clear();
        let names: Vec<&String> = self.members.keys().collect();
        if names.is_empty() {
            return;
        }
        for p in 0..partitions {
            let owner = names[p as usize % names.len()];
            self.assignment.entry(owner.clone()).or_default().push(p);
        }
    }

    fn membership(&self, member: &str) -> Membership {
        Membership {
            generation: self.generation,
            member: member.to_string(),
            partitions: self.assignment.get(member).cloned().unwrap_or_default(),
            members: self.members.len(),
        }
    }
}

/// Every group's membership, by (group, topic).
#[derive(Default)]
pub(crate) struct Groups {
    groups: Mutex<HashMap<(String, String), Group>>,
}

impl Groups {
    pub(crate) fn join(
        &self,
        group: &str,
        topic: &str,
        member: &str,
        timeout: Duration,
        partitions: u32,
        now: Instant,
    ) -> Result<Membership> {
        if member.is_empty() || member.len() > 255 {
            return Err(QueueError::invalid("member", "1 to 255 bytes"));
        }
        if timeout.is_zero() || timeout > MAX_SESSION_TIMEOUT {
            return Err(QueueError::invalid(
                "session_timeout",
                format!("above zero, at most {} s", MAX_SESSION_TIMEOUT.as_secs()),
            ));
        }
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let g = groups
            .entry((group.to_string(), topic.to_string()))
            .or_default();
        let expired = g.expire(now);
        let new = g
            .members
            .insert(
                member.to_string(),
                Member {
                    last_seen: now,
                    timeout,
                },
            )
            .is_none();
        if new || expired {
            g.rebalance(partitions);
        }
        Ok(g.membership(member))
    }

    /// Whether the group has a live member on the topic.
    pub(crate) fn has_members(&self, group: &str, topic: &str, now: Instant) -> bool {
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups
            .get(&(group.to_string(), topic.to_string()))
            .is_some_and(|g| {
                g.members
                    .values()
                    .any(|m| now.saturating_duration_since(m.last_seen) <= m.timeout)
            })
    }

    pub(crate) fn heartbeat(
        &self,
        group: &str,
        topic: &str,
        member: &str,
        partitions: u32,
        now: Instant,
    ) -> Result<Membership> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let g = groups
            .get_mut(&(group.to_string(), topic.to_string()))
            .ok_or_else(|| unknown(member))?;
        if g.expire(now) {
            g.rebalance(partitions);
        }
        let m = g.members.get_mut(member).ok_or_else(|| unknown(member))?;
        m.last_seen = now;
        Ok(g.membership(member))
    }

    pub(crate) fn leave(
        &self,
        group: &str,
        topic: &str,
        member: &str,
        partitions: u32,
        now: Instant,
    ) -> Result<()> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (group.to_string(), topic.to_string());
        let g = groups.get_mut(&key).ok_or_else(|| unknown(member))?;
        g.expire(now);
        if g.members.remove(member).is_none() {
            return Err(unknown(member));
        }
        g.rebalance(partitions);
        if g.members.is_empty() {
            groups.remove(&key);
        }
        Ok(())
    }

    /// `Ok` if `member` owns `partition` in generation `generation` (and is alive); counts
    /// as a heartbeat.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_owner(
        &self,
        group: &str,
        topic: &str,
        member: &str,
        generation: u64,
        partition: u32,
        partitions: u32,
        now: Instant,
    ) -> Result<()> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let g = groups
            .get_mut(&(group.to_string(), topic.to_string()))
            .ok_or_else(|| unknown(member))?;
        if g.expire(now) {
            g.rebalance(partitions);
        }
        if !g.members.contains_key(member) {
            return Err(unknown(member));
        }
        if g.generation != generation {
            return Err(QueueError::StaleGeneration {
                member: member.to_string(),
                generation,
                current: g.generation,
            });
        }
        let owns = g
            .assignment
            .get(member)
            .is_some_and(|ps| ps.contains(&partition));
        if !owns {
            return Err(QueueError::NotOwner {
                member: member.to_string(),
                partition,
                generation,
            });
        }
        // A commit shows the member is alive, as a heartbeat does.
        if let Some(m) = g.members.get_mut(member) {
            m.last_seen = now;
        }
        Ok(())
    }

    /// Forgets every group on `topic` (it was deleted).
    pub(crate) fn forget_topic(&self, topic: &str) {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(_, t), _| t != topic);
    }
}

fn unknown(member: &str) -> QueueError {
    QueueError::UnknownMember(member.to_string())
}
