//! The object store against an in-memory model (proptest), ranges at chunk boundaries,
//! empty objects, bad input, and what a crash leaves behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;

use avl_storage::{ByteRange, ListOptions, PutOptions, StorageError, Store, StoreOptions};
use proptest::prelude::*;

const CHUNK: usize = 64;
/// The smallest part but the last in the model's store: not a multiple of [`CHUNK`], so
/// a multipart object's chunks are not all full ones.
const MIN_PART: usize = 100;

fn small_chunks(dir: &std::path::Path) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            chunk_size: CHUNK,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

/// The model test's store: small chunks and small parts.
fn model_store(dir: &std::path::Path) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            chunk_size: CHUNK,
            min_part_size: MIN_PART as u64,
        },
    )
    .unwrap()
}

/// How many chunk files the store's directory holds.
fn chunk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("chunks"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum()
}

fn read_all(store: &Store, bucket: &str, key: &str, range: Option<ByteRange>) -> Vec<u8> {
    let (_, mut r) = store.get_object(bucket, key, range).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    out
}

fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(data))
}

#[derive(Debug, Clone)]
enum Op {
    Put(String, Vec<u8>),
    Delete(String),
    List(String, Option<String>, usize),
    Range(String, u64, u64),
    /// Source, destination, and the content type that replaces the source's (`None`:
    /// the metadata is copied).
    Copy(String, String, Option<String>),
    /// Parts by number (ascending, maybe with gaps), a part uploaded but left out of
    /// the completion, whether the store reopens before the upload ends, and whether
    /// it completes (else it is aborted).
    Multipart {
        key: String,
        parts: Vec<(u32, Vec<u8>)>,
        left_out: Option<Vec<u8>>,
        reopen: bool,
        complete: bool,
    },
    Reopen,
}

/// What the model keeps of an object.
#[derive(Debug, Clone)]
struct Obj {
    data: Vec<u8>,
    etag: String,
    content_type: Option<String>,
    /// Chunk files it owns: a multipart object's are its parts'.
    chunks: usize,
}

/// An object as a PUT (or a copy) writes it: one body, a plain MD5.
fn single(data: Vec<u8>, content_type: Option<String>) -> Obj {
    Obj {
        etag: md5_hex(&data),
        chunks: data.len().div_ceil(CHUNK),
        data,
        content_type,
    }
}

fn bytes(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), len)
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a", "a/b", "a/c", "a/b/c", "b", "b/", "b//x", "c.txt", "a/b/d", "ü/1", "../x", "a-b",
    ])
    .prop_map(str::to_string)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (key(), 0usize..3).prop_map(|(k, n)| Op::Put(k, vec![b'z'; n * CHUNK])),
        2 => key().prop_map(Op::Delete),
        3 => (
            prop::sample::select(vec!["", "a", "a/", "b", "a/b"]),
            prop::option::of(prop::sample::select(vec!["/", "b", "//"])),
            1usize..4
        )
            .prop_map(|(p, d, m)| Op::List(p.to_string(), d.map(str::to_string), m)),
        2 => (key(), 0u64..400, 0u64..400).prop_map(|(k, a, b)| Op::Range(k, a, b)),
        2 => (key(), key(), prop::option::of(Just("text/x-copied")))
            .prop_map(|(s, d, t)| Op::Copy(s, d, t.map(str::to_string))),
        2 => (
            key(),
            // Parts but the last: mostly at least MIN_PART bytes, sometimes too small.
            prop::collection::vec(
                (1u32..3, prop_oneof![9 => bytes(MIN_PART..MIN_PART + 80), 1 => bytes(1..MIN_PART)]),
                0..3,
            ),
            (1u32..3, bytes(0..150)),
            prop::option::of(bytes(1..80)),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.75),
        )
            .prop_map(|(key, mut parts, last, left_out, reopen, complete)| {
                parts.push(last);
                let mut number = 0;
                let parts = parts
                    .into_iter()
                    .map(|(gap, body)| {
                        number += gap;
                        (number, body)
                    })
                    .collect();
                Op::Multipart { key, parts, left_out, reopen, complete }
            }),
        1 => Just(Op::Reopen),
    ]
}

/// The model's listing: every entry (objects and common prefixes) in key order.
fn model_list(
    model: &BTreeMap<String, Obj>,
    prefix: &str,
    delimiter: Option<&str>,
) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    for k in model.keys().filter(|k| k.starts_with(prefix)) {
        match delimiter.and_then(|d| k[prefix.len()..].find(d).map(|i| (i, d))) {
            Some((i, d)) => {
                let cp = k[..prefix.len() + i + d.len()].to_string();
                if out.last().is_none_or(|l| l.0 != cp) {
                    out.push((cp, true));
                }
            }
            None => out.push((k.clone(), false)),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_a_map(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = model_store(dir.path());
        store.create_bucket("bkt").unwrap();
        let mut model: BTreeMap<String, Obj> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    let info = store.put_object("bkt", &k, &mut v.as_slice(), PutOptions::default()).unwrap();
                    prop_assert_eq!(info.size, v.len() as u64);
                    prop_assert_eq!(info.etag, md5_hex(&v));
                    model.insert(k, single(v, None));
                }
                Op::Delete(k) => {
                    store.delete_object("bkt", &k).unwrap();
                    model.remove(&k);
                }
                Op::List(prefix, delimiter, max) => {
                    let want = model_list(&model, &prefix, delimiter.as_deref());
                    // Pages by continuation token (V2), then by marker (V1: the last
                    // entry of a page, key or common prefix).
                    for by_marker in [false, true] {
                    let mut got: Vec<(String, bool)> = Vec::new();
                    let mut token = None;
                    let mut marker: Option<String> = None;
                    loop {
                        let page = store.list_objects("bkt", &ListOptions {
                            prefix: prefix.clone(),
                            delimiter: delimiter.clone(),
                            max_keys: Some(max),
                            start_after: None,
                            continuation: token.clone(),
                            marker: marker.clone(),
                        }).unwrap();
                        prop_assert!(page.objects.len() + page.common_prefixes.len() <= max);
                        let mut entries: Vec<(String, bool)> = page.objects.iter().map(|o| (o.key.clone(), false))
                            .chain(page.common_prefixes.iter().map(|p| (p.clone(), true))).collect();
                        entries.sort();
                        for o in &page.objects {
                            prop_assert_eq!(o.size, model[&o.key].data.len() as u64);
                            prop_assert_eq!(&o.etag, &model[&o.key].etag);
                        }
                        let last = entries.last().map(|e| e.0.clone());
                        got.extend(entries);
                        if !page.is_truncated { break; }
                        if by_marker {
                            marker = last;
                            prop_assert!(marker.is_some());
                        } else {
                            token = page.next_continuation;
                            prop_assert!(token.is_some());
                        }
                    }
                    prop_assert_eq!(&got, &want);
                    }
                }
                Op::Range(k, a, b) => {
                    match model.get(&k) {
                        None => {
                            let e = store.get_object("bkt", &k, None).unwrap_err();
                            prop_assert!(matches!(e, StorageError::NoSuchKey(_)));
                        }
                        Some(obj) => {
                            let v = &obj.data;
                            let (info, mut r) = store.get_object("bkt", &k, None).unwrap();
                            let mut all = Vec::new();
                            r.read_to_end(&mut all).unwrap();
                            prop_assert_eq!(&all, v);
                            prop_assert_eq!((info.size, &info.etag), (v.len() as u64, &obj.etag));
                            prop_assert_eq!(&info.options.content_type, &obj.content_type);
                            let (first, last) = (a.min(b), a.max(b));
                            let size = v.len() as u64;
                            match store.get_object("bkt", &k, Some(ByteRange::Inclusive(first, last))) {
                                Ok((_, mut r)) => {
                                    prop_assert!(first < size);
                                    let mut out = Vec::new();
                                    r.read_to_end(&mut out).unwrap();
                                    let end = (last + 1).min(size) as usize;
                                    prop_assert_eq!(out.as_slice(), &v[first as usize..end]);
                                }
                                Err(e) => {
                                    prop_assert!(first >= size);
                                    prop_assert!(matches!(e, StorageError::InvalidRange { .. }), "{}", e);
                                }
                            }
                            if size > 0 {
                                let n = (a % size).max(1);
                                let tail = read_all(&store, "bkt", &k, Some(ByteRange::Suffix(n)));
                                prop_assert_eq!(tail.as_slice(), &v[(size - n) as usize..]);
                            }
                        }
                    }
                }
                Op::Copy(src, dst, replace) => {
                    let none = avl_storage::Conditions::default();
                    let options = replace.clone().map(|t| PutOptions {
                        content_type: Some(t),
                        ..PutOptions::default()
                    });
                    let result = store.copy_object(("bkt", &src), ("bkt", &dst), options, &none, &none);
                    match model.get(&src).cloned() {
                        // A missing source first, as S3 answers.
                        None => {
                            let e = result.unwrap_err();
                            prop_assert!(matches!(e, StorageError::NoSuchKey(_)), "{}", e);
                        }
                        // Onto itself only with new metadata (REPLACE).
                        _ if src == dst && replace.is_none() => {
                            let e = result.unwrap_err();
                            prop_assert!(matches!(e, StorageError::InvalidArgument { .. }), "{}", e);
                        }
                        Some(from) => {
                            // The copy is written anew: its ETag is its content's MD5, a
                            // multipart source's too (as S3's CopyObject).
                            let want = single(from.data, replace.or(from.content_type));
                            let info = result.unwrap();
                            prop_assert_eq!((info.size, &info.etag), (want.data.len() as u64, &want.etag));
                            prop_assert_eq!(&info.options.content_type, &want.content_type);
                            model.insert(dst, want);
                        }
                    }
                }
                Op::Multipart { key, parts, left_out, reopen, complete } => {
                    let content_type = Some("video/mp4".to_string());
                    let id = store.create_multipart_upload("bkt", &key, PutOptions {
                        content_type: content_type.clone(),
                        ..PutOptions::default()
                    }).unwrap();
                    let last = parts.last().unwrap().0;
                    let mut uploaded: Vec<(u32, Vec<u8>)> = parts.clone();
                    uploaded.extend(left_out.map(|b| (last + 1, b)));
                    let mut named = Vec::new();
                    for (number, body) in &uploaded {
                        let etag = store.upload_part("bkt", &key, &id, *number, &mut body.as_slice()).unwrap();
                        prop_assert_eq!(&etag, &md5_hex(body));
                        if *number <= last {
                            named.push((*number, etag));
                        }
                    }
                    let (listed, more) = store.list_parts("bkt", &key, &id, 0, None).unwrap();
                    prop_assert!(!more);
                    let listed: Vec<_> = listed.into_iter().map(|p| (p.part_number, p.size, p.etag)).collect();
                    let want: Vec<_> = uploaded.iter().map(|(n, b)| (*n, b.len() as u64, md5_hex(b))).collect();
                    prop_assert_eq!(listed, want);
                    if reopen {
                        // An upload and its parts outlive the process.
                        drop(store);
                        store = model_store(dir.path());
                    }
                    let uploads = store.list_multipart_uploads("bkt", "").unwrap();
                    prop_assert_eq!(
                        uploads.iter().map(|u| (u.upload_id.as_str(), u.key.as_str())).collect::<Vec<_>>(),
                        [(id.as_str(), key.as_str())]
                    );
                    // The first part but the last under the minimum fails the completion,
                    // which changes nothing: the upload is aborted then.
                    let too_small = parts[..parts.len() - 1].iter().find(|(_, b)| b.len() < MIN_PART);
                    if complete {
                        let result = store.complete_multipart_upload("bkt", &key, &id, &named, &Default::default());
                        match too_small {
                            Some((number, body)) => {
                                let e = result.unwrap_err();
                                prop_assert!(
                                    matches!(e, StorageError::EntityTooSmall { part, size, min }
                                        if part == *number && size == body.len() as u64 && min == MIN_PART as u64),
                                    "{}", e
                                );
                            }
                            None => {
                                let info = result.unwrap();
                                let md5s: Vec<u8> = parts.iter().flat_map(|(_, b)| hex::decode(md5_hex(b)).unwrap()).collect();
                                let whole: Vec<u8> = parts.iter().flat_map(|(_, b)| b.iter().copied()).collect();
                                let want = Obj {
                                    etag: format!("{}-{}", md5_hex(&md5s), parts.len()),
                                    chunks: parts.iter().map(|(_, b)| b.len().div_ceil(CHUNK)).sum(),
                                    data: whole,
                                    content_type,
                                };
                                prop_assert_eq!((info.size, &info.etag), (want.data.len() as u64, &want.etag));
                                prop_assert_eq!(&info.options.content_type, &want.content_type);
                                model.insert(key.clone(), want);
                            }
                        }
                    }
                    if !complete || too_small.is_some() {
                        store.abort_multipart_upload("bkt", &key, &id).unwrap();
                    }
                    // Completed or aborted, the upload is gone.
                    prop_assert!(store.list_multipart_uploads("bkt", "").unwrap().is_empty());
                    let e = store.list_parts("bkt", &key, &id, 0, None).unwrap_err();
                    prop_assert!(matches!(e, StorageError::NoSuchUpload(_)), "{}", e);
                }
                Op::Reopen => {
                    drop(store);
                    store = model_store(dir.path());
                }
            }
        }
        // Every chunk file belongs to a stored object: none leaked (parts left out of a
        // completion, aborted uploads and replaced objects included).
        let chunks = chunk_files(dir.path());
        let want: usize = model.values().map(|o| o.chunks).sum();
        prop_assert_eq!(chunks, want);
    }
}

#[test]
fn ranges_at_chunk_boundaries_and_empty_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_chunks(dir.path());
    store.create_bucket("bkt").unwrap();
    let data: Vec<u8> = (0..CHUNK * 3).map(|i| (i % 251) as u8).collect();
    store
        .put_object("bkt", "three", &mut data.as_slice(), PutOptions::default())
        .unwrap();
    let c = CHUNK as u64;
    for (first, last) in [
        (0, c - 1),
        (c - 1, c),
        (c, 2 * c - 1),
        (c - 1, 2 * c),
        (2 * c, 3 * c - 1),
        (0, 3 * c + 100),
    ] {
        let got = read_all(
            &store,
            "bkt",
            "three",
            Some(ByteRange::Inclusive(first, last)),
        );
        let end = (last as usize + 1).min(data.len());
        assert_eq!(got, &data[first as usize..end], "{first}-{last}");
    }
    assert_eq!(
        read_all(&store, "bkt", "three", Some(ByteRange::From(3 * c - 1))),
        &data[data.len() - 1..]
    );
    // A range that is not valid syntax is ignored (RFC 9110): the whole object.
    assert_eq!(
        read_all(&store, "bkt", "three", Some(ByteRange::Inclusive(5, 4))),
        data
    );
    for bad in [ByteRange::From(3 * c), ByteRange::Suffix(0)] {
        assert!(matches!(
            store.get_object("bkt", "three", Some(bad)),
            Err(StorageError::InvalidRange { .. })
        ));
    }
    // Empty: stored, no chunk, no range.
    let info = store
        .put_object("bkt", "empty", &mut &b""[..], PutOptions::default())
        .unwrap();
    assert_eq!(
        (info.size, info.etag.as_str()),
        (0, "d41d8cd98f00b204e9800998ecf8427e")
    );
    assert!(read_all(&store, "bkt", "empty", None).is_empty());
    assert!(matches!(
        store.get_object("bkt", "empty", Some(ByteRange::Inclusive(0, 0))),
        Err(StorageError::InvalidRange { size: 0 })
    ));
}

#[test]
fn metadata_is_kept_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        store.create_bucket("Bad_Name"),
        Err(StorageError::InvalidBucketName { .. })
    ));
    store.create_bucket("media").unwrap();
    assert!(matches!(
        store.create_bucket("media"),
        Err(StorageError::BucketAlreadyExists(_))
    ));
    let mut options = PutOptions {
        content_type: Some("image/png".into()),
        ..PutOptions::default()
    };
    options.metadata.insert("owner".into(), "ana".into());
    options
        .headers
        .insert("cache-control".into(), "max-age=60".into());
    store
        .put_object(
            "media",
            "../../etc/passwd",
            &mut &b"not a path"[..],
            options.clone(),
        )
        .unwrap();
    let head = store.head_object("media", "../../etc/passwd").unwrap();
    assert_eq!(head.options, options);
    assert!(!dir.path().join("etc").exists());
    let mut wrong = PutOptions::default();
    wrong.headers.insert("x-evil".into(), "1".into());
    assert!(
        store
            .put_object("media", "k", &mut &b""[..], wrong)
            .is_err()
    );
    let mut big = PutOptions::default();
    big.metadata.insert("m".into(), "v".repeat(3000));
    assert!(store.put_object("media", "k", &mut &b""[..], big).is_err());
    assert!(
        store
            .put_object(
                "media",
                &"k".repeat(1025),
                &mut &b""[..],
                PutOptions::default()
            )
            .is_err()
    );
    assert!(matches!(
        store.put_object("nope", "k", &mut &b""[..], PutOptions::default()),
        Err(StorageError::NoSuchBucket(_))
    ));
    assert!(matches!(
        store.head_object("media", "missing"),
        Err(StorageError::NoSuchKey(_))
    ));
    assert!(matches!(
        store.delete_bucket("media"),
        Err(StorageError::BucketNotEmpty(_))
    ));
    store.delete_object("media", "../../etc/passwd").unwrap();
    store.delete_object("media", "never-there").unwrap();
    store.delete_bucket("media").unwrap();
    assert!(matches!(
        store.delete_bucket("media"),
        Err(StorageError::NoSuchBucket(_))
    ));
    let e = store
        .list_objects("nope", &ListOptions::default())
        .unwrap_err();
    assert_eq!(e.s3_code(), "NoSuchBucket");
    store.create_bucket("media").unwrap();
    let e = store
        .list_objects(
            "media",
            &ListOptions {
                continuation: Some("00ff".into()),
                ..ListOptions::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, StorageError::InvalidArgument { .. }));
}

/// A PUT whose body fails mid-way stores nothing and leaves no chunk; chunk files no
/// object names (what a crash during a PUT leaves) are removed at open.
#[test]
fn failed_puts_and_crashes_leave_no_chunks() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("the client went away"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = small_chunks(dir.path());
    store.create_bucket("bkt").unwrap();
    store
        .put_object("bkt", "kept", &mut &[1u8; 100][..], PutOptions::default())
        .unwrap();
    assert!(
        store
            .put_object(
                "bkt",
                "lost",
                &mut Failing(CHUNK * 2 + 5),
                PutOptions::default()
            )
            .is_err()
    );
    assert!(matches!(
        store.head_object("bkt", "lost"),
        Err(StorageError::NoSuchKey(_))
    ));
    assert_eq!(chunk_files(dir.path()), 2);
    // As if a process died after writing chunks and before its commit.
    std::fs::create_dir_all(dir.path().join("chunks/ff")).unwrap();
    std::fs::write(dir.path().join("chunks/ff/00000000000000ff"), b"orphan").unwrap();
    drop(store);
    let store = small_chunks(dir.path());
    assert_eq!(chunk_files(dir.path()), 2);
    assert_eq!(read_all(&store, "bkt", "kept", None), vec![1u8; 100]);
    // New chunks are numbered above every file seen.
    store
        .put_object("bkt", "new", &mut &[2u8; 10][..], PutOptions::default())
        .unwrap();
    assert_eq!(read_all(&store, "bkt", "kept", None), vec![1u8; 100]);
    // A damaged chunk is an error, not wrong bytes.
    let files: Vec<_> = std::fs::read_dir(dir.path().join("chunks"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .collect();
    for file in files {
        let mut bytes = std::fs::read(&file).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0xff;
        std::fs::write(&file, bytes).unwrap();
    }
    let (_, mut r) = store.get_object("bkt", "kept", None).unwrap();
    let mut out = Vec::new();
    assert!(r.read_to_end(&mut out).is_err());
}

#[test]
fn multipart_uploads_complete_from_their_parts_without_copying() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            chunk_size: CHUNK,
            min_part_size: 100,
        },
    )
    .unwrap();
    store.create_bucket("bkt").unwrap();
    let id = store
        .create_multipart_upload(
            "bkt",
            "big",
            PutOptions {
                content_type: Some("video/mp4".into()),
                ..PutOptions::default()
            },
        )
        .unwrap();
    let p1: Vec<u8> = (0..150u32).map(|i| i as u8).collect();
    let p2: Vec<u8> = vec![9; 130];
    let p3: Vec<u8> = vec![7; 10];
    let e1 = store
        .upload_part("bkt", "big", &id, 1, &mut p1.as_slice())
        .unwrap();
    // A part uploaded again replaces the first one (its chunks go).
    store
        .upload_part("bkt", "big", &id, 2, &mut &[1u8; 200][..])
        .unwrap();
    let e2 = store
        .upload_part("bkt", "big", &id, 2, &mut p2.as_slice())
        .unwrap();
    let e3 = store
        .upload_part("bkt", "big", &id, 3, &mut p3.as_slice())
        .unwrap();
    store
        .upload_part("bkt", "big", &id, 4, &mut &[5u8; 120][..])
        .unwrap();
    assert!(
        store
            .upload_part("bkt", "big", &id, 0, &mut &b"x"[..])
            .is_err()
    );
    assert!(
        store
            .upload_part("bkt", "big", &id, 10_001, &mut &b"x"[..])
            .is_err()
    );
    assert!(matches!(
        store.upload_part("bkt", "other", &id, 1, &mut &b"x"[..]),
        Err(StorageError::NoSuchUpload(_))
    ));
    let (parts, more) = store.list_parts("bkt", "big", &id, 0, None).unwrap();
    assert!(!more);
    assert_eq!(
        parts
            .iter()
            .map(|p| (p.part_number, p.size))
            .collect::<Vec<_>>(),
        [(1, 150), (2, 130), (3, 10), (4, 120)]
    );
    let (page, more) = store.list_parts("bkt", "big", &id, 1, Some(2)).unwrap();
    assert!(more);
    assert_eq!(
        page.iter().map(|p| p.part_number).collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(
        store.list_multipart_uploads("bkt", "b").unwrap()[0].upload_id,
        id
    );
    // Bad completions change nothing.
    let q = |e: &str| format!("\"{e}\"");
    assert!(matches!(
        store.complete_multipart_upload(
            "bkt",
            "big",
            &id,
            &[(2, e2.clone()), (1, e1.clone())],
            &Default::default()
        ),
        Err(StorageError::InvalidPartOrder)
    ));
    assert!(matches!(
        store.complete_multipart_upload("bkt", "big", &id, &[(1, e2.clone())], &Default::default()),
        Err(StorageError::InvalidPart(_))
    ));
    assert!(matches!(
        store.complete_multipart_upload(
            "bkt",
            "big",
            &id,
            &[(3, e3.clone()), (4, "x".into())],
            &Default::default()
        ),
        Err(StorageError::EntityTooSmall { part: 3, .. }) | Err(StorageError::InvalidPart(_))
    ));
    let info = store
        .complete_multipart_upload(
            "bkt",
            "big",
            &id,
            &[(1, q(&e1)), (2, e2.clone()), (3, e3.clone())],
            &Default::default(),
        )
        .unwrap();
    let whole: Vec<u8> = [p1.clone(), p2.clone(), p3.clone()].concat();
    assert_eq!(info.size, whole.len() as u64);
    let md5s: Vec<u8> = [&e1, &e2, &e3]
        .iter()
        .flat_map(|e| hex::decode(e).unwrap())
        .collect();
    assert_eq!(info.etag, format!("{}-3", md5_hex(&md5s)));
    assert_eq!(read_all(&store, "bkt", "big", None), whole);
    assert_eq!(
        read_all(&store, "bkt", "big", Some(ByteRange::Inclusive(140, 290))),
        &whole[140..]
    );
    // The same completion sent again (its answer lost) answers as the first one did;
    // another part list for that upload does not.
    let done = [(1, q(&e1)), (2, e2.clone()), (3, e3.clone())];
    let again = store
        .complete_multipart_upload("bkt", "big", &id, &done, &Default::default())
        .unwrap();
    assert_eq!(
        (again.etag.as_str(), again.size),
        (info.etag.as_str(), info.size)
    );
    assert!(matches!(
        store.complete_multipart_upload("bkt", "big", &id, &done[..2], &Default::default()),
        Err(StorageError::NoSuchUpload(_))
    ));
    assert!(matches!(
        store.complete_multipart_upload("bkt", "other", &id, &done, &Default::default()),
        Err(StorageError::NoSuchUpload(_))
    ));
    // Each part reads back on its own (S3's partNumber), the count with it.
    let none = avl_storage::Conditions::default();
    assert_eq!(info.parts, Some(3));
    for (n, want) in [(1, &p1), (2, &p2), (3, &p3)] {
        let (got, mut r) = store.get_object_part_if("bkt", "big", n, &none).unwrap();
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes).unwrap();
        assert_eq!((&bytes, got.parts), (want, Some(3)), "part {n}");
        let (_, bounds) = store.head_object_part_if("bkt", "big", n, &none).unwrap();
        assert_eq!(bounds.1 - bounds.0, want.len() as u64);
    }
    for n in [0, 4] {
        assert!(matches!(
            store.get_object_part_if("bkt", "big", n, &none),
            Err(StorageError::InvalidPartNumber { parts: 3, .. })
        ));
    }
    assert_eq!(
        store
            .head_object("bkt", "big")
            .unwrap()
            .options
            .content_type
            .as_deref(),
        Some("video/mp4")
    );
    assert!(matches!(
        store.list_parts("bkt", "big", &id, 0, None),
        Err(StorageError::NoSuchUpload(_))
    ));
    // Part 4 was left out: its chunk is gone; the object's chunks are exactly the parts'.
    assert_eq!(chunk_files(dir.path()), 3 + 3 + 1);
    // Aborted and stale uploads leave nothing.
    let id2 = store
        .create_multipart_upload("bkt", "gone", PutOptions::default())
        .unwrap();
    store
        .upload_part("bkt", "gone", &id2, 1, &mut &[1u8; 300][..])
        .unwrap();
    store.abort_multipart_upload("bkt", "gone", &id2).unwrap();
    let id3 = store
        .create_multipart_upload("bkt", "old", PutOptions::default())
        .unwrap();
    store
        .upload_part("bkt", "old", &id3, 1, &mut &[1u8; 300][..])
        .unwrap();
    drop(store);
    let store = Store::open_with(
        dir.path(),
        StoreOptions {
            chunk_size: CHUNK,
            min_part_size: 100,
        },
    )
    .unwrap();
    assert_eq!(
        chunk_files(dir.path()),
        7 + 5,
        "a part's chunks survive a reopen"
    );
    assert_eq!(store.abort_stale_uploads(0).unwrap(), 1);
    assert_eq!(chunk_files(dir.path()), 7);
    // Completions are forgotten with stale uploads: a retry now is NoSuchUpload.
    assert!(matches!(
        store.complete_multipart_upload("bkt", "big", &id, &done, &Default::default()),
        Err(StorageError::NoSuchUpload(_))
    ));
    // Create-only completion.
    let id4 = store
        .create_multipart_upload("bkt", "big", PutOptions::default())
        .unwrap();
    let e = store
        .upload_part("bkt", "big", &id4, 1, &mut &b"new"[..])
        .unwrap();
    let create_only = avl_storage::Conditions {
        if_none_match: Some("*".into()),
        ..Default::default()
    };
    assert!(matches!(
        store.complete_multipart_upload("bkt", "big", &id4, &[(1, e)], &create_only),
        Err(StorageError::PreconditionFailed(_))
    ));
    assert_eq!(read_all(&store, "bkt", "big", None), whole);
}

#[test]
fn conditions_and_copies() {
    use avl_storage::Conditions;
    let dir = tempfile::tempdir().unwrap();
    let store = small_chunks(dir.path());
    store.create_bucket("bkt").unwrap();
    let v1 = store
        .put_object("bkt", "k", &mut &b"one"[..], PutOptions::default())
        .unwrap();
    let when = v1.last_modified_ms;
    let cond = |m: Option<&str>, n: Option<&str>, ms: Option<u64>, us: Option<u64>| Conditions {
        if_match: m.map(str::to_string),
        if_none_match: n.map(str::to_string),
        if_modified_since_ms: ms,
        if_unmodified_since_ms: us,
    };
    let etag = format!("\"{}\"", v1.etag);
    assert!(
        store
            .head_object_if("bkt", "k", &cond(Some(&etag), None, None, None))
            .is_ok()
    );
    assert!(matches!(
        store.head_object_if("bkt", "k", &cond(Some("\"nope\""), None, None, None)),
        Err(StorageError::PreconditionFailed(_))
    ));
    assert!(matches!(
        store.head_object_if("bkt", "k", &cond(None, Some(&etag), None, None)),
        Err(StorageError::NotModified)
    ));
    assert!(matches!(
        store.get_object_if("bkt", "k", None, &cond(None, None, Some(when + 5000), None)),
        Err(StorageError::NotModified)
    ));
    assert!(
        store
            .get_object_if("bkt", "k", None, &cond(None, None, Some(when - 5000), None))
            .is_ok()
    );
    assert!(matches!(
        store.head_object_if("bkt", "k", &cond(None, None, None, Some(when - 5000))),
        Err(StorageError::PreconditionFailed(_))
    ));
    // If-Match true wins over a failing If-Unmodified-Since.
    assert!(
        store
            .head_object_if("bkt", "k", &cond(Some("*"), None, None, Some(when - 5000)))
            .is_ok()
    );
    // Writes: create-only, and replace-only-this-version.
    let create_only = cond(None, Some("*"), None, None);
    assert!(matches!(
        store.put_object_if(
            "bkt",
            "k",
            &mut &b"two"[..],
            PutOptions::default(),
            &create_only
        ),
        Err(StorageError::PreconditionFailed(_))
    ));
    store
        .put_object_if(
            "bkt",
            "fresh",
            &mut &b"new"[..],
            PutOptions::default(),
            &create_only,
        )
        .unwrap();
    assert!(matches!(
        store.put_object_if(
            "bkt",
            "k",
            &mut &b"two"[..],
            PutOptions::default(),
            &cond(Some("\"stale\""), None, None, None)
        ),
        Err(StorageError::PreconditionFailed(_))
    ));
    assert!(matches!(
        store.put_object_if(
            "bkt",
            "missing",
            &mut &b"two"[..],
            PutOptions::default(),
            &cond(Some(&etag), None, None, None)
        ),
        Err(StorageError::NoSuchKey(_))
    ));
    store
        .put_object_if(
            "bkt",
            "k",
            &mut &b"two"[..],
            PutOptions::default(),
            &cond(Some(&etag), None, None, None),
        )
        .unwrap();
    assert_eq!(read_all(&store, "bkt", "k", None), b"two");
    // Copies: metadata kept or replaced; the source's conditions apply.
    let mut meta = PutOptions::default();
    meta.metadata.insert("owner".into(), "ana".into());
    let data: Vec<u8> = (0..200u8).collect();
    store
        .put_object("bkt", "src", &mut data.as_slice(), meta.clone())
        .unwrap();
    store.create_bucket("other").unwrap();
    let copied = store
        .copy_object(
            ("bkt", "src"),
            ("other", "dst"),
            None,
            &Conditions::default(),
            &Conditions::default(),
        )
        .unwrap();
    assert_eq!(copied.options, meta);
    assert_eq!(copied.etag, md5_hex(&data));
    assert_eq!(read_all(&store, "other", "dst", None), data);
    let replaced = store
        .copy_object(
            ("bkt", "src"),
            ("other", "dst2"),
            Some(PutOptions::default()),
            &Conditions::default(),
            &Conditions::default(),
        )
        .unwrap();
    assert!(replaced.options.metadata.is_empty());
    assert!(matches!(
        store.copy_object(
            ("bkt", "src"),
            ("other", "dst3"),
            None,
            &cond(Some("\"x\""), None, None, None),
            &Conditions::default()
        ),
        Err(StorageError::PreconditionFailed(_))
    ));
    // The copy owns its chunks: deleting the source leaves it whole.
    store.delete_object("bkt", "src").unwrap();
    assert_eq!(read_all(&store, "other", "dst", None), data);
    // UploadPartCopy with a range.
    let id = store
        .create_multipart_upload("other", "assembled", PutOptions::default())
        .unwrap();
    let e1 = store
        .upload_part_copy(
            "other",
            "assembled",
            &id,
            1,
            "other",
            "dst",
            Some(ByteRange::Inclusive(10, 109)),
            &Conditions::default(),
        )
        .unwrap();
    let info = store
        .complete_multipart_upload(
            "other",
            "assembled",
            &id,
            &[(1, e1)],
            &Conditions::default(),
        )
        .unwrap();
    assert_eq!(info.size, 100);
    assert_eq!(read_all(&store, "other", "assembled", None), &data[10..110]);
}

#[test]
fn readers_keep_their_chunks_while_the_object_is_replaced_or_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_chunks(dir.path());
    store.create_bucket("bkt").unwrap();
    let old: Vec<u8> = (0..CHUNK * 4).map(|i| (i % 199) as u8).collect();
    store
        .put_object("bkt", "k", &mut old.as_slice(), PutOptions::default())
        .unwrap();
    let (_, mut a) = store.get_object("bkt", "k", None).unwrap();
    let (_, mut b) = store
        .get_object("bkt", "k", Some(ByteRange::From(10)))
        .unwrap();
    let mut first = [0u8; 5];
    a.read_exact(&mut first).unwrap();
    store
        .put_object("bkt", "k", &mut &b"new"[..], PutOptions::default())
        .unwrap();
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).unwrap();
    assert_eq!([first.as_slice(), &rest].concat(), old);
    store.delete_object("bkt", "k").unwrap();
    let mut tail = Vec::new();
    b.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, &old[10..]);
    assert_eq!(
        chunk_files(dir.path()),
        4,
        "the old chunks wait for their readers"
    );
    drop(a);
    assert_eq!(chunk_files(dir.path()), 4);
    drop(b);
    assert_eq!(chunk_files(dir.path()), 0, "and go with the last one");
}

#[test]
fn s3_details() {
    use avl_storage::Conditions;
    let dir = tempfile::tempdir().unwrap();
    let store = small_chunks(dir.path());
    store.create_bucket("bkt").unwrap();
    let crc = avl_storage::Checksum {
        algorithm: "CRC32".into(),
        value: "rfPzYw==".into(),
    };
    let with_crc = PutOptions {
        checksum: Some(crc.clone()),
        ..PutOptions::default()
    };
    let info = store
        .put_object("bkt", "k", &mut &b"data"[..], with_crc)
        .unwrap();
    // Copying onto itself needs REPLACE (a missing source is still NoSuchKey); a copy
    // source's 304 is a 412.
    let none = Conditions::default();
    assert!(matches!(
        store.copy_object(("bkt", "k"), ("bkt", "k"), None, &none, &none),
        Err(StorageError::InvalidArgument { .. })
    ));
    assert!(matches!(
        store.copy_object(("bkt", "nope"), ("bkt", "nope"), None, &none, &none),
        Err(StorageError::NoSuchKey(_))
    ));
    let replaced = PutOptions {
        content_type: Some("text/plain".into()),
        ..PutOptions::default()
    };
    store
        .copy_object(("bkt", "k"), ("bkt", "k"), Some(replaced), &none, &none)
        .unwrap();
    // New metadata, same bytes: the checksum stays with them.
    let head = store.head_object("bkt", "k").unwrap();
    assert_eq!(head.options.content_type.as_deref(), Some("text/plain"));
    assert_eq!(head.options.checksum, Some(crc));
    // An object not uploaded in parts is one part.
    assert_eq!(head.parts, None);
    let (_, mut whole) = store.get_object_part_if("bkt", "k", 1, &none).unwrap();
    let mut bytes = Vec::new();
    whole.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, b"data");
    assert!(matches!(
        store.head_object_part_if("bkt", "k", 2, &none),
        Err(StorageError::InvalidPartNumber { part: 2, parts: 1 })
    ));
    let same = Conditions {
        if_none_match: Some(format!("\"{}\"", info.etag)),
        ..Conditions::default()
    };
    assert!(matches!(
        store.copy_object(("bkt", "k"), ("bkt", "k2"), None, &same, &none),
        Err(StorageError::PreconditionFailed(_))
    ));
    // If-Match compares strongly.
    let weak = Conditions {
        if_match: Some(format!("W/\"{}\"", info.etag)),
        ..Conditions::default()
    };
    assert!(matches!(
        store.head_object_if("bkt", "k", &weak),
        Err(StorageError::PreconditionFailed(_))
    ));
    // max-keys above 1000 is 1000.
    let page = store
        .list_objects(
            "bkt",
            &ListOptions {
                max_keys: Some(5000),
                ..ListOptions::default()
            },
        )
        .unwrap();
    assert_eq!(page.objects.len(), 1);
    // A bucket with an upload in progress is not empty; aborting twice is NoSuchUpload.
    store.delete_object("bkt", "k").unwrap();
    let id = store
        .create_multipart_upload("bkt", "up", PutOptions::default())
        .unwrap();
    assert!(matches!(
        store.delete_bucket("bkt"),
        Err(StorageError::BucketNotEmpty(_))
    ));
    store.abort_multipart_upload("bkt", "up", &id).unwrap();
    assert!(matches!(
        store.abort_multipart_upload("bkt", "up", &id),
        Err(StorageError::NoSuchUpload(_))
    ));
    store.delete_bucket("bkt").unwrap();
}

/// Aborts racing completions and part uploads: a completed object never loses a
/// chunk, and no part outlives its upload.
#[test]
fn aborts_racing_completions_lose_nothing() {
    let options = || StoreOptions {
        chunk_size: CHUNK,
        min_part_size: 1,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.create_bucket("bkt").unwrap();
    for round in 0..40u8 {
        let key = format!("k{round}");
        let id = store
            .create_multipart_upload("bkt", &key, PutOptions::default())
            .unwrap();
        let e1 = store
            .upload_part("bkt", &key, &id, 1, &mut &[round; 150][..])
            .unwrap();
        let (s1, s2) = (store.clone(), store.clone());
        let (k1, k2, i1, i2) = (key.clone(), key.clone(), id.clone(), id.clone());
        let complete = std::thread::spawn(move || {
            s1.complete_multipart_upload("bkt", &k1, &i1, &[(1, e1)], &Default::default())
                .is_ok()
        });
        let abort = std::thread::spawn(move || {
            let _ = s2.upload_part("bkt", &k2, &i2, 2, &mut &[1u8; 100][..]);
            s2.abort_multipart_upload("bkt", &k2, &i2).is_ok()
        });
        let (completed, aborted) = (complete.join().unwrap(), abort.join().unwrap());
        assert!(!(completed && aborted), "round {round}: both won");
        if completed {
            assert_eq!(read_all(&store, "bkt", &key, None), vec![round; 150]);
        }
    }
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    let visible: usize = store
        .list_objects("bkt", &ListOptions::default())
        .unwrap()
        .objects
        .iter()
        .map(|o| (o.size as usize).div_ceil(CHUNK))
        .sum();
    assert_eq!(
        chunk_files(dir.path()),
        visible,
        "chunks of aborted uploads remain"
    );
}

/// Text and JSON logs are kept in at most half their size on disk (chunk files and all);
/// random bytes are kept raw, at most a frame header per chunk larger.
#[test]
fn compressible_objects_take_at_most_half_their_size() {
    use avila_compress::corpus::{Kind, generate};
    let disk = |dir: &std::path::Path| -> u64 {
        let mut total = 0;
        let mut stack = vec![dir.join("chunks")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    total += e.metadata().unwrap().len();
                }
            }
        }
        total
    };
    for (kind, at_most) in [
        (Kind::Text, 0.5),
        (Kind::JsonLogs, 0.5),
        (Kind::Random, 1.001),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_bucket("logs").unwrap();
        let data = generate(kind, 9 << 20, 3);
        store
            .put_object("logs", "a", &mut data.as_slice(), PutOptions::default())
            .unwrap();
        let ratio = disk(dir.path()) as f64 / data.len() as f64;
        assert!(
            ratio <= at_most,
            "{}: stored at {ratio:.3} of its size",
            kind.name()
        );
        assert_eq!(read_all(&store, "logs", "a", None), data);
    }
}

/// DeleteObjects: one transaction, a result per key; a bad key fails alone.
#[test]
fn delete_objects_answers_per_key_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_chunks(dir.path());
    store.create_bucket("bkt").unwrap();
    for k in ["a", "b", "c"] {
        store
            .put_object(
                "bkt",
                k,
                &mut vec![7u8; 20_000].as_slice(),
                PutOptions::default(),
            )
            .unwrap();
    }
    let files_before = chunk_files(dir.path());
    let keys: Vec<String> = ["a", "", "c", "never"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    let results = store.delete_objects("bkt", &keys).unwrap();
    assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
    assert!(matches!(
        results[1],
        Err(StorageError::InvalidArgument { .. })
    ));
    let left: Vec<String> = store
        .list_objects("bkt", &ListOptions::default())
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, ["b"]);
    assert!(
        chunk_files(dir.path()) < files_before,
        "the chunks went too"
    );
    assert!(matches!(
        store.delete_objects("nope", &keys).unwrap_err(),
        StorageError::NoSuchBucket(_)
    ));
}
