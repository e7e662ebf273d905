//! Decoding frames from untrusted bytes.

use std::io::Cursor;

use crate::error::{Error, Result};
use crate::frame::{CHECKSUM_LEN, FrameHeader, Method, checksum};

/// How much decoding may produce. Every decoder takes one: a frame that declares more is
/// refused with [`Error::TooLarge`] before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes a one-shot decode returns, or a stream decodes in total.
    pub max_output: u64,
    /// The most bytes one frame of a stream may decode to (bounds the reader's memory).
    pub max_frame: u64,
}

impl Default for Limits {
    /// 256 MiB in all, 64 MiB per frame.
    fn default() -> Self {
        Limits {
            max_output: 256 << 20,
            max_frame: 64 << 20,
        }
    }
}

impl Limits {
    /// Limits of `max_output` bytes in all (and per frame, up to 64 MiB).
    pub const fn new(max_output: u64) -> Self {
        let max_frame = if max_output < (64 << 20) {
            max_output
        } else {
            64 << 20
        };
        Limits {
            max_output,
            max_frame,
        }
    }
}

/// A reusable decoder: keeps the Zstd context between calls.
#[derive(Default)]
pub struct Decoder {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Decoder {
    /// A new decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes exactly one complete, final frame (what [`crate::compress`] writes); bytes
    /// after it are [`Error::TrailingBytes`], and the first frame of a longer stream is
    /// [`Error::UnterminatedStream`].
    pub fn decode(&mut self, frame: &[u8], limits: &Limits) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.decode_into(frame, limits, &mut out)?;
        Ok(out)
    }

    /// Like [`Decoder::decode`], appending to `out`; `out` is left as it was on error.
    pub fn decode_into(&mut self, frame: &[u8], limits: &Limits, out: &mut Vec<u8>) -> Result<()> {
        let header = FrameHeader::parse(frame)?;
        if (frame.len() as u64) > header.frame_len() {
            return Err(Error::TrailingBytes(
                (frame.len() as u64 - header.frame_len()) as usize,
            ));
        }
        if !header.end {
            // The first frame of a longer stream: decoding it alone would return part
            // of the data as if it were all of it.
            return Err(Error::UnterminatedStream);
        }
        self.decode_frame(frame, limits.max_output, out).map(|_| ())
    }

    /// Decodes one whole frame like [`Decoder::decode`], but a stored (uncompressed)
    /// payload is checked and lent out of `frame` instead of copied.
    pub fn decode_borrowed<'a>(
        &mut self,
        frame: &'a [u8],
        limits: &Limits,
    ) -> Result<std::borrow::Cow<'a, [u8]>> {
        let header = FrameHeader::parse(frame)?;
        if header.method != Method::None || !header.end {
            return self.decode(frame, limits).map(std::borrow::Cow::Owned);
        }
        if header.decoded_len > limits.max_output {
            return Err(Error::TooLarge {
                declared: header.decoded_len,
                limit: limits.max_output,
            });
        }
        let frame_len = header.frame_len();
        if (frame.len() as u64) < frame_len {
            return Err(Error::Truncated {
                needed: frame_len - frame.len() as u64,
            });
        }
        if (frame.len() as u64) > frame_len {
            return Err(Error::TrailingBytes(
                (frame.len() as u64 - frame_len) as usize,
            ));
        }
        if header.payload_len != header.decoded_len {
            return Err(Error::CorruptedPayload(
                "raw payload length differs from the decoded length".into(),
            ));
        }
        let payload_end = header.header_len + header.payload_len as usize;
        let payload = &frame[header.header_len..payload_end];
        if header.checksum
            && read_checksum(&frame[payload_end..payload_end + CHECKSUM_LEN])
                != checksum(payload, 0)
        {
            return Err(Error::ChecksumMismatch);
        }
        Ok(std::borrow::Cow::Borrowed(payload))
    }

    /// Decodes the frame at the start of `input`, appending its data to `out` (left as it
    /// was on error); returns the header and the number of bytes consumed.
    pub fn decode_frame(
        &mut self,
        input: &[u8],
        max_output: u64,
        out: &mut Vec<u8>,
    ) -> Result<(FrameHeader, usize)> {
        self.decode_stream_frame(input, 0, max_output, out)
    }

    /// Like [`Decoder::decode_frame`], for a frame of a stream whose previous frame had
    /// checksum `seed` (0 for the first): frames of a stream can then be read one at a
    /// time, in order, by a reader that does its own I/O.
    pub fn decode_stream_frame(
        &mut self,
        input: &[u8],
        seed: u64,
        max_output: u64,
        out: &mut Vec<u8>,
    ) -> Result<(FrameHeader, usize)> {
        let header = FrameHeader::parse(input)?;
        if header.decoded_len > max_output {
            return Err(Error::TooLarge {
                declared: header.decoded_len,
                limit: max_output,
            });
        }
        let frame_len = header.frame_len();
        if (input.len() as u64) < frame_len {
            return Err(Error::Truncated {
                needed: frame_len - input.len() as u64,
            });
        }
        // Both fit in memory: they are bounded by the input length just checked.
        let payload_end = header.header_len + header.payload_len as usize;
        let payload = &input[header.header_len..payload_end];
        let stored = header
            .checksum
            .then(|| read_checksum(&input[payload_end..payload_end + CHECKSUM_LEN]));
        self.decode_payload(&header, payload, stored, seed, out)?;
        Ok((header, frame_len as usize))
    }

    /// Decodes a payload whose header was already parsed and checked against limits;
    /// `seed` is the checksum of the previous frame of the stream (0 for a first frame).
    pub(crate) fn decode_payload(
        &mut self,
        header: &FrameHeader,
        payload: &[u8],
        stored_checksum: Option<u64>,
        seed: u64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let start = out.len();
        let result = self
            .decode_payload_inner(header, payload, out)
            .and_then(|()| match stored_checksum {
                Some(stored) if stored != checksum(&out[start..], seed) => {
                    Err(Error::ChecksumMismatch)
                }
                _ => Ok(()),
            });
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn decode_payload_inner(
        &mut self,
        header: &FrameHeader,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let decoded_len = usize::try_from(header.decoded_len).map_err(|_| Error::TooLarge {
            declared: header.decoded_len,
            limit: usize::MAX as u64,
        })?;
        let start = out.len();
        let written = match header.method {
            Method::None => {
                if payload.len() != decoded_len {
                    return Err(Error::CorruptedPayload(
                        "raw payload length differs from the decoded length".into(),
                    ));
                }
                out.extend_from_slice(payload);
                decoded_len
            }
            Method::Lz4 => {
                if out.capacity() == 0 {
                    // A fresh zeroed allocation can come from already-zero pages, where a
                    // resize would write every byte first.
                    *out = vec![0; decoded_len];
                } else {
                    out.resize(start + decoded_len, 0);
                }
                lz4_flex::block::decompress_into(payload, &mut out[start..])
                    .map_err(|e| Error::CorruptedPayload(format!("lz4: {e}")))?
            }
            Method::Zstd => {
                out.reserve_exact(decoded_len);
                let dctx = match &mut self.zstd {
                    Some(d) => d,
                    slot => slot.insert(zstd::bulk::Decompressor::new()?),
                };
                // zstd writes into the spare capacity only, so it cannot produce more
                // than was reserved; a shorter or longer result is caught below.
                let mut cursor = Cursor::new(&mut *out);
                cursor.set_position(start as u64);
                let result = dctx.decompress_to_buffer(payload, &mut cursor);
                result.map_err(|e| Error::CorruptedPayload(format!("zstd: {e}")))?
            }
        };
        if written != decoded_len {
            return Err(Error::CorruptedPayload(format!(
                "decoded {written} bytes where the frame declares {decoded_len}"
            )));
        }
        Ok(())
    }
}

fn read_checksum(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; CHECKSUM_LEN];
    buf.copy_from_slice(bytes);
    u64::from_le_bytes(buf)
}

/// Decodes one complete frame, allocating at most `limits.max_output` bytes.
pub fn decompress(frame: &[u8], limits: &Limits) -> Result<Vec<u8>> {
    Decoder::new().decode(frame, limits)
}

/// Like [`decompress`], appending to `out`.
pub fn decompress_into(frame: &[u8], limits: &Limits, out: &mut Vec<u8>) -> Result<()> {
    Decoder::new().decode_into(frame, limits, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{
        FLAG_CHECKSUM, FLAG_END, begin_header, header_check, put_varint, varint_len,
    };

    /// A frame with a valid header around any payload, as a hostile writer would make.
    fn forge(method: Method, decoded_len: u64, payload: &[u8], sum: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        let flags = FLAG_END | if sum.is_some() { FLAG_CHECKSUM } else { 0 };
        begin_header(&mut out, method, flags, decoded_len);
        let at = out.len();
        let width = varint_len(payload.len() as u64);
        out.resize(at + width, 0);
        put_varint(&mut out[at..], payload.len() as u64);
        let check = header_check(&out);
        out.push(check);
        out.extend_from_slice(payload);
        if let Some(sum) = sum {
            out.extend_from_slice(&sum.to_le_bytes());
        }
        out
    }

    fn decode(frame: &[u8]) -> Result<Vec<u8>> {
        decompress(frame, &Limits::new(1 << 20))
    }

    #[test]
    fn forged_frames_are_rejected_cleanly() {
        let zeros = vec![0u8; 100_000];
        let zstd_payload = zstd::bulk::compress(&zeros, 3).unwrap();
        let lz4_payload = lz4_flex::block::compress(&zeros);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            // zstd output larger than declared: stops at the declared length.
            (
                "zstd longer than declared",
                forge(Method::Zstd, 1000, &zstd_payload, None),
            ),
            (
                "zstd shorter than declared",
                forge(Method::Zstd, 200_000, &zstd_payload, None),
            ),
            (
                "lz4 longer than declared",
                forge(Method::Lz4, 1000, &lz4_payload, None),
            ),
            (
                "lz4 shorter than declared",
                forge(Method::Lz4, 200_000, &lz4_payload, None),
            ),
            ("lz4 garbage", forge(Method::Lz4, 5000, &[0xff; 300], None)),
            (
                "zstd garbage",
                forge(Method::Zstd, 5000, &[0x28, 0xb5, 0x2f, 0xfd, 9, 9], None),
            ),
            (
                "raw length mismatch",
                forge(Method::None, 10, b"only nine", None),
            ),
            (
                "payload impossible for length",
                forge(Method::None, 3, b"four", None),
            ),
            (
                "declared beyond the limit",
                forge(Method::Zstd, u64::MAX, &zstd_payload, None),
            ),
            ("bad checksum", forge(Method::None, 4, b"data", Some(42))),
        ];
        for (name, frame) in cases {
            assert!(decode(&frame).is_err(), "{name} was accepted");
        }
        let good = forge(
            Method::Lz4,
            100_000,
            &lz4_payload,
            Some(checksum(&zeros, 0)),
        );
        assert_eq!(decode(&good).unwrap(), zeros);
    }

    proptest::proptest! {
        #[test]
        fn forged_headers_with_arbitrary_payloads_never_panic(
            method in proptest::prop_oneof![
                proptest::strategy::Just(Method::None),
                proptest::strategy::Just(Method::Lz4),
                proptest::strategy::Just(Method::Zstd),
            ],
            decoded_len in proptest::prop_oneof![0u64..5000, proptest::num::u64::ANY],
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
            sum in proptest::option::of(proptest::num::u64::ANY),
        ) {
            let _ = decode(&forge(method, decoded_len, &payload, sum));
        }
    }
}
