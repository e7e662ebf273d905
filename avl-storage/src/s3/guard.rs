//! What the front checks before s3s sees a request:
//! - sub-resources this store does not implement: s3s routes a request by its method and
//!   the sub-resources it knows, and ignores the others, so `DELETE /bucket?acl` would
//!   reach DeleteBucket and `PUT /key?torrent` PutObject. They are answered
//!   `NotImplemented` and change nothing.
//! - DeleteObjects' integrity header: S3 requires `Content-MD5` or an `x-amz-checksum-*`
//!   on it and checks the body against it; s3s parses the body without looking.
//! - headers HTTP says to ignore when invalid, which s3s refuses: a `Range` whose first
//!   byte is past its last, and conditional dates that are not HTTP dates (those in the
//!   older RFC 850 and asctime forms are rewritten in the form s3s reads).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest, Md5};

/// S3's sub-resources that name operations this store does not have.
const UNSUPPORTED: [&str; 30] = [
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metadataTable",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "session",
    "tagging",
    "torrent",
    "versioning",
    "versions",
    "website",
];

/// The largest DeleteObjects body read (1,000 keys of 1,024 bytes fit with room).
const MAX_DELETE_BODY: usize = 4 << 20;

/// S3's XML error answer.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{}</Message></Error>",
        escape(message)
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

/// Drops or rewrites the headers HTTP says to ignore when invalid (see the module).
fn tidy_headers(headers: &mut axum::http::HeaderMap) {
    let backwards = headers
        .get(axum::http::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
        .is_some_and(|(first, last)| first > last);
    if backwards {
        headers.remove(axum::http::header::RANGE);
    }
    for name in [
        axum::http::header::IF_MODIFIED_SINCE,
        axum::http::header::IF_UNMODIFIED_SINCE,
    ] {
        let Some(value) = headers.get(&name) else {
            continue;
        };
        match value
            .to_str()
            .ok()
            .map(|v| httpdate::parse_http_date(v.trim()))
        {
            Some(Ok(time)) => {
                if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(time)) {
                    headers.insert(name, v);
                }
            }
            _ => {
                headers.remove(name);
            }
        }
    }
}

/// The request, let through (a DeleteObjects body read and checked), or the answer.
pub(super) async fn screen(mut request: Request) -> Result<Request, Response> {
    tidy_headers(request.headers_mut());
    let keys: Vec<&str> = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .map(|pair| pair.split('=').next().unwrap_or(""))
        .collect();
    if let Some(key) = keys.iter().find(|k| UNSUPPORTED.contains(k)) {
        return Err(error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            &format!("this store does not implement the `{key}` sub-resource"),
        ));
    }
    if request.method() != axum::http::Method::POST || !keys.contains(&"delete") {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_DELETE_BODY).await else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "MaxMessageLengthExceeded",
            "Your request was too big.",
        ));
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let checksums = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"]
        .into_iter()
        .filter_map(|a| header(&format!("x-amz-checksum-{a}")).map(|v| (a, v)))
        .collect::<Vec<_>>();
    let md5 = header("content-md5");
    if md5.is_none() && checksums.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Missing required header for this request: Content-MD5 or x-amz-checksum-*",
        ));
    }
    if let Some(md5) = md5 {
        let Some(given) = BASE64.decode(md5).ok().filter(|d| d.len() == 16) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "InvalidDigest",
                "The Content-MD5 you specified was invalid.",
            ));
        };
        if given != Md5::digest(&bytes).as_slice() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "BadDigest",
                "The Content-MD5 you specified did not match what we received.",
            ));
        }
    }
    for (algorithm, given) in checksums {
        let Some(mut hasher) = super::body::hasher_for(algorithm) else {
            continue;
        };
        hasher.update(&bytes);
        let computed = super::body::finish(hasher);
        if computed != given {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "BadDigest",
                &format!(
                    "The {} you specified did not match the calculated checksum.",
                    algorithm.to_ascii_uppercase()
                ),
            ));
        }
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
