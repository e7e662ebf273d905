//! Chunk files as streams of blocks: reads with every buffer size and range at block
//! and chunk boundaries, corrupted, reordered and cut chunk files, and stores written by
//! the one-frame-per-chunk format (version 1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};

use avila_compress::corpus::{Kind, generate};
use avila_compress::{Codec, Profile};
use avl_storage::{BLOCK_SIZE, ByteRange, PutOptions, StorageError, Store, StoreOptions};
use redb::ReadableTable;

const CHUNK: usize = 1 << 20;

/// 1 MiB chunks (four blocks each), and parts down to 10 bytes.
fn store(dir: &Path) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            chunk_size: CHUNK,
            min_part_size: 10,
        },
    )
    .unwrap()
}

/// Text and random bytes in turns of 200,000: compressed and stored blocks side by side,
/// with turns that straddle block and chunk boundaries.
fn mixed(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut seed = 1;
    while out.len() < len {
        let kind = if seed % 2 == 0 {
            Kind::Random
        } else {
            Kind::Text
        };
        out.extend_from_slice(&generate(kind, 200_000, seed));
        seed += 1;
    }
    out.truncate(len);
    out
}

/// Reads `range` of `key` with reads of at most `piece` bytes.
fn read_with(
    store: &Store,
    key: &str,
    range: Option<ByteRange>,
    piece: usize,
) -> std::io::Result<Vec<u8>> {
    let (_, mut r) = store.get_object("bkt", key, range).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; piece];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// The chunk files, in the order they were written (ids come from a counter).
fn chunk_paths(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("chunks"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .collect();
    files.sort_by_key(|p| p.file_name().unwrap().to_owned());
    files
}

/// (offset, length) of each frame of a chunk file.
fn frames_of(file: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < file.len() {
        let h = avila_compress::frame_header(&file[at..]).unwrap();
        out.push((at, h.frame_len() as usize));
        at += h.frame_len() as usize;
    }
    out
}

fn corrupted(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<StorageError>())
        .is_some_and(|e| matches!(e, StorageError::Corrupted(_)))
}

#[test]
fn every_buffer_size_and_range_reads_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    store.create_bucket("bkt").unwrap();
    let data = mixed(CHUNK * 2 + BLOCK_SIZE + 12_345);
    store
        .put_object("bkt", "obj", &mut data.as_slice(), PutOptions::default())
        .unwrap();
    // Each chunk is a stream of blocks: 4 for a full chunk, then an empty final frame.
    let files = chunk_paths(dir.path());
    assert_eq!(files.len(), 3);
    let first = std::fs::read(&files[0]).unwrap();
    assert_eq!(frames_of(&first).len(), CHUNK / BLOCK_SIZE + 1);

    for piece in [
        1 << 20,
        BLOCK_SIZE + 7,
        BLOCK_SIZE,
        BLOCK_SIZE - 1,
        65_536,
        4093,
    ] {
        assert!(
            read_with(&store, "obj", None, piece).unwrap() == data,
            "whole object, reads of {piece}"
        );
    }
    let b = BLOCK_SIZE as u64;
    let c = CHUNK as u64;
    let size = data.len() as u64;
    for (first, last) in [
        (0, b - 1),
        (b - 1, b),
        (b, 2 * b - 1),
        (3 * b + 5, c + b + 5),
        (c - 1, c),
        (c + 2 * b, 2 * c - 1),
        (2 * c + b - 1, size - 1),
        (size - 1, size - 1),
    ] {
        for piece in [BLOCK_SIZE, 1000] {
            let got = read_with(
                &store,
                "obj",
                Some(ByteRange::Inclusive(first, last)),
                piece,
            )
            .unwrap();
            assert!(
                got == data[first as usize..=last as usize],
                "{first}-{last}, reads of {piece}"
            );
        }
    }
}

#[test]
fn damaged_chunk_files_fail_the_reads_that_reach_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    store.create_bucket("bkt").unwrap();
    // Random: stored blocks, which big reads take straight into the caller's buffer.
    let data = generate(Kind::Random, CHUNK, 5);
    store
        .put_object("bkt", "obj", &mut data.as_slice(), PutOptions::default())
        .unwrap();
    let path = chunk_paths(dir.path()).remove(0);
    let good = std::fs::read(&path).unwrap();
    let frames = frames_of(&good);
    let third = frames[2];
    let b = BLOCK_SIZE as u64;

    // One byte flipped in the third block: reads that reach it fail, with either
    // buffer path; the blocks before it still read.
    let mut bad = good.clone();
    bad[third.0 + third.1 / 2] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();
    for piece in [BLOCK_SIZE, 1000] {
        let e = read_with(&store, "obj", None, piece)
            .map(|_| ())
            .unwrap_err();
        assert!(corrupted(&e), "{e}");
        let e = read_with(&store, "obj", Some(ByteRange::From(2 * b + 1)), piece)
            .map(|_| ())
            .unwrap_err();
        assert!(corrupted(&e), "{e}");
    }
    let before = read_with(
        &store,
        "obj",
        Some(ByteRange::Inclusive(0, 2 * b - 1)),
        1000,
    );
    assert!(before.unwrap() == data[..2 * BLOCK_SIZE]);
    // Past the damaged block too: the blocks a range skips are not decoded.
    let after = read_with(&store, "obj", Some(ByteRange::From(3 * b)), BLOCK_SIZE);
    assert!(after.unwrap() == data[3 * BLOCK_SIZE..]);

    // The second and third blocks swapped: each is whole, but out of its place.
    let (second, third) = (frames[1], frames[2]);
    let mut swapped = good[..second.0].to_vec();
    swapped.extend_from_slice(&good[third.0..third.0 + third.1]);
    swapped.extend_from_slice(&good[second.0..second.0 + second.1]);
    swapped.extend_from_slice(&good[third.0 + third.1..]);
    std::fs::write(&path, &swapped).unwrap();
    for piece in [BLOCK_SIZE, 1000] {
        let e = read_with(&store, "obj", None, piece)
            .map(|_| ())
            .unwrap_err();
        assert!(corrupted(&e), "{e}");
    }

    // Cut inside a block, cut at a frame boundary, and bytes after the final frame.
    for damaged in [
        good[..good.len() - 100].to_vec(),
        good[..frames[3].0].to_vec(),
        [good.as_slice(), b"tail"].concat(),
    ] {
        std::fs::write(&path, &damaged).unwrap();
        let e = read_with(&store, "obj", None, BLOCK_SIZE)
            .map(|_| ())
            .unwrap_err();
        assert!(corrupted(&e), "{e}");
    }

    // A frame without a checksum (the store never writes one) is not taken unchecked.
    let unchecked = avila_compress::compress(
        &data,
        avila_compress::Options::new(Codec::None).with_checksum(false),
    );
    std::fs::write(&path, &unchecked).unwrap();
    for piece in [2 << 20, 1000] {
        let e = read_with(&store, "obj", None, piece)
            .map(|_| ())
            .unwrap_err();
        assert!(corrupted(&e), "{e}");
    }

    std::fs::write(&path, &good).unwrap();
    assert!(read_with(&store, "obj", None, BLOCK_SIZE).unwrap() == data);
}

#[test]
fn stores_written_one_frame_per_chunk_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixed(CHUNK + 300_000);
    {
        let store = store(dir.path());
        store.create_bucket("bkt").unwrap();
        store
            .put_object("bkt", "old", &mut data.as_slice(), PutOptions::default())
            .unwrap();
    }
    // What version 1 wrote: each chunk one frame, and the format key at 1.
    let mut at = 0;
    for path in chunk_paths(dir.path()) {
        let len = CHUNK.min(data.len() - at);
        let frame = avila_compress::compress(&data[at..at + len], Codec::Auto(Profile::Balanced));
        std::fs::write(&path, frame).unwrap();
        at += len;
    }
    assert_eq!(at, data.len());
    {
        let db = redb::Database::create(dir.path().join(avl_storage::FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap()
            .insert("format_version", 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let store = store(dir.path());
    for piece in [2 << 20, BLOCK_SIZE, 777] {
        assert!(read_with(&store, "old", None, piece).unwrap() == data);
    }
    let (first, last) = (CHUNK as u64 - 10, CHUNK as u64 + 10);
    let got = read_with(&store, "old", Some(ByteRange::Inclusive(first, last)), 5).unwrap();
    assert!(got == data[first as usize..=last as usize]);
    // New objects beside it are written in blocks.
    store
        .put_object("bkt", "new", &mut data.as_slice(), PutOptions::default())
        .unwrap();
    assert!(read_with(&store, "new", None, 4096).unwrap() == data);
}

/// A record whose part sizes do not add up (a damaged file) is Corrupted on a part
/// read, never an overflow.
#[test]
fn part_sizes_that_do_not_add_up_are_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = store(dir.path());
        s.create_bucket("bkt").unwrap();
        let id = s
            .create_multipart_upload("bkt", "mp", PutOptions::default())
            .unwrap();
        let e1 = s
            .upload_part("bkt", "mp", &id, 1, &mut &[1u8; 20][..])
            .unwrap();
        let e2 = s
            .upload_part("bkt", "mp", &id, 2, &mut &[2u8; 5][..])
            .unwrap();
        s.complete_multipart_upload("bkt", "mp", &id, &[(1, e1), (2, e2)], &Default::default())
            .unwrap();
    }
    for parts in [format!("[{},1]", u64::MAX), "[20,500]".to_string()] {
        {
            let db = redb::Database::create(dir.path().join(avl_storage::FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut objects = txn
                    .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("objects"))
                    .unwrap();
                let key = b"bkt\0mp".as_slice();
                let record = objects.get(key).unwrap().unwrap().value().to_vec();
                let mut record: serde_json::Value = serde_json::from_slice(&record).unwrap();
                record["parts"] = serde_json::from_str(&parts).unwrap();
                objects
                    .insert(key, serde_json::to_vec(&record).unwrap().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let s = store(dir.path());
        let none = avl_storage::Conditions::default();
        assert!(matches!(
            s.get_object_part_if("bkt", "mp", 2, &none),
            Err(StorageError::Corrupted(_))
        ));
        assert!(matches!(
            s.head_object_part_if("bkt", "mp", 1, &none),
            Err(StorageError::Corrupted(_))
        ));
        // The whole object still reads.
        assert_eq!(read_with(&s, "mp", None, 4096).unwrap().len(), 25);
    }
}

/// A range reads only the chunks it touches: with the first chunk's file gone, a range
/// inside the second still reads.
#[test]
fn ranges_never_open_the_chunks_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    store.create_bucket("bkt").unwrap();
    let data = mixed(CHUNK * 2);
    store
        .put_object("bkt", "obj", &mut data.as_slice(), PutOptions::default())
        .unwrap();
    let first = chunk_paths(dir.path()).remove(0);
    std::fs::remove_file(&first).unwrap();
    let c = CHUNK as u64;
    let got = read_with(
        &store,
        "obj",
        Some(ByteRange::Inclusive(c + 5, 2 * c - 1)),
        4096,
    );
    assert!(got.unwrap() == data[CHUNK + 5..]);
    assert!(read_with(&store, "obj", None, 4096).is_err());
}
