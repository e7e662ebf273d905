//! Prints the compressed size of each corpus kind under each codec, and what `Auto`
//! picks: `cargo run --release -p avila-compress --example ratios`.

#![allow(clippy::print_stdout)]

use avila_compress::corpus::{Kind, generate};
use avila_compress::{Codec, Profile, compress, frame_header};

fn main() {
    let size = 1 << 20;
    println!("| input (1 MiB) | lz4 | zstd-3 | auto hot | auto balanced | auto cold |");
    println!("|---|---|---|---|---|---|");
    for kind in Kind::ALL {
        let data = generate(kind, size, 42);
        let cell = |codec: Codec| {
            let frame = compress(&data, codec);
            let method = frame_header(&frame)
                .map(|h| format!("{:?}", h.method))
                .unwrap_or_default();
            format!(
                "{:.1}% ({method})",
                100.0 * frame.len() as f64 / size as f64
            )
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            kind.name(),
            cell(Codec::Lz4),
            cell(Codec::Zstd),
            cell(Codec::Auto(Profile::Hot)),
            cell(Codec::Auto(Profile::Balanced)),
            cell(Codec::Auto(Profile::Cold)),
        );
    }
}
