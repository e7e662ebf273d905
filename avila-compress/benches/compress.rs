//! Framed vs raw codecs on the same inputs, in the same groups; `Auto` against the codec it
//! picks and against LZ4 on incompressible data.
//!
//! `cargo bench -p avila-compress --bench compress`, then
//! `python3 benches/criterion_ratios.py avila-compress` for the ratio table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use avila_compress::corpus::{Kind, generate};
use avila_compress::{
    Codec, Encoder, Limits, Method, Options, Profile, compress, decompress, frame_header,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [(usize, &str); 3] = [(64 << 10, "64KiB"), (1 << 20, "1MiB"), (16 << 20, "16MiB")];
const COMPRESSIBLE: [Kind; 3] = [Kind::Text, Kind::JsonLogs, Kind::Binary];

fn framing_overhead(c: &mut Criterion) {
    for kind in COMPRESSIBLE {
        for (size, size_name) in SIZES {
            let data = generate(kind, size, 42);
            let input = format!("{}-{size_name}", kind.name());

            let mut group = c.benchmark_group(format!("lz4-compress/{input}"));
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function("raw", |b| {
                b.iter(|| lz4_flex::block::compress(black_box(&data)))
            });
            group.bench_function("framed", |b| {
                b.iter(|| compress(black_box(&data), Codec::Lz4))
            });
            group.bench_function("framed-nocheck", |b| {
                let o = Options::new(Codec::Lz4).with_checksum(false);
                b.iter(|| compress(black_box(&data), o))
            });
            group.finish();

            let raw = lz4_flex::block::compress(&data);
            let framed = compress(&data, Codec::Lz4);
            let framed_nocheck = compress(&data, Options::new(Codec::Lz4).with_checksum(false));
            let limits = Limits::new(size as u64);
            let mut group = c.benchmark_group(format!("lz4-decompress/{input}"));
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function("raw", |b| {
                b.iter(|| lz4_flex::block::decompress(black_box(&raw), size).expect("valid"))
            });
            group.bench_function("framed", |b| {
                b.iter(|| decompress(black_box(&framed), &limits).expect("valid"))
            });
            group.bench_function("framed-nocheck", |b| {
                b.iter(|| decompress(black_box(&framed_nocheck), &limits).expect("valid"))
            });
            group.finish();

            let mut group = c.benchmark_group(format!("zstd3-compress/{input}"));
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function("raw", |b| {
                b.iter(|| zstd::bulk::compress(black_box(&data), 3).expect("compresses"))
            });
            group.bench_function("framed", |b| {
                b.iter(|| compress(black_box(&data), Codec::Zstd))
            });
            group.finish();

            let raw = zstd::bulk::compress(&data, 3).expect("compresses");
            let framed = compress(&data, Codec::Zstd);
            let framed_nocheck = compress(&data, Options::new(Codec::Zstd).with_checksum(false));
            let mut group = c.benchmark_group(format!("zstd3-decompress/{input}"));
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function("raw", |b| {
                b.iter(|| zstd::bulk::decompress(black_box(&raw), size).expect("valid"))
            });
            group.bench_function("framed", |b| {
                b.iter(|| decompress(black_box(&framed), &limits).expect("valid"))
            });
            group.bench_function("framed-nocheck", |b| {
                b.iter(|| decompress(black_box(&framed_nocheck), &limits).expect("valid"))
            });
            group.finish();
        }
    }
}

fn auto_incompressible(c: &mut Criterion) {
    for (size, size_name) in SIZES {
        let random = generate(Kind::Random, size, 7);
        let precompressed = compress(&generate(Kind::JsonLogs, size * 8, 7), Codec::Zstd);
        let precompressed = &precompressed[..size.min(precompressed.len())];
        for (name, data) in [("random", &random[..]), ("zstd-output", precompressed)] {
            let mut group = c.benchmark_group(format!("auto-incompressible/{name}-{size_name}"));
            group.throughput(Throughput::Bytes(data.len() as u64));
            group.bench_function("lz4-raw", |b| {
                b.iter(|| lz4_flex::block::compress(black_box(data)))
            });
            group.bench_function("auto-hot", |b| {
                b.iter(|| compress(black_box(data), Codec::Auto(Profile::Hot)))
            });
            group.bench_function("auto-balanced", |b| {
                b.iter(|| compress(black_box(data), Codec::Auto(Profile::Balanced)))
            });
            group.bench_function("auto-hot-parts", |b| {
                let mut encoder = Encoder::new(Codec::Auto(Profile::Hot));
                b.iter(|| encoder.encode_parts(black_box(data)).len())
            });
            group.bench_function("auto-hot-parts-nocheck", |b| {
                let mut encoder =
                    Encoder::new(Options::new(Codec::Auto(Profile::Hot)).with_checksum(false));
                b.iter(|| encoder.encode_parts(black_box(data)).len())
            });
            group.bench_function("zstd3-raw", |b| {
                b.iter(|| zstd::bulk::compress(black_box(data), 3).expect("compresses"))
            });
            group.finish();
        }
    }
}

fn auto_compressible(c: &mut Criterion) {
    for kind in COMPRESSIBLE {
        for (size, size_name) in SIZES {
            let data = generate(kind, size, 11);
            for profile in [Profile::Hot, Profile::Balanced, Profile::Cold] {
                let frame = compress(&data, Codec::Auto(profile));
                let method = frame_header(&frame).expect("own frame").method;
                let picked = match method {
                    Method::Lz4 => Codec::Lz4,
                    Method::Zstd => Codec::Zstd,
                    Method::None => Codec::None,
                };
                let id = format!("auto-{profile:?}/{}-{size_name}", kind.name()).to_lowercase();
                let mut group = c.benchmark_group(id);
                group.throughput(Throughput::Bytes(size as u64));
                group.bench_function(BenchmarkId::new("picked", format!("{method:?}")), |b| {
                    b.iter(|| compress(black_box(&data), picked))
                });
                group.bench_function("auto", |b| {
                    b.iter(|| compress(black_box(&data), Codec::Auto(profile)))
                });
                group.finish();
            }
        }
    }
}

/// A stream of mixed blocks (text, random, JSON logs, binary, already-compressed), as an
/// object store sees them: `Auto` decides per block.
fn auto_mixed(c: &mut Criterion) {
    use std::io::Write;
    let block = 1 << 20;
    let mut data = Vec::new();
    for (i, kind) in [Kind::Text, Kind::Random, Kind::JsonLogs, Kind::Binary]
        .into_iter()
        .cycle()
        .take(16)
        .enumerate()
    {
        data.extend_from_slice(&generate(kind, block, i as u64));
    }
    let stream = |codec: Codec| {
        let options = Options::new(codec)
            .with_block_size(block)
            .expect("valid block size");
        let mut writer = avila_compress::FrameWriter::new(Vec::new(), options);
        writer.write_all(&data).expect("writes to a Vec");
        writer.finish().expect("writes to a Vec")
    };
    let mut group = c.benchmark_group("auto-mixed-stream/16MiB");
    group.throughput(Throughput::Bytes(data.len() as u64));
    for (name, codec) in [
        ("lz4", Codec::Lz4),
        ("zstd3", Codec::Zstd),
        ("auto-hot", Codec::Auto(Profile::Hot)),
        ("auto-cold", Codec::Auto(Profile::Cold)),
    ] {
        group.bench_function(name, |b| b.iter(|| stream(codec).len()));
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = framing_overhead, auto_incompressible, auto_compressible, auto_mixed
}
criterion_main!(benches);
