//! Served publish throughput, batches of 100 × 1 KiB from concurrent producers over
//! loopback: `avl serve`'s queue service (a topic under `Always`) beside Redis Streams
//! (XADD pipelined, `appendfsync always`) and NATS JetStream (file storage), in one run.
//! `bench.sh` beside this file starts the servers and runs it.
//!
//! Usage: avl-queue-served-bench --avl URL --redis PORT --nats URL
//!        [--messages N] [--producers P] [--batch B] [--size BYTES]

use std::time::Instant;

use avl_core::{Client, ClientConfig, connect};
use avl_queue::{Durability, Message, QueueClient, QueueService, TopicConfig};
use futures_util::future::join_all;

struct Args {
    avl: String,
    redis: u16,
    nats: String,
    messages: usize,
    producers: usize,
    batch: usize,
    size: usize,
}

fn args() -> Args {
    let mut a = Args {
        avl: String::new(),
        redis: 0,
        nats: String::new(),
        messages: 200_000,
        producers: 4,
        batch: 100,
        size: 1024,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i + 1 < argv.len() {
        let v = &argv[i + 1];
        match argv[i].as_str() {
            "--avl" => a.avl = v.clone(),
            "--redis" => a.redis = v.parse().expect("--redis PORT"),
            "--nats" => a.nats = v.clone(),
            "--messages" => a.messages = v.parse().expect("--messages"),
            "--producers" => a.producers = v.parse().expect("--producers"),
            "--batch" => a.batch = v.parse().expect("--batch"),
            "--size" => a.size = v.parse().expect("--size"),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// Runs `producers` tasks of `rounds` batches each; answers messages per second.
async fn timed<F, Fut>(a: &Args, f: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    join_all((0..a.producers).map(&f)).await;
    a.messages as f64 / started.elapsed().as_secs_f64()
}

async fn avl(a: &Args) -> f64 {
    let mut config = ClientConfig::default();
    config.endpoint = Some(a.avl.clone());
    // Signed requests, as a real client sends them: the key pair the script gave the
    // server.
    let id = std::env::var("AVL_ACCESS_KEY_ID").expect("AVL_ACCESS_KEY_ID");
    let secret = std::env::var("AVL_SECRET_ACCESS_KEY").expect("AVL_SECRET_ACCESS_KEY");
    config.credentials = Some(avl_core::Credentials::new(id, secret).unwrap());
    let client = QueueClient::new(Client::new(connect::<QueueService>(&config).unwrap()));
    client
        .create_topic(
            "bench",
            TopicConfig {
                partitions: 1,
                durability: Durability::Always,
                ..TopicConfig::default()
            },
        )
        .await
        .unwrap();
    let value = vec![7u8; a.size];
    let rounds = a.messages / a.producers / a.batch;
    timed(a, |_| {
        let client = client.clone();
        let value = value.clone();
        async move {
            for _ in 0..rounds {
                let batch: Vec<Message> = (0..a.batch).map(|_| Message::new(value.clone())).collect();
                client.publish("bench", batch).await.unwrap();
            }
        }
    })
    .await
}

async fn redis(a: &Args) -> f64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", a.redis)).unwrap();
    let value = vec![7u8; a.size];
    let rounds = a.messages / a.producers / a.batch;
    timed(a, |_| {
        let client = client.clone();
        let value = value.clone();
        async move {
            let mut con = client.get_multiplexed_async_connection().await.unwrap();
            for _ in 0..rounds {
                let mut pipe = redis::pipe();
                for _ in 0..a.batch {
                    pipe.cmd("XADD").arg("bench").arg("*").arg("v").arg(&value[..]);
                }
                let _: Vec<String> = pipe.query_async(&mut con).await.unwrap();
            }
        }
    })
    .await
}

async fn nats(a: &Args) -> f64 {
    let client = async_nats::connect(&a.nats).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let value = bytes::Bytes::from(vec![7u8; a.size]);
    let rounds = a.messages / a.producers / a.batch;
    timed(a, |_| {
        let js = js.clone();
        let value = value.clone();
        async move {
            for _ in 0..rounds {
                let mut acks = Vec::with_capacity(a.batch);
                for _ in 0..a.batch {
                    acks.push(js.publish("bench", value.clone()).await.unwrap());
                }
                for ack in join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await {
                    ack.unwrap();
                }
            }
        }
    })
    .await
}

#[tokio::main]
async fn main() {
    let a = args();
    let ours = avl(&a).await;
    let redis = redis(&a).await;
    let nats = nats(&a).await;
    println!(
        "{} producers, batches of {} x {} B, {} messages each system",
        a.producers, a.batch, a.size, a.messages
    );
    println!("avl serve (queue topic, Always): {ours:.0} msg/s");
    println!("Redis Streams (XADD pipelined, appendfsync always): {redis:.0} msg/s -> avl {:.2}x", ours / redis);
    println!("NATS JetStream (file storage, async acks): {nats:.0} msg/s -> avl {:.2}x", ours / nats);
}
