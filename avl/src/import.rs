//! `avl db import`: bulk loading of JSON lines, in atomic batches sent several at a time
//! (so a server's group commit shares fsyncs among them), with progress on stderr.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Instant;

use aviladb::{Client, WriteOp};
use avl_core::{Error, Result};

use crate::progress::{Progress, fraction, rate};
use serde_json::Value;

/// Batches in flight at once.
const IN_FLIGHT: usize = 8;
/// JSON in one batch, at most (the service takes 16 MiB).
const BATCH_BYTES: usize = 8 << 20;

/// What one import did.
pub(crate) struct Imported {
    pub(crate) documents: u64,
    pub(crate) seconds: f64,
}

/// Imports every line of `file` (one JSON object each; blank lines skipped) into a
/// collection, `batch` documents per atomic write; `upsert` replaces documents that
/// exist, otherwise an existing id fails its batch.
pub(crate) async fn import(
    client: &Client,
    database: &str,
    collection: &str,
    file: &Path,
    batch: usize,
    upsert: bool,
) -> Result<Imported> {
    let batch = batch.clamp(1, aviladb::MAX_BATCH);
    let handle = std::fs::File::open(file)
        .map_err(|e| Error::from(e).context(format!("cannot read {}", file.display())))?;
    let total_bytes = handle.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = BufReader::new(handle);
    let coll = client.database(database).collection(collection);
    let progress = Progress::new();
    let mut in_flight = tokio::task::JoinSet::new();
    let mut pending: Vec<WriteOp> = Vec::with_capacity(batch);
    let mut pending_bytes = 0usize;
    let mut first_line = 1u64;
    let mut read_bytes = 0u64;
    let mut done = 0u64;
    let started = Instant::now();
    let mut lines = reader.lines();
    let mut number = 0u64;
    let loaded: Result<()> = async {
        loop {
            let line = match lines.next() {
                Some(line) => Some(line.map_err(|e| {
                    Error::from(e).context(format!("cannot read {}", file.display()))
                })?),
                None => None,
            };
            if let Some(line) = &line {
                number += 1;
                read_bytes += line.len() as u64 + 1;
                if !line.trim().is_empty() {
                    let document: Value = serde_json::from_str(line).map_err(|e| {
                        Error::invalid_input(
                            "document",
                            format!("line {number}, column {}: not valid JSON: {e}", e.column()),
                        )
                    })?;
                    pending_bytes += line.len();
                    pending.push(if upsert {
                        WriteOp::Upsert {
                            document,
                            if_match: None,
                        }
                    } else {
                        WriteOp::Insert { document }
                    });
                }
            }
            let full = pending.len() >= batch || pending_bytes >= BATCH_BYTES;
            if !pending.is_empty() && (full || line.is_none()) {
                if in_flight.len() >= IN_FLIGHT {
                    done += finished(&mut in_flight).await?;
                    progress.show(
                        fraction(read_bytes, total_bytes),
                        &format!("{done} documents  {:.0} docs/s", rate(done, started)),
                    );
                }
                let ops = std::mem::replace(&mut pending, Vec::with_capacity(batch));
                pending_bytes = 0;
                let coll = coll.clone();
                let first = first_line;
                in_flight.spawn(async move {
                    let n = ops.len() as u64;
                    coll.write(ops).await.map(|_| n).map_err(|e| (first, e))
                });
                first_line = number + 1;
            }
            if line.is_none() {
                break;
            }
        }
        while !in_flight.is_empty() {
            done += finished(&mut in_flight).await?;
            progress.show(
                fraction(read_bytes, total_bytes),
                &format!("{done} documents  {:.0} docs/s", rate(done, started)),
            );
        }
        Ok(())
    }
    .await;
    if let Err(e) = loaded {
        // Batches already sent may still commit: the count says what did.
        while let Some(batch) = in_flight.join_next().await {
            if let Ok(Ok(n)) = batch {
                done += n;
            }
        }
        // The error goes on a line of its own, after the bar.
        progress.finish();
        let message = format!("{} ({done} documents imported)", e.message());
        return Err(match e.field() {
            Some(field) => Error::invalid_input(field, message),
            None => Error::new(e.code(), message),
        });
    }
    progress.finish();
    Ok(Imported {
        documents: done,
        seconds: started.elapsed().as_secs_f64(),
    })
}

type Batch = std::result::Result<u64, (u64, aviladb::DbError)>;

/// Waits for one batch; its document count, or the error with the line its batch
/// started at.
async fn finished(set: &mut tokio::task::JoinSet<Batch>) -> Result<u64> {
    match set.join_next().await {
        Some(Ok(Ok(n))) => Ok(n),
        Some(Ok(Err((line, e)))) => {
            let e = Error::from(e);
            Err(Error::new(
                e.code(),
                format!("the batch from line {line}: {}", e.message()),
            ))
        }
        Some(Err(e)) => Err(Error::internal(format!("import task failed: {e}"))),
        None => Ok(0),
    }
}
