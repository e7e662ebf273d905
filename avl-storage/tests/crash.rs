//! Crash tests. One: a child process PUTs objects (several chunks each, some replacing earlier
//! ones, some deleted) from several threads and reports each acknowledgement; the parent
//! kills it with SIGKILL at a random point, reopens the store, and checks that every
//! acknowledged object is there with its exact bytes, that every visible object is whole
//! (its bytes match its ETag), and that no chunk file is left that no object names. The
//! other does the same with multipart uploads killed during parts and completions (see
//! `acknowledged_completions_survive_sigkill`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use avl_storage::{ListOptions, PutOptions, StorageError, Store, StoreOptions};

const CHILD_ENV: &str = "AVL_STORAGE_CRASH_CHILD_DIR";
const CHUNK: usize = 4096;
const THREADS: usize = 3;

/// The bytes of version `v` of object `name`: a few chunks, not compressible alike.
fn content(name: &str, v: u64) -> Vec<u8> {
    let mut s = name
        .bytes()
        .fold(v.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
        });
    let len = 2 * CHUNK + (s % (3 * CHUNK as u64)) as usize;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if s % 4 == 0 { b'a' } else { (s >> 32) as u8 }
        })
        .collect()
}

fn open(dir: &str) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            chunk_size: CHUNK,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

/// In a child (started with `env` naming its store's directory): the store, with
/// `bucket` made, and the round; `None` in the parent's own run.
fn child_store(env: &str, open: fn(&str) -> Store, bucket: &str) -> Option<(Store, u64)> {
    let dir = std::env::var(env).ok()?;
    let round: u64 = std::env::var("AVL_STORAGE_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let store = open(&dir);
    match store.create_bucket(bucket) {
        Ok(()) | Err(StorageError::BucketAlreadyExists(_)) => {}
        Err(e) => panic!("{e}"),
    }
    Some((store, round))
}

/// Runs `step(thread, n)` for n = 0, 1, ... on `threads` threads until the process is
/// killed, printing each line it answers (an acknowledgement) as soon as it is done.
fn acknowledge_forever(threads: u64, step: impl Fn(u64, u64) -> String + Send + Sync + 'static) {
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let step = Arc::new(step);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (out, step) = (Arc::clone(&out), Arc::clone(&step));
            std::thread::spawn(move || {
                for n in 0u64.. {
                    let line = step(t, n);
                    let mut out = out.lock().unwrap();
                    writeln!(out, "{line}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

/// Starts the child test `name` on `dir` for `round`, hands each line it prints to
/// `on_line`, and kills it with SIGKILL after `kill_after` lines; fails if it stopped
/// on its own first.
fn run_child_until_killed(
    name: &str,
    env: &str,
    dir: &std::path::Path,
    round: u64,
    kill_after: usize,
    mut on_line: impl FnMut(&str),
) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, dir)
        .env("AVL_STORAGE_CRASH_ROUND", round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut seen = 0;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        on_line(&line);
        seen += 1;
        if seen >= kill_after {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert!(
        seen >= kill_after,
        "round {round}: the child stopped on its own"
    );
}

/// The next number of an xorshift sequence.
fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// The child: runs only when the parent starts this test binary with `CHILD_ENV` set.
#[test]
fn crash_child_writer() {
    let Some((store, round)) = child_store(CHILD_ENV, open, "crash") else {
        return;
    };
    acknowledge_forever(THREADS as u64, move |t, n| {
        // Every third write replaces the object written two before it.
        let (name, version) = if n % 3 == 2 {
            (format!("r{round}-t{t}-{}", n - 2), n)
        } else {
            (format!("r{round}-t{t}-{n}"), n)
        };
        if n % 7 == 6 {
            let gone = format!("r{round}-t{t}-{}", n - 1);
            store.delete_object("crash", &gone).unwrap();
            format!("del {gone} {t} {n}")
        } else {
            let data = content(&name, version);
            store
                .put_object("crash", &name, &mut data.as_slice(), PutOptions::default())
                .unwrap();
            format!("put {name} {version} {t} {n}")
        }
    });
}

#[test]
fn acknowledged_puts_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = 0x5eed_9876_abcd_ef01u64;
    // The last acknowledged state of each name: Some(version) or deleted.
    let mut acked: HashMap<String, Option<u64>> = HashMap::new();
    let rounds: u64 = std::env::var("AVL_STORAGE_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(8);
    for round in 0..rounds {
        let kill_after = 5 + (next(&mut rng) % 60) as usize;
        // Per thread, the last operation acknowledged.
        let mut last: HashMap<u64, u64> = HashMap::new();
        run_child_until_killed(
            "crash_child_writer",
            CHILD_ENV,
            dir.path(),
            round,
            kill_after,
            |line| match line.split(' ').collect::<Vec<_>>().as_slice() {
                ["put", name, v, t, n] => {
                    acked.insert(name.to_string(), Some(v.parse().unwrap()));
                    last.insert(t.parse().unwrap(), n.parse().unwrap());
                }
                ["del", name, t, n] => {
                    acked.insert(name.to_string(), None);
                    last.insert(t.parse().unwrap(), n.parse().unwrap());
                }
                _ => {}
            },
        );
        // The operation each thread had in flight may or may not have happened: a delete
        // in flight may have removed an acknowledged object.
        let maybe_deleted: Vec<String> = (0..THREADS as u64)
            .filter_map(|t| {
                let next = last.get(&t).map_or(0, |n| n + 1);
                (next % 7 == 6).then(|| format!("r{round}-t{t}-{}", next - 1))
            })
            .collect();

        let store = open(dir.path().to_str().unwrap());
        let mut gone = Vec::new();
        for (name, state) in &acked {
            match (state, store.get_object("crash", name, None)) {
                (Some(v), Ok((info, mut r))) => {
                    let mut got = Vec::new();
                    r.read_to_end(&mut got).unwrap();
                    // A later, unacknowledged write of the same name may have landed.
                    let ok = (*v..v + 3).any(|w| got == content(name, w));
                    assert!(
                        ok,
                        "round {round}: {name} lost its acknowledged bytes ({} bytes)",
                        info.size
                    );
                }
                (Some(_), Err(StorageError::NoSuchKey(_))) if maybe_deleted.contains(name) => {
                    gone.push(name.clone());
                }
                (Some(v), Err(e)) => panic!("round {round}: acknowledged {name} v{v} is lost: {e}"),
                (None, _) => {}
            }
        }
        for name in gone {
            acked.insert(name, None);
        }
        // Every visible object is whole, and every chunk file belongs to one.
        let mut chunks_named = 0;
        let mut token = None;
        loop {
            let page = store
                .list_objects(
                    "crash",
                    &ListOptions {
                        continuation: token.clone(),
                        ..ListOptions::default()
                    },
                )
                .unwrap();
            for o in &page.objects {
                let (_, mut r) = store.get_object("crash", &o.key, None).unwrap();
                let mut got = Vec::new();
                r.read_to_end(&mut got).unwrap();
                use md5::{Digest, Md5};
                assert_eq!(
                    hex::encode(Md5::digest(&got)),
                    o.etag,
                    "round {round}: {} is torn",
                    o.key
                );
                chunks_named += got.len().div_ceil(CHUNK);
            }
            if !page.is_truncated {
                break;
            }
            token = page.next_continuation;
        }
        let files: usize = std::fs::read_dir(dir.path().join("chunks"))
            .unwrap()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum();
        assert_eq!(files, chunks_named, "round {round}: chunk files leaked");
    }
}

const MULTIPART_CHILD_ENV: &str = "AVL_STORAGE_CRASH_MULTIPART_DIR";

/// The multipart store: parts down to one chunk.
fn open_multipart(dir: &str) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            chunk_size: CHUNK,
            min_part_size: CHUNK as u64,
        },
    )
    .unwrap()
}

/// The parts of upload `n` of a thread: two or three, of a few chunks each.
fn parts_of(name: &str, n: u64) -> Vec<Vec<u8>> {
    (0..2 + n % 2).map(|p| content(name, n * 10 + p)).collect()
}

/// The multipart ETag of `parts`, as S3 makes it.
fn multipart_etag(parts: &[Vec<u8>]) -> String {
    use md5::{Digest, Md5};
    let digests: Vec<u8> = parts.iter().flat_map(|p| Md5::digest(p).to_vec()).collect();
    format!("{}-{}", hex::encode(Md5::digest(&digests)), parts.len())
}

/// The child of the multipart crash test: uploads in parts and completes, from two
/// threads; every fifth upload is left unfinished, every seventh aborted.
#[test]
fn crash_child_multipart() {
    let Some((store, round)) = child_store(MULTIPART_CHILD_ENV, open_multipart, "parts") else {
        return;
    };
    acknowledge_forever(2, move |t, n| {
        // Every fourth upload replaces the object of the one before it.
        let name = format!("m{round}-t{t}-{}", if n % 4 == 3 { n - 1 } else { n });
        let parts = parts_of(&name, n);
        let id = store
            .create_multipart_upload("parts", &name, PutOptions::default())
            .unwrap();
        let mut tags = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let tag = store
                .upload_part("parts", &name, &id, i as u32 + 1, &mut p.as_slice())
                .unwrap();
            tags.push((i as u32 + 1, tag));
        }
        if n % 5 == 4 {
            format!("open {name} {n}")
        } else if n % 7 == 6 {
            store.abort_multipart_upload("parts", &name, &id).unwrap();
            format!("abort {name} {n}")
        } else {
            let info = store
                .complete_multipart_upload("parts", &name, &id, &tags, &Default::default())
                .unwrap();
            assert_eq!(info.etag, multipart_etag(&parts));
            format!("done {name} {n}")
        }
    });
}

/// Multipart uploads and completions killed at random moments: every acknowledged
/// completion is there with its bytes; every visible object is whole (each part's bytes
/// match its ETag); uploads left open still complete after the restart; and the chunk
/// files are exactly those of the objects and of the open uploads' parts.
#[test]
fn acknowledged_completions_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() || std::env::var(MULTIPART_CHILD_ENV).is_ok() {
        return;
    }
    use md5::{Digest, Md5};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    let mut rng = 0x0bad_cafe_1234_5678u64;
    // The upload number of the last acknowledged completion of each name.
    let mut acked: HashMap<String, u64> = HashMap::new();
    let rounds: u64 = std::env::var("AVL_STORAGE_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(8);
    for round in 0..rounds {
        let kill_after = 3 + (next(&mut rng) % 25) as usize;
        run_child_until_killed(
            "crash_child_multipart",
            MULTIPART_CHILD_ENV,
            dir.path(),
            round,
            kill_after,
            |line| {
                if let ["done", name, n] = line.split(' ').collect::<Vec<_>>().as_slice() {
                    acked.insert(name.to_string(), n.parse().unwrap());
                }
            },
        );

        let store = open_multipart(&path);
        let read = |key: &str, part: Option<u32>| -> Vec<u8> {
            let (_, mut r) = match part {
                Some(p) => store
                    .get_object_part_if("parts", key, p, &Default::default())
                    .unwrap(),
                None => store.get_object("parts", key, None).unwrap(),
            };
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            got
        };
        for (name, n) in &acked {
            let got = read(name, None);
            // A later upload of the same name may have completed unacknowledged.
            let ok = (*n..n + 5).any(|m| got == parts_of(name, m).concat());
            assert!(ok, "round {round}: {name} lost its acknowledged bytes");
        }
        // Every visible object is whole, part by part; count the chunks it names.
        let mut chunks_named = 0;
        let page = store
            .list_objects("parts", &ListOptions::default())
            .unwrap();
        assert!(!page.is_truncated);
        for o in &page.objects {
            let info = store.head_object("parts", &o.key).unwrap();
            let parts: Vec<Vec<u8>> = (1..=info.parts.unwrap())
                .map(|p| read(&o.key, Some(p)))
                .collect();
            assert_eq!(
                multipart_etag(&parts),
                o.etag,
                "round {round}: {} is torn",
                o.key
            );
            chunks_named += parts.iter().map(|p| p.len().div_ceil(CHUNK)).sum::<usize>();
        }
        // Uploads left open keep their parts; completing them works now.
        for upload in store.list_multipart_uploads("parts", "").unwrap() {
            let (parts, _) = store
                .list_parts("parts", &upload.key, &upload.upload_id, 0, None)
                .unwrap();
            chunks_named += parts
                .iter()
                .map(|p| (p.size as usize).div_ceil(CHUNK))
                .sum::<usize>();
        }
        let files: usize = std::fs::read_dir(dir.path().join("chunks"))
            .unwrap()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum();
        assert_eq!(files, chunks_named, "round {round}: chunk files leaked");
        for upload in store.list_multipart_uploads("parts", "").unwrap() {
            let (parts, _) = store
                .list_parts("parts", &upload.key, &upload.upload_id, 0, None)
                .unwrap();
            if parts.is_empty() {
                // Killed before its first part.
                store
                    .abort_multipart_upload("parts", &upload.key, &upload.upload_id)
                    .unwrap();
                continue;
            }
            let tags: Vec<(u32, String)> = parts
                .iter()
                .map(|p| (p.part_number, p.etag.clone()))
                .collect();
            let info = store
                .complete_multipart_upload(
                    "parts",
                    &upload.key,
                    &upload.upload_id,
                    &tags,
                    &Default::default(),
                )
                .unwrap();
            let got = read(&upload.key, None);
            let digests: Vec<u8> = parts
                .iter()
                .flat_map(|p| hex::decode(&p.etag).unwrap())
                .collect();
            assert_eq!(
                info.etag,
                format!("{}-{}", hex::encode(Md5::digest(&digests)), parts.len())
            );
            assert_eq!(got.len() as u64, info.size);
            acked.remove(&upload.key);
        }
    }
}
