//! Errors of encoding and decoding frames.

use std::io;

/// What went wrong while encoding or decoding a frame.
///
/// Every decoding failure on untrusted bytes is one of these; none of them panics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before the frame did.
    #[error("truncated frame: needed {needed} more bytes")]
    Truncated {
        /// How many more bytes the frame announced.
        needed: u64,
    },
    /// The bytes do not start with the frame magic.
    #[error("not an avila-compress frame (bad magic)")]
    BadMagic,
    /// The frame was written by a newer (or unknown) format version.
    #[error("unsupported frame format version {0}")]
    UnsupportedVersion(u8),
    /// The frame names a codec this build does not know.
    #[error("unknown codec id {0}")]
    UnknownCodec(u8),
    /// The frame sets flags this build does not know.
    #[error("unknown frame flags {0:#04x}")]
    UnknownFlags(u8),
    /// The header's own check byte does not match its contents.
    #[error("frame header is corrupted")]
    HeaderCorrupted,
    /// The decoded data does not match the checksum stored in the frame.
    #[error("checksum mismatch: frame data is corrupted")]
    ChecksumMismatch,
    /// The compressed payload is not valid for its codec, or decodes to another length.
    #[error("corrupted payload: {0}")]
    CorruptedPayload(String),
    /// The frame (or stream) would decode to more bytes than the caller allows.
    #[error("decoded size {declared} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The size the frame declares (or the running total of a stream).
        declared: u64,
        /// The caller's limit.
        limit: u64,
    },
    /// Bytes follow a complete frame where none were expected.
    #[error("{0} unexpected bytes after the frame")]
    TrailingBytes(usize),
    /// A stream ended without its end-of-stream frame.
    #[error("stream ended without its final frame")]
    UnterminatedStream,
    /// An option is outside its allowed range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The underlying reader or writer failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// The broad class of an [`Error`], for callers that map errors into their own taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The bytes are not a valid frame, or their content fails its checksum.
    Corrupted,
    /// The data decodes to more than the caller allows.
    TooLarge,
    /// The caller passed an invalid option.
    InvalidInput,
    /// Reading or writing failed.
    Io,
}

impl Error {
    /// The broad class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::InvalidOption(_) => ErrorKind::InvalidInput,
            Error::Io(_) => ErrorKind::Io,
            _ => ErrorKind::Corrupted,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            other => {
                let kind = match other.kind() {
                    ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
                    ErrorKind::TooLarge | ErrorKind::Corrupted | ErrorKind::Io => {
                        io::ErrorKind::InvalidData
                    }
                };
                io::Error::new(kind, other)
            }
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
