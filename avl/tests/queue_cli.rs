//! `avl queue`, run as a user runs it: the same session in-process on a data directory
//! and through `avl serve`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::process::{Command, Output};

mod common;

use common::*;

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn session(queue: &dyn Fn(&[&str]) -> Output) {
    ok(queue(&["create-topic", "game.events", "--partitions", "3"]));
    for i in 0..6 {
        let at = lines(&ok(queue(&[
            "publish",
            "game.events",
            &format!("event {i}"),
            "--key",
            &format!("player-{}", i % 2),
            "--header",
            "source=cli",
        ])));
        assert!(at[0]["partition"].as_u64().unwrap() < 3);
    }
    // The same key, the same partition, in order.
    let first = lines(&ok(queue(&[
        "consume",
        "game.events",
        "--group",
        "scores",
        "--from-beginning",
        "--max",
        "4",
    ])));
    assert_eq!(first.len(), 4);
    let rest = lines(&ok(queue(&[
        "consume",
        "game.events",
        "--group",
        "scores",
        "--max",
        "10",
    ])));
    assert_eq!(rest.len(), 2, "the group resumes where it stopped");
    let all: Vec<&serde_json::Value> = first.iter().chain(&rest).collect();
    let mut values: Vec<&str> = all.iter().map(|r| r["value"].as_str().unwrap()).collect();
    values.sort_unstable();
    assert_eq!(
        values,
        [
            "event 0", "event 1", "event 2", "event 3", "event 4", "event 5"
        ]
    );
    for r in &all {
        assert_eq!(r["headers"]["source"], "cli");
        let key = r["key"].as_str().unwrap();
        let same: Vec<_> = all.iter().filter(|o| o["key"] == key).collect();
        assert!(same.iter().all(|o| o["partition"] == r["partition"]));
    }
    assert!(ok(queue(&["consume", "game.events", "--group", "scores"])).is_empty());
    let stats = lines(&ok(queue(&["stats", "game.events", "--group", "scores"])));
    let lag: u64 = stats[0]["lag"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lag"].as_u64().unwrap())
        .sum();
    assert_eq!(lag, 0);
    // Seeking moves the group: back to the beginning, then to the end.
    let total = |out: &str| -> u64 { lines(out).iter().map(|l| l["lag"].as_u64().unwrap()).sum() };
    let back = ok(queue(&[
        "seek",
        "game.events",
        "--group",
        "scores",
        "--to-beginning",
    ]));
    assert_eq!(total(&back), 6);
    let again = ok(queue(&[
        "consume",
        "game.events",
        "--group",
        "scores",
        "--max",
        "10",
    ]));
    assert_eq!(lines(&again).len(), 6);
    ok(queue(&[
        "seek",
        "game.events",
        "--group",
        "scores",
        "--to-offset",
        "0",
        "--partition",
        "1",
    ]));
    let end = ok(queue(&[
        "seek",
        "game.events",
        "--group",
        "scores",
        "--to-end",
    ]));
    assert_eq!(total(&end), 0);
    let out = queue(&[
        "seek",
        "game.events",
        "--group",
        "scores",
        "--to-offset",
        "99",
        "--partition",
        "0",
    ]);
    assert!(
        text(&out.stderr).starts_with("error: InvalidInput: offset 99"),
        "{}",
        text(&out.stderr)
    );
    let out = queue(&["seek", "game.events", "--group", "scores"]);
    assert!(!out.status.success(), "a seek needs a place to go");
    let out = queue(&["stats", "game.events", "--group", "nobody"]);
    assert!(
        text(&out.stderr).starts_with("error: NotFound: the group `nobody`"),
        "{}",
        text(&out.stderr)
    );
    // A new group without --from-beginning starts at the end.
    assert!(ok(queue(&["consume", "game.events", "--group", "late"])).is_empty());

    let out = queue(&["publish", "nope", "x"]);
    assert!(
        text(&out.stderr).starts_with("error: NotFound: the topic `nope` does not exist"),
        "{}",
        text(&out.stderr)
    );
    let out = queue(&["create-topic", "bad name"]);
    assert!(text(&out.stderr).starts_with("error: InvalidInput: topic"));
    let out = queue(&["create-topic", "x", "--durability", "sometimes"]);
    assert!(text(&out.stderr).starts_with("error: InvalidInput: durability"));
    ok(queue(&["delete-topic", "game.events"]));
    assert!(ok(queue(&["stats"])).is_empty());

    // Queues: send, receive with a lease, ack; dead letters and redrive.
    ok(queue(&["create-queue", "jobs-dlq"]));
    ok(queue(&[
        "create-queue",
        "jobs",
        "--dlq",
        "jobs-dlq",
        "--max-receive-count",
        "1",
    ]));
    let sent = lines(&ok(queue(&["send", "jobs", "resize image 7"])));
    let id = sent[0]["id"].as_u64().unwrap();
    let got = lines(&ok(queue(&[
        "receive",
        "jobs",
        "--visibility-timeout",
        "0",
    ])));
    assert_eq!(
        (got[0]["id"].as_u64(), got[0]["body"].as_str()),
        (Some(id), Some("resize image 7"))
    );
    // Received once and visible again: the next receive moves it to the dead letters.
    assert!(ok(queue(&["receive", "jobs"])).is_empty());
    let stats = lines(&ok(queue(&["stats"])));
    let dlq = stats.iter().find(|s| s["queue"] == "jobs-dlq").unwrap();
    assert_eq!(dlq["stats"]["available"], 1);
    assert_eq!(
        lines(&ok(queue(&["dlq", "redrive", "jobs-dlq"])))[0]["moved"],
        1
    );
    let again = lines(&ok(queue(&["receive", "jobs", "--wait", "2"])));
    let handle = again[0]["receipt_handle"].as_str().unwrap().to_string();
    assert_eq!(ok(queue(&["ack", "jobs", &handle])), "deleted\n");
    // Up to --max at once.
    for i in 0..3 {
        ok(queue(&["send", "jobs", &format!("batch {i}")]));
    }
    let three = lines(&ok(queue(&["receive", "jobs", "--max", "10"])));
    assert_eq!(three.len(), 3);
    let out = queue(&["receive", "jobs", "--max", "11"]);
    assert!(
        text(&out.stderr).starts_with("error: InvalidInput: max"),
        "{}",
        text(&out.stderr)
    );
    let out = queue(&["receive", "jobs", "--wait", "21"]);
    assert!(
        text(&out.stderr).starts_with("error: InvalidInput: wait"),
        "{}",
        text(&out.stderr)
    );
    for m in &three {
        ok(queue(&[
            "ack",
            "jobs",
            m["receipt_handle"].as_str().unwrap(),
        ]));
    }
    let out = queue(&["ack", "jobs", &handle]);
    assert!(
        text(&out.stderr).starts_with("error: InvalidInput: the receipt handle"),
        "{}",
        text(&out.stderr)
    );
    ok(queue(&["create-queue", "pay.fifo", "--fifo"]));
    let out = queue(&["send", "pay.fifo", "x"]);
    assert!(
        text(&out.stderr).starts_with("error: InvalidInput: group_id"),
        "{}",
        text(&out.stderr)
    );
    let a = lines(&ok(queue(&[
        "send",
        "pay.fifo",
        "charge",
        "--group",
        "u1",
        "--dedup-id",
        "tx1",
    ])));
    let b = lines(&ok(queue(&[
        "send",
        "pay.fifo",
        "charge",
        "--group",
        "u1",
        "--dedup-id",
        "tx1",
    ])));
    assert_eq!(
        a[0]["id"], b[0]["id"],
        "a duplicate within five minutes is the same message"
    );
}

#[test]
fn queue_commands_work_in_process() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let queue = |args: &[&str]| {
        let mut cmd = avl(home.path());
        cmd.arg("--data-dir").arg(&data).arg("queue").args(args);
        run(&mut cmd)
    };
    session(&queue);
}

#[test]
fn queue_commands_work_through_a_server() {
    let home = tempfile::tempdir().unwrap();
    let served = Served::start(serve(home.path(), &home.path().join("data"), &[]));
    let key = exported(&served.stdout, "AVL_ACCESS_KEY_ID").unwrap();
    let secret = exported(&served.stdout, "AVL_SECRET_ACCESS_KEY").unwrap();
    // `avl queue ARGS` against the server.
    let client = |args: &[&str]| {
        let mut cmd: Command = avl(home.path());
        cmd.env("AVL_ENDPOINT", &served.url)
            .env("AVL_ACCESS_KEY_ID", &key)
            .env("AVL_SECRET_ACCESS_KEY", &secret)
            .arg("queue")
            .args(args);
        cmd
    };
    let queue = |args: &[&str]| run(&mut client(args));
    session(&queue);
    // A consumer waiting for a message gets it when it is published.
    ok(queue(&["create-topic", "live"]));
    let waiting = {
        client(&[
            "consume",
            "live",
            "--group",
            "g",
            "--from-beginning",
            "--max",
            "1",
            "--wait",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    // A subscriber to a pattern, streamed from the server, sees messages as they come.
    let subscriber = {
        client(&[
            "subscribe",
            "*",
            "--from-beginning",
            "--max",
            "2",
            "--idle",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    std::thread::sleep(std::time::Duration::from_millis(700));
    ok(queue(&["publish", "live", "hello"]));
    let out = waiting.wait_with_output().unwrap();
    let got = lines(&text(&out.stdout));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["value"], "hello");
    ok(queue(&["create-topic", "lively"]));
    ok(queue(&["publish", "lively", "second topic"]));
    let out = subscriber.wait_with_output().unwrap();
    let got = lines(&text(&out.stdout));
    let values: Vec<&str> = got.iter().map(|l| l["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["hello", "second topic"]);
    let (code, _, _) = served.stop("TERM");
    assert_eq!(code, 0);
}

/// Reads an HTTP response head and then `events` server-sent events from `stream`.
fn sse_events(stream: &mut std::net::TcpStream, events: usize) -> (String, Vec<String>) {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let data: Vec<String> = rest
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
                .collect();
            if data.len() >= events || !head.starts_with("HTTP/1.1 200") {
                return (head.to_string(), data);
            }
        }
        let n = stream.read(&mut chunk).unwrap();
        if n == 0 {
            let text = String::from_utf8_lossy(&buf).to_string();
            let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            return (head.to_string(), Vec::new());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn server_sent_events_follow_a_pattern() {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let served = Served::start(serve(
        home.path(),
        &home.path().join("data"),
        &["--no-auth"],
    ));
    let queue = |args: &[&str]| {
        let mut cmd: Command = avl(home.path());
        cmd.env("AVL_ENDPOINT", &served.url)
            .env("AVL_ACCESS_KEY_ID", "AKIAUNUSED0000000000")
            .env("AVL_SECRET_ACCESS_KEY", "unused-with-no-auth")
            .arg("queue")
            .args(args);
        run(&mut cmd)
    };
    ok(queue(&["create-topic", "game.eu.events"]));
    ok(queue(&["publish", "game.eu.events", "before"]));
    let addr = served.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /v1/queue/events?pattern=game.%2A.events&from=beginning HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    ok(queue(&["publish", "game.eu.events", "live"]));
    let (head, data) = sse_events(&mut stream, 2);
    assert!(head.contains("text/event-stream"), "{head}");
    let values: Vec<String> = data
        .iter()
        .map(|d| {
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            assert_eq!(v["topic"], "game.eu.events");
            v["record"]["value"].as_str().unwrap().to_string()
        })
        .collect();
    // Values are base64 in the JSON: "before", "live".
    assert_eq!(values, ["YmVmb3Jl", "bGl2ZQ=="]);
    // A bad pattern is a clear error.
    let mut bad = std::net::TcpStream::connect(&addr).unwrap();
    bad.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        bad,
        "GET /v1/queue/events?pattern=a.%3E.b HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (head, _) = sse_events(&mut bad, 1);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    drop(stream);
    let (code, _, _) = served.stop("TERM");
    assert_eq!(code, 0);
}

#[test]
fn server_sent_events_need_a_signature_when_auth_is_on() {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let served = Served::start(serve(home.path(), &home.path().join("data"), &[]));
    let addr = served.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /v1/queue/events?pattern=x HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (head, _) = sse_events(&mut stream, 1);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    served.stop("TERM");
}
