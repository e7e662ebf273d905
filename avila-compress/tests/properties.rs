//! Property tests: round trips for arbitrary data and settings; arbitrary or mutated bytes
//! into the decoders never panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};

use avila_compress::{
    Codec, FrameReader, FrameWriter, Limits, Options, Profile, compress, decompress,
};
use proptest::prelude::*;

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![
        Just(Codec::None),
        Just(Codec::Lz4),
        Just(Codec::Zstd),
        Just(Codec::Auto(Profile::Hot)),
        Just(Codec::Auto(Profile::Balanced)),
        Just(Codec::Auto(Profile::Cold)),
    ]
}

fn options() -> impl Strategy<Value = Options> {
    (codec(), -3i32..=12, any::<bool>(), 1usize..5000).prop_map(
        |(codec, level, checksum, block)| {
            Options::new(codec)
                .with_zstd_level(level)
                .and_then(|o| o.with_block_size(block))
                .map(|o| o.with_checksum(checksum))
                .expect("levels and block sizes drawn from valid ranges")
        },
    )
}

/// Data with a mix of runs and noise, so codecs have something to find.
fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..3000),
        prop::collection::vec((any::<u8>(), 1usize..200), 0..60)
            .prop_map(|runs| runs.into_iter().flat_map(|(b, n)| vec![b; n]).collect()),
        prop::collection::vec(prop::sample::select(b"abc {}\":,0123".to_vec()), 0..5000),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn one_shot_round_trip(data in data(), options in options()) {
        let frame = compress(&data, options);
        prop_assert!(frame.len() <= data.len() + avila_compress::MAX_OVERHEAD);
        let back = decompress(&frame, &Limits::new(data.len() as u64)).unwrap();
        prop_assert_eq!(back, data);
    }

    #[test]
    fn stream_round_trip(data in data(), options in options(), piece in 1usize..4000) {
        let mut writer = FrameWriter::new(Vec::new(), options);
        for chunk in data.chunks(piece) {
            writer.write_all(chunk).unwrap();
        }
        let stream = writer.finish().unwrap();
        let mut back = Vec::new();
        FrameReader::new(&stream[..], Limits::new(data.len() as u64))
            .read_to_end(&mut back)
            .unwrap();
        prop_assert_eq!(back, data);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = decompress(&bytes, &Limits::new(1 << 20));
        let mut out = Vec::new();
        let _ = FrameReader::new(&bytes[..], Limits::new(1 << 20)).read_to_end(&mut out);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_magic_never_panic(
        rest in prop::collection::vec(any::<u8>(), 0..2000),
        version in prop_oneof![Just(1u8), any::<u8>()],
        codec in 0u8..4,
    ) {
        let mut bytes = b"AVZ\x1a".to_vec();
        bytes.push(version);
        bytes.push(codec);
        bytes.extend_from_slice(&rest);
        let _ = decompress(&bytes, &Limits::new(1 << 20));
        let mut out = Vec::new();
        let _ = FrameReader::new(&bytes[..], Limits::new(1 << 20)).read_to_end(&mut out);
    }

    #[test]
    fn mutated_frames_fail_or_decode_to_the_original(
        data in data(),
        codec in codec(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut frame = compress(&data, codec);
        let original = frame.clone();
        for (at, byte) in edits {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        if let Ok(back) = decompress(&frame, &Limits::new(1 << 20)) {
            prop_assert!(back == data || frame == original);
        }
    }
}
