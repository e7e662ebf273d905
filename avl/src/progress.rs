//! A progress line on stderr, redrawn in place when stderr is a terminal (and silent
//! otherwise, so scripts and logs get none of it).

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub(crate) struct Progress {
    terminal: bool,
    /// A bar is on the line now (and `finish` ends the line).
    drawn: std::sync::atomic::AtomicBool,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            drawn: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Draws a bar `fraction` (0 to 1) full, then `detail`.
    pub(crate) fn show(&self, fraction: f64, detail: &str) {
        if !self.terminal {
            return;
        }
        let pct = (fraction * 100.0).clamp(0.0, 100.0);
        let width = 30usize;
        let filled = ((pct / 100.0) * width as f64).round() as usize;
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r[{}{}] {pct:5.1}%  {detail} ",
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width))
        );
        let _ = err.flush();
        self.drawn.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ends the bar's line, if one was drawn: what is printed next (a summary, an error)
    /// starts a line of its own.
    pub(crate) fn finish(&self) {
        if self.drawn.swap(false, std::sync::atomic::Ordering::Relaxed) {
            eprintln!();
        }
    }
}

/// `done` of `total` as a fraction (a zero total is done).
pub(crate) fn fraction(done: u64, total: u64) -> f64 {
    if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    }
}

/// Things per second since `started`.
pub(crate) fn rate(count: u64, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64().max(1e-9)
}
