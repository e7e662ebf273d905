//! Runs AvilaDB's graph index (raw, and through the database) and raw hnsw_rs on data
//! prepared by `prepare.py`, and prints one JSON line per (peer, ef), as `hnswlib_run.py`
//! does for hnswlib, for `report.py`.
//!
//! ```text
//! avl-vector-bench --data DIR --dataset glove --m 16 --efc 200 --threads 2 \
//!     --ef 10,16,32,64,128 [--peers avila-hnsw,aviladb,hnsw_rs] [--max-queries N] \
//!     [--max-base N] [--filtered-queries N] [--filtered-ef 64,128]
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aviladb::graph::{GraphParams, Hnsw, Space};
use serde_json::{Value, json};

struct Args {
    data: PathBuf,
    dataset: String,
    m: usize,
    efc: usize,
    threads: usize,
    ef: Vec<usize>,
    peers: Vec<String>,
    max_queries: usize,
    max_base: usize,
    filtered_queries: usize,
    filtered_ef: Vec<usize>,
}

fn args() -> Args {
    let mut a = Args {
        data: PathBuf::from("target/vector-bench"),
        dataset: "glove".into(),
        m: 16,
        efc: 200,
        threads: 2,
        ef: vec![10, 16, 24, 32, 48, 64, 96, 128, 256, 384, 512],
        peers: vec!["avila-hnsw".into(), "aviladb".into(), "hnsw_rs".into()],
        max_queries: usize::MAX,
        max_base: usize::MAX,
        filtered_queries: 1000,
        filtered_ef: vec![64, 128],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let list = || value.split(',').map(str::to_string).collect::<Vec<_>>();
        match flag.as_str() {
            "--data" => a.data = PathBuf::from(&value),
            "--dataset" => a.dataset = value.clone(),
            "--m" => a.m = value.parse().expect("--m"),
            "--efc" => a.efc = value.parse().expect("--efc"),
            "--threads" => a.threads = value.parse().expect("--threads"),
            "--ef" => a.ef = list().iter().map(|s| s.parse().expect("--ef")).collect(),
            "--peers" => a.peers = list(),
            "--max-queries" => a.max_queries = value.parse().expect("--max-queries"),
            "--max-base" => a.max_base = value.parse().expect("--max-base"),
            "--filtered-queries" => a.filtered_queries = value.parse().expect("--filtered-queries"),
            "--filtered-ef" => {
                a.filtered_ef = list()
                    .iter()
                    .map(|s| s.parse().expect("--filtered-ef"))
                    .collect()
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

struct Data {
    dim: usize,
    cosine: bool,
    base: Vec<f32>,
    queries: Vec<f32>,
    /// The exact nearest base rows of each query, `gt_k` per query.
    gt: Vec<u32>,
    gt_k: usize,
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn load(a: &Args) -> Data {
    let meta: Value = serde_json::from_slice(
        &std::fs::read(a.data.join(format!("{}.json", a.dataset))).expect("dataset metadata"),
    )
    .expect("metadata JSON");
    let dim = meta["d"].as_u64().expect("d") as usize;
    let gt_k = meta["gt_k"].as_u64().expect("gt_k") as usize;
    let cosine = meta["metric"] == "cosine";
    let mut base = read_f32(&a.data.join(format!("{}.base.f32", a.dataset)));
    let mut queries = read_f32(&a.data.join(format!("{}.query.f32", a.dataset)));
    let gt_bytes = std::fs::read(a.data.join(format!("{}.gt.u32", a.dataset))).expect("gt");
    let mut gt: Vec<u32> = gt_bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let nq = (queries.len() / dim).min(a.max_queries);
    queries.truncate(nq * dim);
    gt.truncate(nq * gt_k);
    let mut data = Data {
        dim,
        cosine,
        base: Vec::new(),
        queries,
        gt,
        gt_k,
    };
    if base.len() / dim > a.max_base {
        // A prefix of the base: the ground truth no longer holds, compute it again.
        base.truncate(a.max_base * dim);
        data.base = base;
        data.gt = (0..nq)
            .flat_map(|q| exact(&data, q, data.gt_k, &|_| true))
            .collect();
    } else {
        data.base = base;
    }
    data
}

fn distance(data: &Data, a: &[f32], b: &[f32]) -> f32 {
    if data.cosine {
        let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
        for (x, y) in a.iter().zip(b) {
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        1.0 - ab / (aa.sqrt() * bb.sqrt()).max(f32::MIN_POSITIVE)
    } else {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }
}

/// The exact `k` nearest base rows to query `q` among those `keep` takes.
fn exact(data: &Data, q: usize, k: usize, keep: &dyn Fn(usize) -> bool) -> Vec<u32> {
    let query = &data.queries[q * data.dim..(q + 1) * data.dim];
    let mut all: Vec<(f32, u32)> = data
        .base
        .chunks_exact(data.dim)
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, v)| (distance(data, query, v), i as u32))
        .collect();
    let k = k.min(all.len());
    if k == 0 {
        return Vec::new();
    }
    all.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
    all.truncate(k);
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all.into_iter().map(|x| x.1).collect()
}

fn recall(found: &[Vec<u32>], truth: &[Vec<u32>]) -> f64 {
    let mut hit = 0usize;
    let mut total = 0usize;
    for (f, t) in found.iter().zip(truth) {
        hit += t.iter().filter(|x| f.contains(x)).count();
        total += t.len();
    }
    hit as f64 / total.max(1) as f64
}

fn truth10(data: &Data) -> Vec<Vec<u32>> {
    data.gt
        .chunks_exact(data.gt_k)
        .map(|row| row[..10].to_vec())
        .collect()
}

fn emit(a: &Args, peer: &str, build: Duration, ef: usize, recall: f64, qps: f64, extra: Value) {
    let mut line = json!({
        "peer": peer,
        "dataset": a.dataset,
        "m": a.m,
        "efc": a.efc,
        "threads": a.threads,
        "build_s": build.as_secs_f64(),
        "ef": ef,
        "recall10": recall,
        "qps": qps,
    });
    if let (Value::Object(line), Value::Object(extra)) = (&mut line, extra) {
        line.extend(extra);
    }
    println!("{line}");
}

/// Times `search` over every query once per ef (one thread).
fn sweep(
    a: &Args,
    data: &Data,
    peer: &str,
    build: Duration,
    search: &mut dyn FnMut(&[f32], usize) -> Vec<u32>,
) {
    let truth = truth10(data);
    for &ef in &a.ef {
        let started = Instant::now();
        let found: Vec<Vec<u32>> = data
            .queries
            .chunks_exact(data.dim)
            .map(|q| search(q, ef))
            .collect();
        let secs = started.elapsed().as_secs_f64();
        emit(
            a,
            peer,
            build,
            ef,
            recall(&found, &truth),
            found.len() as f64 / secs,
            json!({}),
        );
    }
}

fn pool(a: &Args) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .expect("thread pool")
}

fn params(a: &Args) -> GraphParams {
    GraphParams {
        m: a.m,
        ef_construction: a.efc,
        ef_search: 64,
    }
}

fn ours(a: &Args, data: &Data) {
    let space = if data.cosine {
        Space::Cosine
    } else {
        Space::L2
    };
    // AVL_BENCH_KEY_ORDER=1 builds in the order the database does (document ids as
    // text, sorted), to tell an insertion-order effect from anything else.
    let n = data.base.len() / data.dim;
    let order: Vec<u32> = if std::env::var_os("AVL_BENCH_KEY_ORDER").is_some() {
        let mut ids: Vec<u32> = (0..n as u32).collect();
        ids.sort_by_key(|i| i.to_string());
        ids
    } else {
        (0..n as u32).collect()
    };
    let base: Vec<f32> = order
        .iter()
        .flat_map(|&i| data.base[i as usize * data.dim..(i as usize + 1) * data.dim].iter().copied())
        .collect();
    let started = Instant::now();
    let graph = Hnsw::build(data.dim, space, params(a), &base, Some(&pool(a))).expect("build");
    let build = started.elapsed();
    sweep(a, data, "avila-hnsw", build, &mut |q, ef| {
        graph
            .search(q, 10, ef)
            .expect("search")
            .into_iter()
            .map(|h| order[h.0 as usize])
            .collect()
    });
}

fn raw_hnsw_rs(a: &Args, data: &Data) {
    use hnsw_rs::prelude::*;
    let n = data.base.len() / data.dim;
    // Cosine as a dot product of normalized vectors (hnsw_rs's DistCosine is slower).
    let prepared: Vec<Vec<f32>> = data
        .base
        .chunks_exact(data.dim)
        .map(|v| prepare(data, v))
        .collect();
    let rows: Vec<(&[f32], usize)> = prepared
        .iter()
        .map(|v| (v.as_slice(), 0))
        .enumerate()
        .map(|(i, (v, _))| (v, i))
        .collect();
    let pool = pool(a);
    let truth = truth10(data);
    macro_rules! run {
        ($dist:expr) => {{
            let started = Instant::now();
            let index = Hnsw::<f32, _>::new(a.m, n, 16, a.efc, $dist);
            pool.install(|| index.parallel_insert_slice(&rows));
            let build = started.elapsed();
            let mut index = index;
            index.set_searching_mode(true);
            for &ef in &a.ef {
                let started = Instant::now();
                let found: Vec<Vec<u32>> = data
                    .queries
                    .chunks_exact(data.dim)
                    .map(|q| {
                        let q = prepare(data, q);
                        index
                            .search(&q, 10, ef)
                            .into_iter()
                            .map(|h| h.d_id as u32)
                            .collect()
                    })
                    .collect();
                let secs = started.elapsed().as_secs_f64();
                emit(
                    a,
                    "hnsw_rs",
                    build,
                    ef,
                    recall(&found, &truth),
                    found.len() as f64 / secs,
                    json!({}),
                );
            }
        }};
    }
    if data.cosine {
        run!(DistDot {})
    } else {
        run!(DistL2 {})
    }
}

fn prepare(data: &Data, v: &[f32]) -> Vec<f32> {
    let mut v = v.to_vec();
    if data.cosine {
        aviladb::graph::normalize(&mut v);
    }
    v
}

fn through_aviladb(a: &Args, data: &Data) {
    use aviladb::{
        Engine, EngineOptions, VectorIndexInfo, VectorMetric, VectorQuery, WriteDurability, WriteOp,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::open_with(
        dir.path(),
        EngineOptions {
            durability: WriteDurability::Never,
            ..EngineOptions::default()
        },
    )
    .expect("open");
    let db = engine.database("bench");
    db.create().expect("database");
    let coll = db.create_collection("vectors", "/id").expect("collection");
    // 10% of the documents have tag 3; 0.1% have rare 7 (indexed).
    let rows: Vec<&[f32]> = data.base.chunks_exact(data.dim).collect();
    for (start, chunk) in rows.chunks(100).enumerate() {
        let ops = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let i = start * 100 + j;
                WriteOp::Insert {
                    document: json!({"id": i.to_string(), "tag": i % 10, "rare": i % 1000, "embedding": v}),
                }
            })
            .collect();
        coll.write(ops).expect("write");
    }
    coll.create_index("by_rare", &["/rare"], false)
        .expect("index");
    let metric = if data.cosine {
        VectorMetric::Cosine
    } else {
        VectorMetric::Euclidean
    };
    let started = Instant::now();
    let index = VectorIndexInfo::new("embedding", data.dim, metric)
        .and_then(|i| i.with_params(params(a)))
        .expect("definition");
    // The engine builds on the global rayon pool: size it as asked.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build_global();
    coll.create_vector_index_with(index).expect("vector index");
    assert!(
        coll.wait_vector_indexes(Duration::from_secs(3600))
            .expect("status")
    );
    let build = started.elapsed();
    let id_of = |hit: &aviladb::VectorHit| -> u32 {
        hit.document["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("id")
    };
    // The same graph three ways: alone (no documents), through the database returning
    // ids only, and returning whole documents.
    sweep(a, data, "aviladb-graph", build, &mut |q, ef| {
        engine
            .search_graph_only("bench", "vectors", "embedding", q, 10, ef)
            .expect("search")
            .expect("built")
            .into_iter()
            .map(|(key, _)| {
                let at = key.iter().rposition(|b| *b == 0).expect("key") + 1;
                std::str::from_utf8(&key[at..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .expect("id")
            })
            .collect()
    });
    sweep(a, data, "aviladb-ids", build, &mut |q, ef| {
        let mut query = VectorQuery::new("embedding", q.to_vec(), 10);
        query.ef = Some(ef);
        query.fields = Some(vec!["id".into()]);
        coll.vector_query(&query)
            .expect("search")
            .iter()
            .map(id_of)
            .collect()
    });
    sweep(a, data, "aviladb", build, &mut |q, ef| {
        let mut query = VectorQuery::new("embedding", q.to_vec(), 10);
        query.ef = Some(ef);
        coll.vector_query(&query)
            .expect("search")
            .iter()
            .map(id_of)
            .collect()
    });
    // Filtered: 10% (walk) and 0.1% (exact through the index), fewer queries.
    let nq = (data.queries.len() / data.dim).min(a.filtered_queries);
    for (label, filter, keep) in [
        (
            "10%",
            "c.tag = 3",
            Box::new(|i: usize| i % 10 == 3) as Box<dyn Fn(usize) -> bool>,
        ),
        ("0.1%", "c.rare = 7", Box::new(|i: usize| i % 1000 == 7)),
    ] {
        let truth: Vec<Vec<u32>> = (0..nq).map(|q| exact(data, q, 10, &keep)).collect();
        for &ef in &a.filtered_ef {
            let started = Instant::now();
            let mut access = String::new();
            let found: Vec<Vec<u32>> = (0..nq)
                .map(|q| {
                    let mut query = VectorQuery::new(
                        "embedding",
                        data.queries[q * data.dim..(q + 1) * data.dim].to_vec(),
                        10,
                    );
                    query.ef = Some(ef);
                    query.filter = Some(filter.into());
                    if q == 0 {
                        access = engine
                            .explain_vector_search("bench", "vectors", &query)
                            .expect("explain")
                            .to_string();
                    }
                    coll.vector_query(&query)
                        .expect("search")
                        .iter()
                        .map(id_of)
                        .collect()
                })
                .collect();
            let secs = started.elapsed().as_secs_f64();
            emit(
                a,
                "aviladb",
                build,
                ef,
                recall(&found, &truth),
                nq as f64 / secs,
                json!({"filter": label, "plan": access}),
            );
        }
    }
}

fn main() {
    let a = args();
    let data = load(&a);
    eprintln!(
        "{}: {} base vectors, {} queries, {} dimensions",
        a.dataset,
        data.base.len() / data.dim,
        data.queries.len() / data.dim,
        data.dim
    );
    for peer in a.peers.clone() {
        match peer.as_str() {
            "avila-hnsw" => ours(&a, &data),
            "aviladb" => through_aviladb(&a, &data),
            "hnsw_rs" => raw_hnsw_rs(&a, &data),
            other => panic!("unknown peer {other}"),
        }
    }
}
