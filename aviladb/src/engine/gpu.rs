//! Exact search of large flat indexes on the GPU (feature `gpu`): avx-gpu keeps a copy
//! of an index's vectors on the device, so a search uploads only its query. The copy is
//! tagged with the index's version (moved by the writer after every commit that changes
//! the index) and made again when it is stale; a search with a filter, a `k` above
//! avx-gpu's [`avx_gpu::MAX_K`], an index under the size threshold, or no adapter stays
//! on the CPU.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use avila_math::distance::VectorSlice;
use avx_gpu::{Placement, VectorSearch};
use redb::ReadableTable;

use super::graphs::Graphs;
use super::vector::{VecDef, VectorIndexInfo, floats, vector_table};
use crate::error::{DbError, Result};

/// (document key, distance) nearest first.
type Nearest = Vec<(Box<[u8]>, f32)>;

/// An index's vectors on the device.
struct Entry {
    version: u64,
    keys: Vec<Box<[u8]>>,
    search: VectorSearch,
}

/// The device copies of flat indexes.
#[derive(Default)]
pub(crate) struct GpuCache {
    entries: Mutex<HashMap<u64, Arc<Entry>>>,
}

impl GpuCache {
    /// The `k` nearest (key, distance in avila-math's terms) on the GPU, or `None` when
    /// this search stays on the CPU.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn search(
        &self,
        visible: &super::visible::Visible,
        graphs: &Graphs,
        index: &VectorIndexInfo,
        metric: avila_math::distance::Metric,
        rows: usize,
        min_floats: usize,
        query: &[f32],
        k: usize,
    ) -> Result<Option<Nearest>> {
        if k > avx_gpu::MAX_K
            || rows.saturating_mul(index.dimensions) < min_floats
            || avx_gpu::Gpu::shared().is_none()
        {
            return Ok(None);
        }
        let version = graphs.version(index.table);
        let cached = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&index.table)
            .filter(|e| e.version == version)
            .cloned();
        let entry = match cached {
            Some(entry) => entry,
            None => {
                // A snapshot taken after reading the version: a later commit moves it.
                let txn = visible.read()?;
                let table = txn.open_table(VecDef::new(&vector_table(index.table)))?;
                let mut keys = Vec::new();
                let mut flat = Vec::new();
                for row in table.iter()? {
                    let (key, value) = row?;
                    keys.push(Box::from(key.value()));
                    flat.extend(floats(value.value()));
                }
                let base = VectorSlice::new(&flat, index.dimensions)
                    .map_err(|e| DbError::Corrupted(format!("vector index: {e}")))?;
                let search = VectorSearch::new(metric, base);
                if search.placement() == Placement::Cpu {
                    return Ok(None);
                }
                let entry = Arc::new(Entry {
                    version,
                    keys,
                    search,
                });
                self.entries
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(index.table, Arc::clone(&entry));
                entry
            }
        };
        let q = VectorSlice::new(query, index.dimensions)
            .map_err(|e| DbError::invalid("vector", e.to_string()))?;
        let hits = entry
            .search
            .search(q, k)
            .map_err(|e| DbError::invalid("vector", e.to_string()))?;
        Ok(Some(
            hits.into_iter()
                .next()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|n| entry.keys.get(n.index).map(|key| (key.clone(), n.distance)))
                .collect(),
        ))
    }

    /// Drops the device copy of a dropped index.
    pub(crate) fn forget(&self, table: u64) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&table);
    }
}
