//! Streaming writer and reader.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};

use avila_compress::corpus::{Kind, generate};
use avila_compress::{Codec, Error, FrameReader, FrameWriter, Limits, Options, Profile};

fn write_stream(data: &[u8], options: Options, piece: usize) -> Vec<u8> {
    let mut writer = FrameWriter::new(Vec::new(), options);
    for chunk in data.chunks(piece.max(1)) {
        writer.write_all(chunk).unwrap();
    }
    writer.finish().unwrap()
}

fn read_stream(stream: &[u8], limits: Limits) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    FrameReader::new(stream, limits).read_to_end(&mut out)?;
    Ok(out)
}

fn inner_error(e: &std::io::Error) -> &Error {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .unwrap_or_else(|| panic!("not a frame error: {e}"))
}

#[test]
fn streams_round_trip_for_any_write_pattern() {
    let data = [
        generate(Kind::JsonLogs, 300_000, 1),
        generate(Kind::Random, 100_000, 2),
    ]
    .concat();
    for codec in [
        Codec::None,
        Codec::Lz4,
        Codec::Zstd,
        Codec::Auto(Profile::Balanced),
    ] {
        for block in [1, 1000, 65_536, 1 << 20] {
            let options = Options::new(codec).with_block_size(block).unwrap();
            for piece in [1, 777, 65_536, 400_000] {
                if block == 1 && piece != 777 {
                    continue; // one-byte blocks are slow; one pattern is enough
                }
                let stream = write_stream(&data, options, piece);
                let back = read_stream(&stream, Limits::new(data.len() as u64)).unwrap();
                assert_eq!(
                    back.len(),
                    data.len(),
                    "{codec:?} block {block} piece {piece}"
                );
                assert!(back == data, "{codec:?} block {block} piece {piece}");
            }
        }
    }
}

#[test]
fn empty_stream_round_trips() {
    let stream = write_stream(&[], Options::default(), 10);
    assert!(!stream.is_empty());
    assert!(read_stream(&stream, Limits::default()).unwrap().is_empty());
}

#[test]
fn truncated_streams_are_errors_not_short_reads() {
    let data = generate(Kind::Text, 50_000, 3);
    let options = Options::new(Codec::Lz4).with_block_size(10_000).unwrap();
    let stream = write_stream(&data, options, 4096);
    for cut in (0..stream.len()).step_by(97) {
        let err = read_stream(&stream[..cut], Limits::default()).unwrap_err();
        let inner = inner_error(&err);
        assert!(
            matches!(inner, Error::Truncated { .. } | Error::UnterminatedStream),
            "cut at {cut}: {inner}"
        );
    }
}

#[test]
fn a_stream_without_its_final_frame_is_unterminated() {
    let data = generate(Kind::Text, 30_000, 3);
    let options = Options::new(Codec::Lz4).with_block_size(10_000).unwrap();
    let mut writer = FrameWriter::new(Vec::new(), options);
    writer.write_all(&data).unwrap();
    // Dropped without finish: three full blocks are out, the final frame is not.
    let partial = writer.get_ref().clone();
    let err = read_stream(&partial, Limits::default()).unwrap_err();
    assert!(matches!(inner_error(&err), Error::UnterminatedStream));
}

#[test]
fn stream_limits_bound_total_and_per_frame_output() {
    let data = generate(Kind::Zeros, 4 << 20, 0);
    let stream = write_stream(&data, Options::new(Codec::Zstd), 1 << 16);
    let err = read_stream(&stream, Limits::new(3 << 20)).unwrap_err();
    assert!(matches!(inner_error(&err), Error::TooLarge { limit, .. } if *limit == 3 << 20));
    let per_frame = Limits {
        max_output: u64::MAX,
        max_frame: 1000,
    };
    let err = read_stream(&stream, per_frame).unwrap_err();
    assert!(matches!(
        inner_error(&err),
        Error::TooLarge { limit: 1000, .. }
    ));
    assert_eq!(read_stream(&stream, Limits::new(4 << 20)).unwrap(), data);
}

#[test]
fn corruption_inside_a_stream_is_reported() {
    let data = generate(Kind::JsonLogs, 100_000, 8);
    let options = Options::new(Codec::Zstd).with_block_size(20_000).unwrap();
    let stream = write_stream(&data, options, 5000);
    for at in (0..stream.len()).step_by(501) {
        let mut bad = stream.clone();
        bad[at] ^= 0x10;
        match read_stream(&bad, Limits::default()) {
            Err(_) => {}
            Ok(back) => assert_eq!(back, data, "flip at {at} went unnoticed"),
        }
    }
}

/// Splits a stream into its frames.
fn frames(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let header = avila_compress::frame_header(&stream[at..]).unwrap();
        let len = header.frame_len() as usize;
        out.push(stream[at..at + len].to_vec());
        at += len;
    }
    out
}

#[test]
fn missing_repeated_or_reordered_frames_are_detected() {
    let data = generate(Kind::Text, 50_000, 12);
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
        let options = Options::new(codec).with_block_size(10_000).unwrap();
        let stream = write_stream(&data, options, 10_000);
        let parts = frames(&stream);
        assert_eq!(parts.len(), 6, "five full blocks and an empty final frame");
        let edits: [(&str, Vec<usize>); 4] = [
            ("missing", vec![0, 2, 3, 4, 5]),
            ("repeated", vec![0, 1, 1, 2, 3, 4, 5]),
            ("reordered", vec![0, 2, 1, 3, 4, 5]),
            ("first dropped", vec![1, 2, 3, 4, 5]),
        ];
        for (name, order) in edits {
            let spliced: Vec<u8> = order.iter().flat_map(|&i| parts[i].clone()).collect();
            let err = read_stream(&spliced, Limits::default()).unwrap_err();
            assert!(
                matches!(inner_error(&err), Error::ChecksumMismatch),
                "{codec:?} {name}: {err}"
            );
        }
    }
}

/// A writer that fails on demand.
struct Flaky {
    out: Vec<u8>,
    fail: bool,
}

impl Write for Flaky {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.fail {
            return Err(std::io::Error::other("disk hiccup"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_write_loses_nothing_and_can_be_retried() {
    let data = generate(Kind::JsonLogs, 30_000, 13);
    let options = Options::new(Codec::Lz4).with_block_size(4096).unwrap();
    let mut writer = FrameWriter::new(
        Flaky {
            out: Vec::new(),
            fail: false,
        },
        options,
    );
    let mut rest = &data[..];
    let mut failures = 0;
    let mut calls = 0;
    while !rest.is_empty() {
        calls += 1;
        // Every third call hits a failing writer; the caller retries the same bytes.
        writer.get_mut().fail = calls % 3 == 0;
        match writer.write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(_) => failures += 1,
        }
        writer.get_mut().fail = false;
    }
    let stream = writer.finish().unwrap().out;
    assert!(failures > 0, "the test exercised failures");
    assert_eq!(read_stream(&stream, Limits::default()).unwrap(), data);
}

/// A reader doing its own I/O walks a stream frame by frame: compressed frames through
/// `decode_stream_frame` with the previous checksum as seed, stored ones checked in
/// place with `content_checksum`; a frame moved out of its place fails its check.
#[test]
fn frames_of_a_stream_decode_one_at_a_time_with_chained_seeds() {
    use avila_compress::{CHECKSUM_LEN, Decoder, FrameHeader, Method, content_checksum};
    let data = [
        generate(Kind::JsonLogs, 200_000, 3),
        generate(Kind::Random, 150_000, 4),
    ]
    .concat();
    let options = Options::new(Codec::Auto(Profile::Balanced))
        .with_block_size(64 << 10)
        .unwrap();
    let stream = write_stream(&data, options, 10_000);
    let mut decoder = Decoder::new();
    let (mut at, mut seed, mut out, mut methods) = (0, 0u64, Vec::new(), Vec::new());
    let mut frames = Vec::new();
    loop {
        let header = FrameHeader::parse(&stream[at..]).unwrap();
        let len = header.frame_len() as usize;
        frames.push((at, len));
        methods.push(header.method);
        if header.method == Method::None {
            let payload = &stream[at + header.header_len..][..header.payload_len as usize];
            let sum_at = at + header.header_len + payload.len();
            let stored =
                u64::from_le_bytes(stream[sum_at..sum_at + CHECKSUM_LEN].try_into().unwrap());
            assert_eq!(content_checksum(payload, seed), stored);
            out.extend_from_slice(payload);
            seed = stored;
        } else {
            let (h, used) = decoder
                .decode_stream_frame(&stream[at..], seed, 1 << 20, &mut out)
                .unwrap();
            assert_eq!((h, used), (header, len));
            seed = u64::from_le_bytes(
                stream[at + len - CHECKSUM_LEN..at + len]
                    .try_into()
                    .unwrap(),
            );
        }
        at += len;
        if header.end {
            break;
        }
    }
    assert_eq!(at, stream.len());
    assert_eq!(out, data);
    assert!(methods.contains(&Method::None) && methods.contains(&Method::Lz4));
    // The second frame checked with the first frame's seed (0) instead of its own fails.
    let (second, _) = frames[1];
    let err = decoder
        .decode_stream_frame(&stream[second..], 0, 1 << 20, &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch), "{err}");
}
