//! Encoding data into frames.

use std::io::Cursor;

use crate::codec::{Codec, Options, Plan, auto_pays, plan};
use crate::frame::{
    CHECKSUM_LEN, FLAG_CHECKSUM, FLAG_END, MAX_HEADER_LEN, Method, begin_header, checksum,
    header_check, put_varint, varint_len,
};

/// What one encoded frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// The method the frame records (what `Auto` picked, or `None` when it kept raw).
    pub method: Method,
    /// Length of the input.
    pub decoded_len: usize,
    /// Length of the whole frame written.
    pub frame_len: usize,
    /// The content checksum written, if any (the seed of the next frame of a stream).
    pub checksum: Option<u64>,
}

/// A reusable encoder: keeps codec state (LZ4 hash table, Zstd context) between calls,
/// which matters for many small payloads.
///
/// Encoding never fails: if a codec cannot compress a payload (or would make it larger),
/// the payload is stored raw.
pub struct Encoder {
    options: Options,
    lz4_table: Option<lz4_flex::block::CompressTable>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("options", &self.options)
            .finish()
    }
}

impl Encoder {
    /// An encoder with these options.
    pub fn new(options: impl Into<Options>) -> Self {
        Encoder {
            options: options.into(),
            lz4_table: None,
            zstd: None,
        }
    }

    /// The options this encoder uses.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Encodes `data` as one complete frame.
    pub fn encode(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(data, &mut out);
        out
    }

    /// Appends `data` as one complete frame to `out`.
    pub fn encode_into(&mut self, data: &[u8], out: &mut Vec<u8>) -> FrameInfo {
        self.encode_frame(data, true, 0, out)
    }

    /// Encodes `data` as one complete frame without copying `data` when it is stored raw
    /// (incompressible or tiny input under `Auto`): the frame is a header, the caller's
    /// bytes and a checksum, to be written out with [`FrameParts::write_to`] or
    /// gathered with [`FrameParts::slices`].
    pub fn encode_parts<'a>(&mut self, data: &'a [u8]) -> FrameParts<'a> {
        self.frame_parts(data, true, 0)
    }

    /// One frame of a stream whose previous frame had checksum `seed`.
    pub(crate) fn frame_parts<'a>(
        &mut self,
        data: &'a [u8],
        end: bool,
        seed: u64,
    ) -> FrameParts<'a> {
        let method = self.choose(data);
        let sum = self.options.checksum().then(|| checksum(data, seed));
        let checksum = sum.map(u64::to_le_bytes);
        if method != Method::None {
            let mut out = Vec::new();
            if self.try_compressed(data, method, end, &mut out) {
                if let Some(sum) = checksum {
                    out.extend_from_slice(&sum);
                }
                return FrameParts {
                    inner: Parts::Compressed(out),
                    method,
                    checksum: sum,
                };
            }
        }
        let (header, header_len) = self.raw_header(data.len(), end);
        FrameParts {
            inner: Parts::Raw {
                header,
                header_len,
                data,
                checksum,
            },
            method: Method::None,
            checksum: sum,
        }
    }

    /// Appends one frame of a stream to `out`; `end` marks the last, `seed` is the
    /// previous frame's checksum.
    pub(crate) fn encode_frame(
        &mut self,
        data: &[u8],
        end: bool,
        seed: u64,
        out: &mut Vec<u8>,
    ) -> FrameInfo {
        let start = out.len();
        let mut method = self.choose(data);
        if method != Method::None && !self.try_compressed(data, method, end, out) {
            out.truncate(start);
            method = Method::None;
        }
        if method == Method::None {
            let (header, header_len) = self.raw_header(data.len(), end);
            out.reserve(header_len + data.len() + CHECKSUM_LEN);
            out.extend_from_slice(&header[..header_len]);
            out.extend_from_slice(data);
        }
        let sum = self.options.checksum().then(|| checksum(data, seed));
        if let Some(sum) = sum {
            out.extend_from_slice(&sum.to_le_bytes());
        }
        FrameInfo {
            method,
            decoded_len: data.len(),
            frame_len: out.len() - start,
            checksum: sum,
        }
    }

    /// The method to try for `data`: the codec asked for, or `Auto`'s plan.
    fn choose(&self, data: &[u8]) -> Method {
        match self.options.codec() {
            Codec::None => Method::None,
            Codec::Lz4 => Method::Lz4,
            Codec::Zstd => Method::Zstd,
            Codec::Auto(profile) => match plan(data, profile) {
                Plan::TooSmall | Plan::Incompressible(_) => Method::None,
                Plan::Compress(method) => method,
            },
        }
    }

    fn flags(&self, end: bool) -> u8 {
        let mut flags = 0;
        if self.options.checksum() {
            flags |= FLAG_CHECKSUM;
        }
        if end {
            flags |= FLAG_END;
        }
        flags
    }

    /// The header of a raw frame of `len` bytes.
    fn raw_header(&self, len: usize, end: bool) -> ([u8; MAX_HEADER_LEN], usize) {
        let mut header = Vec::with_capacity(MAX_HEADER_LEN);
        begin_header(&mut header, Method::None, self.flags(end), len as u64);
        let width = varint_len(len as u64);
        let len_at = header.len();
        header.resize(len_at + width, 0);
        put_varint(&mut header[len_at..], len as u64);
        header.push(header_check(&header));
        let mut array = [0u8; MAX_HEADER_LEN];
        array[..header.len()].copy_from_slice(&header);
        (array, header.len())
    }

    /// Writes header and compressed payload; false (with `out` to be truncated) when the
    /// result is not worth keeping or the codec failed.
    fn try_compressed(
        &mut self,
        data: &[u8],
        method: Method,
        end: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        let start = out.len();
        let bound = method.max_payload_len(data.len() as u64) as usize;
        out.reserve(MAX_HEADER_LEN + bound + CHECKSUM_LEN);
        begin_header(out, method, self.flags(end), data.len() as u64);
        let len_at = out.len();
        // The payload length is written after compressing, padded to the width its bound
        // needs, so the payload never has to move.
        let width = varint_len(bound as u64);
        out.resize(len_at + width + 1, 0);
        let payload_at = out.len();
        let written = match method {
            Method::Lz4 => self.lz4_into(data, out, bound),
            Method::Zstd => self.zstd_into(data, out),
            Method::None => None,
        };
        let Some(payload_len) = written else {
            return false;
        };
        let keep = if matches!(self.options.codec(), Codec::Auto(_)) {
            auto_pays(data.len(), payload_len)
        } else {
            payload_len < data.len()
        };
        if !keep {
            return false;
        }
        out.truncate(payload_at + payload_len);
        put_varint(&mut out[len_at..len_at + width], payload_len as u64);
        let check = header_check(&out[start..payload_at - 1]);
        out[payload_at - 1] = check;
        true
    }

    fn lz4_into(&mut self, data: &[u8], out: &mut Vec<u8>, bound: usize) -> Option<usize> {
        let table = self.lz4_table.get_or_insert_with(Default::default);
        let at = out.len();
        out.resize(at + bound, 0);
        lz4_flex::block::compress_into_with_table(data, &mut out[at..], table).ok()
    }

    fn zstd_into(&mut self, data: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let level = self.options.zstd_level();
        let compressor = match &mut self.zstd {
            Some(c) => c,
            slot => slot.insert(zstd::bulk::Compressor::new(level).ok()?),
        };
        let at = out.len() as u64;
        let mut cursor = Cursor::new(out);
        cursor.set_position(at);
        compressor.compress_to_buffer(data, &mut cursor).ok()
    }
}

/// A frame from [`Encoder::encode_parts`]: either compressed bytes, or a header and
/// checksum around the caller's data, which is not copied.
#[derive(Debug, Clone)]
pub struct FrameParts<'a> {
    inner: Parts<'a>,
    method: Method,
    checksum: Option<u64>,
}

#[derive(Debug, Clone)]
enum Parts<'a> {
    Compressed(Vec<u8>),
    Raw {
        header: [u8; MAX_HEADER_LEN],
        header_len: usize,
        data: &'a [u8],
        checksum: Option<[u8; CHECKSUM_LEN]>,
    },
}

impl FrameParts<'_> {
    /// The method the frame records.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The content checksum written, if any.
    pub fn checksum(&self) -> Option<u64> {
        self.checksum
    }

    /// The frame as up to three slices, in order.
    pub fn slices(&self) -> [&[u8]; 3] {
        match &self.inner {
            Parts::Compressed(bytes) => [bytes, &[], &[]],
            Parts::Raw {
                header,
                header_len,
                data,
                checksum,
            } => [
                &header[..*header_len],
                data,
                checksum.as_ref().map_or(&[][..], |c| &c[..]),
            ],
        }
    }

    /// Total length of the frame.
    pub fn len(&self) -> usize {
        self.slices().iter().map(|s| s.len()).sum()
    }

    /// Whether the frame is empty (never: a frame has at least a header).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the frame to `writer`.
    pub fn write_to(&self, writer: &mut impl std::io::Write) -> std::io::Result<()> {
        for slice in self.slices() {
            if !slice.is_empty() {
                writer.write_all(slice)?;
            }
        }
        Ok(())
    }

    /// The frame as one owned buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.slices().concat()
    }
}

/// Encodes `data` as one frame with `options` (a [`Codec`] converts).
///
/// ```
/// use avila_compress::{compress, decompress, Codec, Limits};
/// let frame = compress(b"hello hello hello hello hello hello hello hello hello", Codec::Lz4);
/// assert_eq!(decompress(&frame, &Limits::default())?, b"hello hello hello hello hello hello hello hello hello");
/// # Ok::<(), avila_compress::Error>(())
/// ```
pub fn compress(data: &[u8], options: impl Into<Options>) -> Vec<u8> {
    Encoder::new(options).encode(data)
}

/// Like [`compress`], appending the frame to `out`.
pub fn compress_into(data: &[u8], options: impl Into<Options>, out: &mut Vec<u8>) -> FrameInfo {
    Encoder::new(options).encode_into(data, out)
}
