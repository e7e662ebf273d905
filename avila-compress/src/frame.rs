//! The frame wire format, version 1.
//!
//! ```text
//! magic         4 bytes   "AVZ" 0x1A
//! version       1 byte    1
//! codec         1 byte    0 = none, 1 = LZ4 block, 2 = Zstd
//! flags         1 byte    bit 0: checksum present; bit 1: last frame of a stream
//! decoded_len   LEB128    length of the uncompressed data (at most 10 bytes)
//! payload_len   LEB128    length of the payload (may be padded with 0x80 bytes)
//! header_check  1 byte    bits 8..16 of xxh3-64 over the header bytes before it
//! payload       payload_len bytes
//! checksum      8 bytes   xxh3-64 of the uncompressed data, little endian (if flagged),
//!                         seeded with the previous frame's checksum (0 for a first frame)
//! ```
//!
//! A stream is a sequence of frames whose last one carries the end flag; a one-shot
//! frame is a stream of one frame. Chaining the checksum seeds makes a frame that is
//! missing, repeated or out of place fail the check of the frame after it. Unknown
//! versions, codecs and flags are errors, never guesses.

use crate::error::{Error, Result};
use twox_hash::XxHash3_64;

pub(crate) const MAGIC: [u8; 4] = *b"AVZ\x1a";
pub(crate) const VERSION: u8 = 1;
pub(crate) const FLAG_CHECKSUM: u8 = 0b01;
pub(crate) const FLAG_END: u8 = 0b10;
const KNOWN_FLAGS: u8 = FLAG_CHECKSUM | FLAG_END;
/// Bytes of the header before the two varints.
pub(crate) const FIXED_LEN: usize = 7;
const MAX_VARINT_LEN: usize = 10;
/// The longest header this version writes or accepts.
pub const MAX_HEADER_LEN: usize = FIXED_LEN + 2 * MAX_VARINT_LEN + 1;
/// Length of the trailing content checksum.
pub const CHECKSUM_LEN: usize = 8;
/// The most a frame adds to its payload: header plus checksum.
pub const MAX_OVERHEAD: usize = MAX_HEADER_LEN + CHECKSUM_LEN;

/// How a frame's payload is encoded: what was actually used, as recorded in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Stored as is.
    None,
    /// One LZ4 block (`lz4_flex` block format).
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Method {
    pub(crate) fn id(self) -> u8 {
        match self {
            Method::None => 0,
            Method::Lz4 => 1,
            Method::Zstd => 2,
        }
    }

    fn from_id(id: u8) -> Result<Self> {
        match id {
            0 => Ok(Method::None),
            1 => Ok(Method::Lz4),
            2 => Ok(Method::Zstd),
            other => Err(Error::UnknownCodec(other)),
        }
    }

    /// The largest payload this method can produce for `decoded_len` input bytes.
    pub(crate) fn max_payload_len(self, decoded_len: u64) -> u64 {
        match self {
            Method::None => decoded_len,
            // lz4_flex's bound: 16 + 4 + 110% of the input.
            Method::Lz4 => decoded_len.saturating_add(decoded_len / 10 + 21),
            // zstd's ZSTD_COMPRESSBOUND: n + n/256 + margin for small inputs, plus room
            // for concatenated frames we never write but a decoder may see.
            Method::Zstd => decoded_len.saturating_add((decoded_len >> 8) + 128 + (128 << 10)),
        }
    }
}

/// What a frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// How the payload is encoded.
    pub method: Method,
    /// Whether the frame carries a content checksum.
    pub checksum: bool,
    /// Whether this is the last frame of a stream.
    pub end: bool,
    /// Length of the data once decoded.
    pub decoded_len: u64,
    /// Length of the payload in the frame.
    pub payload_len: u64,
    /// Length of the header itself.
    pub header_len: usize,
}

impl FrameHeader {
    /// Total length of the frame: header, payload and checksum.
    pub fn frame_len(&self) -> u64 {
        let checksum = if self.checksum {
            CHECKSUM_LEN as u64
        } else {
            0
        };
        (self.header_len as u64)
            .saturating_add(self.payload_len)
            .saturating_add(checksum)
    }

    /// Parses a header from the start of `input`.
    ///
    /// Needs at most [`MAX_HEADER_LEN`] bytes; returns [`Error::Truncated`] when `input`
    /// ends inside the header.
    pub fn parse(input: &[u8]) -> Result<Self> {
        if input.len() < FIXED_LEN {
            if input.len() >= MAGIC.len() && input[..MAGIC.len()] != MAGIC {
                return Err(Error::BadMagic);
            }
            return Err(Error::Truncated {
                needed: (FIXED_LEN - input.len()) as u64,
            });
        }
        if input[..4] != MAGIC {
            return Err(Error::BadMagic);
        }
        if input[4] != VERSION {
            return Err(Error::UnsupportedVersion(input[4]));
        }
        let method = Method::from_id(input[5])?;
        let flags = input[6];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(Error::UnknownFlags(flags));
        }
        let mut pos = FIXED_LEN;
        let decoded_len = read_varint(input, &mut pos)?;
        let payload_len = read_varint(input, &mut pos)?;
        let Some(&check) = input.get(pos) else {
            return Err(Error::Truncated { needed: 1 });
        };
        if check != header_check(&input[..pos]) {
            return Err(Error::HeaderCorrupted);
        }
        if payload_len > method.max_payload_len(decoded_len) {
            return Err(Error::CorruptedPayload(format!(
                "payload of {payload_len} bytes is impossible for {decoded_len} decoded bytes"
            )));
        }
        Ok(FrameHeader {
            method,
            checksum: flags & FLAG_CHECKSUM != 0,
            end: flags & FLAG_END != 0,
            decoded_len,
            payload_len,
            header_len: pos + 1,
        })
    }
}

pub(crate) fn header_check(header: &[u8]) -> u8 {
    (XxHash3_64::oneshot(header) >> 8) as u8
}

/// The content checksum of a frame whose predecessor in the stream had checksum `seed`
/// (0 for the first frame): what a frame's trailing checksum holds for its decoded data.
///
/// For readers that place a stored payload where they want it themselves (see
/// [`FrameHeader`]) and check it there, without a copy.
pub fn content_checksum(data: &[u8], seed: u64) -> u64 {
    checksum(data, seed)
}

pub(crate) fn checksum(data: &[u8], seed: u64) -> u64 {
    XxHash3_64::oneshot_with_seed(seed, data)
}

/// Number of bytes the minimal LEB128 encoding of `v` takes.
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - v.max(1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `v` as LEB128 using exactly `width` bytes (`width >= varint_len(v)`); padding
/// uses continuation bytes, which every LEB128 decoder accepts.
pub(crate) fn put_varint(out: &mut [u8], mut v: u64) {
    let width = out.len();
    debug_assert!(width >= varint_len(v) && width <= MAX_VARINT_LEN);
    for (i, byte) in out.iter_mut().enumerate() {
        let last = i + 1 == width;
        *byte = (v & 0x7f) as u8 | if last { 0 } else { 0x80 };
        v >>= 7;
    }
}

fn read_varint(input: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value: u64 = 0;
    for i in 0..MAX_VARINT_LEN {
        let Some(&byte) = input.get(*pos) else {
            return Err(Error::Truncated { needed: 1 });
        };
        *pos += 1;
        let bits = u64::from(byte & 0x7f);
        if i == MAX_VARINT_LEN - 1 && byte > 1 {
            return Err(Error::HeaderCorrupted);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Error::HeaderCorrupted)
}

/// Appends the fixed header and the decoded length; the payload length follows.
pub(crate) fn begin_header(out: &mut Vec<u8>, method: Method, flags: u8, decoded_len: u64) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, method.id(), flags]);
    let mut buf = [0u8; MAX_VARINT_LEN];
    let n = varint_len(decoded_len);
    put_varint(&mut buf[..n], decoded_len);
    out.extend_from_slice(&buf[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_padding() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let n = varint_len(v);
            for width in n..=MAX_VARINT_LEN {
                let mut buf = vec![0u8; width];
                put_varint(&mut buf, v);
                let mut pos = 0;
                assert_eq!(
                    read_varint(&buf, &mut pos).ok(),
                    Some(v),
                    "v={v} width={width}"
                );
                assert_eq!(pos, width);
            }
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let buf = [0xffu8; 11];
        let mut pos = 0;
        assert!(matches!(
            read_varint(&buf, &mut pos),
            Err(Error::HeaderCorrupted)
        ));
        let mut buf = [0x80u8; 10];
        buf[9] = 0x02; // would overflow 64 bits
        let mut pos = 0;
        assert!(matches!(
            read_varint(&buf, &mut pos),
            Err(Error::HeaderCorrupted)
        ));
    }
}
