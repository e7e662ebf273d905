//! Real S3 clients against `avl serve`'s S3 front: boto3 and aws-cli, over TLS with a
//! self-signed certificate (where the SDKs stream aws-chunked bodies with checksum
//! trailers), on a temporary data directory.
//!
//! Without python3 and boto3 (or aws-cli) the test says `skipped` and passes, unless
//! `AVL_REQUIRE_S3_CLIENTS=1` (set by `.ci/run`, which installs them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::*;

fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the clients are here; a missing one fails the test when CI asks for them.
fn clients_present(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("AVL_REQUIRE_S3_CLIENTS").is_ok_and(|v| v == "1") {
        panic!("{what} is required (AVL_REQUIRE_S3_CLIENTS=1) but is not installed");
    }
    eprintln!("skipped: {what} not installed");
    false
}

/// `avl serve` over TLS with a fixed root key pair: (server, S3 endpoint, certificate).
fn serve_tls(home: &Path, extra: &[&str]) -> (Served, String, PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "*.localhost".to_string(),
    ])
    .unwrap();
    let cert_file = home.join("cert.pem");
    let key_file = home.join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let mut args = vec![
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut cmd = serve(home, &home.join("data"), &args);
    cmd.env("AVL_ROOT_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AVL_ROOT_SECRET_ACCESS_KEY", SECRET_KEY);
    let mut served = Served::start(cmd);
    let line = served.wait_for("S3 listening on ");
    let endpoint = line.trim_start_matches("S3 listening on ").to_string();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    (served, endpoint, cert_file)
}

const ACCESS_KEY: &str = "AKIAAVLTESTROOT00001";
const SECRET_KEY: &str = "avl-test-secret-key-0123456789abcdefghij";

fn client_env(cmd: &mut Command, home: &Path, endpoint: &str, cert: &Path) {
    cmd.env("S3_ENDPOINT", endpoint)
        .env("S3_CA", cert)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CA_BUNDLE", cert)
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("TMPDIR", home)
        .env("HOME", home);
}

fn suite(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/s3")
        .join(name)
}

#[test]
fn boto3_against_the_s3_front() {
    let present = have("python3", &["-c", "import boto3"]);
    if !clients_present("python3 with boto3", present) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let (served, endpoint, cert) = serve_tls(home.path(), &[]);
    let mut cmd = Command::new("python3");
    cmd.arg(suite("boto3_suite.py"));
    client_env(&mut cmd, home.path(), &endpoint, &cert);
    let out = run(&mut cmd);
    let (code, _, stderr) = served.stop("TERM");
    assert!(
        out.status.success(),
        "boto3 suite failed:\n{}\n{}\nserver log:\n{stderr}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("boto3 suite: all"));
    assert_eq!(code, 0);
}

#[test]
fn aws_cli_against_the_s3_front() {
    if !clients_present("aws-cli", have("aws", &["--version"])) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let (served, endpoint, cert) = serve_tls(home.path(), &[]);
    let mut cmd = Command::new("bash");
    cmd.arg(suite("awscli_suite.sh"));
    client_env(&mut cmd, home.path(), &endpoint, &cert);
    let out = run(&mut cmd);
    let (code, _, stderr) = served.stop("TERM");
    assert!(
        out.status.success(),
        "aws-cli suite failed:\n{}\n{}\nserver log:\n{stderr}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("aws-cli suite: all"));
    assert_eq!(code, 0);
}

#[test]
fn no_auth_lets_unsigned_requests_in() {
    let present = have("python3", &["-c", "import boto3"]);
    if !clients_present("python3 with boto3", present) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    // Uploads abandoned for 2 seconds are reclaimed (the script waits for it).
    let (served, endpoint, cert) = serve_tls(
        home.path(),
        &["--no-auth", "--abandoned-uploads-after", "2"],
    );
    let mut cmd = Command::new("python3");
    cmd.arg(suite("no_auth.py"));
    client_env(&mut cmd, home.path(), &endpoint, &cert);
    let out = run(&mut cmd);
    let (code, _, stderr) = served.stop("TERM");
    assert!(
        out.status.success(),
        "no-auth check failed:\n{}\n{}\nserver log:\n{stderr}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(code, 0);
}
