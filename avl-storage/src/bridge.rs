//! Bodies between async callers and the synchronous store: an upload crosses a bounded
//! channel into a `Read` the store consumes on the blocking pool; a download is read a
//! piece at a time on the blocking pool into a stream. Shared by the platform service and
//! the S3 front.

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::{Semaphore, mpsc};

use crate::engine::ObjectReader;
use crate::error::StorageError;

/// The largest single upload (a PUT or a part), as in S3: larger objects go in parts.
pub const MAX_UPLOAD_BYTES: u64 = 5 << 30;

/// Frames of an upload in flight between the connection and the store.
const UPLOAD_FRAMES: usize = 16;
/// Of a refused upload, at most this much is read and thrown away before the answer,
/// and for at most this long.
const DRAIN_LIMIT: u64 = 8 << 20;
const DRAIN_WAIT: Duration = Duration::from_secs(5);
/// The size of the pieces a download is read in: a block, so a stored block is read
/// straight into the piece.
const DOWNLOAD_PIECE: usize = crate::BLOCK_SIZE;

/// Sees each piece of an upload as the store reads it (the S3 front's checksums).
pub(crate) type Observer = Box<dyn FnMut(&[u8]) + Send>;

/// What crosses from the connection to the store: a frame, the end of a body that
/// arrived whole, or why it did not.
type Frame = Result<Option<Bytes>, StorageError>;

/// The body as the store reads it: frames from the connection, hashed as they pass.
struct ChannelReader {
    rx: mpsc::Receiver<Frame>,
    current: Bytes,
    ended: bool,
    observer: Option<Observer>,
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
        if let Some(observe) = self.observer.as_mut() {
            observe(&piece);
        }
        Ok(n)
    }
}

/// How long an upload may send nothing before it is abandoned (S3's RequestTimeout
/// comes after about as long).
const UPLOAD_IDLE: Duration = Duration::from_secs(20);
/// How long an upload waits for a slot before it is answered `SlowDown`: a client never
/// hangs behind uploads that take their time (SDKs retry a 503 with backoff).
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// Sends `frame`; false when the store's side has stopped listening.
async fn send(tx: &mpsc::Sender<Frame>, frame: Frame) -> bool {
    tx.send(frame).await.is_ok()
}

/// Forwards the connection's body into the channel, ending with `Ok(None)` only when it
/// arrived whole (its length, if given, matched, and it stayed under the size limit).
async fn forward<S, E>(body: Option<S>, length: Option<u64>, tx: mpsc::Sender<Frame>)
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::fmt::Display + Send,
{
    let mut seen = 0u64;
    if let Some(mut body) = body {
        loop {
            let next = match tokio::time::timeout(UPLOAD_IDLE, body.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let idle = UPLOAD_IDLE.as_secs();
                    let why = format!("the client sent nothing for {idle} s");
                    send(&tx, Err(StorageError::RequestTimeout(why))).await;
                    return;
                }
            };
            let frame = match next {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    let why = e.to_string();
                    // s3s's aws-chunked decoder says so when a chunk's signature fails
                    // (its error type is private: the message is what there is; the
                    // boto3 suite sends a tampered chunk, so a change shows there).
                    let error = if why.contains("SignatureMismatch") {
                        StorageError::SignatureDoesNotMatch(why)
                    } else {
                        StorageError::IncompleteBody(format!("reading the body failed: {why}"))
                    };
                    send(&tx, Err(error)).await;
                    return;
                }
            };
            seen += frame.len() as u64;
            if seen > MAX_UPLOAD_BYTES {
                let too_large = StorageError::EntityTooLarge {
                    size: seen,
                    max: MAX_UPLOAD_BYTES,
                };
                send(&tx, Err(too_large)).await;
                return;
            }
            if !send(&tx, Ok(Some(frame))).await {
                // The store refused the upload before reading it all (no such bucket, a
                // failed condition): read the rest, up to a limit, so the client can finish
                // sending and read the answer instead of finding the connection closed.
                let mut drained = 0u64;
                while drained < DRAIN_LIMIT {
                    match tokio::time::timeout(UPLOAD_IDLE, body.next()).await {
                        Ok(Some(Ok(frame))) => drained += frame.len() as u64,
                        _ => break,
                    }
                }
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

/// Streams `body` into `write`, run on the blocking pool with a reader of it (which
/// `observer` watches). At most `slots` uploads hold a blocking thread at once; the body
/// ends only when it arrived whole (its `length`, if given, matched; it stayed under
/// [`MAX_UPLOAD_BYTES`]; it never went quiet for [`UPLOAD_IDLE`]). An upload that finds
/// no slot within [`SLOT_WAIT`] is answered `SlowDown`.
pub(crate) async fn write_body<T, S, E>(
    slots: &Semaphore,
    body: Option<S>,
    length: Option<u64>,
    observer: Option<Observer>,
    write: impl FnOnce(&mut dyn Read) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError>
where
    T: Send + 'static,
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let _slot = match tokio::time::timeout(SLOT_WAIT, slots.acquire()).await {
        Ok(Ok(slot)) => slot,
        Ok(Err(_)) => return Err(StorageError::Io("the server is stopping".into())),
        Err(_) => {
            return Err(StorageError::SlowDown(
                "every upload slot is taken; retry later".into(),
            ));
        }
    };
    let (tx, rx) = mpsc::channel(UPLOAD_FRAMES);
    let mut forwarding = tokio::spawn(forward(body, length, tx));
    let work = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader {
            rx,
            current: Bytes::new(),
            ended: false,
            observer,
        };
        write(&mut reader)
    });
    let result = work.await;
    if matches!(result, Ok(Err(_))) {
        // Let the rest of a refused body be read (bounded), then answer.
        let _ = tokio::time::timeout(DRAIN_WAIT, &mut forwarding).await;
    }
    forwarding.abort();
    result.map_err(|e| StorageError::Io(format!("the upload's work stopped: {e}")))?
}

/// An object's bytes as a stream, read a piece at a time on the blocking pool: no thread
/// waits on a slow reader between pieces.
pub(crate) fn read_pieces(
    reader: ObjectReader,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static {
    futures_util::stream::unfold(Some(reader), |reader| async move {
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
                tracing::error!(error = %e, "reading an object failed mid-download");
                Some((Err(e), None))
            }
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    })
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
            observer: None,
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

    /// With every slot taken, an upload is answered SlowDown after a short wait
    /// instead of waiting for as long as the others take; once a slot is free, it goes.
    #[test]
    fn uploads_past_the_slots_are_told_to_slow_down() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let slots = Semaphore::new(1);
            let held = slots.acquire().await.unwrap();
            let body = || {
                Some(futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
                    Bytes::from_static(b"abc"),
                )]))
            };
            let read_all = |r: &mut dyn Read| {
                let mut out = Vec::new();
                r.read_to_end(&mut out)?;
                Ok(out)
            };
            let started = std::time::Instant::now();
            let refused = write_body(&slots, body(), Some(3), None, read_all).await;
            assert!(
                matches!(refused, Err(StorageError::SlowDown(_))),
                "{refused:?}"
            );
            assert!(started.elapsed() < SLOT_WAIT + Duration::from_secs(5));
            drop(held);
            let taken = write_body(&slots, body(), Some(3), None, read_all).await;
            assert_eq!(taken.unwrap(), b"abc");
        });
    }
}
