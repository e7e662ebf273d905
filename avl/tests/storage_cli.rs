//! `avl storage`, run as a user runs it: in-process on a data directory and through
//! `avl serve` with the same commands, and a presigned URL fetched from the S3 front.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::*;

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs the same session of commands through `storage`.
fn session(home: &Path, storage: &dyn Fn(&[&str]) -> Output) {
    let small = home.join("small.txt");
    std::fs::write(&small, "hello, storage\n").unwrap();
    let big = home.join("big.bin");
    let data: Vec<u8> = (0..9_000_000u32).map(|i| (i * 7 + i / 977) as u8).collect();
    std::fs::write(&big, &data).unwrap();

    assert_eq!(ok(storage(&["mb", "s3://assets"])), "make_bucket: assets\n");
    ok(storage(&[
        "cp",
        small.to_str().unwrap(),
        "s3://assets/docs/",
    ]));
    ok(storage(&[
        "cp",
        big.to_str().unwrap(),
        "s3://assets/data/big.bin",
    ]));
    assert!(ok(storage(&["ls"])).contains(" assets\n"));
    let top = ok(storage(&["ls", "s3://assets"]));
    assert!(
        top.contains("PRE docs/") && top.contains("PRE data/"),
        "{top}"
    );
    let all = ok(storage(&["ls", "s3://assets", "--recursive"]));
    assert!(
        all.contains(" 9000000 data/big.bin") && all.contains(" 15 docs/small.txt"),
        "{all}"
    );
    assert_eq!(
        ok(storage(&["cat", "s3://assets/docs/small.txt"])),
        "hello, storage\n"
    );
    let back = home.join("back.bin");
    ok(storage(&[
        "cp",
        "s3://assets/data/big.bin",
        back.to_str().unwrap(),
    ]));
    assert!(std::fs::read(&back).unwrap() == data);
    ok(storage(&[
        "cp",
        "s3://assets/docs/small.txt",
        "s3://assets/copy.txt",
    ]));
    assert_eq!(
        ok(storage(&["cat", "s3://assets/copy.txt"])),
        "hello, storage\n"
    );

    // Bad input: one clear line, nothing changed.
    let out = storage(&["cat", "s3://assets/nope"]);
    assert!(
        text(&out.stderr).starts_with("error: NotFound: no object under `nope`"),
        "{}",
        text(&out.stderr)
    );
    let out = storage(&["mb", "s3://Bad_Name"]);
    assert!(
        text(&out.stderr).starts_with("error: InvalidInput: invalid bucket name"),
        "{}",
        text(&out.stderr)
    );
    let out = storage(&["rb", "s3://assets"]);
    assert!(
        text(&out.stderr).starts_with("error: Conflict:"),
        "{}",
        text(&out.stderr)
    );
    let out = storage(&["cp", "a", "b"]);
    assert!(!out.status.success());
    // A failed download leaves no file behind.
    let nothing = home.join("nothing.bin");
    assert!(
        !storage(&["cp", "s3://assets/nope", nothing.to_str().unwrap()])
            .status
            .success()
    );
    assert!(!nothing.exists());

    // One object, then the rest.
    ok(storage(&["rm", "s3://assets/copy.txt"]));
    assert!(!storage(&["cat", "s3://assets/copy.txt"]).status.success());
    assert!(ok(storage(&["ls", "s3://assets", "--recursive"])).contains("docs/small.txt"));
    ok(storage(&["rm", "s3://assets/", "--recursive"]));
    assert_eq!(ok(storage(&["ls", "s3://assets", "--recursive"])), "");
    ok(storage(&["rb", "s3://assets"]));
}

#[test]
fn storage_commands_work_in_process() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let storage = |args: &[&str]| {
        let mut cmd = avl(home.path());
        cmd.arg("--data-dir").arg(&data).arg("storage").args(args);
        run(&mut cmd)
    };
    session(home.path(), &storage);
    // Presigning needs a key pair.
    let out = storage(&["presign", "s3://a/b"]);
    assert!(text(&out.stderr).contains("presigning needs a key pair"));
}

#[test]
fn storage_commands_work_through_a_server_and_presigned_urls_on_its_s3_front() {
    let home = tempfile::tempdir().unwrap();
    let mut served = Served::start(serve(home.path(), &home.path().join("data"), &[]));
    let s3 = served
        .wait_for("S3 listening on ")
        .trim_start_matches("S3 listening on ")
        .to_string();
    let key = exported(&served.stdout, "AVL_ACCESS_KEY_ID").unwrap();
    let secret = exported(&served.stdout, "AVL_SECRET_ACCESS_KEY").unwrap();
    let storage = |args: &[&str]| {
        let mut cmd: Command = avl(home.path());
        cmd.env("AVL_ENDPOINT", &served.url)
            .env("AVL_ACCESS_KEY_ID", &key)
            .env("AVL_SECRET_ACCESS_KEY", &secret)
            .env("AVL_S3_ENDPOINT", &s3)
            .arg("storage")
            .args(args);
        run(&mut cmd)
    };
    session(home.path(), &storage);

    ok(storage(&["mb", "s3://shared"]));
    let file = home.path().join("note.txt");
    std::fs::write(&file, "presigned bytes").unwrap();
    ok(storage(&[
        "cp",
        file.to_str().unwrap(),
        "s3://shared/a note.txt",
    ]));
    let url = ok(storage(&[
        "presign",
        "s3://shared/a note.txt",
        "--expires-in",
        "60",
    ]));
    let url = url.trim();
    assert!(
        url.starts_with(&format!("{s3}/shared/a%20note.txt?")),
        "{url}"
    );
    let (status, body) = http_get(url);
    assert_eq!((status, body.as_str()), (200, "presigned bytes"), "{url}");
    // Another key under the same signature is refused.
    let (status, body) = http_get(&url.replace("a%20note", "b%20note"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");
    let out = storage(&["presign", "s3://shared/x", "--expires-in", "0"]);
    assert!(text(&out.stderr).contains("expires-in"));

    let (code, _, _) = served.stop("TERM");
    assert_eq!(code, 0);
}

/// A plain HTTP/1.1 GET: (status, body).
fn http_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
