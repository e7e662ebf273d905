//! `avl storage`: the object store from the command line, in-process on the data
//! directory or through a server's platform API (`AVL_ENDPOINT`), as `aws s3` names its
//! commands.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use avl_core::sigv4::{Signer, presign_query};
use avl_core::{Body, Client, ClientConfig, Error, Result, connect};
use avl_storage::{ListOptions, PutOptions, StorageClient, StorageService};
use bytes::Bytes;
use clap::Subcommand;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::progress::{Progress, fraction};

/// Where presigned URLs point unless told otherwise: `avl serve`'s S3 front.
const DEFAULT_S3_ENDPOINT: &str = "http://127.0.0.1:4511";
/// Objects at least this large get a progress bar (on a terminal).
const PROGRESS_FROM: u64 = 8 << 20;
/// Reads of a local file sent as a body.
const READ_PIECE: usize = 256 << 10;

#[derive(Debug, Subcommand)]
pub(crate) enum StorageCommand {
    /// Make a bucket: `avl storage mb s3://game-assets`.
    Mb {
        /// `s3://BUCKET`.
        bucket: String,
    },
    /// Remove an empty bucket.
    Rb {
        /// `s3://BUCKET`.
        bucket: String,
    },
    /// List buckets, or a bucket's objects and common prefixes under a prefix.
    Ls {
        /// `s3://BUCKET[/PREFIX]`; nothing lists the buckets.
        target: Option<String>,
        /// Every object under the prefix, not rolled up at `/`.
        #[arg(long)]
        recursive: bool,
    },
    /// Copy a file to an object, an object to a file (`-` for stdin/stdout), or an
    /// object to another object.
    Cp {
        /// Local path, `-`, or `s3://BUCKET/KEY`.
        source: String,
        /// Local path, `-`, or `s3://BUCKET/KEY` (a key ending in `/` takes the source's
        /// file name).
        destination: String,
        /// Content type of an upload.
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Remove an object, or with --recursive every object under a prefix.
    Rm {
        /// `s3://BUCKET/KEY` (or prefix).
        target: String,
        /// Every object under the prefix.
        #[arg(long)]
        recursive: bool,
    },
    /// Print an object's bytes to stdout.
    Cat {
        /// `s3://BUCKET/KEY`.
        target: String,
    },
    /// Print a presigned GET URL of an object on the S3 front (signed here with the
    /// configured key pair; nothing is sent).
    Presign {
        /// `s3://BUCKET/KEY`.
        target: String,
        /// Seconds the URL stays valid (at most 7 days).
        #[arg(long, default_value_t = 3600)]
        expires_in: u64,
        /// The S3 front's URL (else `AVL_S3_ENDPOINT`, else http://127.0.0.1:4511).
        #[arg(long, env = "AVL_S3_ENDPOINT")]
        s3_endpoint: Option<String>,
    },
}

/// `s3://bucket/key` as (bucket, key); the key may be empty.
fn s3_path(text: &str) -> Option<(String, String)> {
    let rest = text.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), key.to_string()))
}

fn need_s3(text: &str) -> Result<(String, String)> {
    s3_path(text).ok_or_else(|| {
        Error::invalid_input("path", format!("`{text}` is not an s3://BUCKET[/KEY] path"))
    })
}

fn need_key(text: &str) -> Result<(String, String)> {
    let (bucket, key) = need_s3(text)?;
    if key.is_empty() {
        return Err(Error::invalid_input(
            "path",
            format!("`{text}` names a bucket, not an object"),
        ));
    }
    Ok((bucket, key))
}

/// `YYYY-MM-DD HH:MM:SS` (UTC), from the SigV4 date avl-core already writes.
fn time_of(ms: u64) -> String {
    let amz = avl_core::sigv4::format_amz_date(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
    );
    match (
        amz.get(0..4),
        amz.get(4..6),
        amz.get(6..8),
        amz.get(9..11),
        amz.get(11..13),
        amz.get(13..15),
    ) {
        (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) => {
            format!("{y}-{mo}-{d} {h}:{mi}:{se}")
        }
        _ => amz,
    }
}

pub(crate) async fn run(config: &ClientConfig, command: StorageCommand) -> Result<()> {
    if let StorageCommand::Presign {
        target,
        expires_in,
        s3_endpoint,
    } = command
    {
        return presign(config, &target, expires_in, s3_endpoint.as_deref());
    }
    let client = StorageClient::new(Client::new(connect::<StorageService>(config)?));
    match command {
        StorageCommand::Mb { bucket } => {
            let (bucket, _) = need_s3(&bucket)?;
            client.create_bucket(&bucket).await?;
            out!("make_bucket: {bucket}");
        }
        StorageCommand::Rb { bucket } => {
            let (bucket, _) = need_s3(&bucket)?;
            client.delete_bucket(&bucket).await?;
            out!("remove_bucket: {bucket}");
        }
        StorageCommand::Ls { target, recursive } => {
            ls(&client, target.as_deref(), recursive).await?
        }
        StorageCommand::Cp {
            source,
            destination,
            content_type,
        } => cp(&client, &source, &destination, content_type).await?,
        StorageCommand::Rm { target, recursive } => {
            let (bucket, key) = need_s3(&target)?;
            if recursive {
                let keys = all_keys(&client, &bucket, &key).await?;
                for k in keys {
                    client.delete_object(&bucket, &k).await?;
                    out!("delete: s3://{bucket}/{k}");
                }
            } else {
                let (bucket, key) = need_key(&target)?;
                client.delete_object(&bucket, &key).await?;
                out!("delete: s3://{bucket}/{key}");
            }
        }
        StorageCommand::Cat { target } => {
            let (bucket, key) = need_key(&target)?;
            let data = client.get_object(&bucket, &key, None).await?;
            let mut out = tokio::io::stdout();
            write_body(data.body, &mut out, data.length, None).await?;
        }
        StorageCommand::Presign { .. } => {}
    }
    Ok(())
}

async fn ls(client: &StorageClient, target: Option<&str>, recursive: bool) -> Result<()> {
    let Some(target) = target else {
        for b in client.list_buckets().await? {
            out!("{} {}", time_of(b.created_ms), b.name);
        }
        return Ok(());
    };
    let (bucket, prefix) = need_s3(target)?;
    let mut continuation = None;
    loop {
        let page = client
            .list_objects(
                &bucket,
                ListOptions {
                    prefix: prefix.clone(),
                    delimiter: (!recursive).then(|| "/".to_string()),
                    continuation: continuation.take(),
                    ..ListOptions::default()
                },
            )
            .await?;
        for p in &page.common_prefixes {
            out!("{:>30} PRE {}", "", &p[prefix.len()..]);
        }
        for o in &page.objects {
            let name = if recursive {
                o.key.as_str()
            } else {
                &o.key[prefix.len()..]
            };
            out!("{} {:>10} {name}", time_of(o.last_modified_ms), o.size);
        }
        if !page.is_truncated {
            return Ok(());
        }
        continuation = page.next_continuation;
    }
}

async fn all_keys(client: &StorageClient, bucket: &str, prefix: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut continuation = None;
    loop {
        let page = client
            .list_objects(
                bucket,
                ListOptions {
                    prefix: prefix.to_string(),
                    continuation: continuation.take(),
                    ..ListOptions::default()
                },
            )
            .await?;
        keys.extend(page.objects.into_iter().map(|o| o.key));
        if !page.is_truncated {
            return Ok(keys);
        }
        continuation = page.next_continuation;
    }
}

async fn cp(
    client: &StorageClient,
    source: &str,
    destination: &str,
    content_type: Option<String>,
) -> Result<()> {
    match (s3_path(source), s3_path(destination)) {
        (Some(_), Some((bucket, key))) => {
            let (from_bucket, from_key) = need_key(source)?;
            let key = if key.is_empty() || key.ends_with('/') {
                format!("{key}{}", file_name(&from_key))
            } else {
                key
            };
            client
                .copy_object((&from_bucket, &from_key), (&bucket, &key))
                .await?;
            out!("copy: {source} to s3://{bucket}/{key}");
        }
        (None, Some((bucket, key))) => {
            let key = if key.is_empty() || key.ends_with('/') {
                if source == "-" {
                    return Err(Error::invalid_input(
                        "destination",
                        "stdin has no file name: give the object's key",
                    ));
                }
                format!("{key}{}", file_name(source))
            } else {
                key
            };
            let (body, length) = local_body(source).await?;
            let options = PutOptions {
                content_type,
                ..PutOptions::default()
            };
            client
                .put_object(&bucket, &key, body, length, options)
                .await?;
            out!("upload: {source} to s3://{bucket}/{key}");
        }
        (Some(_), None) => {
            let (bucket, key) = need_key(source)?;
            let data = client.get_object(&bucket, &key, None).await?;
            if destination == "-" {
                let mut out = tokio::io::stdout();
                write_body(data.body, &mut out, data.length, None).await?;
                return Ok(());
            }
            let mut path = PathBuf::from(destination);
            if path.is_dir() {
                path.push(file_name(&key));
            }
            // Written beside, then renamed: a failed download leaves no partial file.
            let partial = path.with_extension(format!(
                "{}avl-partial",
                path.extension()
                    .map(|e| format!("{}.", e.to_string_lossy()))
                    .unwrap_or_default()
            ));
            let mut file = tokio::fs::File::create(&partial)
                .await
                .map_err(|e| local_error(&partial, e))?;
            let progress = (data.length >= PROGRESS_FROM).then(Progress::new);
            let written = write_body(data.body, &mut file, data.length, progress.as_ref()).await;
            let synced = match written {
                Ok(()) => file.sync_all().await.map_err(|e| local_error(&partial, e)),
                Err(e) => Err(e),
            };
            if let Err(e) = synced {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(e);
            }
            tokio::fs::rename(&partial, &path)
                .await
                .map_err(|e| local_error(&path, e))?;
            out!("download: {source} to {}", path.display());
        }
        (None, None) => {
            return Err(Error::invalid_input(
                "path",
                "one side of cp must be an s3://BUCKET/KEY path",
            ));
        }
    }
    Ok(())
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

fn local_error(path: &Path, e: std::io::Error) -> Error {
    Error::invalid_input("path", format!("{}: {e}", path.display()))
}

/// A local file (or stdin) as a streamed body, with its length when known; a progress
/// bar follows large files.
async fn local_body(source: &str) -> Result<(Body, Option<u64>)> {
    let (reader, length): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>) =
        if source == "-" {
            (Box::new(tokio::io::stdin()), None)
        } else {
            let path = Path::new(source);
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| local_error(path, e))?;
            let len = file
                .metadata()
                .await
                .map_err(|e| local_error(path, e))?
                .len();
            (Box::new(file), Some(len))
        };
    let progress = length
        .filter(|&l| l >= PROGRESS_FROM)
        .map(|l| (Progress::new(), l));
    let started = Instant::now();
    let stream = futures_util::stream::unfold(
        (reader, 0u64, progress, false),
        move |(mut reader, sent, progress, done)| async move {
            if done {
                return None;
            }
            let mut buf = vec![0u8; READ_PIECE];
            match reader.read(&mut buf).await {
                Ok(0) => {
                    if let Some((p, _)) = &progress {
                        p.finish();
                    }
                    None
                }
                Ok(n) => {
                    buf.truncate(n);
                    let sent = sent + n as u64;
                    if let Some((p, total)) = &progress {
                        p.show(fraction(sent, *total), &speed(sent, started));
                    }
                    Some((Ok(Bytes::from(buf)), (reader, sent, progress, false)))
                }
                Err(e) => Some((
                    Err(Error::invalid_input(
                        "source",
                        format!("reading it failed: {e}"),
                    )),
                    (reader, sent, progress, true),
                )),
            }
        },
    );
    Ok((Body::from_stream(stream), length))
}

fn speed(bytes: u64, started: Instant) -> String {
    let mib = bytes as f64 / (1 << 20) as f64;
    format!(
        "{mib:.1} MiB  {:.1} MiB/s",
        mib / started.elapsed().as_secs_f64().max(1e-9)
    )
}

/// Writes a downloaded body out, checking it is as long as announced.
/// A failed write of an object's bytes: to a closed pipe (`avl storage cat ... | head`)
/// the command ends quietly, as `cat` would.
fn written_out(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        crate::stdout_failed(&e);
    }
    Error::unavailable(format!("writing the object out failed: {e}"))
}

async fn write_body(
    body: Body,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    length: u64,
    progress: Option<&Progress>,
) -> Result<()> {
    let started = Instant::now();
    let mut stream = body.into_stream();
    let mut written = 0u64;
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        out.write_all(&piece).await.map_err(written_out)?;
        written += piece.len() as u64;
        if let Some(p) = progress {
            p.show(fraction(written, length), &speed(written, started));
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    out.flush().await.map_err(written_out)?;
    if written != length {
        return Err(Error::unavailable(format!(
            "the download stopped after {written} of {length} bytes"
        )));
    }
    Ok(())
}

/// A presigned GET URL on the S3 front.
fn presign(
    config: &ClientConfig,
    target: &str,
    expires_in: u64,
    endpoint: Option<&str>,
) -> Result<()> {
    let (bucket, key) = need_key(target)?;
    if !(1..=7 * 24 * 3600).contains(&expires_in) {
        return Err(Error::invalid_input(
            "expires-in",
            "between 1 second and 7 days (604800)",
        ));
    }
    let credentials = config.credentials.as_ref().ok_or_else(|| {
        Error::invalid_input(
            "credentials",
            "presigning needs a key pair: set AVL_ACCESS_KEY_ID and AVL_SECRET_ACCESS_KEY, or run `avl configure`",
        )
    })?;
    let endpoint = endpoint
        .unwrap_or(DEFAULT_S3_ENDPOINT)
        .trim_end_matches('/');
    let host = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .ok_or_else(|| {
            Error::invalid_input(
                "s3-endpoint",
                format!("`{endpoint}` is not an http(s)://HOST[:PORT] URL"),
            )
        })?;
    let encode = |s: &str| urlencoding::encode(s).into_owned();
    let path = format!(
        "/{}/{}",
        encode(&bucket),
        key.split('/').map(encode).collect::<Vec<_>>().join("/")
    );
    let signer = Signer {
        credentials,
        region: &config.region,
        service: "s3",
    };
    let query = presign_query(
        &http::Method::GET,
        &path,
        host,
        &signer,
        SystemTime::now(),
        expires_in,
    )?;
    out!("{endpoint}{path}?{query}");
    Ok(())
}
