//! Bodies between the async front and the synchronous store: uploads through a bounded
//! channel into a `Read` on the blocking pool, with their digests checked before the
//! store commits; downloads from an object reader on the blocking pool into a stream.

use std::cell::RefCell;
use std::io::Read;
use std::rc::Rc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::StreamExt;
use s3s::checksum::ChecksumHasher;
use s3s::dto::StreamingBlob;
use s3s::{S3Result, TrailingHeaders, s3_error};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::MAX_PUT_BYTES;
use crate::engine::{BodyDigest, Checksum, Finish, ObjectReader};
use crate::error::StorageError;

/// Frames of an upload in flight between the connection and the store.
const UPLOAD_FRAMES: usize = 16;
/// The size of the pieces a download is read in.
const DOWNLOAD_PIECE: usize = 256 << 10;

/// The checksum algorithms S3 names.
const ALGORITHMS: [&str; 5] = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];

/// What a body must turn out to be.
pub(super) struct Expected {
    /// `Content-MD5`, decoded.
    md5: Option<Vec<u8>>,
    /// The checksum to compute and keep, if any.
    algorithm: Option<&'static str>,
    /// Its value from a header.
    value: Option<String>,
    /// Or from the body's trailer: the trailer's header name.
    trailer: Option<(String, TrailingHeaders)>,
}

impl Expected {
    /// From the request: `Content-MD5`, one `x-amz-checksum-*` header, or one announced in
    /// `x-amz-trailer`, or only an algorithm to compute (`x-amz-sdk-checksum-algorithm`).
    pub(super) fn of(
        headers: &http::HeaderMap,
        content_md5: Option<&str>,
        given: Vec<(&'static str, String)>,
        algorithm: Option<&str>,
        trailers: Option<TrailingHeaders>,
    ) -> S3Result<Expected> {
        let md5 = match content_md5 {
            None => None,
            Some(v) => Some(
                BASE64
                    .decode(v.trim())
                    .ok()
                    .filter(|d| d.len() == 16)
                    .ok_or_else(|| {
                        s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid.")
                    })?,
            ),
        };
        if given.len() > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
            ));
        }
        let mut expected = Expected {
            md5,
            algorithm: None,
            value: None,
            trailer: None,
        };
        if let Some((name, value)) = given.into_iter().next() {
            expected.algorithm = Some(name);
            expected.value = Some(value);
            return Ok(expected);
        }
        let announced = headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        if let Some(header) = announced
            && let Some(name) = header.strip_prefix("x-amz-checksum-")
        {
            let name = known(name).ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "The trailer names an unknown checksum: {header}"
                )
            })?;
            let Some(trailers) = trailers else {
                return Err(s3_error!(
                    InvalidRequest,
                    "x-amz-trailer needs an aws-chunked body with a trailer"
                ));
            };
            expected.algorithm = Some(name);
            expected.trailer = Some((header, trailers));
            return Ok(expected);
        }
        if let Some(a) = algorithm {
            expected.algorithm = Some(known(a).ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "Value for x-amz-sdk-checksum-algorithm header is invalid."
                )
            })?);
        }
        Ok(expected)
    }

    fn hasher(&self) -> Option<ChecksumHasher> {
        let mut h = ChecksumHasher::default();
        match self.algorithm? {
            "CRC32" => h.crc32 = Some(Default::default()),
            "CRC32C" => h.crc32c = Some(Default::default()),
            "CRC64NVME" => h.crc64nvme = Some(Default::default()),
            "SHA1" => h.sha1 = Some(Default::default()),
            _ => h.sha256 = Some(Default::default()),
        }
        Some(h)
    }

    /// Checks the digest and the computed checksum; answers the checksum to keep.
    fn check(
        &self,
        digest: &BodyDigest,
        hasher: Option<ChecksumHasher>,
    ) -> Result<Option<Checksum>, StorageError> {
        if let Some(md5) = &self.md5
            && hex::encode(md5) != digest.md5
        {
            return Err(StorageError::BadDigest(
                "The Content-MD5 you specified did not match what we received.".into(),
            ));
        }
        let (Some(algorithm), Some(hasher)) = (self.algorithm, hasher) else {
            return Ok(None);
        };
        let sums = hasher.finalize();
        let value = match algorithm {
            "CRC32" => sums.checksum_crc32,
            "CRC32C" => sums.checksum_crc32c,
            "CRC64NVME" => sums.checksum_crc64nvme,
            "SHA1" => sums.checksum_sha1,
            _ => sums.checksum_sha256,
        }
        .unwrap_or_default();
        let wanted = match (&self.value, &self.trailer) {
            (Some(v), _) => Some(v.clone()),
            (None, Some((name, trailers))) => {
                let found = trailers
                    .read(|h| {
                        h.get(name.as_str())
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    })
                    .flatten();
                Some(found.ok_or_else(|| {
                    StorageError::BadDigest(format!("the body's trailer has no {name}"))
                })?)
            }
            (None, None) => None,
        };
        if let Some(wanted) = wanted
            && wanted.trim() != value
        {
            return Err(StorageError::BadDigest(format!(
                "The {algorithm} you specified did not match the calculated checksum."
            )));
        }
        Ok(Some(Checksum {
            algorithm: algorithm.to_string(),
            value,
        }))
    }
}

fn known(name: &str) -> Option<&'static str> {
    ALGORITHMS
        .into_iter()
        .find(|a| a.eq_ignore_ascii_case(name))
}

/// The request's `x-amz-checksum-*` headers that are set, by algorithm.
pub(super) fn checksums_in(
    crc32: Option<&String>,
    crc32c: Option<&String>,
    crc64nvme: Option<&String>,
    sha1: Option<&String>,
    sha256: Option<&String>,
) -> Vec<(&'static str, String)> {
    [crc32, crc32c, crc64nvme, sha1, sha256]
        .into_iter()
        .zip(ALGORITHMS)
        .filter_map(|(v, name)| v.map(|v| (name, v.clone())))
        .collect()
}

/// What crosses from the connection to the store: a frame, the end of a body that
/// arrived whole, or why it did not.
type Frame = Result<Option<Bytes>, StorageError>;

/// The body as the store reads it: frames from the connection, hashed as they pass.
struct ChannelReader {
    rx: mpsc::Receiver<Frame>,
    current: Bytes,
    ended: bool,
    hasher: Rc<RefCell<Option<ChecksumHasher>>>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(Some(frame))) => self.current = frame,
                Some(Ok(None)) => self.ended = true,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                // The connection's side went away without saying the body ended (the
                // server stopping, a task dropped): never a whole body.
                None => {
                    return Err(std::io::Error::other(StorageError::IncompleteBody(
                        "the upload stopped before its end".into(),
                    )));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        let piece = self.current.split_to(n);
        buf[..n].copy_from_slice(&piece);
        if let Some(h) = self.hasher.borrow_mut().as_mut() {
            h.update(&piece);
        }
        Ok(n)
    }
}

/// How long an upload may send nothing before it is abandoned.
const UPLOAD_IDLE: Duration = Duration::from_secs(60);

/// Sends `frame`; false when the store's side has stopped listening.
async fn send(tx: &mpsc::Sender<Frame>, frame: Frame) -> bool {
    tx.send(frame).await.is_ok()
}

/// Forwards the connection's body into the channel, ending with `Ok(None)` only when it
/// arrived whole (its length, if given, matched, and it stayed under the size limit).
async fn forward(body: Option<StreamingBlob>, length: Option<u64>, tx: mpsc::Sender<Frame>) {
    let mut seen = 0u64;
    if let Some(mut body) = body {
        loop {
            let next = match tokio::time::timeout(UPLOAD_IDLE, body.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let idle = UPLOAD_IDLE.as_secs();
                    let why = format!("the client sent nothing for {idle} s");
                    send(&tx, Err(StorageError::IncompleteBody(why))).await;
                    return;
                }
            };
            let frame = match next {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    let why = format!("reading the body failed: {e}");
                    send(&tx, Err(StorageError::IncompleteBody(why))).await;
                    return;
                }
            };
            seen += frame.len() as u64;
            if seen > MAX_PUT_BYTES {
                let too_large = StorageError::EntityTooLarge {
                    size: seen,
                    max: MAX_PUT_BYTES,
                };
                send(&tx, Err(too_large)).await;
                return;
            }
            if !send(&tx, Ok(Some(frame))).await {
                return;
            }
        }
    }
    if let Some(length) = length
        && seen != length
    {
        let why = format!("the body has {seen} bytes; Content-Length said {length}");
        send(&tx, Err(StorageError::IncompleteBody(why))).await;
        return;
    }
    send(&tx, Ok(None)).await;
}

/// Streams `body` into `write` (run on the blocking pool with a reader of it and the
/// `finish` that checks what it was against `expected`). At most `slots` uploads hold a
/// blocking thread at once.
pub(super) async fn write_body<T: Send + 'static>(
    slots: &Semaphore,
    body: Option<StreamingBlob>,
    length: Option<u64>,
    expected: Expected,
    write: impl FnOnce(&mut dyn Read, Finish<'_>) -> Result<T, StorageError> + Send + 'static,
) -> S3Result<T> {
    let _slot = slots
        .acquire()
        .await
        .map_err(|_| s3_error!(ServiceUnavailable, "the server is stopping"))?;
    let (tx, rx) = mpsc::channel(UPLOAD_FRAMES);
    let forwarding = tokio::spawn(forward(body, length, tx));
    let work = tokio::task::spawn_blocking(move || {
        let hasher = Rc::new(RefCell::new(expected.hasher()));
        let mut reader = ChannelReader {
            rx,
            current: Bytes::new(),
            ended: false,
            hasher: Rc::clone(&hasher),
        };
        write(&mut reader, &mut |digest| {
            expected.check(digest, hasher.borrow_mut().take())
        })
    });
    let result = work.await;
    forwarding.abort();
    match result {
        Ok(r) => r.map_err(super::s3_error),
        Err(e) => Err(s3_error!(InternalError, "the upload's work stopped: {e}")),
    }
}

/// An object's bytes as a response body, read a piece at a time on the blocking pool:
/// no thread waits on a slow client between pieces.
pub(super) fn object_stream(reader: ObjectReader) -> StreamingBlob {
    let pieces = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let want = DOWNLOAD_PIECE.min(usize::try_from(reader.remaining()).unwrap_or(usize::MAX));
        if want == 0 {
            return None;
        }
        let read = tokio::task::spawn_blocking(move || {
            let mut piece = vec![0u8; want];
            let n = reader.read(&mut piece)?;
            piece.truncate(n);
            Ok::<_, std::io::Error>((reader, piece))
        })
        .await;
        match read {
            Ok(Ok((_, piece))) if piece.is_empty() => None,
            Ok(Ok((reader, piece))) => Some((Ok(Bytes::from(piece)), Some(reader))),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading an object failed mid-response");
                Some((Err(e), None))
            }
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    });
    StreamingBlob::wrap(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(frames: Vec<Frame>) -> ChannelReader {
        let (tx, rx) = mpsc::channel(frames.len().max(1));
        for f in frames {
            tx.try_send(f).unwrap();
        }
        ChannelReader {
            rx,
            current: Bytes::new(),
            ended: false,
            hasher: Rc::new(RefCell::new(None)),
        }
    }

    #[test]
    fn a_body_ends_only_when_its_end_is_said() {
        let mut whole = reader(vec![Ok(Some(Bytes::from_static(b"abc"))), Ok(None)]);
        let mut out = Vec::new();
        whole.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");

        // The sender went away after a frame: the store must not take it as the end.
        let mut cut = reader(vec![Ok(Some(Bytes::from_static(b"abc")))]);
        let e = cut.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(
            StorageError::from(e),
            StorageError::IncompleteBody(_)
        ));

        let mut failed = reader(vec![Err(StorageError::EntityTooLarge { size: 9, max: 8 })]);
        let e = failed.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(
            StorageError::from(e),
            StorageError::EntityTooLarge { .. }
        ));
    }
}
