//! What the caller asks for, and how `Auto` decides.

use crate::error::{Error, Result};
use crate::frame::Method;

/// The codec a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Store the data as is (still framed and checksummed).
    None,
    /// LZ4: fast to compress and very fast to decompress; for hot paths.
    Lz4,
    /// Zstandard at the level set in [`Options`]: better ratios; for cold or large data.
    Zstd,
    /// Decide per payload (see [`Profile`]): tiny inputs and incompressible data are
    /// stored raw without trying to compress them, and a compressed result is kept only
    /// if it saves at least 1/8 of the size.
    Auto(Profile),
}

impl Default for Codec {
    /// `Auto(Profile::Balanced)`.
    fn default() -> Self {
        Codec::Auto(Profile::Balanced)
    }
}

/// The caller's hint for [`Codec::Auto`]: how hot the data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Read often, latency matters: LZ4 whenever compression pays.
    Hot,
    /// LZ4 for payloads under [`BALANCED_ZSTD_FROM`] bytes, Zstd from there on.
    #[default]
    Balanced,
    /// Written once, read rarely, size matters: Zstd whenever compression pays.
    Cold,
}

/// Payloads shorter than this are always stored raw by `Auto`: the frame would not pay.
pub const AUTO_MIN_LEN: usize = 64;
/// With [`Profile::Balanced`], payloads of this size and larger use Zstd.
pub const BALANCED_ZSTD_FROM: usize = 128 << 10;
/// The default Zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// The default block size of the streaming writer.
pub const DEFAULT_BLOCK_SIZE: usize = 1 << 20;
/// The largest block size the streaming writer accepts.
pub const MAX_BLOCK_SIZE: usize = 64 << 20;

/// How to encode: codec, Zstd level, checksum and streaming block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    codec: Codec,
    zstd_level: i32,
    checksum: bool,
    block_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options::new(Codec::default())
    }
}

impl From<Codec> for Options {
    fn from(codec: Codec) -> Self {
        Options::new(codec)
    }
}

impl Options {
    /// Options for `codec` with the default level, checksums on and 1 MiB stream blocks.
    pub const fn new(codec: Codec) -> Self {
        Options {
            codec,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            checksum: true,
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }

    /// Sets the Zstd level (used by [`Codec::Zstd`] and by `Auto` when it picks Zstd).
    pub fn with_zstd_level(mut self, level: i32) -> Result<Self> {
        let range = zstd::compression_level_range();
        if !range.contains(&level) {
            return Err(Error::InvalidOption(format!(
                "zstd level {level} outside {}..={}",
                range.start(),
                range.end()
            )));
        }
        self.zstd_level = level;
        Ok(self)
    }

    /// Turns the content checksum on (the default) or off.
    ///
    /// Without it, corruption inside a stored payload can go unnoticed; turn it off only
    /// where another layer already checks the bytes.
    pub const fn with_checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    /// Sets the block size of the streaming writer (1 byte to [`MAX_BLOCK_SIZE`]).
    pub fn with_block_size(mut self, size: usize) -> Result<Self> {
        if size == 0 || size > MAX_BLOCK_SIZE {
            return Err(Error::InvalidOption(format!(
                "block size {size} outside 1..={MAX_BLOCK_SIZE}"
            )));
        }
        self.block_size = size;
        Ok(self)
    }

    /// The codec asked for.
    pub const fn codec(&self) -> Codec {
        self.codec
    }

    /// The Zstd level.
    pub const fn zstd_level(&self) -> i32 {
        self.zstd_level
    }

    /// Whether frames carry a content checksum.
    pub const fn checksum(&self) -> bool {
        self.checksum
    }

    /// The streaming block size.
    pub const fn block_size(&self) -> usize {
        self.block_size
    }
}

/// Why `Auto` chose what it chose; see [`plan`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// Store raw: the input is shorter than [`AUTO_MIN_LEN`].
    TooSmall,
    /// Store raw: the sampled entropy (bits per byte) says the data will not compress.
    Incompressible(f32),
    /// Try this method; the result is kept only if it saves at least 1/8.
    Compress(Method),
}

/// Sampled bytes are taken in runs of this length, spread over the input.
const SAMPLE_RUN: usize = 64;
/// At most this many bytes are sampled.
const SAMPLE_MAX: usize = 1024;
/// Entropy, as a fraction of the most the sample can show, above which data is skipped.
/// Random and already-compressed data sit at about 0.99; text and logs below 0.75.
const SKIP_ENTROPY_FRACTION: f32 = 0.94;

/// What `Auto` with `profile` does with `data`, without compressing anything.
pub fn plan(data: &[u8], profile: Profile) -> Plan {
    if data.len() < AUTO_MIN_LEN {
        return Plan::TooSmall;
    }
    let (entropy, max_entropy) = sampled_entropy(data);
    if entropy > max_entropy * SKIP_ENTROPY_FRACTION {
        return Plan::Incompressible(entropy);
    }
    let method = match profile {
        Profile::Hot => Method::Lz4,
        Profile::Cold => Method::Zstd,
        Profile::Balanced if data.len() < BALANCED_ZSTD_FROM => Method::Lz4,
        Profile::Balanced => Method::Zstd,
    };
    Plan::Compress(method)
}

/// Order-0 entropy (bits per byte) of a sample of `data`, and the largest value a sample
/// of that size can show.
fn sampled_entropy(data: &[u8]) -> (f32, f32) {
    // Four tables, summed at the end, so repeated bytes do not serialize on one counter.
    let mut counts = [[0u16; 256]; 4];
    let sampled = if data.len() <= SAMPLE_MAX {
        count_bytes(&mut counts, data);
        data.len()
    } else {
        let runs = SAMPLE_MAX / SAMPLE_RUN;
        let stride = (data.len() - SAMPLE_RUN) / (runs - 1);
        for i in 0..runs {
            let start = i * stride;
            count_bytes(&mut counts, &data[start..start + SAMPLE_RUN]);
        }
        runs * SAMPLE_RUN
    };
    let table = c_log2_c();
    let n = sampled as f32;
    let mut sum = 0.0f32;
    for byte in 0..256 {
        let c = counts.iter().map(|t| usize::from(t[byte])).sum::<usize>();
        sum += table[c];
    }
    let entropy = n.log2() - sum / n;
    let max_entropy = n.log2().min(8.0);
    (entropy, max_entropy)
}

/// `c * log2(c)` for every count a sample can reach.
fn c_log2_c() -> &'static [f32; SAMPLE_MAX + 1] {
    static TABLE: std::sync::OnceLock<[f32; SAMPLE_MAX + 1]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [0.0f32; SAMPLE_MAX + 1];
        for (c, slot) in table.iter_mut().enumerate().skip(2) {
            let c = c as f32;
            *slot = c * c.log2();
        }
        table
    })
}

/// Counts at most `SAMPLE_MAX` bytes, so a `u16` counter cannot overflow.
fn count_bytes(counts: &mut [[u16; 256]; 4], bytes: &[u8]) {
    let mut quads = bytes.chunks_exact(4);
    for q in &mut quads {
        counts[0][usize::from(q[0])] += 1;
        counts[1][usize::from(q[1])] += 1;
        counts[2][usize::from(q[2])] += 1;
        counts[3][usize::from(q[3])] += 1;
    }
    for &b in quads.remainder() {
        counts[0][usize::from(b)] += 1;
    }
}

/// `Auto`'s rule: a compressed payload is worth keeping only if it saves 1/8.
pub(crate) fn auto_pays(decoded_len: usize, payload_len: usize) -> bool {
    payload_len <= decoded_len - decoded_len / 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{Kind, generate};

    #[test]
    fn plan_skips_random_and_keeps_text() {
        let random = generate(Kind::Random, 256 << 10, 1);
        assert!(matches!(
            plan(&random, Profile::Balanced),
            Plan::Incompressible(_)
        ));
        let text = generate(Kind::Text, 256 << 10, 1);
        assert_eq!(plan(&text, Profile::Balanced), Plan::Compress(Method::Zstd));
        assert_eq!(
            plan(&text[..4096], Profile::Balanced),
            Plan::Compress(Method::Lz4)
        );
        assert_eq!(plan(&text, Profile::Hot), Plan::Compress(Method::Lz4));
        assert_eq!(
            plan(&text[..4096], Profile::Cold),
            Plan::Compress(Method::Zstd)
        );
        assert_eq!(plan(&text[..10], Profile::Cold), Plan::TooSmall);
        let zeros = generate(Kind::Zeros, 1 << 20, 1);
        assert_eq!(plan(&zeros, Profile::Hot), Plan::Compress(Method::Lz4));
    }

    #[test]
    fn invalid_options_are_rejected() {
        assert!(Options::new(Codec::Zstd).with_zstd_level(100).is_err());
        assert!(Options::new(Codec::Zstd).with_zstd_level(19).is_ok());
        assert!(Options::default().with_block_size(0).is_err());
        assert!(
            Options::default()
                .with_block_size(MAX_BLOCK_SIZE + 1)
                .is_err()
        );
    }
}
