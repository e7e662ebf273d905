//! One suite, run over every transport: the in-process transport and HTTP (plain and TLS)
//! must behave the same.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use avl_core::{Body, Client, ClientConfig, ErrorCode, connect};
use support::server::{Options, start};
use support::{
    Notes, NotesRequest as Req, NotesResponse as Resp, chunked, collect_stream, payload,
};

async fn suite(client: &Client<Notes>) {
    // Bytes payloads round trip, empty and binary ones included.
    for (key, len) in [("empty", 0usize), ("small", 17), ("binary", 1 << 20)] {
        let data = payload(len, len as u8);
        let put = client
            .call(Req::Put {
                key: key.into(),
                data: Body::Bytes(data.clone()),
            })
            .await
            .unwrap();
        assert!(matches!(put, Resp::Done));
        let Resp::Data {
            len: got_len,
            data: got,
        } = client.call(Req::Get { key: key.into() }).await.unwrap()
        else {
            panic!("Get answers Data");
        };
        assert_eq!(got_len, len as u64);
        let got = match got {
            Body::Bytes(b) => b,
            other => panic!("a bytes payload arrives as bytes, got {other:?}"),
        };
        assert_eq!(got, data, "{key}");
    }

    // A streamed upload is stored whole; a streamed download arrives whole, as a stream.
    let big = payload(3 << 20, 7);
    client
        .call(Req::Put {
            key: "streamed".into(),
            data: chunked(big.clone(), 100_000),
        })
        .await
        .unwrap();
    let Resp::Data { data, len } = client
        .call(Req::Download {
            key: "streamed".into(),
            chunk: 65_536,
        })
        .await
        .unwrap()
    else {
        panic!("Download answers Data");
    };
    assert_eq!(len, big.len() as u64);
    assert!(
        matches!(data, Body::Stream(_)),
        "a streamed payload arrives as a stream"
    );
    assert_eq!(collect_stream(data).await, big);

    // Messages without payloads, unicode included.
    let Resp::Keys { keys } = client.call(Req::List { prefix: "s".into() }).await.unwrap() else {
        panic!("List answers Keys");
    };
    assert_eq!(keys, vec!["small".to_string(), "streamed".to_string()]);
    let text = "olá, São Paulo ✓ \"quoted\" \n\t";
    let Resp::Text { text: echoed } = client.call(Req::Echo { text: text.into() }).await.unwrap()
    else {
        panic!("Echo answers Text");
    };
    assert_eq!(echoed, text);

    // Errors keep their code, message and field across the transport.
    let e = client
        .call(Req::Get {
            key: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert_eq!(e.message(), "no note `missing`");
    for code in ErrorCode::ALL {
        let e = client
            .call(Req::Fail { code, field: None })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code);
        assert_eq!(e.message(), "asked to fail");
    }
    let e = client
        .call(Req::Fail {
            code: ErrorCode::InvalidInput,
            field: Some("region".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("region"));
    let e = client
        .call(Req::Put {
            key: String::new(),
            data: Body::Empty,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.field()),
        (ErrorCode::InvalidInput, Some("key"))
    );

    // Deletes.
    client
        .call(Req::Delete {
            key: "small".into(),
        })
        .await
        .unwrap();
    let e = client
        .call(Req::Delete {
            key: "small".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
}

#[tokio::test]
async fn suite_over_the_local_transport() {
    let client = Client::local(Arc::new(Notes::default()));
    suite(&client).await;
}

#[tokio::test]
async fn suite_over_http() {
    let server = start(Options::default()).await;
    let client = server.root_client();
    suite(&client).await;
    let e = client
        .call(Req::Fail {
            code: ErrorCode::Conflict,
            field: None,
        })
        .await
        .unwrap_err();
    assert!(
        e.request_id().is_some(),
        "errors over HTTP carry the request id"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn suite_over_https_with_a_self_signed_certificate() {
    let server = start(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    assert!(server.url.starts_with("https://"));
    suite(&server.root_client()).await;
    server.shutdown().await;
}

#[tokio::test]
async fn https_refuses_an_untrusted_certificate() {
    let server = start(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    let transport =
        avl_core::HttpTransport::<Notes>::new(&server.url, server.root.clone(), "us-east-1", None)
            .unwrap();
    let e = Client::new(Arc::new(transport))
        .call(Req::Echo { text: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert!(e.message().contains("certificate"), "{e}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_local_transport_hands_payloads_over_without_copying() {
    let client = Client::local(Arc::new(Notes::default()));
    let data = payload(1 << 20, 3);
    client
        .call(Req::Put {
            key: "k".into(),
            data: Body::Bytes(data.clone()),
        })
        .await
        .unwrap();
    let Resp::Data {
        data: Body::Bytes(got),
        ..
    } = client.call(Req::Get { key: "k".into() }).await.unwrap()
    else {
        panic!("Get answers bytes");
    };
    assert_eq!(got.as_ptr(), data.as_ptr(), "the same allocation came back");
}

#[tokio::test]
async fn who_is_calling_differs_by_transport() {
    let local = Client::local(Arc::new(Notes::default()));
    let Resp::Text { text } = local.call(Req::WhoAmI).await.unwrap() else {
        panic!()
    };
    assert_eq!(text, "in-process:InProcess:16");
    let server = start(Options::default()).await;
    let Resp::Text { text } = server.root_client().call(Req::WhoAmI).await.unwrap() else {
        panic!()
    };
    assert_eq!(text, "root:Root:16");
    server.shutdown().await;
}

#[tokio::test]
async fn connect_picks_the_transport_from_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = ClientConfig::local(dir.path().join("data"));
    let a = Client::new(connect::<Notes>(&config).unwrap());
    let b = Client::new(connect::<Notes>(&config).unwrap());
    assert!(a.target().starts_with("local:"));
    a.call(Req::Put {
        key: "shared".into(),
        data: Body::from(b"x".to_vec()),
    })
    .await
    .unwrap();
    // The second connect shares the engine the first opened.
    assert!(matches!(
        b.call(Req::Get {
            key: "shared".into()
        })
        .await
        .unwrap(),
        Resp::Data { len: 1, .. }
    ));
    assert!(dir.path().join("data").join("notes.opened").exists());

    let server = start(Options::default()).await;
    let remote = ClientConfig::remote(server.url.clone(), server.root.clone());
    let c = Client::new(connect::<Notes>(&remote).unwrap());
    assert!(c.target().starts_with("http://127.0.0.1:"));
    c.call(Req::Echo {
        text: "over http".into(),
    })
    .await
    .unwrap();

    let mut no_keys = remote.clone();
    no_keys.credentials = None;
    let e = connect::<Notes>(&no_keys).err().unwrap();
    assert_eq!(e.code(), ErrorCode::Unauthenticated);
    server.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let transport =
        avl_core::HttpTransport::<Notes>::new(&url, support::server::root(), "us-east-1", None)
            .unwrap();
    let e = Client::new(Arc::new(transport))
        .call(Req::Echo { text: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert!(e.message().contains(&url), "{e}");
}

#[tokio::test]
async fn responses_larger_than_the_client_allows_are_refused() {
    let server = start(Options::default()).await;
    server
        .root_client()
        .call(Req::Put {
            key: "big".into(),
            data: Body::Bytes(payload(100_000, 1)),
        })
        .await
        .unwrap();
    let small = server.transport(&server.root).with_response_limit(10_000);
    let e = Client::new(Arc::new(small))
        .call(Req::Get { key: "big".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TooLarge, "{e}");
    server.shutdown().await;
}
