//! Streaming: a `Write` that frames blocks and a `Read` that decodes them.

use std::io::{self, Read, Write};

use crate::codec::Options;
use crate::decode::{Decoder, Limits};
use crate::encode::Encoder;
use crate::error::Error;
use crate::frame::{CHECKSUM_LEN, FIXED_LEN, FrameHeader, MAX_HEADER_LEN};

/// Compresses everything written to it into a stream of frames, one per block.
///
/// Call [`FrameWriter::finish`] at the end: it writes the final frame, without which a
/// reader reports the stream as truncated.
///
/// ```
/// use std::io::{Read, Write};
/// use avila_compress::{Codec, FrameReader, FrameWriter, Limits, Options};
///
/// let mut writer = FrameWriter::new(Vec::new(), Options::new(Codec::Zstd));
/// for _ in 0..1000 {
///     writer.write_all(b"{\"event\":\"login\",\"region\":\"sa-east-1\"}\n")?;
/// }
/// let stream = writer.finish()?;
///
/// let mut text = String::new();
/// FrameReader::new(&stream[..], Limits::default()).read_to_string(&mut text)?;
/// assert_eq!(text.lines().count(), 1000);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct FrameWriter<W: Write> {
    inner: W,
    encoder: Encoder,
    block: Vec<u8>,
    /// The checksum of the last frame written: the next frame's seed.
    seed: u64,
}

impl<W: Write> FrameWriter<W> {
    /// A writer that frames blocks of `options.block_size()` bytes into `inner`.
    pub fn new(inner: W, options: impl Into<Options>) -> Self {
        let encoder = Encoder::new(options);
        FrameWriter {
            inner,
            block: Vec::with_capacity(encoder.options().block_size()),
            encoder,
            seed: 0,
        }
    }

    /// Writes the buffered data as the final frame, flushes, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let block = std::mem::take(&mut self.block);
        self.emit(&block, true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer, mutably (writing to it directly corrupts the stream).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Writes one frame; the seed moves on only once the frame is out.
    fn emit(&mut self, data: &[u8], end: bool) -> io::Result<()> {
        // Raw (incompressible) blocks go out without being copied into a frame buffer.
        let parts = self.encoder.frame_parts(data, end, self.seed);
        parts.write_to(&mut self.inner)?;
        if let Some(sum) = parts.checksum() {
            self.seed = sum;
        }
        Ok(())
    }

    /// Writes the buffered block, keeping it if that fails.
    fn emit_block(&mut self) -> io::Result<()> {
        let block = std::mem::take(&mut self.block);
        let result = self.emit(&block, false);
        self.block = block;
        if result.is_ok() {
            self.block.clear();
        }
        result
    }
}

impl<W: Write> Write for FrameWriter<W> {
    /// Takes at most one block per call, as `BufWriter` does: an error means none of
    /// `buf` was taken, and bytes already taken are never dropped.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let block_size = self.encoder.options().block_size();
        if self.block.len() == block_size {
            self.emit_block()?;
        }
        if self.block.is_empty() && buf.len() >= block_size {
            // A whole block straight from the caller's buffer, without a copy.
            self.emit(&buf[..block_size], false)?;
            return Ok(block_size);
        }
        let take = (block_size - self.block.len()).min(buf.len());
        self.block.extend_from_slice(&buf[..take]);
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decodes a stream of frames written by [`FrameWriter`], holding one block in memory.
///
/// Fails with an error (as `io::Error` of kind `InvalidData`, wrapping [`Error`]) on
/// corruption, on a stream cut before its final frame, and when the stream decodes to
/// more than the [`Limits`] allow.
#[derive(Debug)]
pub struct FrameReader<R: Read> {
    inner: R,
    limits: Limits,
    decoder: Decoder,
    block: Vec<u8>,
    pos: usize,
    payload: Vec<u8>,
    total: u64,
    done: bool,
    /// The checksum of the last frame read: the next frame's seed.
    seed: u64,
}

impl<R: Read> FrameReader<R> {
    /// A reader decoding from `inner` within `limits`.
    pub fn new(inner: R, limits: Limits) -> Self {
        FrameReader {
            inner,
            limits,
            decoder: Decoder::new(),
            block: Vec::new(),
            pos: 0,
            payload: Vec::new(),
            total: 0,
            done: false,
            seed: 0,
        }
    }

    /// The inner reader (positioned after the final frame once the stream is read).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads and decodes the next frame into `self.block`.
    fn next_frame(&mut self) -> Result<(), Error> {
        let mut head = [0u8; MAX_HEADER_LEN];
        let mut have = read_full(&mut self.inner, &mut head[..FIXED_LEN])?;
        if have == 0 {
            return Err(Error::UnterminatedStream);
        }
        let header = loop {
            match FrameHeader::parse(&head[..have]) {
                Ok(header) => break header,
                Err(Error::Truncated { .. }) if have < MAX_HEADER_LEN => {
                    // Varints are read a byte at a time: the header's length is not
                    // known up front, and reading past it would eat the payload.
                    if read_full(&mut self.inner, &mut head[have..have + 1])? == 0 {
                        return Err(Error::Truncated { needed: 1 });
                    }
                    have += 1;
                }
                Err(e) => return Err(e),
            }
        };
        if header.decoded_len > self.limits.max_frame {
            return Err(Error::TooLarge {
                declared: header.decoded_len,
                limit: self.limits.max_frame,
            });
        }
        let total = self.total.saturating_add(header.decoded_len);
        if total > self.limits.max_output {
            return Err(Error::TooLarge {
                declared: total,
                limit: self.limits.max_output,
            });
        }
        // Bounded by the decoded length checked above (see Method::max_payload_len).
        let tail = if header.checksum { CHECKSUM_LEN } else { 0 };
        let body_len = header.payload_len as usize + tail;
        self.payload.clear();
        self.payload.resize(body_len, 0);
        let got = read_full(&mut self.inner, &mut self.payload)?;
        if got < body_len {
            return Err(Error::Truncated {
                needed: (body_len - got) as u64,
            });
        }
        let (payload, sum) = self.payload.split_at(header.payload_len as usize);
        let stored = header.checksum.then(|| {
            let mut buf = [0u8; CHECKSUM_LEN];
            buf.copy_from_slice(sum);
            u64::from_le_bytes(buf)
        });
        self.block.clear();
        self.pos = 0;
        self.decoder
            .decode_payload(&header, payload, stored, self.seed, &mut self.block)?;
        if let Some(sum) = stored {
            self.seed = sum;
        }
        self.total += header.decoded_len;
        self.done = header.end;
        Ok(())
    }
}

/// Reads until `buf` is full or the reader ends; returns how much was read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            self.next_frame().map_err(io::Error::from)?;
        }
        let n = (self.block.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
