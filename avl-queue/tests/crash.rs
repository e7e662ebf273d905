//! Crash test: a child process publishes from several threads to a topic under `Always`
//! and reports each acknowledgement; the parent kills it with SIGKILL at a random point,
//! reopens the engine, and checks that every acknowledged message is at its offset with
//! its bytes, that offsets run without gaps, and that the log takes new messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use avl_queue::{Durability, Engine, Message, TopicConfig};

const CHILD_ENV: &str = "AVL_QUEUE_CRASH_CHILD_DIR";
const THREADS: usize = 4;
const PARTITIONS: u32 = 2;

fn value(thread: usize, n: u64) -> Vec<u8> {
    let len = 20 + ((thread as u64 * 7919 + n * 104_729) % 3000) as usize;
    (0..len)
        .map(|i| (i as u64 ^ n ^ thread as u64) as u8)
        .collect()
}

/// The child: runs only when the parent starts this test binary with `CHILD_ENV` set.
#[test]
fn crash_child_publisher() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let engine = Engine::open(&dir).unwrap();
    if engine.list_topics().is_empty() {
        engine
            .create_topic(
                "t",
                TopicConfig {
                    partitions: PARTITIONS,
                    durability: Durability::Always,
                    segment_bytes: 64 << 10,
                    ..TopicConfig::default()
                },
            )
            .unwrap();
    }
    let out = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let engine = &engine;
            let out = &out;
            s.spawn(move || {
                for n in 0u64.. {
                    let key = format!("{t}-{n}");
                    let at = if n % 5 == 0 {
                        // A batch of three.
                        let batch: Vec<Message> = (0..3)
                            .map(|i| {
                                Message::new(value(t, n * 10 + i)).with_key(format!("{key}-{i}"))
                            })
                            .collect();
                        let at = engine.publish_batch("t", batch).unwrap();
                        let mut o = out.lock().unwrap();
                        for (i, p) in at.iter().enumerate() {
                            writeln!(
                                o,
                                "ack {t} {} {} {}",
                                n * 10 + i as u64,
                                p.partition,
                                p.offset
                            )
                            .unwrap();
                        }
                        o.flush().unwrap();
                        continue;
                    } else {
                        engine
                            .publish("t", Message::new(value(t, n * 10)).with_key(key))
                            .unwrap()
                    };
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ack {t} {} {} {}", n * 10, at.partition, at.offset).unwrap();
                    o.flush().unwrap();
                }
            });
        }
    });
}

#[test]
fn acknowledged_messages_survive_kill_9() {
    let rounds: usize = std::env::var("AVL_QUEUE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: HashMap<(u32, u64), (usize, u64)> = HashMap::new();
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_publisher",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // Let it publish a varying number of acknowledged messages, then kill it.
        let target = 200 + round * 150;
        let mut seen = 0;
        while seen < target {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(rest) = line.strip_prefix("ack ") {
                let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                acked.insert((f[2] as u32, f[3]), (f[0] as usize, f[1]));
                seen += 1;
            }
        }
        child.kill().unwrap();
        // Acknowledgements printed before the kill landed count too.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ack ") {
                let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                acked.insert((f[2] as u32, f[3]), (f[0] as usize, f[1]));
            }
        }
        child.wait().unwrap();
        assert!(seen > 0, "round {round}: the child acknowledged nothing");

        let engine = Engine::open(dir.path()).unwrap();
        let mut found = 0;
        for p in 0..PARTITIONS {
            let end = engine.partitions("t").unwrap()[p as usize].end;
            let records = engine.read("t", p, 0, usize::MAX, usize::MAX).unwrap();
            assert_eq!(
                records.len() as u64,
                end,
                "round {round}: gaps in partition {p}"
            );
            for (i, r) in records.iter().enumerate() {
                assert_eq!(r.offset, i as u64);
                if let Some(&(t, n)) = acked.get(&(p, r.offset)) {
                    assert_eq!(
                        r.value,
                        value(t, n),
                        "round {round}: {p}/{} differs",
                        r.offset
                    );
                    found += 1;
                }
            }
        }
        assert_eq!(
            found,
            acked.len(),
            "round {round}: acknowledged messages are missing"
        );
        engine
            .publish("t", Message::new("after the crash"))
            .unwrap();
    }
}
