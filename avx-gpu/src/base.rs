//! A base set uploaded once, searched by batches of queries.

use std::sync::Arc;

use avila_math::distance::{Metric, Neighbor, VectorSlice};
use wgpu::util::DeviceExt;

use crate::error::GpuError;
use crate::gpu::Gpu;

/// The largest `k` the GPU selects; larger ones take the CPU path.
pub const MAX_K: usize = 32;
/// Threads per side of a distance tile (in the shader, `TILE`).
const TILE: u32 = 16;
/// The most workgroups one dispatch dimension may have in WebGPU.
const MAX_GROUPS: u64 = 65_535;
/// Buffers are kept below this even where the device allows more.
const BUFFER_CAP: u64 = 256 << 20;

/// How the search is cut into pieces. The defaults follow the device's limits; tests
/// shrink them to exercise chunking on small data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Most base vectors in one GPU buffer.
    pub max_chunk_vectors: Option<usize>,
    /// Most queries in one batch (one read-back).
    pub max_batch_queries: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_chunk_vectors: None,
            max_batch_queries: Some(4096),
        }
    }
}

struct Chunk {
    buffer: wgpu::Buffer,
    start: usize,
    len: usize,
}

/// Base vectors resident on the GPU, with pipelines for one metric.
pub struct GpuBase {
    gpu: Arc<Gpu>,
    metric: Metric,
    dim: usize,
    len: usize,
    chunks: Vec<Chunk>,
    chunk_len: usize,
    options: Options,
    distances: wgpu::ComputePipeline,
    top_k: wgpu::ComputePipeline,
}

impl std::fmt::Debug for GpuBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuBase")
            .field("gpu", &self.gpu.describe())
            .field("metric", &self.metric)
            .field("dim", &self.dim)
            .field("len", &self.len)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    dim: u32,
    n_queries: u32,
    n_base: u32,
    k: u32,
    out_offset: u32,
    out_stride: u32,
    _pad: [u32; 2],
}

fn metric_id(metric: Metric) -> f64 {
    match metric {
        Metric::L2Squared => 0.0,
        Metric::InnerProduct => 1.0,
        Metric::Cosine => 2.0,
    }
}

/// Queries must have the base's dimension.
pub(crate) fn check_dims(queries: usize, base: usize) -> Result<(), GpuError> {
    if queries == base {
        return Ok(());
    }
    Err(GpuError::InvalidInput(format!(
        "{queries}-d queries against {base}-d base vectors"
    )))
}

pub(crate) fn check_finite(what: &str, data: &[f32]) -> Result<(), GpuError> {
    match data.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(GpuError::InvalidInput(format!(
            "{what} holds a non-finite value at position {i}"
        ))),
    }
}

impl GpuBase {
    /// Uploads `base` (checked finite) for searches with `metric`.
    pub fn upload(
        gpu: Arc<Gpu>,
        metric: Metric,
        base: VectorSlice<'_>,
        options: Options,
    ) -> Result<GpuBase, GpuError> {
        check_finite("the base set", base.as_flat())?;
        let dim = base.dim();
        let limit = buffer_limit(&gpu);
        let mut chunk_len = (limit / (dim as u64 * 4)).min(MAX_GROUPS * TILE as u64) as usize;
        if let Some(max) = options.max_chunk_vectors {
            chunk_len = chunk_len.min(max.max(1));
        }
        // No bigger than the base set: the distance matrix is sized by it.
        chunk_len = chunk_len.min(base.len().max(1));
        if chunk_len == 0 {
            return Err(GpuError::InvalidInput(format!(
                "{dim}-d vectors do not fit the device's buffers"
            )));
        }
        let device = &gpu.device;
        let scope = ErrorScope::push(device);
        let chunks: Vec<Chunk> = (0..base.len())
            .step_by(chunk_len)
            .map(|start| {
                let len = chunk_len.min(base.len() - start);
                let data = base.slice(start..start + len).as_flat();
                let buffer = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("avx-gpu base chunk"),
                    contents: bytemuck::cast_slice(data),
                    usage: wgpu::BufferUsages::STORAGE,
                });
                Chunk { buffer, start, len }
            })
            .collect();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("avx-gpu search"),
            source: wgpu::ShaderSource::Wgsl(include_str!("search.wgsl").into()),
        });
        let constants = [("METRIC", metric_id(metric))];
        let pipeline = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    ..Default::default()
                },
                cache: None,
            })
        };
        let distances = pipeline("distances");
        let top_k = pipeline("top_k");
        scope.pop()?;
        Ok(GpuBase {
            gpu,
            metric,
            dim,
            len: base.len(),
            chunks,
            chunk_len,
            options,
            distances,
            top_k,
        })
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// How many base vectors.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the base set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The metric the pipelines compute.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// How many GPU buffers the base set is cut into.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The GPU it lives on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// The `k` nearest base vectors of each query, nearest first (ties by index), with
    /// the same order as `avila_math::distance::search`; `k` at most [`MAX_K`].
    pub fn search(
        &self,
        queries: VectorSlice<'_>,
        k: usize,
    ) -> Result<Vec<Vec<Neighbor>>, GpuError> {
        check_dims(queries.dim(), self.dim)?;
        if k > MAX_K {
            return Err(GpuError::InvalidInput(format!(
                "k = {k} is above the GPU's limit of {MAX_K}"
            )));
        }
        check_finite("the queries", queries.as_flat())?;
        self.search_checked(queries, k)
    }

    /// [`GpuBase::search`] for queries already checked (dimension, finite, `k` ≤ `MAX_K`).
    pub(crate) fn search_checked(
        &self,
        queries: VectorSlice<'_>,
        k: usize,
    ) -> Result<Vec<Vec<Neighbor>>, GpuError> {
        let k = k.min(self.len);
        if k == 0 || queries.is_empty() {
            return Ok(vec![Vec::new(); queries.len()]);
        }
        let batch = self.batch_size(k);
        let mut results = Vec::with_capacity(queries.len());
        for start in (0..queries.len()).step_by(batch) {
            let end = (start + batch).min(queries.len());
            results.extend(self.search_batch(queries.slice(start..end), k)?);
        }
        Ok(results)
    }

    /// Queries per batch: within the distance matrix, query and output buffers, the
    /// dispatch limits, and the caller's option.
    fn batch_size(&self, k: usize) -> usize {
        let limit = buffer_limit(&self.gpu);
        let by_matrix = limit / (self.chunk_len as u64 * 4);
        let by_queries = limit / (self.dim as u64 * 4);
        let by_output = limit / (self.chunks.len() as u64 * k as u64 * 8);
        let mut batch = by_matrix
            .min(by_queries)
            .min(by_output)
            .clamp(1, MAX_GROUPS) as usize;
        if let Some(max) = self.options.max_batch_queries {
            batch = batch.min(max.max(1));
        }
        batch
    }

    fn search_batch(
        &self,
        queries: VectorSlice<'_>,
        k: usize,
    ) -> Result<Vec<Vec<Neighbor>>, GpuError> {
        let device = &self.gpu.device;
        let queue = &self.gpu.queue;
        let nq = queries.len();
        let stride = self.chunks.len() * k;
        let out_bytes = (nq * stride * 8) as u64;
        let scope = ErrorScope::push(device);
        let query_buffer = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("avx-gpu queries"),
            contents: bytemuck::cast_slice(queries.as_flat()),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let matrix = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("avx-gpu distances"),
            size: (nq * self.chunk_len * 4).max(4) as u64,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let out = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("avx-gpu candidates"),
            size: out_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("avx-gpu readback"),
            size: out_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("avx-gpu params"),
            size: std::mem::size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        for (c, chunk) in self.chunks.iter().enumerate() {
            let p = Params {
                dim: self.dim as u32,
                n_queries: nq as u32,
                n_base: chunk.len as u32,
                k: k as u32,
                out_offset: (c * k) as u32,
                out_stride: stride as u32,
                _pad: [0; 2],
            };
            queue.write_buffer(&params, 0, bytemuck::bytes_of(&p));
            let entries = [
                params.as_entire_binding(),
                query_buffer.as_entire_binding(),
                chunk.buffer.as_entire_binding(),
                matrix.as_entire_binding(),
                out.as_entire_binding(),
            ];
            let bind = |pipeline: &wgpu::ComputePipeline, used: &[u32]| {
                let layout = pipeline.get_bind_group_layout(0);
                let entries: Vec<wgpu::BindGroupEntry<'_>> = used
                    .iter()
                    .map(|&b| wgpu::BindGroupEntry {
                        binding: b,
                        resource: entries[b as usize].clone(),
                    })
                    .collect();
                device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &layout,
                    entries: &entries,
                })
            };
            // Each entry point binds only what it uses (automatic layouts leave the rest out).
            let distance_group = bind(&self.distances, &[0, 1, 2, 3]);
            let top_k_group = bind(&self.top_k, &[0, 3, 4]);
            let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("avx-gpu chunk"),
            });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                pass.set_pipeline(&self.distances);
                pass.set_bind_group(0, &distance_group, &[]);
                pass.dispatch_workgroups(
                    (chunk.len as u32).div_ceil(TILE),
                    (nq as u32).div_ceil(TILE),
                    1,
                );
            }
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                pass.set_pipeline(&self.top_k);
                pass.set_bind_group(0, &top_k_group, &[]);
                pass.dispatch_workgroups(nq as u32, 1, 1);
            }
            if c + 1 == self.chunks.len() {
                encoder.copy_buffer_to_buffer(&out, 0, &readback, 0, out_bytes);
            }
            queue.submit([encoder.finish()]);
        }
        // Errors in encoding or submitting show here, before any result is read.
        scope.pop()?;
        let (tx, rx) = std::sync::mpsc::channel();
        readback.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Backend(format!("waiting for the GPU: {e}")))?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Backend(format!("reading results: {e}"))),
            Err(_) => return Err(GpuError::Backend("results were never mapped".into())),
        }
        let words: Vec<u32> = {
            let view = readback
                .get_mapped_range(..)
                .map_err(|e| GpuError::Backend(format!("reading results: {e}")))?;
            bytemuck::cast_slice(&view).to_vec()
        };
        readback.unmap();
        let starts: Vec<usize> = self.chunks.iter().map(|c| c.start).collect();
        Ok(words
            .chunks_exact(stride * 2)
            .map(|row| merge_candidates(row, &starts, k))
            .collect())
    }
}

/// The `k` best of one query's candidates from every chunk (`k` slots per chunk, indices
/// local to the chunk), in the CPU's order.
fn merge_candidates(row: &[u32], starts: &[usize], k: usize) -> Vec<Neighbor> {
    let mut all: Vec<Neighbor> = row
        .chunks_exact(2)
        .enumerate()
        .filter(|(_, pair)| pair[1] != u32::MAX)
        .map(|(slot, pair)| Neighbor {
            index: starts[slot / k] + pair[1] as usize,
            distance: f32::from_bits(pair[0]),
        })
        .collect();
    all.sort_by(Neighbor::cmp_nearest);
    all.truncate(k);
    all
}

/// Validation and out-of-memory errors of the work between `push` and `pop`, on this
/// thread (wgpu's error scopes are per thread), instead of wgpu's default panic.
struct ErrorScope {
    validation: wgpu::ErrorScopeGuard,
    memory: wgpu::ErrorScopeGuard,
}

impl ErrorScope {
    fn push(device: &wgpu::Device) -> Self {
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        ErrorScope { validation, memory }
    }

    fn pop(self) -> Result<(), GpuError> {
        let memory = pollster::block_on(self.memory.pop());
        let validation = pollster::block_on(self.validation.pop());
        match memory.or(validation) {
            Some(e) => Err(GpuError::Backend(e.to_string())),
            None => Ok(()),
        }
    }
}

/// The largest buffer the search creates on this device.
fn buffer_limit(gpu: &Gpu) -> u64 {
    gpu.limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size)
        .min(BUFFER_CAP)
}
