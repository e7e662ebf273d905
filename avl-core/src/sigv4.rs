//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`) for HTTP requests: the HTTP transport
//! signs every request with it and the serve plumbing checks it, so the secret never
//! travels. It is the scheme S3 clients use, so the S3 front shares keys and rules.
//!
//! Written here rather than taken from `aws-sigv4`: that crate signs but does not verify,
//! and brings the AWS SDK runtime with it; both sides need the same canonical request,
//! which is short to write and is checked against AWS's published test vectors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str};
use sha2::{Digest, Sha256};

use crate::credentials::{Credentials, KeyStore, Secret};
use crate::error::Error;
use crate::service::Principal;

/// The algorithm name in the `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash value for a payload that is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The service name the platform transport signs for (S3 clients sign for `s3`).
pub const SERVICE: &str = "avl";
/// How far a request's time may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Characters AWS leaves unencoded: letters, digits, `-`, `_`, `.`, `~`.
const AWS_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a signature was refused. The S3 front maps these to S3's error codes; everything
/// else sees them as [`crate::ErrorCode::Unauthenticated`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request carries no `Authorization` header.
    #[error("request is not signed (no Authorization header)")]
    Missing,
    /// The `Authorization` header or a signed header is malformed.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// No such access key.
    #[error("unknown access key id")]
    UnknownAccessKey,
    /// The request time is too far from the server's clock.
    #[error("request time is more than 15 minutes away from the server's clock")]
    Skewed,
    /// The signature does not match the request.
    #[error("signature does not match the request")]
    Mismatch,
}

impl From<SignatureError> for Error {
    fn from(e: SignatureError) -> Self {
        Error::unauthenticated(e.to_string())
    }
}

/// The hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `YYYYMMDD'T'HHMMSS'Z'` for `time`.
pub fn format_amz_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Parses `YYYYMMDD'T'HHMMSS'Z'`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as u32, d as u32);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + se;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

// Howard Hinnant's civil-calendar algorithms (public domain), for UTC dates without a
// date-time dependency.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The canonical URI: each path segment decoded, then encoded the way AWS does.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/')
        .map(|seg| {
            let decoded = percent_decode_str(seg).collect::<Vec<u8>>();
            percent_encoding::percent_encode(&decoded, AWS_ENCODE).to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The canonical query string: pairs decoded to bytes, re-encoded, and sorted (bytes that
/// are not UTF-8 keep their identity: `%FF` and `%FE` stay different).
fn canonical_query(query: &str, skip: Option<&str>) -> String {
    let decode = |s: &str| -> Vec<u8> { percent_decode_str(&s.replace('+', "%20")).collect() };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (decode(k), decode(v)))
        .filter(|(k, _)| skip.is_none_or(|s| k.as_slice() != s.as_bytes()))
        .map(|(k, v)| {
            (
                percent_encoding::percent_encode(&k, AWS_ENCODE).to_string(),
                percent_encoding::percent_encode(&v, AWS_ENCODE).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn header_value(headers: &HeaderMap, name: &str) -> Result<String, SignatureError> {
    let values: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
    if values.is_empty() {
        return Err(SignatureError::Malformed(format!(
            "signed header `{name}` is missing"
        )));
    }
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let s = v
            .to_str()
            .map_err(|_| SignatureError::Malformed(format!("header `{name}` is not text")))?;
        out.push(s.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    Ok(out.join(","))
}

/// The parts of a request a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path as sent (percent-encoded).
    pub path: &'a str,
    /// The query as sent, without `?`.
    pub query: &'a str,
    /// All headers.
    pub headers: &'a HeaderMap,
}

fn canonical_request(
    req: &RequestParts<'_>,
    signed_headers: &[&str],
    payload_hash: &str,
) -> Result<String, SignatureError> {
    let mut canonical = String::with_capacity(256);
    canonical.push_str(req.method.as_str());
    canonical.push('\n');
    canonical.push_str(&canonical_uri(req.path));
    canonical.push('\n');
    canonical.push_str(&canonical_query(req.query, Some("X-Amz-Signature")));
    canonical.push('\n');
    for name in signed_headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&header_value(req.headers, name)?);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers.join(";"));
    canonical.push('\n');
    canonical.push_str(payload_hash);
    Ok(canonical)
}

fn signature(
    secret: &Secret,
    amz_date: &str,
    scope: &Scope<'_>,
    canonical_request: &str,
) -> String {
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope.as_string(),
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac(
        format!("AWS4{}", secret.expose()).as_bytes(),
        scope.date.as_bytes(),
    );
    let k_region = hmac(&k_date, scope.region.as_bytes());
    let k_service = hmac(&k_region, scope.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

/// The credential scope: date, region, service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scope<'a> {
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

impl Scope<'_> {
    fn as_string(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// Who signs, for which region and service.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    /// The key pair.
    pub credentials: &'a Credentials,
    /// The region in the credential scope.
    pub region: &'a str,
    /// The service in the credential scope ([`SERVICE`] for the platform transport).
    pub service: &'a str,
}

/// The query of a presigned URL (SigV4 in the query string, as S3's presigned URLs
/// carry it) for `method` on `path` (as it will be sent, percent-encoded) at `host`,
/// valid for `expires_secs` from `now`; only the host is signed, not the payload.
/// Append `?` and it to the URL.
pub fn presign_query(
    method: &Method,
    path: &str,
    host: &str,
    signer: &Signer<'_>,
    now: SystemTime,
    expires_secs: u64,
) -> Result<String, Error> {
    let amz_date = format_amz_date(now);
    let scope = Scope {
        date: amz_date.get(..8).unwrap_or_default(),
        region: signer.region,
        service: signer.service,
    };
    let credential = format!("{}/{}", signer.credentials.access_key_id, scope.as_string());
    let credential = percent_encoding::percent_encode(credential.as_bytes(), AWS_ENCODE);
    let query = format!(
        "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={credential}&X-Amz-Date={amz_date}\
         &X-Amz-Expires={expires_secs}&X-Amz-SignedHeaders=host"
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        "host",
        HeaderValue::from_str(host).map_err(|_| Error::invalid_input("host", "not a host"))?,
    );
    let parts = RequestParts {
        method,
        path,
        query: &query,
        headers: &headers,
    };
    let canonical = canonical_request(&parts, &["host"], "UNSIGNED-PAYLOAD")?;
    let signature = signature(
        &signer.credentials.secret_access_key,
        &amz_date,
        &scope,
        &canonical,
    );
    Ok(format!("{query}&X-Amz-Signature={signature}"))
}

/// Signs a request in place: sets `x-amz-date`, `x-amz-content-sha256` and
/// `authorization`. `headers` must already hold `host`; every header present whose name
/// is `host`, `content-type`, or starts with `x-amz-` or `avl-` is signed.
pub fn sign(
    method: &Method,
    path: &str,
    query: &str,
    headers: &mut HeaderMap,
    payload_hash: &str,
    signer: &Signer<'_>,
    now: SystemTime,
) -> Result<(), Error> {
    let Signer {
        credentials,
        region,
        service,
    } = *signer;
    let amz_date = format_amz_date(now);
    let insert = |headers: &mut HeaderMap, name: &'static str, value: &str| {
        HeaderValue::from_str(value)
            .map(|v| {
                headers.insert(name, v);
            })
            .map_err(|_| Error::invalid_input(name, "not a valid header value"))
    };
    insert(headers, "x-amz-date", &amz_date)?;
    insert(headers, "x-amz-content-sha256", payload_hash)?;
    let mut names: Vec<&str> = headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| {
            *k == "host" || *k == "content-type" || k.starts_with("x-amz-") || k.starts_with("avl-")
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    let req = RequestParts {
        method,
        path,
        query,
        headers,
    };
    let canonical = canonical_request(&req, &names, payload_hash)?;
    let scope = Scope {
        date: &amz_date[..8],
        region,
        service,
    };
    let sig = signature(
        &credentials.secret_access_key,
        &amz_date,
        &scope,
        &canonical,
    );
    let auth = format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={sig}",
        credentials.access_key_id,
        scope.as_string(),
        names.join(";")
    );
    insert(headers, "authorization", &auth)
}

/// A request whose signature checked out.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Who signed it.
    pub principal: Principal,
    /// With which key.
    pub access_key_id: String,
    /// The payload hash the signature covers (hex, or [`UNSIGNED_PAYLOAD`]); the body must
    /// still be checked against it as it is read.
    pub payload_hash: String,
    /// The headers the signature covers, lowercase.
    pub signed_headers: Vec<String>,
}

struct Authorization<'a> {
    access_key_id: &'a str,
    scope: Scope<'a>,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, SignatureError> {
    let malformed = |what: &str| SignatureError::Malformed(what.to_string());
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| malformed("unsupported signature algorithm"))?;
    let (mut credential, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    let credential = credential.ok_or_else(|| malformed("no Credential"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = parts[..] else {
        return Err(malformed(
            "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if terminator != "aws4_request" || date.len() != 8 {
        return Err(malformed(
            "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    }
    let signed_headers: Vec<&str> = signed
        .ok_or_else(|| malformed("no SignedHeaders"))?
        .split(';')
        .collect();
    if signed_headers.windows(2).any(|w| w[0] >= w[1])
        || signed_headers
            .iter()
            .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(malformed(
            "SignedHeaders must be lowercase, sorted and unique",
        ));
    }
    let signature = sig.ok_or_else(|| malformed("no Signature"))?;
    Ok(Authorization {
        access_key_id,
        scope: Scope {
            date,
            region,
            service,
        },
        signed_headers,
        signature,
    })
}

/// Checks a request signed in the `Authorization` header for `service` against `keys`,
/// at server time `now`. Any region is accepted (the signature covers the one the client
/// chose). The payload itself is checked by the caller against
/// [`Verified::payload_hash`].
pub fn verify(
    req: &RequestParts<'_>,
    service: &str,
    keys: &dyn KeyStore,
    now: SystemTime,
) -> Result<Verified, SignatureError> {
    let value = req
        .headers
        .get("authorization")
        .ok_or(SignatureError::Missing)?
        .to_str()
        .map_err(|_| SignatureError::Malformed("Authorization is not text".into()))?;
    let auth = parse_authorization(value)?;
    if auth.scope.service != service {
        return Err(SignatureError::Malformed(format!(
            "credential scope names service `{}`, expected `{service}`",
            auth.scope.service
        )));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(SignatureError::Malformed(format!(
                "header `{required}` must be signed"
            )));
        }
    }
    let amz_date = req
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SignatureError::Malformed("x-amz-date is missing".into()))?;
    let time = parse_amz_date(amz_date)
        .ok_or_else(|| SignatureError::Malformed("x-amz-date is not YYYYMMDDTHHMMSSZ".into()))?;
    let skew = now
        .duration_since(time)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or(Duration::MAX);
    if skew > MAX_SKEW {
        return Err(SignatureError::Skewed);
    }
    if &amz_date[..8] != auth.scope.date {
        return Err(SignatureError::Malformed(
            "credential scope date differs from x-amz-date".into(),
        ));
    }
    let payload_hash = match req.headers.get("x-amz-content-sha256") {
        Some(v) => v
            .to_str()
            .map_err(|_| SignatureError::Malformed("x-amz-content-sha256 is not text".into()))?
            .to_string(),
        None => UNSIGNED_PAYLOAD.to_string(),
    };
    let (secret, principal) = keys
        .lookup(auth.access_key_id)
        .ok_or(SignatureError::UnknownAccessKey)?;
    let canonical = canonical_request(req, &auth.signed_headers, &payload_hash)?;
    let expected = signature(&secret, amz_date, &auth.scope, &canonical);
    if !Secret::new(expected).matches(auth.signature) {
        return Err(SignatureError::Mismatch);
    }
    Ok(Verified {
        principal,
        access_key_id: auth.access_key_id.to_string(),
        payload_hash,
        signed_headers: auth.signed_headers.iter().map(|h| h.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::StaticKeys;

    fn example_keys() -> (Credentials, StaticKeys) {
        let creds =
            Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").unwrap();
        (creds.clone(), StaticKeys::root(creds))
    }

    fn example_time() -> SystemTime {
        parse_amz_date("20150830T123600Z").unwrap()
    }

    #[test]
    fn dates_round_trip() {
        let t = example_time();
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_440_938_160
        );
        for bad in [
            "20151330T123600Z",
            "2015083T123600Z",
            "20150830 123600Z",
            "2015083xT12360Z",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad}");
        }
        for secs in [0u64, 951_782_400, 4_102_444_800, 1_709_164_800] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_amz_date(&format_amz_date(t)), Some(t));
        }
    }

    /// The `get-vanilla` and `post-vanilla` requests of AWS's Signature Version 4 test
    /// suite, with the signatures botocore's `SigV4Auth` gives for them (checked once
    /// against botocore; the values are its output, not ours).
    #[test]
    fn aws_test_suite_vectors() {
        let (creds, keys) = example_keys();
        let cases = [
            (
                Method::GET,
                "7ab4567ae243ee168f6bf18206b2b40b61ce08277323168138fa113ed23c538e",
            ),
            (
                Method::POST,
                "2a67e472830488f8f5af212097cff81a82fc54f436e7033de3d5aac92cc144c6",
            ),
        ];
        for (method, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert("host", HeaderValue::from_static("example.amazon.com"));
            let req_time = example_time();
            // The suite signs only host and x-amz-date: build that canonical request.
            headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
            let req = RequestParts {
                method: &method,
                path: "/",
                query: "",
                headers: &headers,
            };
            let canonical =
                canonical_request(&req, &["host", "x-amz-date"], &sha256_hex(b"")).unwrap();
            let scope = Scope {
                date: "20150830",
                region: "us-east-1",
                service: "service",
            };
            let sig = signature(
                &creds.secret_access_key,
                "20150830T123600Z",
                &scope,
                &canonical,
            );
            assert_eq!(sig, expected, "{method}");

            // And the verifier accepts the header the suite gives.
            let mut signed = headers.clone();
            signed.insert(
                "authorization",
                HeaderValue::from_str(&format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={expected}"
                ))
                .unwrap(),
            );
            signed.insert(
                "x-amz-content-sha256",
                HeaderValue::from_str(&sha256_hex(b"")).unwrap(),
            );
            // x-amz-content-sha256 is not signed in the suite, so the canonical request
            // uses its value; with the empty-body hash it matches the suite's.
            let req = RequestParts {
                headers: &signed,
                ..req
            };
            let verified = verify(&req, "service", &keys, req_time).unwrap();
            assert_eq!(verified.principal, Principal::root());
        }
    }

    /// The transport's own request shape, signed by botocore's `SigV4Auth` with the same
    /// inputs (checked once; the value is botocore's output).
    #[test]
    fn transport_requests_sign_like_botocore() {
        let (creds, _) = example_keys();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:4510"));
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/vnd.avl.framed"),
        );
        headers.insert("avl-body", HeaderValue::from_static("bytes"));
        sign(
            &Method::POST,
            "/v1/db",
            "",
            &mut headers,
            &sha256_hex(b"{}"),
            &Signer {
                credentials: &creds,
                region: "sa-east-1",
                service: SERVICE,
            },
            example_time(),
        )
        .unwrap();
        assert_eq!(
            headers["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/sa-east-1/avl/aws4_request, \
             SignedHeaders=avl-body;content-type;host;x-amz-content-sha256;x-amz-date, \
             Signature=fa735a9d327a84828ea4a8d2c9facf2c2512a99aa33e09db82f2d0836a4a7b9d"
        );
    }

    #[test]
    fn query_strings_are_canonicalized() {
        assert_eq!(canonical_query("b=2&a=1&a=0", None), "a=0&a=1&b=2");
        assert_eq!(
            canonical_query("Param1=value1&Param2=value2", None),
            "Param1=value1&Param2=value2"
        );
        assert_eq!(canonical_query("k=a%20b&x", None), "k=a%20b&x=");
        assert_eq!(canonical_query("k=a+b", None), "k=a%20b");
        assert_eq!(
            canonical_query("%E1%88%B4=%E1%88%B4", None),
            "%E1%88%B4=%E1%88%B4"
        );
        assert_eq!(canonical_uri("/a b/c%2Fd"), "/a%20b/c%2Fd");
    }

    fn signed_request(now: SystemTime, body: &[u8]) -> (HeaderMap, Credentials, StaticKeys) {
        let (creds, keys) = example_keys();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:4510"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        sign(
            &Method::POST,
            "/v1/db",
            "",
            &mut headers,
            &sha256_hex(body),
            &Signer {
                credentials: &creds,
                region: "sa-east-1",
                service: SERVICE,
            },
            now,
        )
        .unwrap();
        (headers, creds, keys)
    }

    #[test]
    fn sign_then_verify_and_every_tamper_fails() {
        let now = example_time();
        let (headers, _, keys) = signed_request(now, b"{}");
        let req = |h: &HeaderMap, path: &'static str| -> Result<Verified, SignatureError> {
            let m = Method::POST;
            verify(
                &RequestParts {
                    method: &m,
                    path,
                    query: "",
                    headers: h,
                },
                SERVICE,
                &keys,
                now,
            )
        };
        let ok = req(&headers, "/v1/db").unwrap();
        assert_eq!(ok.payload_hash, sha256_hex(b"{}"));
        assert_eq!(ok.access_key_id, "AKIDEXAMPLE");

        assert_eq!(
            req(&headers, "/v1/storage").unwrap_err(),
            SignatureError::Mismatch
        );

        let mut h = headers.clone();
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        assert_eq!(req(&h, "/v1/db").unwrap_err(), SignatureError::Mismatch);

        let mut h = headers.clone();
        h.insert(
            "x-amz-content-sha256",
            HeaderValue::from_str(&sha256_hex(b"[]")).unwrap(),
        );
        assert_eq!(req(&h, "/v1/db").unwrap_err(), SignatureError::Mismatch);

        let mut h = headers.clone();
        h.remove("authorization");
        assert_eq!(req(&h, "/v1/db").unwrap_err(), SignatureError::Missing);

        let mut h = headers.clone();
        let auth = h["authorization"]
            .to_str()
            .unwrap()
            .replace("AKIDEXAMPLE", "AKIDOTHER");
        h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        assert_eq!(
            req(&h, "/v1/db").unwrap_err(),
            SignatureError::UnknownAccessKey
        );

        let mut h = headers.clone();
        h.insert("authorization", HeaderValue::from_static("Bearer abc"));
        assert!(matches!(
            req(&h, "/v1/db").unwrap_err(),
            SignatureError::Malformed(_)
        ));

        let mut h = headers.clone();
        let auth = h["authorization"]
            .to_str()
            .unwrap()
            .replace("/avl/", "/s3/");
        h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        assert!(matches!(
            req(&h, "/v1/db").unwrap_err(),
            SignatureError::Malformed(_)
        ));
    }

    #[test]
    fn clock_skew_beyond_fifteen_minutes_is_refused() {
        let signed_at = example_time();
        let (headers, _, keys) = signed_request(signed_at, b"");
        let m = Method::POST;
        let req = RequestParts {
            method: &m,
            path: "/v1/db",
            query: "",
            headers: &headers,
        };
        for (offset, ok) in [(14 * 60, true), (16 * 60, false)] {
            for now in [
                signed_at + Duration::from_secs(offset),
                signed_at - Duration::from_secs(offset),
            ] {
                let result = verify(&req, SERVICE, &keys, now);
                assert_eq!(result.is_ok(), ok, "offset {offset}: {result:?}");
                if !ok {
                    assert_eq!(result.unwrap_err(), SignatureError::Skewed);
                }
            }
        }
    }

    #[test]
    fn secrets_never_appear_in_headers() {
        let (headers, creds, _) = signed_request(example_time(), b"x");
        for v in headers.values() {
            assert!(
                !v.to_str()
                    .unwrap()
                    .contains(creds.secret_access_key.expose())
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_never_panic_the_verifier(
            auth in "\\PC{0,200}",
            date in "[0-9TZ]{0,20}",
            hash in "\\PC{0,70}",
            path in "/[a-z%0-9/]{0,30}",
            query in "[a-z=&%0-9+]{0,30}",
        ) {
            let (_, keys) = example_keys();
            let mut headers = HeaderMap::new();
            for (name, value) in [("authorization", &auth), ("x-amz-date", &date), ("x-amz-content-sha256", &hash)] {
                if let Ok(v) = HeaderValue::from_str(value) {
                    headers.insert(name, v);
                }
            }
            headers.insert("host", HeaderValue::from_static("h"));
            let m = Method::POST;
            let req = RequestParts { method: &m, path: &path, query: &query, headers: &headers };
            let _ = verify(&req, SERVICE, &keys, example_time());
        }

        #[test]
        fn well_formed_but_forged_signatures_are_refused(
            sig in "[0-9a-f]{64}",
            signed in proptest::sample::select(vec!["host;x-amz-date", "host;x-amz-content-sha256;x-amz-date"]),
        ) {
            let (_, keys) = example_keys();
            let mut headers = HeaderMap::new();
            headers.insert("host", HeaderValue::from_static("h"));
            headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
            headers.insert("x-amz-content-sha256", HeaderValue::from_str(&sha256_hex(b"")).unwrap());
            let auth = format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/avl/aws4_request, SignedHeaders={signed}, Signature={sig}");
            headers.insert("authorization", HeaderValue::from_str(&auth).unwrap());
            let m = Method::POST;
            let req = RequestParts { method: &m, path: "/v1/db", query: "", headers: &headers };
            proptest::prop_assert_eq!(verify(&req, SERVICE, &keys, example_time()).unwrap_err(), SignatureError::Mismatch);
        }
    }
}
