//! The `avl` binary, run as a user runs it: `serve` with real sockets and signals,
//! `configure` writing the config file, `status` in-process and through a server, and
//! every start-up failure as one clear line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;

use common::*;

fn status_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "status failed: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn version_and_help() {
    let home = tempfile::tempdir().unwrap();
    let out = run(avl(home.path()).arg("--version"));
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("avl {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(avl(home.path()).arg("--help"));
    assert!(out.status.success());
    for word in ["serve", "configure", "status", "--data-dir"] {
        assert!(text(&out.stdout).contains(word), "help mentions {word}");
    }
    let out = run(avl(home.path()).args(["serve", "--help"]));
    assert!(text(&out.stdout).contains("127.0.0.1:4510"));
}

#[test]
fn serve_creates_root_credentials_once_and_answers_signed_clients() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let served = Served::start(serve(home.path(), &data, &["--log-format", "json"]));
    let url = served.url.clone();
    assert!(url.starts_with("http://127.0.0.1:"));
    let key = exported(&served.stdout, "AVL_ACCESS_KEY_ID").expect("new key printed");
    let secret = exported(&served.stdout, "AVL_SECRET_ACCESS_KEY").expect("new secret printed");
    assert!(served.stdout.iter().any(|l| l.contains(&format!(
        "data directory: {}",
        data.canonicalize().unwrap().display()
    ))));

    let creds = std::fs::read_to_string(data.join("credentials")).unwrap();
    assert!(creds.contains(&key) && creds.contains(&secret));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("credentials"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Through the server, signed with the printed key pair.
    let remote = |cmd: &mut Command| {
        cmd.env("AVL_ENDPOINT", &url)
            .env("AVL_ACCESS_KEY_ID", &key)
            .env("AVL_SECRET_ACCESS_KEY", &secret)
            .arg("status");
    };
    let mut cmd = avl(home.path());
    remote(&mut cmd);
    let status = status_json(&run(&mut cmd));
    assert_eq!(status["principal"], "root");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));

    // A wrong secret is refused with the code, on one line, non-zero.
    let mut cmd = avl(home.path());
    remote(&mut cmd);
    cmd.env("AVL_SECRET_ACCESS_KEY", "definitely-not-the-secret");
    let out = run(&mut cmd);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: Unauthenticated: signature does not match"),
        "{err}"
    );

    let (code, stdout, stderr) = served.stop("TERM");
    assert_eq!(code, 0, "clean exit on SIGTERM; stderr: {stderr}");
    assert!(
        stdout
            .iter()
            .any(|l| l == "received SIGTERM, shutting down")
    );
    assert_eq!(stdout.last().map(String::as_str), Some("stopped"));

    // One structured access line per request, carrying its request id, never a secret.
    assert!(!stderr.contains(&secret), "the secret reached the log");
    let access: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "avl::access")
        .collect();
    assert_eq!(access.len(), 2, "{stderr}");
    let ok = access.iter().find(|v| v["outcome"] == "ok").unwrap();
    assert_eq!(ok["op"], "Status");
    assert_eq!(ok["principal"], "root");
    assert_eq!(ok["status"], 200);
    let id = ok["span"]["request_id"].as_str().unwrap();
    assert_eq!(id.len(), 16);
    let denied = access
        .iter()
        .find(|v| v["outcome"] == "Unauthenticated")
        .unwrap();
    assert_eq!(denied["status"], 401);

    // A restart reuses the stored pair and does not print it again.
    let served = Served::start(serve(home.path(), &data, &[]));
    assert!(exported(&served.stdout, "AVL_SECRET_ACCESS_KEY").is_none());
    let mut cmd = avl(home.path());
    cmd.env("AVL_ENDPOINT", &served.url)
        .env("AVL_ACCESS_KEY_ID", &key)
        .env("AVL_SECRET_ACCESS_KEY", &secret)
        .arg("status");
    assert_eq!(status_json(&run(&mut cmd))["principal"], "root");
    let (code, stdout, _) = served.stop("INT");
    assert_eq!(code, 0);
    assert!(stdout.iter().any(|l| l == "received SIGINT, shutting down"));
}

#[test]
fn root_credentials_can_come_from_the_environment() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let mut cmd = serve(home.path(), &data, &[]);
    cmd.env("AVL_ROOT_ACCESS_KEY_ID", "AVLFROMENV")
        .env("AVL_ROOT_SECRET_ACCESS_KEY", "secret-from-the-environment");
    let served = Served::start(cmd);
    assert!(exported(&served.stdout, "AVL_ACCESS_KEY_ID").is_none());
    assert!(!data.join("credentials").exists());
    let mut client = avl(home.path());
    client
        .env("AVL_ACCESS_KEY_ID", "AVLFROMENV")
        .env("AVL_SECRET_ACCESS_KEY", "secret-from-the-environment")
        .args(["status", "--endpoint", &served.url]);
    assert_eq!(status_json(&run(&mut client))["principal"], "root");
    served.stop("TERM");

    let mut half = serve(home.path(), &data, &[]);
    half.env("AVL_ROOT_ACCESS_KEY_ID", "AVLFROMENV");
    let out = run(&mut half);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("AVL_ROOT_SECRET_ACCESS_KEY"));
}

#[test]
fn configure_writes_a_private_config_that_clients_use() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let served = Served::start(serve(home.path(), &data, &[]));
    let key = exported(&served.stdout, "AVL_ACCESS_KEY_ID").unwrap();
    let secret = exported(&served.stdout, "AVL_SECRET_ACCESS_KEY").unwrap();
    let config = home.path().join("config.toml");

    // Flags.
    let out = run(avl(home.path()).args([
        "configure",
        "--endpoint",
        &served.url,
        "--access-key-id",
        &key,
        "--secret-access-key",
        &secret,
        "--region",
        "sa-east-1",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("[default]") && written.contains("sa-east-1"));

    // A client with nothing but the config file reaches the server.
    assert_eq!(
        status_json(&run(avl(home.path()).arg("status")))["principal"],
        "root"
    );
    // The environment wins over the file: a bogus endpoint fails.
    let out = run(avl(home.path())
        .env("AVL_ENDPOINT", "http://127.0.0.1:9")
        .arg("status"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).starts_with("error: Unavailable:"),
        "{}",
        text(&out.stderr)
    );

    // Interactive: answers on stdin; an empty answer keeps the current value.
    let mut child = avl(home.path())
        .args(["--profile", "staging", "configure"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "{}\n{key}\n{secret}\n", served.url).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let prompts = text(&out.stdout);
    assert!(prompts.contains("AVL endpoint [None]:"), "{prompts}");
    assert!(!prompts.contains(&secret));
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("[staging]"));
    let status = run(avl(home.path()).args(["--profile", "staging", "status"]));
    assert_eq!(status_json(&status)["principal"], "root");

    // Bad values are refused and the file is left as it was.
    let before = std::fs::read_to_string(&config).unwrap();
    let out = run(avl(home.path()).args(["configure", "--endpoint", "ftp://nope"]));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("endpoint"));
    let out = run(avl(home.path()).args(["configure", "--access-key-id", "A-B"]));
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    served.stop("TERM");
}

#[test]
fn status_runs_in_process_without_an_endpoint() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("local-data");
    let out = run(avl(home.path()).arg("--data-dir").arg(&data).arg("status"));
    let status = status_json(&out);
    assert_eq!(status["principal"], "in-process");
    assert_eq!(
        PathBuf::from(status["data_dir"].as_str().unwrap()),
        data.canonicalize().unwrap()
    );
    // AVL_DATA_DIR works as the flag does.
    let out = run(avl(home.path()).env("AVL_DATA_DIR", &data).arg("status"));
    assert_eq!(status_json(&out)["principal"], "in-process");
}

/// Runs a failing `avl serve` and returns its single stderr line.
fn failed_start(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "should fail: {}", text(&out.stdout));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line, got: {err}");
    assert!(out.stdout.is_empty(), "nothing printed before the failure");
    err.trim().to_string()
}

#[test]
fn start_up_failures_are_one_clear_line() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");

    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = avl(home.path());
    cmd.arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", &addr]);
    let err = failed_start(&mut cmd);
    assert_eq!(
        err,
        format!("error: Unavailable: cannot listen on {addr}: address already in use")
    );

    // The S3 front's port in use.
    let mut cmd = avl(home.path());
    cmd.arg("--data-dir").arg(&data).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--s3-listen",
        &addr,
    ]);
    let err = failed_start(&mut cmd);
    assert_eq!(
        err,
        format!(
            "error: Unavailable: cannot start the S3 front: cannot listen on {addr}: address already in use"
        )
    );

    // A data directory that cannot be written (its parent is a file).
    let file = home.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = failed_start(&mut serve(home.path(), &file.join("data"), &[]));
    assert!(err.contains("cannot use data directory"), "{err}");

    // A data directory in use by another server.
    let served = Served::start(serve(home.path(), &data, &[]));
    let err = failed_start(&mut serve(home.path(), &data, &[]));
    assert!(err.contains("in use by another avl process"), "{err}");
    served.stop("TERM");

    // Malformed TLS files.
    let garbage = home.path().join("cert.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let key = home.path().join("key.pem");
    std::fs::write(&key, "not a key").unwrap();
    let tls = [
        "--tls-cert",
        garbage.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let err = failed_start(&mut serve(home.path(), &data, &tls));
    assert!(
        err.contains("TLS certificate file") && err.contains("cert.pem"),
        "{err}"
    );
    let missing = [
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
    ];
    let err = failed_start(&mut serve(home.path(), &data, &missing));
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    // A certificate without its key is a usage error from the argument parser.
    let out = run(&mut serve(home.path(), &data, &["--tls-cert", "x.pem"]));
    assert!(!out.status.success());
}

#[test]
fn serve_over_tls_with_pem_files() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_file = home.path().join("cert.pem");
    let key_file = home.path().join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let tls = [
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
    ];
    let served = Served::start(serve(home.path(), &data, &tls));
    assert!(
        served.url.starts_with("https://127.0.0.1:"),
        "{}",
        served.url
    );
    let key = exported(&served.stdout, "AVL_ACCESS_KEY_ID").unwrap();
    let secret = exported(&served.stdout, "AVL_SECRET_ACCESS_KEY").unwrap();
    let client = |ca: Option<&Path>| {
        let mut cmd = avl(home.path());
        cmd.env("AVL_ENDPOINT", &served.url)
            .env("AVL_ACCESS_KEY_ID", &key)
            .env("AVL_SECRET_ACCESS_KEY", &secret)
            .arg("status");
        if let Some(ca) = ca {
            cmd.env("AVL_CA_FILE", ca);
        }
        run(&mut cmd)
    };
    assert_eq!(status_json(&client(Some(&cert_file)))["principal"], "root");
    // Without trusting the certificate the client refuses to talk.
    let out = client(None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("certificate"),
        "{}",
        text(&out.stderr)
    );
    let (code, _, _) = served.stop("TERM");
    assert_eq!(code, 0);
}

#[test]
fn db_commands_work_in_process_and_through_a_server() {
    let home = tempfile::tempdir().unwrap();
    // In-process on a data directory.
    let local = home.path().join("local");
    let db = |args: &[&str]| {
        let mut cmd = avl(home.path());
        cmd.arg("--data-dir").arg(&local).arg("db").args(args);
        run(&mut cmd)
    };
    assert!(db(&["create", "gamedb"]).status.success());
    assert!(
        db(&[
            "collection",
            "create",
            "gamedb",
            "players",
            "--partition-key",
            "/region"
        ])
        .status
        .success()
    );
    let put = db(&[
        "put",
        "gamedb",
        "players",
        r#"{"id":"p1","region":"sa-east-1","score":10}"#,
    ]);
    assert!(put.status.success(), "{}", text(&put.stderr));
    let written: serde_json::Value = serde_json::from_slice(&put.stdout).unwrap();
    let etag = written["etag"].as_str().unwrap().to_string();
    let got = db(&["get", "gamedb", "players", "sa-east-1", "p1"]);
    let doc: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(
        (doc["score"].as_i64(), doc["_etag"].as_str()),
        (Some(10), Some(etag.as_str()))
    );
    let stale = db(&[
        "delete",
        "gamedb",
        "players",
        "sa-east-1",
        "p1",
        "--if-match",
        "0000000000000000",
    ]);
    assert!(!stale.status.success());
    assert!(
        text(&stale.stderr).starts_with("error: Conflict:"),
        "{}",
        text(&stale.stderr)
    );
    let missing = db(&["get", "gamedb", "players", "sa-east-1", "nobody"]);
    assert_eq!(
        text(&missing.stderr).trim(),
        "error: NotFound: document `nobody` does not exist"
    );
    for i in 2..6 {
        let doc = format!(r#"{{"id":"p{i}","region":"eu","score":{}}}"#, i * 10);
        assert!(db(&["put", "gamedb", "players", &doc]).status.success());
    }
    let q = db(&[
        "query",
        "gamedb",
        "SELECT VALUE p.id FROM players p WHERE p.score >= @min ORDER BY p.score DESC",
        "--param",
        "min=20",
        "--page-size",
        "2",
    ]);
    assert!(q.status.success(), "{}", text(&q.stderr));
    assert_eq!(text(&q.stdout), "\"p5\"\n\"p4\"\n\"p3\"\n\"p2\"\n");
    let q = db(&[
        "query",
        "gamedb",
        "SELECT VALUE COUNT(1) FROM c WHERE c.region = @r",
        "--collection",
        "players",
        "--param",
        "r=eu",
    ]);
    assert_eq!(text(&q.stdout), "4\n", "{}", text(&q.stderr));
    let created = db(&[
        "index", "create", "gamedb", "players", "by_score", "--path", "/score",
    ]);
    assert_eq!(
        text(&created.stdout),
        "{\"indexed\":5}\n",
        "{}",
        text(&created.stderr)
    );
    let listed = db(&["index", "list", "gamedb", "players"]);
    assert_eq!(
        text(&listed.stdout),
        "{\"name\":\"by_score\",\"paths\":[\"/score\"],\"unique\":false}\n"
    );
    let plan = db(&[
        "query",
        "gamedb",
        "SELECT * FROM players p WHERE p.score > 20",
        "--explain",
    ]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        (plan["access"].as_str(), plan["index"].as_str()),
        (Some("index"), Some("by_score"))
    );
    assert!(
        db(&["index", "drop", "gamedb", "players", "by_score"])
            .status
            .success()
    );
    let feed = db(&["changes", "gamedb", "players", "--max", "2"]);
    assert!(feed.status.success(), "{}", text(&feed.stderr));
    let ids: Vec<String> = text(&feed.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
        .collect();
    assert_eq!(ids, ["\"p1\"", "\"p2\""]);
    let token = text(&feed.stderr)
        .trim()
        .strip_prefix("continuation: ")
        .unwrap()
        .to_string();
    let rest = db(&["changes", "gamedb", "players", "--continuation", &token]);
    assert_eq!(
        text(&rest.stdout).lines().count(),
        3,
        "{}",
        text(&rest.stderr)
    );
    let ttl = db(&[
        "collection",
        "create",
        "gamedb",
        "sessions",
        "--default-ttl",
        "3600",
    ]);
    assert!(ttl.status.success(), "{}", text(&ttl.stderr));
    let listed = db(&["collection", "list", "gamedb"]);
    assert!(
        text(&listed.stdout)
            .contains(r#""name":"sessions","partition_key":"/id","default_ttl":3600"#),
        "{}",
        text(&listed.stdout)
    );
    assert!(
        db(&["collection", "ttl", "gamedb", "sessions", "-1"])
            .status
            .success()
    );
    assert!(
        db(&["collection", "ttl", "gamedb", "sessions", "off"])
            .status
            .success()
    );
    let bad = db(&["collection", "ttl", "gamedb", "sessions", "soon"]);
    assert!(
        text(&bad.stderr).starts_with("error: InvalidInput: ttl"),
        "{}",
        text(&bad.stderr)
    );
    // Bulk import: batches, a count, a rate; a bad line names itself.
    let lines: String = (0..250)
        .map(|i| format!("{{\"id\":\"i{i}\",\"region\":\"imp\",\"n\":{i}}}\n\n"))
        .collect();
    let file = home.path().join("players.jsonl");
    std::fs::write(&file, lines).unwrap();
    let imported = db(&["import", "gamedb", "players", file.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&imported.stdout).unwrap();
    assert_eq!(summary["imported"], 250);
    assert!(summary["documents_per_second"].as_f64().unwrap() > 0.0);
    let q = db(&[
        "query",
        "gamedb",
        "SELECT VALUE SUM(c.n) FROM players c WHERE c.region = 'imp'",
    ]);
    assert_eq!(text(&q.stdout), format!("{}\n", (0..250).sum::<i32>()));
    std::fs::write(&file, "{\"id\":\"ok1\",\"region\":\"imp\"}\n{oops\n").unwrap();
    let bad = db(&["import", "gamedb", "players", file.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).starts_with("error: InvalidInput: document: line 2, column 2"),
        "{}",
        text(&bad.stderr)
    );
    // The first line's batch was not sent yet: nothing was imported, and it says so.
    assert!(
        text(&bad.stderr)
            .trim_end()
            .ends_with("(0 documents imported)"),
        "{}",
        text(&bad.stderr)
    );
    let again = db(&[
        "import",
        "gamedb",
        "players",
        "--insert-only",
        home.path().join("players.jsonl").to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    // One batch of five holds ids that exist: it fails whole, the four others commit,
    // and the count is of what committed (the batches in flight when it failed
    // included), in one error line.
    let dup = home.path().join("dup.jsonl");
    let lines: String = (0..250)
        .map(|i| {
            // i100..i149 exist (in region imp, imported above).
            let (id, region) = if (100..150).contains(&i) {
                (format!("i{i}"), "imp")
            } else {
                (format!("n{i}"), "imp2")
            };
            format!("{{\"id\":\"{id}\",\"region\":\"{region}\"}}\n")
        })
        .collect();
    std::fs::write(&dup, lines).unwrap();
    let partly = db(&[
        "import",
        "gamedb",
        "players",
        "--insert-only",
        "--batch-size",
        "50",
        dup.to_str().unwrap(),
    ]);
    assert!(!partly.status.success());
    let stderr = text(&partly.stderr);
    assert!(
        stderr.starts_with("error: AlreadyExists: the batch from line 101:")
            && stderr.trim_end().ends_with("(200 documents imported)")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    let q = db(&[
        "query",
        "gamedb",
        "SELECT VALUE COUNT(1) FROM players c WHERE c.region = 'imp2'",
    ]);
    assert_eq!(text(&q.stdout), "200\n");
    let q = db(&["query", "gamedb", "SELECT * FROM players WHERE"]);
    assert!(!q.status.success());
    assert!(
        text(&q.stderr).starts_with("error: InvalidInput: query: line 1, column 28"),
        "{}",
        text(&q.stderr)
    );
    let bad = db(&["put", "gamedb", "players", "{oops"]);
    assert!(
        text(&bad.stderr).starts_with("error: InvalidInput: document: not valid JSON"),
        "{}",
        text(&bad.stderr)
    );

    // Through a server: the same commands with an endpoint.
    let data = home.path().join("served");
    let served = Served::start(serve(home.path(), &data, &[]));
    let key = exported(&served.stdout, "AVL_ACCESS_KEY_ID").unwrap();
    let secret = exported(&served.stdout, "AVL_SECRET_ACCESS_KEY").unwrap();
    let remote = |args: &[&str]| {
        let mut cmd = avl(home.path());
        cmd.env("AVL_ENDPOINT", &served.url)
            .env("AVL_ACCESS_KEY_ID", &key)
            .env("AVL_SECRET_ACCESS_KEY", &secret)
            .arg("db")
            .args(args);
        run(&mut cmd)
    };
    assert!(remote(&["create", "chat"]).status.success());
    assert!(
        remote(&[
            "collection",
            "create",
            "chat",
            "memories",
            "--partition-key",
            "/user"
        ])
        .status
        .success()
    );
    let doc_file = home.path().join("memory.json");
    std::fs::write(&doc_file, r#"{"id":"m1","user":"ana","text":"olá"}"#).unwrap();
    let put = remote(&[
        "insert",
        "chat",
        "memories",
        &format!("@{}", doc_file.display()),
    ]);
    assert!(put.status.success(), "{}", text(&put.stderr));
    let got = remote(&["get", "chat", "memories", "ana", "m1"]);
    let doc: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(doc["text"], "olá");
    let created = remote(&[
        "vector-index",
        "create",
        "chat",
        "memories",
        "--path",
        "/embedding",
        "--dimensions",
        "3",
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    for (id, v) in [("m2", "[1,0,0]"), ("m3", "[0,1,0]")] {
        let doc = format!(r#"{{"id":"{id}","user":"ana","embedding":{v}}}"#);
        assert!(remote(&["put", "chat", "memories", &doc]).status.success());
    }
    let near = remote(&[
        "vector-search",
        "chat",
        "memories",
        "--path",
        "/embedding",
        "--vector",
        "[0.9,0.1,0]",
        "-k",
        "1",
    ]);
    let hit: serde_json::Value = serde_json::from_slice(&near.stdout).unwrap();
    assert_eq!(hit["document"]["id"], "m2", "{}", text(&near.stderr));
    let wide = remote(&[
        "vector-search",
        "chat",
        "memories",
        "--path",
        "/embedding",
        "--vector",
        "[0,1,0.1]",
        "-k",
        "1",
        "--ef",
        "32",
    ]);
    let hit: serde_json::Value = serde_json::from_slice(&wide.stdout).unwrap();
    assert_eq!(hit["document"]["id"], "m3", "{}", text(&wide.stderr));
    // Cosmos DB's SQL, the query vector as a parameter.
    let sql = remote(&[
        "query",
        "chat",
        "SELECT TOP 1 c.id, VectorDistance(c.embedding, @q) AS score FROM memories c \
         ORDER BY VectorDistance(c.embedding, @q)",
        "--param",
        "q=[0.1,0.9,0]",
    ]);
    let row: serde_json::Value = serde_json::from_slice(&sql.stdout).unwrap();
    assert_eq!(row["id"], "m3", "{}", text(&sql.stderr));
    let flat = remote(&[
        "vector-index",
        "create",
        "chat",
        "memories",
        "--path",
        "/other",
        "--dimensions",
        "3",
        "--kind",
        "round",
    ]);
    assert!(
        text(&flat.stderr).starts_with("error: InvalidInput: kind"),
        "{}",
        text(&flat.stderr)
    );
    let bad = remote(&[
        "vector-search",
        "chat",
        "memories",
        "--path",
        "/embedding",
        "--vector",
        "[1,2]",
    ]);
    assert!(
        text(&bad.stderr).starts_with("error: InvalidInput: vector"),
        "{}",
        text(&bad.stderr)
    );
    let q = remote(&[
        "query",
        "chat",
        "SELECT c.text FROM memories c WHERE IS_DEFINED(c.text)",
    ]);
    assert_eq!(
        text(&q.stdout),
        "{\"text\":\"olá\"}\n",
        "{}",
        text(&q.stderr)
    );
    // A database request with a wrong secret is refused before it reaches the database:
    // nothing written.
    let mut forged = avl(home.path());
    forged
        .env("AVL_ENDPOINT", &served.url)
        .env("AVL_ACCESS_KEY_ID", &key)
        .env("AVL_SECRET_ACCESS_KEY", "definitely-not-the-secret")
        .args(["db", "put", "chat", "memories"])
        .arg(r#"{"id":"m9","user":"ana"}"#);
    let out = run(&mut forged);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).starts_with("error: Unauthenticated: "),
        "{}",
        text(&out.stderr)
    );
    let got = remote(&["get", "chat", "memories", "ana", "m9"]);
    assert!(
        text(&got.stderr).starts_with("error: NotFound: "),
        "{}",
        text(&got.stderr)
    );
    // In-process on the served directory: refused with a hint, not corrupted.
    let mut direct = avl(home.path());
    direct.arg("--data-dir").arg(&data).args(["db", "list"]);
    let out = run(&mut direct);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("AVL_ENDPOINT"),
        "{}",
        text(&out.stderr)
    );
    let (code, _, _) = served.stop("TERM");
    assert_eq!(code, 0);
    // After the server stops, the data is there in-process.
    let mut direct = avl(home.path());
    direct
        .arg("--data-dir")
        .arg(&data)
        .args(["db", "get", "chat", "memories", "ana", "m1"]);
    let out = run(&mut direct);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// An in-process command on the data directory `local` under `home`: `avl --data-dir
/// HOME/local ARGS`.
fn local(home: &Path, args: &[&str]) -> Command {
    let mut cmd = avl(home);
    cmd.arg("--data-dir").arg(home.join("local")).args(args);
    cmd
}

/// Runs `local(home, args)` and checks it succeeded.
fn ok(home: &Path, args: &[&str]) -> Output {
    let out = run(&mut local(home, args));
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    out
}

/// A home whose data directory holds database `g` with collection `c` (keyed by `/id`).
fn home_with_collection() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    ok(home.path(), &["db", "create", "g"]);
    ok(home.path(), &["db", "collection", "create", "g", "c"]);
    home
}

#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_output_quietly() {
    let home = home_with_collection();
    let home = home.path();
    for i in 0..3 {
        ok(
            home,
            &["db", "put", "g", "c", &format!(r#"{{"id":"d{i}"}}"#)],
        );
    }
    let file = home.join("hello.txt");
    std::fs::write(&file, "hello").unwrap();
    ok(home, &["storage", "mb", "s3://bkt"]);
    ok(
        home,
        &["storage", "cp", file.to_str().unwrap(), "s3://bkt/h"],
    );
    for args in [
        &["db", "query", "g", "SELECT * FROM c"][..],
        &["db", "changes", "g", "c"][..],
        &["storage", "cat", "s3://bkt/h"][..],
        &["storage", "ls", "s3://bkt"][..],
    ] {
        // Standard output is a pipe nobody reads any more (`... | head -0`).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = local(home, args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        // The status of a process SIGPIPE ended (128 + 13), as `cat` would have.
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
    }
}

#[test]
fn db_put_from_standard_input_delete_and_drop() {
    use std::io::Write;
    let home = home_with_collection();
    let home = home.path();
    let failed = |args: &[&str], starts: &str| {
        let out = run(&mut local(home, args));
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.starts_with(starts), "{args:?}: {err}");
        assert!(!err.contains("NotFound: NotFound"), "{err}");
    };
    // `-`: the document comes from standard input.
    let mut put = local(home, &["db", "put", "g", "c", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin
        .take()
        .unwrap()
        .write_all(br#"{"id":"d1","n":1}"#)
        .unwrap();
    let put = put.wait_with_output().unwrap();
    assert!(put.status.success(), "{}", text(&put.stderr));
    let got = ok(home, &["db", "get", "g", "c", "d1", "d1"]);
    let doc: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(doc["n"], 1);
    // A delete that succeeds, then finds nothing.
    ok(home, &["db", "delete", "g", "c", "d1", "d1"]);
    let gone = run(&mut local(home, &["db", "get", "g", "c", "d1", "d1"]));
    assert_eq!(
        text(&gone.stderr).trim(),
        "error: NotFound: document `d1` does not exist"
    );
    failed(
        &["db", "delete", "g", "c", "d1", "d1"],
        "error: NotFound: document `d1`",
    );
    // Drop: the database and its collections are gone; a second drop is NotFound.
    ok(home, &["db", "drop", "g"]);
    let listed = ok(home, &["db", "list"]);
    assert!(
        !text(&listed.stdout).contains("\"g\""),
        "{}",
        text(&listed.stdout)
    );
    failed(&["db", "get", "g", "c", "d1", "d1"], "error: NotFound: ");
    failed(&["db", "drop", "g"], "error: NotFound: ");
}

#[test]
fn usage_mistakes_are_one_line_and_negative_keys_parse() {
    let home = home_with_collection();
    let home = home.path();
    for args in [
        &["--bogus"][..],
        &["db", "get"][..],
        &["serve", "--listen", "nope"][..],
    ] {
        let out = run(avl(home).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: InvalidInput: "), "{args:?}: {err}");
    }
    ok(
        home,
        &[
            "db",
            "collection",
            "create",
            "g",
            "nums",
            "--partition-key",
            "/k",
        ],
    );
    ok(home, &["db", "put", "g", "nums", r#"{"id":"n1","k":-1}"#]);
    // A negative number is a partition key, not a flag.
    let got = ok(home, &["db", "get", "g", "nums", "-1", "n1"]);
    let doc: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(doc["k"], -1);
    ok(home, &["db", "delete", "g", "nums", "-1", "n1"]);
}

#[test]
fn files_parameters_and_the_data_dir_after_the_subcommand() {
    let home = home_with_collection();
    let home = home.path();
    // put @FILE stores the file's document.
    let doc = home.join("doc.json");
    std::fs::write(&doc, r#"{"id": "f1", "handle": "@ana", "n": 7}"#).unwrap();
    ok(
        home,
        &["db", "put", "g", "c", &format!("@{}", doc.display())],
    );
    // --param NAME=@FILE reads JSON from a file; a text starting with @ is given as a
    // JSON string; a value that is not JSON is text.
    let param = home.join("n.json");
    std::fs::write(&param, "7").unwrap();
    let q = ok(
        home,
        &[
            "db",
            "query",
            "g",
            "SELECT VALUE c.id FROM c WHERE c.n = @n AND c.handle = @h AND c.id = @id",
            "--param",
            &format!("n=@{}", param.display()),
            "--param",
            r#"h="@ana""#,
            "--param",
            "id=f1",
        ],
    );
    assert_eq!(text(&q.stdout), "\"f1\"\n");
    let missing = run(&mut local(
        home,
        &[
            "db",
            "query",
            "g",
            "SELECT * FROM c WHERE c.handle = @h",
            "--param",
            "h=@no-such-file",
        ],
    ));
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).starts_with("error: ") && text(&missing.stderr).lines().count() == 1,
        "{}",
        text(&missing.stderr)
    );
    // --data-dir is global: after the subcommand it names the same directory.
    let after = run(avl(home)
        .args(["db", "get", "g", "c", "f1", "f1", "--data-dir"])
        .arg(home.join("local")));
    assert!(after.status.success(), "{}", text(&after.stderr));
    let got: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(got["handle"], "@ana");
}
