//! What the `avl` binary's tests share: a clean command, and `avl serve` run as a child
//! whose stdout is read line by line.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub(crate) const AVL: &str = env!("CARGO_BIN_EXE_avl");

/// An `avl` command with a clean environment: no AVL_* from the caller, a private config
/// file path, a home of its own.
pub(crate) fn avl(home: &Path) -> Command {
    let mut cmd = Command::new(AVL);
    for (key, _) in std::env::vars() {
        if key.starts_with("AVL_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", home)
        .env("AVL_CONFIG_FILE", home.join("config.toml"))
        .current_dir(home);
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `avl serve`, its stdout read line by line.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) lines: mpsc::Receiver<String>,
    pub(crate) stdout: Vec<String>,
    pub(crate) url: String,
    stderr: Option<std::process::ChildStderr>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    pub(crate) fn start(mut cmd: Command) -> Served {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served = Served {
            child,
            lines,
            stdout: Vec::new(),
            url: String::new(),
            stderr,
            reader: Some(reader),
        };
        let line = served.wait_for("listening on ");
        served.url = line.trim_start_matches("listening on ").to_string();
        served
    }

    /// Waits for a stdout line starting with `prefix` (a generous bound guards a hang).
    pub(crate) fn wait_for(&mut self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no `{prefix}` line; got {:?}", self.stdout));
            self.stdout.push(line.clone());
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends `signal`, waits for the exit, and returns (exit code, stdout, stderr).
    pub(crate) fn stop(mut self, signal: &str) -> (i32, Vec<String>, String) {
        self.signal(signal);
        let status = self.child.wait().unwrap();
        // The reader ends at end of file: after it, every line the child wrote is here.
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.stdout.extend(self.lines.try_iter());
        let mut stderr = String::new();
        if let Some(mut e) = self.stderr.take() {
            e.read_to_string(&mut stderr).unwrap();
        }
        (status.code().unwrap_or(-1), self.stdout, stderr)
    }
}

pub(crate) fn serve(home: &Path, data_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = avl(home);
    cmd.arg("--data-dir").arg(data_dir).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--s3-listen",
        "127.0.0.1:0",
    ]);
    cmd.args(extra);
    cmd
}

pub(crate) fn exported(lines: &[String], name: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        l.trim()
            .strip_prefix(&format!("export {name}="))
            .map(str::to_owned)
    })
}
