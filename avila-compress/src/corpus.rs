//! Generated test and bench inputs: made at run time from a seed, never committed.
//!
//! Each kind stands for data the platform stores: prose and documents, JSON log lines,
//! binary records, random (or already-compressed) bytes, and zeros.

/// A kind of generated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// English-like prose from a small vocabulary.
    Text,
    /// One JSON object per line, as an application log writes them.
    JsonLogs,
    /// Fixed-size little-endian records: ids, timestamps, small deltas, floats.
    Binary,
    /// Uniformly random bytes: what encrypted or already-compressed data looks like.
    Random,
    /// All zero bytes.
    Zeros,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 5] = [
        Kind::Text,
        Kind::JsonLogs,
        Kind::Binary,
        Kind::Random,
        Kind::Zeros,
    ];

    /// A short name for bench ids and reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::JsonLogs => "json-logs",
            Kind::Binary => "binary",
            Kind::Random => "random",
            Kind::Zeros => "zeros",
        }
    }
}

/// A small, fast, seedable generator (SplitMix64); not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "a",
    "to",
    "in",
    "is",
    "player",
    "score",
    "region",
    "server",
    "world",
    "level",
    "quest",
    "memory",
    "document",
    "storage",
    "queue",
    "message",
    "latency",
    "throughput",
    "cloud",
    "embedded",
    "database",
    "vector",
    "search",
    "token",
    "session",
    "game",
    "chat",
    "sensor",
    "pipeline",
    "batch",
    "stream",
    "under",
    "over",
    "through",
    "with",
    "without",
    "every",
    "small",
    "large",
    "fast",
    "durable",
    "secure",
    "simple",
    "brasil",
    "paulo",
    "rio",
    "janeiro",
    "avila",
];

const EVENTS: &[&str] = &[
    "login",
    "logout",
    "purchase",
    "match_start",
    "match_end",
    "chat",
];
const REGIONS: &[&str] = &["sa-east-1", "us-east-1", "eu-west-1", "ap-south-1"];
const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];

/// `len` bytes of `kind`, the same for the same `seed`.
pub fn generate(kind: Kind, len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 256);
    match kind {
        Kind::Zeros => out.resize(len, 0),
        Kind::Random => {
            out.resize(len, 0);
            rng.fill(&mut out);
        }
        Kind::Text => {
            let mut sentence = 0;
            while out.len() < len {
                let word = WORDS[rng.below(WORDS.len() as u64) as usize];
                if sentence == 0 {
                    let mut chars = word.chars();
                    if let Some(first) = chars.next() {
                        out.extend(first.to_uppercase().to_string().bytes());
                        out.extend_from_slice(chars.as_str().as_bytes());
                    }
                } else {
                    out.extend_from_slice(word.as_bytes());
                }
                sentence += 1;
                if sentence > 6 && rng.below(8) == 0 {
                    out.extend_from_slice(b". ");
                    sentence = 0;
                } else {
                    out.push(b' ');
                }
            }
        }
        Kind::JsonLogs => {
            let mut ts: u64 = 1_790_000_000_000;
            let mut line = String::with_capacity(256);
            while out.len() < len {
                ts += rng.below(2000);
                line.clear();
                use std::fmt::Write;
                let _ = writeln!(
                    line,
                    r#"{{"ts":{ts},"level":"{}","event":"{}","region":"{}","player_id":"p-{:06}","latency_ms":{},"request_id":"{:016x}"}}"#,
                    LEVELS[rng.below(LEVELS.len() as u64) as usize],
                    EVENTS[rng.below(EVENTS.len() as u64) as usize],
                    REGIONS[rng.below(REGIONS.len() as u64) as usize],
                    rng.below(50_000),
                    rng.below(250),
                    rng.next_u64(),
                );
                out.extend_from_slice(line.as_bytes());
            }
        }
        Kind::Binary => {
            let mut id: u64 = rng.next_u64() >> 16;
            let mut ts: u64 = 1_790_000_000_000;
            let mut value: f32 = 20.0;
            while out.len() < len {
                id += 1 + rng.below(3);
                ts += 1000 + rng.below(50);
                value += (rng.below(200) as f32 - 100.0) / 1000.0;
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&ts.to_le_bytes());
                out.extend_from_slice(&value.to_le_bytes());
                out.extend_from_slice(&(rng.below(16) as u16).to_le_bytes());
                out.extend_from_slice(&[0u8, 1]);
            }
        }
    }
    out.truncate(len);
    out
}
