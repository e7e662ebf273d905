//! The serve plumbing: authentication, authorization, limits, health, request ids,
//! error shapes, graceful shutdown, and start-up failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use avl_core::serve::{AllowAll, AnonymousAccess, ServeConfig, Server, TlsFiles};
use avl_core::sigv4::{self, Signer};
use avl_core::{Body, Client, Credentials, Error, ErrorCode, Principal, StaticKeys};
use http::{HeaderMap, HeaderValue, Method};
use support::server::{Options, Running, start};
use support::{Notes, NotesRequest as Req, payload};

/// A raw request to the notes endpoint, signed as the caller chooses.
struct Raw<'a> {
    creds: Option<&'a Credentials>,
    body: Vec<u8>,
    content_type: &'a str,
    signed_body: Option<Vec<u8>>,
    at: SystemTime,
    method: Method,
    extra: Vec<(&'static str, &'a str)>,
    /// Sign `UNSIGNED-PAYLOAD` instead of the body's hash.
    unsigned: bool,
    /// Send (and sign) `avl-message-sha256` as the hash of this message.
    message_hash_of: Option<&'a str>,
}

impl<'a> Raw<'a> {
    fn json(creds: &'a Credentials, body: &str) -> Self {
        Raw {
            creds: Some(creds),
            body: body.as_bytes().to_vec(),
            content_type: "application/json",
            signed_body: None,
            at: SystemTime::now(),
            method: Method::POST,
            extra: Vec::new(),
            unsigned: false,
            message_hash_of: None,
        }
    }

    async fn send(self, server: &Running) -> (u16, HeaderMap, serde_json::Value) {
        let url = format!("{}/v1/notes", server.url);
        let uri: http::Uri = url.parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "host",
            HeaderValue::from_str(uri.authority().unwrap().as_str()).unwrap(),
        );
        headers.insert(
            "content-type",
            HeaderValue::from_str(self.content_type).unwrap(),
        );
        for (k, v) in &self.extra {
            headers.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        if let Some(message) = self.message_hash_of {
            let hash = sigv4::sha256_hex(message.as_bytes());
            headers.insert("avl-message-sha256", HeaderValue::from_str(&hash).unwrap());
        }
        if let Some(creds) = self.creds {
            let hashed = self.signed_body.as_ref().unwrap_or(&self.body);
            let payload_hash = if self.unsigned {
                sigv4::UNSIGNED_PAYLOAD.to_string()
            } else {
                sigv4::sha256_hex(hashed)
            };
            sigv4::sign(
                &self.method,
                "/v1/notes",
                "",
                &mut headers,
                &payload_hash,
                &Signer {
                    credentials: creds,
                    region: "us-east-1",
                    service: sigv4::SERVICE,
                },
                self.at,
            )
            .unwrap();
        }
        let response = support::raw_http()
            .request(self.method, &url)
            .headers(headers)
            .body(self.body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, headers, json)
    }
}

/// Checks an error response: status, code, a request id that matches the header.
fn check_error(reply: &(u16, HeaderMap, serde_json::Value), status: u16, code: &str) -> String {
    let (got_status, headers, json) = reply;
    assert_eq!(*got_status, status, "{json}");
    assert_eq!(json["code"], code, "{json}");
    let id = json["request_id"]
        .as_str()
        .expect("error bodies carry the request id");
    assert_eq!(headers["x-request-id"], id);
    json["message"].as_str().unwrap().to_string()
}

const ECHO: &str = r#"{"op":"Echo","text":"hi"}"#;

#[tokio::test]
async fn health_and_readiness() {
    let server = start(Options::default()).await;
    let http = support::raw_http();
    let get = |path: &str| http.get(format!("{}{path}", server.url)).send();
    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    server.notes.not_ready.store(true, Ordering::SeqCst);
    let r = get("/readyz").await.unwrap();
    assert_eq!(r.status(), 503);
    let json: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(json["code"], "Unavailable");
    assert!(json["message"].as_str().unwrap().contains("notes"));
    server.notes.not_ready.store(false, Ordering::SeqCst);

    let r = get("/nothing/here").await.unwrap();
    assert_eq!(r.status(), 404);
    let json: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(json["code"], "NotFound");
    server.shutdown().await;
}

#[tokio::test]
async fn requests_without_a_valid_signature_are_unauthenticated() {
    let server = start(Options::default()).await;
    let root = server.root.clone();
    let ok = Raw::json(&root, ECHO).send(&server).await;
    assert_eq!(ok.0, 200, "{}", ok.2);
    assert_eq!(ok.2["text"], "hi");

    let unsigned = Raw {
        creds: None,
        ..Raw::json(&root, ECHO)
    }
    .send(&server)
    .await;
    let msg = check_error(&unsigned, 401, "Unauthenticated");
    assert!(msg.contains("not signed"), "{msg}");

    let wrong_secret =
        Credentials::new(root.access_key_id.clone(), "not-the-root-secret-at-all").unwrap();
    let msg = check_error(
        &Raw::json(&wrong_secret, ECHO).send(&server).await,
        401,
        "Unauthenticated",
    );
    assert!(msg.contains("does not match"), "{msg}");

    let unknown = Credentials::new("AVLUNKNOWNKEY", "whatever-secret-1234").unwrap();
    let msg = check_error(
        &Raw::json(&unknown, ECHO).send(&server).await,
        401,
        "Unauthenticated",
    );
    assert!(msg.contains("unknown access key"), "{msg}");

    let stale = Raw {
        at: SystemTime::now() - Duration::from_secs(20 * 60),
        ..Raw::json(&root, ECHO)
    };
    let msg = check_error(&stale.send(&server).await, 401, "Unauthenticated");
    assert!(msg.contains("15 minutes"), "{msg}");

    // The body was swapped after signing: the signed hash no longer matches.
    let tampered = Raw {
        signed_body: Some(br#"{"op":"Echo","text":"ok"}"#.to_vec()),
        ..Raw::json(&root, r#"{"op":"Echo","text":"evil"}"#)
    };
    let msg = check_error(&tampered.send(&server).await, 401, "Unauthenticated");
    assert!(msg.contains("x-amz-content-sha256"), "{msg}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_unsigned_payload_never_leaves_the_message_unsigned() {
    let server = start(Options::default()).await;
    let root = server.root.clone();
    // No signed message hash: refused, whatever the message.
    let bare = Raw {
        unsigned: true,
        ..Raw::json(&root, ECHO)
    };
    let msg = check_error(&bare.send(&server).await, 401, "Unauthenticated");
    assert!(msg.contains("avl-message-sha256"), "{msg}");
    // The signed hash of one message, sent with another (a replayed header set).
    let swapped = Raw {
        unsigned: true,
        message_hash_of: Some(ECHO),
        ..Raw::json(&root, r#"{"op":"Delete","key":"diary"}"#)
    };
    let msg = check_error(&swapped.send(&server).await, 401, "Unauthenticated");
    assert!(msg.contains("message does not match"), "{msg}");
    // The honest version passes.
    let honest = Raw {
        unsigned: true,
        message_hash_of: Some(ECHO),
        ..Raw::json(&root, ECHO)
    };
    let (status, _, json) = honest.send(&server).await;
    assert_eq!(status, 200, "{json}");
    server.shutdown().await;
}

#[tokio::test]
async fn authorization_runs_for_every_request() {
    let alice = Credentials::new("AVLALICE", "alice-secret-123456").unwrap();
    let keys =
        StaticKeys::root(support::server::root()).with(alice.clone(), Principal::user("alice"));
    let server = start(Options {
        keys,
        ..Options::default()
    })
    .await;
    let reply = Raw::json(&alice, r#"{"op":"Get","key":"diary"}"#)
        .send(&server)
        .await;
    let msg = check_error(&reply, 403, "Forbidden");
    assert_eq!(msg, "alice may not notes:Get on diary");
    let client = Client::new(Arc::new(server.transport(&alice)));
    let e = client
        .call(Req::Echo { text: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Forbidden);
    assert_eq!(e.message(), "alice may not notes:Echo");
    server.shutdown().await;
}

#[tokio::test]
async fn authentication_can_be_turned_off_by_name() {
    let server = start(Options {
        authenticator: Some(Arc::new(AnonymousAccess)),
        authorizer: Arc::new(AllowAll),
        ..Options::default()
    })
    .await;
    let reply = Raw {
        creds: None,
        ..Raw::json(&server.root, r#"{"op":"WhoAmI"}"#)
    }
    .send(&server)
    .await;
    assert_eq!(reply.0, 200);
    assert!(
        reply.2["text"]
            .as_str()
            .unwrap()
            .starts_with("anonymous:Anonymous")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_clear_errors() {
    let server = start(Options::default()).await;
    let root = server.root.clone();
    let msg = check_error(
        &Raw::json(&root, r#"{"op":"Echo","text":}"#)
            .send(&server)
            .await,
        400,
        "InvalidInput",
    );
    assert!(msg.contains("line 1 column"), "{msg}");
    let msg = check_error(
        &Raw::json(&root, r#"{"op":"Launch"}"#).send(&server).await,
        400,
        "InvalidInput",
    );
    assert!(msg.contains("unknown variant"), "{msg}");
    let wrong_type = Raw {
        content_type: "text/plain",
        ..Raw::json(&root, ECHO)
    };
    let msg = check_error(&wrong_type.send(&server).await, 400, "InvalidInput");
    assert!(msg.contains("expected application/json"), "{msg}");
    let get = Raw {
        method: Method::GET,
        body: Vec::new(),
        ..Raw::json(&root, "")
    };
    let msg = check_error(&get.send(&server).await, 400, "InvalidInput");
    assert!(msg.contains("POST"), "{msg}");

    // A framed body without its kind, one cut inside its message, one claiming a huge message.
    let mut framed = 100u32.to_be_bytes().to_vec();
    framed.extend_from_slice(br#"{"op":"Put","key":"k"}"#);
    let no_kind = Raw {
        content_type: "application/vnd.avl.framed",
        body: framed.clone(),
        ..Raw::json(&root, "")
    };
    check_error(&no_kind.send(&server).await, 400, "InvalidInput");
    let cut = Raw {
        content_type: "application/vnd.avl.framed",
        body: framed,
        extra: vec![("avl-body", "bytes")],
        ..Raw::json(&root, "")
    };
    let msg = check_error(&cut.send(&server).await, 400, "InvalidInput");
    assert!(msg.contains("ended inside its message"), "{msg}");
    let mut huge = u32::MAX.to_be_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let huge = Raw {
        content_type: "application/vnd.avl.framed",
        body: huge,
        extra: vec![("avl-body", "bytes")],
        ..Raw::json(&root, "")
    };
    check_error(&huge.send(&server).await, 413, "TooLarge");

    // A payload on a message that carries none.
    let framed = {
        let head = br#"{"op":"WhoAmI"}"#;
        let mut f = (head.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(head);
        f.extend_from_slice(b"unexpected payload");
        f
    };
    let extra = Raw {
        content_type: "application/vnd.avl.framed",
        body: framed,
        extra: vec![("avl-body", "bytes")],
        ..Raw::json(&root, "")
    };
    let msg = check_error(&extra.send(&server).await, 400, "InvalidInput");
    assert!(
        msg.contains("no payload") || msg.contains("only Put"),
        "{msg}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn request_bodies_are_limited_per_service() {
    let server = start(Options::default()).await;
    let client = server.root_client();
    let limit = support::MAX_REQUEST as usize;
    let big = payload(limit + 1, 1);
    let e = client
        .call(Req::Put {
            key: "big".into(),
            data: Body::Bytes(big.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
    let e = client
        .call(Req::Put {
            key: "big".into(),
            data: support::chunked(big, 256 << 10),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
    // Just under the limit (with its framing) is fine.
    let fits = payload(limit - 1000, 2);
    client
        .call(Req::Put {
            key: "fits".into(),
            data: Body::Bytes(fits),
        })
        .await
        .unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn request_ids_are_kept_or_made() {
    let server = start(Options::default()).await;
    let root = server.root.clone();
    let mine = Raw {
        extra: vec![("x-request-id", "trace-42.a_b")],
        ..Raw::json(&root, ECHO)
    };
    let (_, headers, _) = mine.send(&server).await;
    assert_eq!(headers["x-request-id"], "trace-42.a_b");
    let hostile = Raw {
        extra: vec![(
            "x-request-id",
            "evil id with spaces and a very long tail that goes past sixty-four characters",
        )],
        ..Raw::json(&root, ECHO)
    };
    let (_, headers, _) = hostile.send(&server).await;
    let id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 16);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let server = start(Options::default()).await;
    let client = server.root_client();
    let url = server.url.clone();
    let notes = Arc::clone(&server.notes);
    let slow = tokio::spawn(async move { client.call(Req::Slow { millis: 700 }).await });
    notes.started.notified().await;
    assert_eq!(notes.in_flight.load(Ordering::SeqCst), 1);
    server.shutdown().await;
    // shutdown() returned only after the in-flight request was answered.
    assert_eq!(notes.in_flight.load(Ordering::SeqCst), 0);
    assert!(
        slow.await.unwrap().is_ok(),
        "the in-flight request completed"
    );
    let e = support::raw_http()
        .get(format!("{url}/healthz"))
        .send()
        .await;
    assert!(e.is_err(), "no longer accepting connections");
}

#[tokio::test]
async fn shutdown_closes_connections_after_the_grace_period() {
    let server = start(Options {
        grace: Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    let client = server.root_client();
    let notes = Arc::clone(&server.notes);
    let slow = tokio::spawn(async move { client.call(Req::Slow { millis: 30_000 }).await });
    notes.started.notified().await;
    let started = std::time::Instant::now();
    server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    // The connection was closed under the request: the client sees it fail.
    let e = slow.await.unwrap().unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
}

#[tokio::test]
async fn start_up_failures_are_reported_before_serving() {
    let builder = || {
        Server::builder(Arc::new(AnonymousAccess), Arc::new(AllowAll))
            .mount(Arc::new(Notes::default()))
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e: Error = builder().bind(ServeConfig::new(addr)).await.err().unwrap();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert_eq!(
        e.message(),
        format!("cannot listen on {addr}: address already in use")
    );

    let dir = tempfile::tempdir().unwrap();
    let good = support::server::self_signed(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let other = support::server::self_signed(&{
        let d = dir.path().join("other");
        std::fs::create_dir(&d).unwrap();
        d
    });
    let cases = [
        (
            TlsFiles {
                cert: dir.path().join("missing.pem"),
                key: good.key.clone(),
            },
            "missing.pem",
        ),
        (
            TlsFiles {
                cert: garbage.clone(),
                key: good.key.clone(),
            },
            "garbage.pem",
        ),
        (
            TlsFiles {
                cert: empty.clone(),
                key: good.key.clone(),
            },
            "empty.pem",
        ),
        (
            TlsFiles {
                cert: good.cert.clone(),
                key: empty.clone(),
            },
            "empty.pem",
        ),
        (
            TlsFiles {
                cert: good.cert.clone(),
                key: other.key.clone(),
            },
            "do not work together",
        ),
    ];
    for (files, expected) in cases {
        let config = ServeConfig::new("127.0.0.1:0".parse().unwrap()).with_tls(files);
        let e = builder().bind(config).await.err().unwrap();
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
        assert!(
            e.to_string().contains(expected),
            "{e} should name {expected}"
        );
    }
}
