//! Frame encoding and decoding: round trips, Auto's choices, corruption and limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use avila_compress::corpus::{Kind, generate};
use avila_compress::{
    Codec, Decoder, Error, Limits, MAX_OVERHEAD, Method, Options, Profile, compress, decompress,
    frame_header,
};

const CODECS: [Codec; 6] = [
    Codec::None,
    Codec::Lz4,
    Codec::Zstd,
    Codec::Auto(Profile::Hot),
    Codec::Auto(Profile::Balanced),
    Codec::Auto(Profile::Cold),
];
const SIZES: [usize; 9] = [0, 1, 63, 64, 65, 4096, 65_536, 131_073, 1 << 20];

/// Round trip of one input under one set of options; returns the frame.
fn check(data: &[u8], options: Options) -> Vec<u8> {
    let frame = compress(data, options);
    let limits = Limits::new(data.len() as u64);
    let back = decompress(&frame, &limits)
        .unwrap_or_else(|e| panic!("{options:?} on {} bytes: {e}", data.len()));
    assert_eq!(back, data, "{options:?}");
    assert!(
        frame.len() <= data.len() + MAX_OVERHEAD,
        "{options:?}: frame of {} for {} bytes",
        frame.len(),
        data.len()
    );
    frame
}

#[test]
fn every_codec_round_trips_every_kind_and_size() {
    for kind in Kind::ALL {
        for size in SIZES {
            let data = generate(kind, size, size as u64);
            for codec in CODECS {
                check(&data, Options::new(codec));
                check(&data, Options::new(codec).with_checksum(false));
            }
        }
    }
}

#[test]
fn zstd_levels_round_trip() {
    let data = generate(Kind::JsonLogs, 200_000, 3);
    for level in [-5, 1, 3, 9, 19] {
        let options = Options::new(Codec::Zstd).with_zstd_level(level).unwrap();
        check(&data, options);
    }
}

#[test]
fn auto_stores_incompressible_data_raw() {
    for size in [4096, 65_536, 1 << 20] {
        let random = generate(Kind::Random, size, 9);
        // Already-compressed data looks the same to Auto.
        let compressed = compress(&generate(Kind::Text, size * 4, 9), Codec::Zstd);
        for data in [&random[..], &compressed[..]] {
            for profile in [Profile::Hot, Profile::Balanced, Profile::Cold] {
                let frame = check(data, Options::new(Codec::Auto(profile)));
                assert_eq!(frame_header(&frame).unwrap().method, Method::None);
            }
        }
    }
}

#[test]
fn auto_compresses_text_logs_and_records_by_profile() {
    for kind in [Kind::Text, Kind::JsonLogs, Kind::Binary, Kind::Zeros] {
        let small = generate(kind, 16 << 10, 1);
        let large = generate(kind, 512 << 10, 1);
        let cases = [
            (&small, Profile::Hot, Method::Lz4),
            (&small, Profile::Balanced, Method::Lz4),
            (&small, Profile::Cold, Method::Zstd),
            (&large, Profile::Hot, Method::Lz4),
            (&large, Profile::Balanced, Method::Zstd),
            (&large, Profile::Cold, Method::Zstd),
        ];
        for (data, profile, expected) in cases {
            let frame = check(data, Options::new(Codec::Auto(profile)));
            let header = frame_header(&frame).unwrap();
            assert_eq!(header.method, expected, "{kind:?} {profile:?}");
            assert!(
                frame.len() <= data.len() - data.len() / 8,
                "{kind:?} saved < 1/8"
            );
        }
    }
}

#[test]
fn tiny_inputs_are_stored_raw_by_auto() {
    let data = b"short";
    let frame = check(data, Options::new(Codec::Auto(Profile::Cold)));
    assert_eq!(frame_header(&frame).unwrap().method, Method::None);
}

#[test]
fn explicit_codec_never_expands_its_payload() {
    let random = generate(Kind::Random, 100_000, 5);
    for codec in [Codec::Lz4, Codec::Zstd] {
        let frame = check(&random, Options::new(codec));
        assert_eq!(frame_header(&frame).unwrap().method, Method::None);
    }
}

#[test]
fn a_flipped_bit_anywhere_is_detected() {
    let data = generate(Kind::JsonLogs, 5000, 2);
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
        let frame = compress(&data, codec);
        for i in 0..frame.len() {
            for bit in [0, 3, 7] {
                let mut bad = frame.clone();
                bad[i] ^= 1 << bit;
                match decompress(&bad, &Limits::default()) {
                    Err(_) => {}
                    Ok(back) => assert_eq!(back, data, "{codec:?}: flip at {i} went unnoticed"),
                }
            }
        }
    }
}

#[test]
fn corruption_errors_name_the_problem() {
    let data = generate(Kind::Text, 3000, 4);
    let frame = compress(&data, Codec::Lz4);
    let header = frame_header(&frame).unwrap();

    let mut bad = frame.clone();
    bad[0] = b'X';
    assert!(matches!(
        decompress(&bad, &Limits::default()),
        Err(Error::BadMagic)
    ));

    let mut bad = frame.clone();
    bad[4] = 9;
    assert!(matches!(
        decompress(&bad, &Limits::default()),
        Err(Error::UnsupportedVersion(9))
    ));

    let mut bad = frame.clone();
    bad[5] = 7;
    assert!(matches!(
        decompress(&bad, &Limits::default()),
        Err(Error::UnknownCodec(7))
    ));

    let mut bad = frame.clone();
    bad[6] |= 0x80;
    assert!(matches!(
        decompress(&bad, &Limits::default()),
        Err(Error::UnknownFlags(_))
    ));

    let mut bad = frame.clone();
    bad[header.header_len - 1] ^= 0xff;
    assert!(matches!(
        decompress(&bad, &Limits::default()),
        Err(Error::HeaderCorrupted)
    ));

    let mut bad = frame.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        decompress(&bad, &Limits::default()),
        Err(Error::ChecksumMismatch)
    ));

    let mut bad = frame.clone();
    bad.push(0);
    assert!(matches!(
        decompress(&bad, &Limits::default()),
        Err(Error::TrailingBytes(1))
    ));

    for cut in 0..frame.len() {
        let err = decompress(&frame[..cut], &Limits::default()).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn decompression_bombs_are_refused_before_allocating() {
    let zeros = generate(Kind::Zeros, 8 << 20, 0);
    for codec in [Codec::Lz4, Codec::Zstd] {
        let frame = compress(&zeros, codec);
        assert!(frame.len() < 64 << 10);
        let err = decompress(&frame, &Limits::new(1 << 20)).unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { declared, limit } if declared == 8 << 20 && limit == 1 << 20),
            "{err}"
        );
        assert_eq!(err.kind(), avila_compress::ErrorKind::TooLarge);
    }
}

#[test]
fn decoder_is_reusable_and_leaves_output_untouched_on_error() {
    let mut decoder = Decoder::new();
    let a = generate(Kind::Text, 10_000, 1);
    let b = generate(Kind::Binary, 10_000, 2);
    let mut out = b"prefix".to_vec();
    decoder
        .decode_into(&compress(&a, Codec::Zstd), &Limits::default(), &mut out)
        .unwrap();
    let mut bad = compress(&b, Codec::Zstd);
    let n = bad.len();
    bad[n - 20] ^= 0x55;
    assert!(
        decoder
            .decode_into(&bad, &Limits::default(), &mut out)
            .is_err()
    );
    assert_eq!(&out[..6], b"prefix");
    assert_eq!(&out[6..], &a[..]);
    assert_eq!(
        decoder
            .decode(&compress(&b, Codec::Zstd), &Limits::default())
            .unwrap(),
        b
    );
}

#[test]
fn frame_parts_match_the_owned_frame_and_do_not_copy_raw_data() {
    let mut encoder = avila_compress::Encoder::new(Codec::Auto(Profile::Hot));
    for kind in [Kind::Random, Kind::Text] {
        let data = generate(kind, 100_000, 6);
        let parts = encoder.encode_parts(&data);
        assert_eq!(parts.to_vec(), compress(&data, Codec::Auto(Profile::Hot)));
        assert_eq!(parts.len(), parts.to_vec().len());
        let mut written = Vec::new();
        parts.write_to(&mut written).unwrap();
        assert_eq!(decompress(&written, &Limits::default()).unwrap(), data);
        if kind == Kind::Random {
            assert_eq!(parts.method(), Method::None);
            assert!(std::ptr::eq(parts.slices()[1].as_ptr(), data.as_ptr()));
        } else {
            assert_eq!(parts.method(), Method::Lz4);
        }
    }
}

#[test]
fn auto_output_is_what_the_picked_codec_gives() {
    for kind in [Kind::Text, Kind::JsonLogs, Kind::Binary] {
        for size in [4096, 300_000] {
            let data = generate(kind, size, 21);
            for profile in [Profile::Hot, Profile::Balanced, Profile::Cold] {
                let auto = compress(&data, Codec::Auto(profile));
                let picked = match frame_header(&auto).unwrap().method {
                    Method::Lz4 => Codec::Lz4,
                    Method::Zstd => Codec::Zstd,
                    Method::None => Codec::None,
                };
                assert_eq!(auto, compress(&data, picked), "{kind:?} {size} {profile:?}");
            }
        }
    }
}

#[test]
fn borrowed_decoding_lends_stored_payloads_and_checks_them() {
    use std::borrow::Cow;
    let limits = Limits::new(1 << 20);
    for codec in CODECS {
        for kind in [Kind::Random, Kind::Text] {
            let data = generate(kind, 5000, 3);
            let frame = compress(&data, Options::new(codec));
            let got = Decoder::new().decode_borrowed(&frame, &limits).unwrap();
            assert_eq!(&*got, data.as_slice(), "{codec:?} {kind:?}");
            let stored = frame_header(&frame).unwrap().method == Method::None;
            assert_eq!(
                matches!(got, Cow::Borrowed(_)),
                stored,
                "{codec:?} {kind:?}"
            );
        }
    }
    let frame = compress(
        b"stored as it is, checked all the same",
        Options::new(Codec::None),
    );
    let mut damaged = frame.clone();
    damaged[frame.len() - 12] ^= 1;
    assert!(matches!(
        Decoder::new().decode_borrowed(&damaged, &limits),
        Err(Error::ChecksumMismatch)
    ));
    let mut long = frame.clone();
    long.push(0);
    assert!(matches!(
        Decoder::new().decode_borrowed(&long, &limits),
        Err(Error::TrailingBytes(1))
    ));
    assert!(
        Decoder::new()
            .decode_borrowed(&frame[..frame.len() - 1], &limits)
            .is_err()
    );
    assert!(matches!(
        Decoder::new().decode_borrowed(&frame, &Limits::new(3)),
        Err(Error::TooLarge { .. })
    ));
}
