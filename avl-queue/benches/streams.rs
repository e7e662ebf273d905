//! Streams against the physical limit, in one run:
//! - `Always`, 32 concurrent producers of 1 KiB messages to one partition, against raw
//!   appends to a file with one `fdatasync` per batch of the size group commit achieved
//!   (bar: at least 0.5x); publish latency p50/p99.
//! - `Never`: publish and consume in-process, one message per call and in batches of
//!   100 (bar: at least 500k msg/s).
//!
//! `cargo bench -p avl-queue --bench streams` (about a minute). `AVL_BENCH_DIR` picks the
//! disk (default: the system temporary directory).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use avl_queue::{Durability, Engine, Message, TopicConfig};

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("AVL_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn topic(engine: &Engine, name: &str, durability: Durability) {
    engine
        .create_topic(
            name,
            TopicConfig {
                partitions: 1,
                durability,
                ..TopicConfig::default()
            },
        )
        .unwrap();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// 32 producers publishing 1 KiB messages under `Always` for `secs`: (msg/s, messages
/// per sync, latencies).
fn always(secs: f64) -> (f64, f64, Vec<Duration>) {
    let dir = bench_dir();
    let engine = Engine::open(dir.path()).unwrap();
    topic(&engine, "t", Durability::Always);
    let stop = AtomicBool::new(false);
    let value = vec![7u8; 1024];
    let started = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|_| {
                s.spawn(|| {
                    let mut lat = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        engine.publish("t", Message::new(value.clone())).unwrap();
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let info = engine.partitions("t").unwrap()[0].clone();
    let mut lat = latencies;
    lat.sort_unstable();
    (
        info.end as f64 / elapsed,
        info.end as f64 / info.syncs.max(1) as f64,
        lat,
    )
}

/// Raw appends of 1 KiB records, `batch` at a time, one `fdatasync` per batch, for
/// `secs`: msg/s.
fn raw_file(batch: usize, secs: f64) -> f64 {
    let dir = bench_dir();
    let file = std::fs::File::create(dir.path().join("raw.log")).unwrap();
    let chunk = vec![7u8; (1024 + 36) * batch];
    let mut at = 0u64;
    let mut messages = 0usize;
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < secs {
        file.write_all_at(&chunk, at).unwrap();
        at += chunk.len() as u64;
        file.sync_data().unwrap();
        messages += batch;
    }
    messages as f64 / started.elapsed().as_secs_f64()
}

/// `Never`: publish `n` messages of `size` bytes (one per call, or `batch` per call),
/// then consume them all: (publish msg/s, consume msg/s).
fn never(n: usize, size: usize, batch: usize) -> (f64, f64) {
    let dir = bench_dir();
    let engine = Engine::open(dir.path()).unwrap();
    topic(&engine, "t", Durability::Never);
    let value = vec![3u8; size];
    let started = Instant::now();
    if batch == 1 {
        for _ in 0..n {
            engine
                .publish_to("t", 0, &[Message::new(value.clone())])
                .unwrap();
        }
    } else {
        let messages: Vec<Message> = (0..batch).map(|_| Message::new(value.clone())).collect();
        for _ in 0..n / batch {
            engine.publish_to("t", 0, &messages).unwrap();
        }
    }
    let publish = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut offset = 0u64;
    while (offset as usize) < n {
        let got = engine.read("t", 0, offset, 1000, usize::MAX).unwrap();
        offset += got.len() as u64;
    }
    let consume = n as f64 / started.elapsed().as_secs_f64();
    (publish, consume)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let mut out = std::io::stdout();
    let (ours, per_sync, lat) = always(10.0);
    let batch = per_sync.round().max(1.0) as usize;
    let raw = raw_file(batch, 10.0);
    writeln!(
        out,
        "Always, 32 producers, 1 KiB: {ours:.0} msg/s, {per_sync:.1} messages per sync; \
         raw file with one fdatasync per {batch} records: {raw:.0} msg/s; ratio {:.2}x; \
         publish latency p50 {:.2} ms, p99 {:.2} ms",
        ours / raw,
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    )
    .unwrap();
    for (size, batch) in [(100, 1), (100, 100), (1024, 1), (1024, 100)] {
        let n = if size == 100 { 2_000_000 } else { 1_000_000 };
        let (publish, consume) = never(n, size, batch);
        writeln!(
            out,
            "Never, {size} B messages, {batch} per publish: publish {publish:.0} msg/s, \
             consume {consume:.0} msg/s ({n} messages)"
        )
        .unwrap();
    }
}
