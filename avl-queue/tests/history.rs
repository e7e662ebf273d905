//! A Jepsen-style history check: a child process runs an idempotent stream producer, a
//! plain one, a FIFO queue sender and consumer, and a standard queue sender and
//! consumer at once, printing every acknowledgement; the parent kills it with SIGKILL at
//! random points and restarts it, each time telling it where to resume (so it resends
//! whatever was in doubt, with the same sequence numbers and deduplication ids). At the
//! end the history must show: no acknowledged message lost, none duplicated where
//! duplicates are dropped (the idempotent producer's resends, the FIFO sender's), each
//! plain acknowledgement at the offset it named with offsets running on, order kept in
//! the partition and the FIFO group, and no message delivered again after its deletion
//! was acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use avl_queue::{Durability, Engine, QueueConfig, SendMessage, TopicConfig};

const CHILD_ENV: &str = "AVL_QUEUE_HISTORY_DIR";
/// Starts every line of the child's history.
const MARK: &str = "@history ";
const PRODUCER: u64 = 0x5eed;

fn payload(seq: u64) -> Vec<u8> {
    format!("event {seq}").into_bytes()
}

/// The child: runs only when the parent starts this test binary with `CHILD_ENV` set.
#[test]
fn history_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let stream_from: u64 = std::env::var("FROM_SEQ").unwrap().parse().unwrap();
    let queue_from: u64 = std::env::var("FROM_MSG").unwrap().parse().unwrap();
    let plain_from: u64 = std::env::var("FROM_PLAIN").unwrap().parse().unwrap();
    let job_from: u64 = std::env::var("FROM_JOB").unwrap().parse().unwrap();
    let engine = Engine::open(&dir).unwrap();
    if engine.list_topics().is_empty() {
        engine
            .create_topic(
                "events",
                TopicConfig {
                    durability: Durability::Always,
                    segment_bytes: 16 << 10,
                    ..TopicConfig::default()
                },
            )
            .unwrap();
    }
    if engine.list_topics().len() == 1 {
        engine
            .create_topic("plain", TopicConfig::default())
            .unwrap();
    }
    if engine.list_queues().unwrap().is_empty() {
        engine
            .create_queue(
                "orders.fifo",
                QueueConfig {
                    fifo: true,
                    visibility_timeout_secs: 1,
                    ..QueueConfig::default()
                },
            )
            .unwrap();
    }
    if engine.list_queues().unwrap().len() == 1 {
        engine
            .create_queue(
                "jobs",
                QueueConfig {
                    visibility_timeout_secs: 1,
                    ..QueueConfig::default()
                },
            )
            .unwrap();
    }
    let out = std::sync::Mutex::new(std::io::stdout());
    let say = |line: String| {
        let mut o = out.lock().unwrap();
        // Marked: the test harness prints "test history_child ... " on the same line
        // as the first one.
        writeln!(o, "{MARK}{line}").unwrap();
        o.flush().unwrap();
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut seq = stream_from;
            loop {
                let batch: Vec<avl_queue::Message> = (seq..seq + 3)
                    .map(|n| avl_queue::Message::new(payload(n)))
                    .collect();
                let offsets = engine
                    .publish_idempotent("events", 0, PRODUCER, seq, &batch)
                    .unwrap();
                say(format!("published {seq} {}", offsets.len()));
                seq += 3;
            }
        });
        s.spawn(|| {
            let mut n = plain_from;
            loop {
                let at = engine
                    .publish("plain", avl_queue::Message::new(format!("plain {n}")))
                    .unwrap();
                say(format!("appended {n} {}", at.offset));
                n += 1;
            }
        });
        s.spawn(|| {
            let mut n = job_from;
            loop {
                let id = engine
                    .send("jobs", SendMessage::new(format!("job {n}")))
                    .unwrap();
                say(format!("queued {n} {id}"));
                n += 1;
            }
        });
        s.spawn(|| {
            loop {
                let got = engine
                    .receive("jobs", 3, None, Duration::from_millis(50))
                    .unwrap();
                for m in got {
                    say(format!("got {}", m.id));
                    if engine.delete_message("jobs", &m.receipt_handle).is_ok() {
                        say(format!("done {}", m.id));
                    }
                }
            }
        });
        s.spawn(|| {
            let mut n = queue_from;
            loop {
                let m = SendMessage::new(format!("order {n}"))
                    .in_group("customer-1")
                    .dedup(format!("order-{n}"));
                let id = engine.send("orders.fifo", m).unwrap();
                say(format!("sent {n} {id}"));
                n += 1;
            }
        });
        s.spawn(|| {
            loop {
                let got = engine
                    .receive("orders.fifo", 1, None, Duration::from_millis(50))
                    .unwrap();
                for m in got {
                    let body = String::from_utf8(m.body).unwrap();
                    say(format!("received {} {body}", m.id));
                    if engine
                        .delete_message("orders.fifo", &m.receipt_handle)
                        .is_ok()
                    {
                        say(format!("deleted {} {body}", m.id));
                    }
                }
            }
        });
    });
}

#[test]
fn no_acknowledged_message_is_lost_or_duplicated_across_kill_9() {
    let rounds: usize = std::env::var("AVL_QUEUE_HISTORY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let dir = tempfile::tempdir().unwrap();
    // What the parent knows from acknowledgements.
    let mut next_seq = 0u64; // the producer resumes here (after the last acknowledged batch)
    let mut next_msg = 0u64; // the sender resumes here
    let mut sent: BTreeMap<u64, u64> = BTreeMap::new(); // order n -> message id
    let mut deleted: BTreeSet<u64> = BTreeSet::new(); // message ids acknowledged deleted
    let mut received_order: Vec<u64> = Vec::new();
    // Each order's body must arrive as one message id, however often it was resent.
    let mut ids_of: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    // The plain producer: what it resumes at, and each acknowledged offset.
    let mut next_plain = 0u64;
    let mut appended: BTreeMap<u64, u64> = BTreeMap::new(); // offset -> n
    // The standard queue: acknowledged sends, deliveries, acknowledged deletes.
    let mut next_job = 0u64;
    let mut queued: BTreeMap<u64, u64> = BTreeMap::new(); // job n -> id
    let mut got_jobs: BTreeSet<u64> = BTreeSet::new();
    let mut done_jobs: BTreeSet<u64> = BTreeSet::new();
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "history_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("FROM_SEQ", next_seq.to_string())
            .env("FROM_MSG", next_msg.to_string())
            .env("FROM_PLAIN", next_plain.to_string())
            .env("FROM_JOB", next_job.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let target = 150 + round * 97;
        let mut seen = 0;
        let mut handle = |line: &str| {
            let Some(at) = line.find(MARK) else { return };
            let f: Vec<&str> = line[at + MARK.len()..].split(' ').collect();
            match f[0] {
                "published" => {
                    let seq: u64 = f[1].parse().unwrap();
                    let n: u64 = f[2].parse().unwrap();
                    next_seq = next_seq.max(seq + n);
                }
                "sent" => {
                    let n: u64 = f[1].parse().unwrap();
                    let id: u64 = f[2].parse().unwrap();
                    if let Some(before) = sent.insert(n, id) {
                        assert_eq!(before, id, "order {n} was sent twice as two messages");
                    }
                    next_msg = next_msg.max(n + 1);
                }
                "received" => {
                    let id: u64 = f[1].parse().unwrap();
                    ids_of.entry(f[2..].join(" ")).or_default().insert(id);
                    assert!(
                        !deleted.contains(&id),
                        "message {id} was delivered after its deletion was acknowledged"
                    );
                    received_order.push(id);
                }
                "deleted" => {
                    deleted.insert(f[1].parse().unwrap());
                }
                "appended" => {
                    let n: u64 = f[1].parse().unwrap();
                    let offset: u64 = f[2].parse().unwrap();
                    if let Some(before) = appended.insert(offset, n) {
                        panic!("offset {offset} acknowledged for {before} and {n}");
                    }
                    next_plain = next_plain.max(n + 1);
                }
                "queued" => {
                    let n: u64 = f[1].parse().unwrap();
                    queued.insert(n, f[2].parse().unwrap());
                    next_job = next_job.max(n + 1);
                }
                "got" => {
                    let id: u64 = f[1].parse().unwrap();
                    assert!(
                        !done_jobs.contains(&id),
                        "job message {id} was delivered after its deletion was acknowledged"
                    );
                    got_jobs.insert(id);
                }
                "done" => {
                    done_jobs.insert(f[1].parse().unwrap());
                }
                _ => {}
            }
        };
        while seen < target {
            let Some(Ok(line)) = lines.next() else { break };
            handle(&line);
            seen += 1;
        }
        child.kill().unwrap();
        for line in lines.map_while(Result::ok) {
            handle(&line);
        }
        child.wait().unwrap();
        assert!(seen > 0, "round {round}: the child said nothing");
    }

    let engine = Engine::open(dir.path()).unwrap();
    // The stream: each sequence number once, in order, every acknowledged one there.
    let records = engine.read("events", 0, 0, usize::MAX, usize::MAX).unwrap();
    let seqs: Vec<u64> = records
        .iter()
        .map(|r| r.producer.expect("every record has its producer").1)
        .collect();
    let expected: Vec<u64> = (0..seqs.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "sequence numbers are not each once, in order"
    );
    assert!(
        seqs.len() as u64 >= next_seq,
        "acknowledged events are missing"
    );
    for r in &records {
        assert_eq!(r.value, payload(r.producer.unwrap().1));
    }
    // The plain producer: offsets run on from 0, each acknowledged one holds what was
    // published there; resends after a kill may repeat a message (at least once), and
    // acknowledgements come in rising offsets.
    let plain = engine.read("plain", 0, 0, usize::MAX, usize::MAX).unwrap();
    for (i, r) in plain.iter().enumerate() {
        assert_eq!(r.offset, i as u64, "plain offsets do not run on");
    }
    for (&offset, &n) in &appended {
        let r = plain
            .get(offset as usize)
            .unwrap_or_else(|| panic!("acknowledged plain offset {offset} is gone"));
        assert_eq!(r.value, format!("plain {n}").into_bytes());
    }
    let ns: Vec<u64> = appended.values().copied().collect();
    assert!(
        ns.windows(2).all(|w| w[0] < w[1]),
        "later messages were acknowledged at earlier offsets"
    );
    // The standard queue: every acknowledged send was delivered, or is still there; no
    // message acknowledged deleted is there.
    let mut jobs_left = BTreeSet::new();
    let mut looked_again = false;
    loop {
        let got = engine
            .receive("jobs", 10, Some(600), Duration::ZERO)
            .unwrap();
        if got.is_empty() {
            // Leases of the killed consumer (1 s) may still run: look once more after.
            if looked_again {
                break;
            }
            std::thread::sleep(Duration::from_millis(1500));
            looked_again = true;
            continue;
        }
        looked_again = false;
        for m in got {
            assert!(
                !done_jobs.contains(&m.id),
                "job {} came back after its deletion",
                m.id
            );
            jobs_left.insert(m.id);
            engine.delete_message("jobs", &m.receipt_handle).unwrap();
        }
    }
    let stats = engine.queue_stats("jobs").unwrap();
    for (n, id) in &queued {
        assert!(
            got_jobs.contains(id) || jobs_left.contains(id),
            "job {n} (message {id}) was acknowledged and is gone undelivered; the queue \
             holds {stats:?} after the drain"
        );
    }
    // The queue: every acknowledged send is either deleted or still there, once.
    let mut left = Vec::new();
    let mut drain = |left: &mut Vec<u64>| -> bool {
        let got = engine
            .receive("orders.fifo", 10, Some(600), Duration::ZERO)
            .unwrap();
        for m in &got {
            ids_of
                .entry(String::from_utf8(m.body.clone()).unwrap())
                .or_default()
                .insert(m.id);
            left.push(m.id);
            engine
                .delete_message("orders.fifo", &m.receipt_handle)
                .unwrap();
        }
        !got.is_empty()
    };
    loop {
        if drain(&mut left) {
            continue;
        }
        // FIFO: one out per group; leases of the killed consumer may still run.
        std::thread::sleep(Duration::from_millis(1100));
        if !drain(&mut left) {
            break;
        }
    }
    for (body, ids) in &ids_of {
        assert_eq!(
            ids.len(),
            1,
            "`{body}` was stored as several messages: {ids:?}"
        );
    }
    // Gone is fine only once delivered: a delete the kill cut short may have landed.
    let delivered: BTreeSet<u64> = received_order.iter().copied().collect();
    for (n, id) in &sent {
        assert!(
            deleted.contains(id) || left.contains(id) || delivered.contains(id),
            "order {n} (message {id}) was acknowledged and is gone undelivered"
        );
    }
    for id in &left {
        assert!(
            !deleted.contains(id),
            "message {id} came back after its deletion"
        );
    }
    let distinct: BTreeSet<u64> = sent.values().copied().collect();
    assert_eq!(distinct.len(), sent.len(), "two orders share a message id");
    // FIFO order: first deliveries come in id order (redeliveries repeat the head).
    let mut firsts = Vec::new();
    let mut seen_ids = BTreeSet::new();
    for id in received_order.iter().chain(&left) {
        if seen_ids.insert(*id) {
            firsts.push(*id);
        }
    }
    let mut sorted = firsts.clone();
    sorted.sort_unstable();
    assert_eq!(firsts, sorted, "the FIFO group was delivered out of order");
}
