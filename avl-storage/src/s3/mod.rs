//! The S3 front (feature `serve`): S3's wire protocol over a [`Store`], on a listener of
//! its own, through the `s3s` crate (routing, XML, SigV4 in its header, presigned,
//! streaming and trailer forms). Path-style and virtual-host-style addressing; the
//! credentials come from an avl-core [`KeyStore`].
//!
//! The store is synchronous: each request runs its store calls on Tokio's blocking pool,
//! and bodies cross between the two (uploads through a bounded channel, downloads a
//! piece at a time), so a PUT of any size holds a few frames and one chunk in memory, a
//! GET one block and one piece.

mod body;
mod checksums;
mod convert;
mod guard;

use std::net::SocketAddr;
use std::sync::Arc;

use avl_core::KeyStore;
use avl_core::serve::{ServeConfig, Server, TlsFiles};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::*;
use s3s::host::{S3Host, VirtualHost};
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use crate::engine::{ByteRange, Conditions, ListOptions, PutOptions, Store};
use crate::error::StorageError;
use body::{Expected, checksums_in, object_stream, write_body};
use convert::*;

use crate::bridge::MAX_UPLOAD_BYTES as MAX_PUT_BYTES;

/// How the S3 front listens and whom it lets in.
pub struct S3Options {
    /// Where to listen.
    pub listen: SocketAddr,
    /// TLS certificate and key, for HTTPS.
    pub tls: Option<TlsFiles>,
    /// Domains under which `bucket.DOMAIN` addresses a bucket (virtual-host style);
    /// any other host (an IP address, another name) is path style.
    pub domains: Vec<String>,
    /// Whose signatures are accepted.
    pub keys: Arc<dyn KeyStore>,
    /// Let unsigned requests in too, with every right (`avl serve --no-auth`); signed
    /// ones are still checked against `keys`.
    pub allow_anonymous: bool,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("listen", &self.listen)
            .field("tls", &self.tls.is_some())
            .field("domains", &self.domains)
            .field("allow_anonymous", &self.allow_anonymous)
            .finish()
    }
}

/// Binds the S3 front of `store`: run the answer with [`Server::run`].
pub async fn bind(store: Store, options: S3Options) -> avl_core::Result<Server> {
    let mut builder = S3ServiceBuilder::new(Front {
        store,
        uploads: tokio::sync::Semaphore::new(CONCURRENT_UPLOADS),
    });
    // Signatures are always checked when present (that is also where s3s decodes
    // aws-chunked bodies: without an auth provider it refuses every signed request).
    builder.set_auth(Keys(options.keys));
    if options.allow_anonymous {
        builder.set_access(Anyone);
    }
    builder.set_host(Hosts {
        domains: options
            .domains
            .iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect(),
    });
    let service = builder.build();
    let router = axum::Router::new().fallback_service(tower_fn(service));
    let mut config = ServeConfig::new(options.listen);
    if let Some(tls) = options.tls {
        config = config.with_tls(tls);
    }
    Server::builder_for(router).bind(config).await
}

/// The s3s service as an infallible axum service (its transport errors become 500s).
fn tower_fn(
    service: s3s::service::S3Service,
) -> axum::routing::MethodRouter<(), std::convert::Infallible> {
    axum::routing::any(move |request: axum::extract::Request| {
        let service = service.clone();
        async move {
            let request = match guard::screen(request).await {
                Ok(request) => request,
                Err(mut refused) => {
                    if let Some(code) = outcome_of(refused.status()) {
                        refused.extensions_mut().insert(code);
                    }
                    return refused;
                }
            };
            match service.call(request.map(s3s::Body::http_body_unsync)).await {
                Ok(response) => {
                    let mut response = response.map(axum::body::Body::new);
                    if response.extensions().get::<Partial>().is_some()
                        && response.status() == axum::http::StatusCode::OK
                    {
                        *response.status_mut() = axum::http::StatusCode::PARTIAL_CONTENT;
                    }
                    if let Some(code) = outcome_of(response.status()) {
                        response.extensions_mut().insert(code);
                    }
                    response
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "S3 request failed below the protocol");
                    let mut response = axum::response::Response::new(axum::body::Body::empty());
                    *response.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    response
                }
            }
        }
    })
}

/// What every upload (PutObject, UploadPart) checks before reading its body: a body that
/// was decoded, a length under the limit; answers its input and the digests it must match.
macro_rules! upload_checks {
    ($req:ident) => {{
        decoded_body(&$req)?;
        let input = $req.input;
        if let Some(len) = input.content_length
            && len as u64 > MAX_PUT_BYTES
        {
            return Err(s3_error(StorageError::EntityTooLarge {
                size: len as u64,
                max: MAX_PUT_BYTES,
            }));
        }
        let expected = Expected::of(
            &$req.headers,
            input.content_md5.as_deref(),
            checksums_in(
                input.checksum_crc32.as_ref(),
                input.checksum_crc32c.as_ref(),
                input.checksum_crc64nvme.as_ref(),
                input.checksum_sha1.as_ref(),
                input.checksum_sha256.as_ref(),
            ),
            input.checksum_algorithm.as_ref().map(|a| a.as_str()),
            $req.trailing_headers.clone(),
        )?;
        (input, expected)
    }};
}

/// Puts a kept checksum in the field of its algorithm on any S3 output that has the five.
macro_rules! set_checksums {
    ($out:expr, $c:expr) => {
        set_checksum(
            $c,
            &mut $out.checksum_crc32,
            &mut $out.checksum_crc32c,
            &mut $out.checksum_crc64nvme,
            &mut $out.checksum_sha1,
            &mut $out.checksum_sha256,
        )
    };
}

/// Marks an answer to HEAD with a range: 206, as S3 answers it.
#[derive(Clone, Copy)]
struct Partial;

/// The platform's code for an S3 answer's status, for the access log and metrics.
fn outcome_of(status: axum::http::StatusCode) -> Option<avl_core::ErrorCode> {
    use avl_core::ErrorCode;
    Some(match status.as_u16() {
        0..=399 => return None,
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 | 412 => ErrorCode::Conflict,
        413 => ErrorCode::TooLarge,
        429 | 503 => ErrorCode::Unavailable,
        400..=499 => ErrorCode::InvalidInput,
        // What this store does not implement: the request's, not the server's, failing.
        501 => ErrorCode::InvalidInput,
        _ => ErrorCode::Internal,
    })
}

/// Secrets from the platform's key store.
struct Keys(Arc<dyn KeyStore>);

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.lookup(access_key) {
            Some((secret, _)) => Ok(SecretKey::from(secret.expose().to_string())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

/// Every request, signed or not, has every right (`--no-auth`).
struct Anyone;

#[async_trait::async_trait]
impl s3s::access::S3Access for Anyone {
    async fn check(&self, _cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        Ok(())
    }
}

/// `bucket.DOMAIN[:port]` is virtual-host style; every other host is path style.
struct Hosts {
    domains: Vec<String>,
}

impl S3Host for Hosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let name = name.trim_end_matches('.');
        for domain in &self.domains {
            if name.eq_ignore_ascii_case(domain) {
                return Ok(VirtualHost::new(domain.as_str()));
            }
            if name.len() > domain.len() + 1 && name.is_char_boundary(name.len() - domain.len() - 1)
            {
                let (bucket, rest) = name.split_at(name.len() - domain.len() - 1);
                if rest[1..].eq_ignore_ascii_case(domain) && rest.starts_with('.') {
                    return Ok(VirtualHost::new(domain.as_str()).with_bucket(bucket.to_string()));
                }
            }
        }
        Ok(VirtualHost::new(name.to_string()))
    }
}

/// The S3 operations over the store.
struct Front {
    store: Store,
    /// Uploads holding a blocking thread (each reads its body on one): a cap well under
    /// Tokio's blocking pool, which the platform API shares.
    uploads: tokio::sync::Semaphore,
}

/// At most this many uploads stream into the store at once; more wait their turn.
const CONCURRENT_UPLOADS: usize = 64;

/// Runs store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> S3Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(s3_error),
        Err(e) => Err(S3Error::with_message(
            S3ErrorCode::InternalError,
            format!("the request's work stopped: {e}"),
        )),
    }
}

/// Our error as S3's.
fn s3_error(e: StorageError) -> S3Error {
    let code =
        S3ErrorCode::from_bytes(e.s3_code().as_bytes()).unwrap_or(S3ErrorCode::InternalError);
    if code == S3ErrorCode::InternalError {
        tracing::error!(error = %e, "object store failure");
    }
    let unsatisfiable = matches!(e, StorageError::InvalidPartNumber { .. });
    let mut error = S3Error::with_message(code, e.to_string());
    if unsatisfiable {
        // A code s3s does not know, with S3's status.
        error.set_status_code(axum::http::StatusCode::RANGE_NOT_SATISFIABLE);
    }
    error
}

fn source_of(copy_source: &CopySource) -> S3Result<(String, String)> {
    match copy_source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            if version_id.is_some() {
                return Err(s3_error!(
                    NotImplemented,
                    "this store keeps one version of an object"
                ));
            }
            Ok((bucket.to_string(), key.to_string()))
        }
        _ => Err(s3_error!(
            NotImplemented,
            "copy sources are named as bucket/key"
        )),
    }
}

/// An aws-chunked body is decoded only when its request is signed: one that is not
/// would be stored with its chunk framing.
fn decoded_body<T>(req: &S3Request<T>) -> S3Result<()> {
    let streaming = req
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    let chunked = req
        .headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim() == "aws-chunked"));
    if (streaming || chunked) && req.credentials.is_none() {
        return Err(s3_error!(
            InvalidRequest,
            "an aws-chunked body must come with a signed request: sign it, or have the SDK send a plain body (request_checksum_calculation = when_required)"
        ));
    }
    Ok(())
}

fn no_versions(version_id: Option<&String>) -> S3Result<()> {
    match version_id {
        Some(v) if v != "null" => Err(s3_error!(
            NotImplemented,
            "this store keeps one version of an object"
        )),
        _ => Ok(()),
    }
}

#[async_trait::async_trait]
impl S3 for Front {
    // ---- buckets ---------------------------------------------------------------------

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let store = self.store.clone();
        let bucket = req.input.bucket;
        let location = format!("/{bucket}");
        blocking(move || store.create_bucket(&bucket)).await?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(location),
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let store = self.store.clone();
        let bucket = req.input.bucket;
        blocking(move || store.delete_bucket(&bucket)).await?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let store = self.store.clone();
        let bucket = req.input.bucket;
        blocking(move || store.bucket_exists(&bucket)).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let store = self.store.clone();
        let bucket = req.input.bucket;
        blocking(move || store.bucket_exists(&bucket)).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let store = self.store.clone();
        let buckets = blocking(move || store.list_buckets()).await?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(
                buckets
                    .into_iter()
                    .map(|(name, created_ms)| Bucket {
                        name: Some(name),
                        creation_date: Some(timestamp(created_ms)),
                        bucket_region: None,
                    })
                    .collect(),
            ),
            owner: Some(owner()),
            ..Default::default()
        }))
    }

    // ---- objects ---------------------------------------------------------------------

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let (input, expected) = upload_checks!(req);
        let options = put_options(
            input.content_type,
            input.metadata,
            [
                ("cache-control", input.cache_control),
                ("content-disposition", input.content_disposition),
                ("content-encoding", input.content_encoding),
                ("content-language", input.content_language),
                ("expires", input.expires.as_ref().map(http_date)),
            ],
        );
        let conditions = Conditions {
            if_match: input.if_match.as_ref().map(condition),
            if_none_match: input.if_none_match.as_ref().map(condition),
            ..Conditions::default()
        };
        let store = self.store.clone();
        let (bucket, key) = (input.bucket, input.key);
        let info = write_body(
            &self.uploads,
            input.body,
            input.content_length.map(|n| n as u64),
            expected,
            move |body, finish| {
                store.put_object_with(&bucket, &key, body, options, &conditions, finish)
            },
        )
        .await?;
        let mut output = PutObjectOutput {
            e_tag: Some(etag(&info.etag)),
            size: Some(info.size as i64),
            ..Default::default()
        };
        if let Some(c) = &info.options.checksum {
            set_checksums!(output, c);
            output.checksum_type = Some(checksums::kind_of(c));
        }
        Ok(S3Response::new(output))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        no_versions(input.version_id.as_ref())?;
        let part = part_asked(input.part_number, input.range.is_some())?;
        let conditions = read_conditions(
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        );
        let range = input.range.map(byte_range);
        let store = self.store.clone();
        let (bucket, key) = (input.bucket, input.key);
        let (info, reader) = blocking(move || match part {
            Some(part) => store.get_object_part_if(&bucket, &key, part, &conditions),
            None => store.get_object_if(&bucket, &key, range, &conditions),
        })
        .await?;
        let length = reader.remaining();
        // An empty part answers 200 with no range, as an empty object does.
        let partial = range.is_some() || (part.is_some() && length > 0);
        let content_range = partial.then(|| {
            let start = reader.position();
            if length == 0 {
                format!("bytes */{}", info.size)
            } else {
                format!("bytes {start}-{}/{}", start + length - 1, info.size)
            }
        });
        let want_checksum = input
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
            && range.is_none()
            && part.is_none();
        let mut output = GetObjectOutput {
            body: Some(object_stream(reader)),
            content_length: Some(length as i64),
            content_range,
            parts_count: part.and(info.parts).map(|n| n as i32),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&info.etag)),
            last_modified: Some(timestamp(info.last_modified_ms)),
            content_type: info.options.content_type.clone(),
            metadata: metadata_out(&info.options),
            cache_control: stored(&info.options, "cache-control"),
            content_disposition: stored(&info.options, "content-disposition"),
            content_encoding: stored(&info.options, "content-encoding"),
            content_language: stored(&info.options, "content-language"),
            expires: stored(&info.options, "expires").and_then(|v| parse_http_date(&v)),
            ..Default::default()
        };
        if want_checksum && let Some(c) = &info.options.checksum {
            set_checksums!(output, c);
            output.checksum_type = Some(checksums::kind_of(c));
        }
        // response-* query parameters override what is stored, as in S3.
        override_with(&mut output.content_type, input.response_content_type);
        override_with(&mut output.cache_control, input.response_cache_control);
        override_with(
            &mut output.content_disposition,
            input.response_content_disposition,
        );
        override_with(
            &mut output.content_encoding,
            input.response_content_encoding,
        );
        override_with(
            &mut output.content_language,
            input.response_content_language,
        );
        if let Some(e) = input.response_expires {
            output.expires = Some(e);
        }
        Ok(S3Response::new(output))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        no_versions(input.version_id.as_ref())?;
        let part = part_asked(input.part_number, input.range.is_some())?;
        let conditions = read_conditions(
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        );
        let store = self.store.clone();
        let (bucket, key) = (input.bucket, input.key);
        let (info, part_bounds) = blocking(move || match part {
            Some(part) => store
                .head_object_part_if(&bucket, &key, part, &conditions)
                .map(|(info, bounds)| (info, Some(bounds))),
            None => store
                .head_object_if(&bucket, &key, &conditions)
                .map(|info| (info, None)),
        })
        .await?;
        let span = |(start, end): (u64, u64)| {
            let range = format!("bytes {start}-{}/{}", end.max(1) - 1, info.size);
            (end - start, Some(range))
        };
        let (content_length, content_range) = match (input.range.map(byte_range), part_bounds) {
            (Some(r), _) => span(r.resolve(info.size).map_err(s3_error)?),
            (None, Some(bounds)) if bounds.1 > bounds.0 => span(bounds),
            // An empty part answers 200 with no range, as an empty object does.
            (None, Some(_)) => (0, None),
            (None, None) => (info.size, None),
        };
        let ranged = content_range.is_some();
        let mut output = HeadObjectOutput {
            content_length: Some(content_length as i64),
            content_range,
            parts_count: part.and(info.parts).map(|n| n as i32),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&info.etag)),
            last_modified: Some(timestamp(info.last_modified_ms)),
            content_type: info.options.content_type.clone(),
            metadata: metadata_out(&info.options),
            cache_control: stored(&info.options, "cache-control"),
            content_disposition: stored(&info.options, "content-disposition"),
            content_encoding: stored(&info.options, "content-encoding"),
            content_language: stored(&info.options, "content-language"),
            expires: stored(&info.options, "expires").and_then(|v| parse_http_date(&v)),
            ..Default::default()
        };
        if input
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
            && part.is_none()
            && let Some(c) = &info.options.checksum
        {
            set_checksums!(output, c);
            output.checksum_type = Some(checksums::kind_of(c));
        }
        let mut response = S3Response::new(output);
        if ranged {
            // s3s answers HEAD 200 whatever is set here: the marker has it changed on the
            // way out.
            response.extensions.insert(Partial);
        }
        Ok(response)
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        no_versions(input.version_id.as_ref())?;
        let store = self.store.clone();
        let (bucket, key) = (input.bucket, input.key);
        blocking(move || store.delete_object(&bucket, &key)).await?;
        let mut response = S3Response::new(DeleteObjectOutput::default());
        response.status = Some(axum::http::StatusCode::NO_CONTENT);
        Ok(response)
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let quiet = input.delete.quiet.unwrap_or(false);
        let objects = input.delete.objects;
        if objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "at most 1000 keys in one DeleteObjects"
            ));
        }
        let store = self.store.clone();
        let bucket = input.bucket;
        let results = blocking(move || {
            // Versioned deletes are refused one by one; the rest go in one transaction.
            let (versioned, plain): (Vec<_>, Vec<_>) = objects
                .into_iter()
                .partition(|o| o.version_id.as_deref().is_some_and(|v| v != "null"));
            let keys: Vec<String> = plain.into_iter().map(|o| o.key).collect();
            let mut results: Vec<(String, Result<(), StorageError>)> = keys
                .iter()
                .cloned()
                .zip(store.delete_objects(&bucket, &keys)?)
                .collect();
            results.extend(versioned.into_iter().map(|o| {
                let refused =
                    StorageError::invalid("VersionId", "this store keeps one version of an object");
                (o.key, Err(refused))
            }));
            Ok(results)
        })
        .await?;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (key, result) in results {
            match result {
                Ok(()) if !quiet => deleted.push(DeletedObject {
                    key: Some(key),
                    ..Default::default()
                }),
                Ok(()) => {}
                Err(e) => errors.push(Error {
                    code: Some(e.s3_code().to_string()),
                    key: Some(key),
                    message: Some(e.to_string()),
                    version_id: None,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        // The destination's If-Match / If-None-Match (S3 checks them as for a PUT); this
        // s3s's CopyObjectInput has no fields for them, so they come from the headers.
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
        };
        let conditions = Conditions {
            if_match: header("if-match"),
            if_none_match: header("if-none-match"),
            ..Conditions::default()
        };
        let input = req.input;
        let (source_bucket, source_key) = source_of(&input.copy_source)?;
        let replace = match input.metadata_directive.as_ref().map(|d| d.as_str()) {
            None | Some(MetadataDirective::COPY) => false,
            Some(MetadataDirective::REPLACE) => true,
            Some(other) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Unknown metadata directive: {other}"
                ));
            }
        };
        let options = replace.then(|| {
            put_options(
                input.content_type,
                input.metadata,
                [
                    ("cache-control", input.cache_control),
                    ("content-disposition", input.content_disposition),
                    ("content-encoding", input.content_encoding),
                    ("content-language", input.content_language),
                    ("expires", input.expires.as_ref().map(http_date)),
                ],
            )
        });
        let source_conditions = read_conditions(
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        );
        let store = self.store.clone();
        let (bucket, key) = (input.bucket, input.key);
        let info = blocking(move || {
            store.copy_object(
                (&source_bucket, &source_key),
                (&bucket, &key),
                options,
                &source_conditions,
                &conditions,
            )
        })
        .await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&info.etag)),
                last_modified: Some(timestamp(info.last_modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    // ---- listings --------------------------------------------------------------------

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let url = url_encoding(input.encoding_type.as_ref())?;
        let options = ListOptions {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            max_keys: max_keys(input.max_keys)?,
            start_after: input.start_after.clone(),
            continuation: input.continuation_token.clone(),
            marker: None,
        };
        let store = self.store.clone();
        let bucket = input.bucket.clone();
        let page = blocking(move || store.list_objects(&bucket, &options)).await?;
        let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
        let enc = |s: String| encode_if(url, s);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(input.prefix.unwrap_or_default())),
            delimiter: input.delimiter.map(enc),
            start_after: input.start_after.map(enc),
            max_keys: Some(input.max_keys.unwrap_or(1000)),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next_continuation,
            is_truncated: Some(page.is_truncated),
            encoding_type: input.encoding_type,
            contents: Some(objects_out(page.objects, url)),
            common_prefixes: Some(prefixes_out(page.common_prefixes, url)),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let url = url_encoding(input.encoding_type.as_ref())?;
        let options = ListOptions {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            max_keys: max_keys(input.max_keys)?,
            start_after: None,
            continuation: None,
            marker: input.marker.clone().filter(|m| !m.is_empty()),
        };
        let store = self.store.clone();
        let bucket = input.bucket.clone();
        let page = blocking(move || store.list_objects(&bucket, &options)).await?;
        // The last entry of the page, key or common prefix, is where the next one starts.
        let next_marker = page.is_truncated.then(|| {
            let last_key = page.objects.last().map(|o| o.key.clone());
            let last_prefix = page.common_prefixes.last().cloned();
            last_key.max(last_prefix).unwrap_or_default()
        });
        let enc = |s: String| encode_if(url, s);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(input.prefix.unwrap_or_default())),
            delimiter: input.delimiter.map(enc),
            marker: Some(enc(input.marker.unwrap_or_default())),
            next_marker: next_marker.map(enc),
            max_keys: Some(input.max_keys.unwrap_or(1000)),
            is_truncated: Some(page.is_truncated),
            encoding_type: input.encoding_type,
            contents: Some(objects_out(page.objects, url)),
            common_prefixes: Some(prefixes_out(page.common_prefixes, url)),
            ..Default::default()
        }))
    }

    // ---- multipart uploads -----------------------------------------------------------

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let options = put_options(
            input.content_type,
            input.metadata,
            [
                ("cache-control", input.cache_control),
                ("content-disposition", input.content_disposition),
                ("content-encoding", input.content_encoding),
                ("content-language", input.content_language),
                ("expires", input.expires.as_ref().map(http_date)),
            ],
        );
        let checksum = checksums::requested(
            input.checksum_algorithm.as_ref().map(|a| a.as_str()),
            input.checksum_type.as_ref().map(|t| t.as_str()),
        )?;
        let store = self.store.clone();
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let kept = checksum.clone();
        let upload_id =
            blocking(move || store.create_multipart_upload_with(&bucket, &key, options, kept))
                .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: checksum
                .as_ref()
                .map(|c| ChecksumAlgorithm::from(c.algorithm.clone())),
            checksum_type: checksum.as_ref().map(|c| {
                ChecksumType::from_static(if c.full_object {
                    ChecksumType::FULL_OBJECT
                } else {
                    ChecksumType::COMPOSITE
                })
            }),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let (input, mut expected) = upload_checks!(req);
        let part_number = part_number(input.part_number)?;
        let store = self.store.clone();
        let (bucket, key, upload_id) = (input.bucket, input.key, input.upload_id);
        let asked = {
            let (store, bucket, key, id) = (
                store.clone(),
                bucket.clone(),
                key.clone(),
                upload_id.clone(),
            );
            blocking(move || store.upload_checksum(&bucket, &key, &id)).await?
        };
        if let Some(asked) = &asked {
            expected.upload_algorithm(&asked.algorithm)?;
        }
        let (etag_hex, checksum) = write_body(
            &self.uploads,
            input.body,
            input.content_length.map(|n| n as u64),
            expected,
            move |body, finish: crate::engine::Finish<'_>| {
                let mut kept = None;
                let etag = store.upload_part_with(
                    &bucket,
                    &key,
                    &upload_id,
                    part_number,
                    body,
                    &mut |digest| {
                        let checksum = finish(digest)?;
                        kept.clone_from(&checksum);
                        Ok(checksum)
                    },
                )?;
                Ok((etag, kept))
            },
        )
        .await?;
        let mut output = UploadPartOutput {
            e_tag: Some(etag(&etag_hex)),
            ..Default::default()
        };
        if let Some(c) = &checksum {
            set_checksums!(output, c);
        }
        Ok(S3Response::new(output))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let part_number = part_number(input.part_number)?;
        let (source_bucket, source_key) = source_of(&input.copy_source)?;
        let range = input
            .copy_source_range
            .as_deref()
            .map(copy_range)
            .transpose()?;
        let conditions = read_conditions(
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        );
        let store = self.store.clone();
        let (bucket, key, upload_id) = (input.bucket, input.key, input.upload_id);
        let etag_hex = blocking(move || {
            // S3 refuses a range that does not lie inside the source.
            if let Some(ByteRange::Inclusive(_, last)) = range {
                let size = store.head_object(&source_bucket, &source_key)?.size;
                if last >= size {
                    return Err(StorageError::invalid(
                        "x-amz-copy-source-range",
                        format!("Range specified is not valid for source object of size: {size}"),
                    ));
                }
            }
            // An upload that asked for a checksum gets one for the copied part too.
            let asked = store.upload_checksum(&bucket, &key, &upload_id)?;
            let expected = Expected::compute(asked.as_ref().map_or("", |a| &a.algorithm));
            let hasher = std::cell::RefCell::new(expected.hasher());
            let mut kept = None;
            let etag = store.upload_part_copy_with(
                &bucket,
                &key,
                &upload_id,
                part_number,
                (&source_bucket, &source_key, range),
                &conditions,
                &mut |piece| {
                    if let Some(h) = hasher.borrow_mut().as_mut() {
                        h.update(piece);
                    }
                },
                &mut |digest| {
                    let sum = expected.check(digest, hasher.borrow_mut().take())?;
                    kept.clone_from(&sum);
                    Ok(sum)
                },
            )?;
            Ok((etag, kept))
        })
        .await?;
        let (etag_hex, checksum) = etag_hex;
        let mut result = CopyPartResult {
            e_tag: Some(etag(&etag_hex)),
            last_modified: Some(timestamp(crate::engine::now_ms())),
            ..Default::default()
        };
        if let Some(c) = &checksum {
            set_checksums!(result, c);
        }
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(result),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let marker = match input.part_number_marker {
            None => 0,
            Some(m) => u32::try_from(m)
                .map_err(|_| s3_error!(InvalidArgument, "part-number-marker must be positive"))?,
        };
        let max =
            match input.max_parts {
                None => None,
                Some(m) => Some(usize::try_from(m).map_err(|_| {
                    s3_error!(InvalidArgument, "max-parts must be between 0 and 1000")
                })?),
            };
        let store = self.store.clone();
        let (bucket, key, upload_id) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let (parts, truncated) =
            blocking(move || store.list_parts(&bucket, &key, &upload_id, marker, max)).await?;
        let next = parts.last().map(|p| p.part_number as i32);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            max_parts: Some(input.max_parts.unwrap_or(1000)),
            is_truncated: Some(truncated),
            owner: Some(owner()),
            initiator: Some(Initiator {
                display_name: owner().display_name,
                id: owner().id,
            }),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            parts: Some(
                parts
                    .into_iter()
                    .map(|p| {
                        let mut part = Part {
                            part_number: Some(p.part_number as i32),
                            size: Some(p.size as i64),
                            e_tag: Some(etag(&p.etag)),
                            last_modified: Some(timestamp(p.last_modified_ms)),
                            ..Default::default()
                        };
                        if let Some(c) = &p.checksum {
                            set_checksums!(part, c);
                        }
                        part
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let url = url_encoding(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_uploads)?.unwrap_or(1000).min(1000);
        let store = self.store.clone();
        let bucket = input.bucket.clone();
        let prefix = input.prefix.clone().unwrap_or_default();
        let uploads = blocking(move || store.list_multipart_uploads(&bucket, &prefix)).await?;
        // After the markers: that key's uploads after the one named (in the order they
        // are listed), then the keys after it.
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone();
        let mut uploads: Vec<_> = match uploads
            .iter()
            .position(|u| u.key == key_marker && id_marker.as_deref() == Some(u.upload_id.as_str()))
        {
            Some(at) => uploads.into_iter().skip(at + 1).collect(),
            None => uploads
                .into_iter()
                .filter(|u| key_marker.is_empty() || u.key > key_marker)
                .collect(),
        };
        let truncated = max > 0 && uploads.len() > max;
        uploads.truncate(max);
        let (next_key, next_id) = match (truncated, uploads.last()) {
            (true, Some(u)) => (Some(u.key.clone()), Some(u.upload_id.clone())),
            _ => (None, None),
        };
        let enc = |s: String| encode_if(url, s);
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix.map(enc),
            key_marker: input.key_marker.map(enc),
            upload_id_marker: input.upload_id_marker,
            next_key_marker: next_key.map(enc),
            next_upload_id_marker: next_id,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            encoding_type: input.encoding_type,
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|u| MultipartUpload {
                        key: Some(enc(u.key)),
                        upload_id: Some(u.upload_id),
                        initiated: Some(timestamp(u.initiated_ms)),
                        owner: Some(owner()),
                        initiator: Some(Initiator {
                            display_name: owner().display_name,
                            id: owner().id,
                        }),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let parts = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let number = p
                    .part_number
                    .ok_or_else(|| s3_error!(MalformedXML, "a part without a PartNumber"))?;
                let number = part_number(number)?;
                let tag = p
                    .e_tag
                    .map(|t| t.value().to_string())
                    .ok_or_else(|| s3_error!(MalformedXML, "a part without an ETag"))?;
                // Every checksum a part names is compared, not only the first.
                let sums = checksums_in(
                    p.checksum_crc32.as_ref(),
                    p.checksum_crc32c.as_ref(),
                    p.checksum_crc64nvme.as_ref(),
                    p.checksum_sha1.as_ref(),
                    p.checksum_sha256.as_ref(),
                );
                Ok(((number, tag), sums))
            })
            .collect::<S3Result<Vec<_>>>()?;
        let (parts, part_sums): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        let whole = checksums_in(
            input.checksum_crc32.as_ref(),
            input.checksum_crc32c.as_ref(),
            input.checksum_crc64nvme.as_ref(),
            input.checksum_sha1.as_ref(),
            input.checksum_sha256.as_ref(),
        )
        .into_iter()
        .next();
        let numbers: Vec<u32> = parts.iter().map(|p| p.0).collect();
        let mut combine = move |asked: Option<&crate::UploadChecksum>,
                                kept: &[(u64, Option<crate::Checksum>)]|
              -> Result<Option<crate::Checksum>, StorageError> {
            // A part's checksum in the request must be the one kept with the part.
            for ((given, (_, kept)), number) in part_sums.iter().zip(kept).zip(&numbers) {
                for (algorithm, value) in given {
                    if kept
                        .as_ref()
                        .is_none_or(|k| k.algorithm != *algorithm || k.value != value.trim())
                    {
                        return Err(StorageError::InvalidPart(format!(
                            "part {number}: its {algorithm} checksum is not the one it was uploaded with"
                        )));
                    }
                }
            }
            let sum = match asked {
                Some(asked) => checksums::combine(asked, kept)?,
                None => None,
            };
            if let Some((algorithm, value)) = &whole {
                let matches = sum
                    .as_ref()
                    .is_some_and(|s| s.algorithm == *algorithm && s.value == value.trim());
                if !matches {
                    return Err(StorageError::BadDigest(format!(
                        "The {algorithm} you specified did not match the calculated checksum."
                    )));
                }
            }
            Ok(sum)
        };
        if parts.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let conditions = Conditions {
            if_match: input.if_match.as_ref().map(condition),
            if_none_match: input.if_none_match.as_ref().map(condition),
            ..Conditions::default()
        };
        let store = self.store.clone();
        let (bucket, key, upload_id) = (input.bucket.clone(), input.key.clone(), input.upload_id);
        let info = blocking(move || {
            store.complete_multipart_upload_with(
                &bucket,
                &key,
                &upload_id,
                &parts,
                &conditions,
                &mut combine,
            )
        })
        .await?;
        let mut output = CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(etag(&info.etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        };
        if let Some(c) = &info.options.checksum {
            set_checksums!(output, c);
            output.checksum_type = Some(checksums::kind_of(c));
        }
        Ok(S3Response::new(output))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let store = self.store.clone();
        let (bucket, key, upload_id) = (input.bucket, input.key, input.upload_id);
        blocking(move || store.abort_multipart_upload(&bucket, &key, &upload_id)).await?;
        let mut response = S3Response::new(AbortMultipartUploadOutput::default());
        response.status = Some(axum::http::StatusCode::NO_CONTENT);
        Ok(response)
    }
}

/// The part a GET or HEAD asks for with `partNumber` (not together with a range).
fn part_asked(part: Option<i32>, ranged: bool) -> S3Result<Option<u32>> {
    let Some(part) = part else {
        return Ok(None);
    };
    if ranged {
        return Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        ));
    }
    part_number(part).map(Some)
}

fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=crate::engine::MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            )
        })
}

fn max_keys(n: Option<i32>) -> S3Result<Option<usize>> {
    match n {
        None => Ok(None),
        Some(n) => usize::try_from(n)
            .map(Some)
            .map_err(|_| s3_error!(InvalidArgument, "max-keys must be a non-negative integer")),
    }
}

/// `x-amz-copy-source-range: bytes=first-last`.
fn copy_range(header: &str) -> S3Result<ByteRange> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let (first, last) = header
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let first: u64 = first.trim().parse().map_err(|_| bad())?;
    let last: u64 = last.trim().parse().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    Ok(ByteRange::Inclusive(first, last))
}

/// A PUT's options from its headers.
fn put_options(
    content_type: Option<String>,
    metadata: Option<Metadata>,
    mut headers: [(&str, Option<String>); 5],
) -> PutOptions {
    // `aws-chunked` names how the request's body was framed, not the object's encoding.
    for (name, value) in &mut headers {
        if *name == "content-encoding"
            && let Some(v) = value
        {
            let kept: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
                .collect();
            *value = (!kept.is_empty()).then(|| kept.join(", "));
        }
    }
    PutOptions {
        content_type,
        metadata: metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        headers: headers
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name.to_string(), v)))
            .collect(),
        checksum: None,
    }
}

fn override_with(field: &mut Option<String>, value: Option<String>) {
    if value.is_some() {
        *field = value;
    }
}
