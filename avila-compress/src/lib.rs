//! Framed LZ4/Zstd compression for AVL: one self-describing frame format with a content
//! checksum, an `Auto` codec that decides per payload, streaming for large data, and
//! decoding that never panics or allocates more than the caller allows.
//!
//! ```
//! use avila_compress::{compress, decompress, Codec, Limits, Method, Profile, frame_header};
//!
//! let log = avila_compress::corpus::generate(avila_compress::corpus::Kind::JsonLogs, 64 << 10, 7);
//! let frame = compress(&log, Codec::Auto(Profile::Hot));
//! assert!(frame.len() < log.len() / 2);
//! assert_eq!(frame_header(&frame)?.method, Method::Lz4);
//!
//! let noise = avila_compress::corpus::generate(avila_compress::corpus::Kind::Random, 64 << 10, 7);
//! let stored = compress(&noise, Codec::Auto(Profile::Hot));
//! assert_eq!(frame_header(&stored)?.method, Method::None); // not even tried
//!
//! assert_eq!(decompress(&frame, &Limits::new(1 << 20))?, log);
//! # Ok::<(), avila_compress::Error>(())
//! ```
//!
//! The format is described in [`frame`]. This crate does no I/O of its own beyond the
//! `Read`/`Write` it is handed, and knows nothing of services.

mod codec;
pub mod corpus;
mod decode;
mod encode;
mod error;
pub mod frame;
mod stream;

pub use codec::{
    AUTO_MIN_LEN, BALANCED_ZSTD_FROM, Codec, DEFAULT_BLOCK_SIZE, DEFAULT_ZSTD_LEVEL,
    MAX_BLOCK_SIZE, Options, Plan, Profile, plan,
};
pub use decode::{Decoder, Limits, decompress, decompress_into};
pub use encode::{Encoder, FrameInfo, FrameParts, compress, compress_into};
pub use error::{Error, ErrorKind, Result};
pub use frame::{
    CHECKSUM_LEN, FrameHeader, MAX_HEADER_LEN, MAX_OVERHEAD, Method, content_checksum,
};
pub use stream::{FrameReader, FrameWriter};

/// Parses the header at the start of `frame` without decoding anything.
pub fn frame_header(frame: &[u8]) -> Result<FrameHeader> {
    FrameHeader::parse(frame)
}
