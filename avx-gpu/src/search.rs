//! One search API, on the GPU when there is one and on the CPU otherwise.

use std::sync::Arc;

use avila_math::distance::{self, Metric, Neighbor, VectorSlice};

use crate::base::{GpuBase, MAX_K, Options, check_dims, check_finite};
use crate::error::GpuError;
use crate::gpu::Gpu;

/// Where a [`VectorSearch`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On this GPU adapter.
    Gpu(String),
    /// On the CPU, with avila-math's SIMD kernels over rayon.
    Cpu,
}

/// A base set to search: uploaded to the GPU when one exists, kept on the CPU as the
/// fallback (for machines without a GPU, for `k` above [`MAX_K`], and if the device
/// fails mid-way).
pub struct VectorSearch {
    metric: Metric,
    dim: usize,
    base: Vec<f32>,
    gpu: Option<GpuBase>,
}

impl std::fmt::Debug for VectorSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorSearch")
            .field("metric", &self.metric)
            .field("dim", &self.dim)
            .field("len", &(self.base.len() / self.dim))
            .field("placement", &self.placement())
            .finish()
    }
}

impl VectorSearch {
    /// A search over `base` on the process's GPU ([`Gpu::shared`]) if there is one and
    /// the upload works, on the CPU otherwise.
    pub fn new(metric: Metric, base: VectorSlice<'_>) -> VectorSearch {
        match Gpu::shared() {
            Some(gpu) => VectorSearch::on_gpu(gpu, metric, base, Options::default())
                .unwrap_or_else(|_| VectorSearch::on_cpu(metric, base)),
            None => VectorSearch::on_cpu(metric, base),
        }
    }

    /// A search that stays on the CPU.
    pub fn on_cpu(metric: Metric, base: VectorSlice<'_>) -> VectorSearch {
        VectorSearch {
            metric,
            dim: base.dim(),
            base: base.as_flat().to_vec(),
            gpu: None,
        }
    }

    /// A search on `gpu`, failing if the upload does.
    pub fn on_gpu(
        gpu: Arc<Gpu>,
        metric: Metric,
        base: VectorSlice<'_>,
        options: Options,
    ) -> Result<VectorSearch, GpuError> {
        let uploaded = GpuBase::upload(gpu, metric, base, options)?;
        Ok(VectorSearch {
            metric,
            dim: base.dim(),
            base: base.as_flat().to_vec(),
            gpu: Some(uploaded),
        })
    }

    /// Where searches run.
    pub fn placement(&self) -> Placement {
        match &self.gpu {
            Some(g) => Placement::Gpu(g.gpu().describe()),
            None => Placement::Cpu,
        }
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The `k` nearest base vectors of each query, nearest first, ties by index. Inputs
    /// must be finite and of the base's dimension.
    pub fn search(
        &self,
        queries: VectorSlice<'_>,
        k: usize,
    ) -> Result<Vec<Vec<Neighbor>>, GpuError> {
        check_dims(queries.dim(), self.dim)?;
        check_finite("the queries", queries.as_flat())?;
        if let Some(gpu) = &self.gpu
            && k <= MAX_K
        {
            // Checked above, so the queries are not scanned a second time; a failing
            // device still leaves the CPU.
            if let Ok(hits) = gpu.search_checked(queries, k) {
                return Ok(hits);
            }
        }
        self.search_cpu(queries, k)
    }

    /// The same search on the CPU, whatever the placement (the reference for the GPU).
    pub fn search_cpu(
        &self,
        queries: VectorSlice<'_>,
        k: usize,
    ) -> Result<Vec<Vec<Neighbor>>, GpuError> {
        let base = VectorSlice::new(&self.base, self.dim)
            .map_err(|e| GpuError::InvalidInput(e.to_string()))?;
        distance::try_search(self.metric, queries, base, k)
            .map_err(|e| GpuError::InvalidInput(e.to_string()))
    }
}
