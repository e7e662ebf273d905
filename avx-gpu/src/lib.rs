//! GPU distance search for AVL through wgpu (Vulkan, or OpenGL ES where there is no
//! Vulkan): batched distances between queries and a base set uploaded once, and the top-k
//! per query selected on the GPU, with the same API and the same order as avila-math's
//! CPU search, which is the fallback.
//!
//! ```
//! use avila_math::distance::{Metric, VectorSlice};
//! use avx_gpu::VectorSearch;
//!
//! let base: Vec<f32> = (0..64 * 8).map(|i| (i % 17) as f32).collect();
//! let base = VectorSlice::new(&base, 8)?;
//! // On the GPU when there is one, on the CPU otherwise.
//! let search = VectorSearch::new(Metric::L2Squared, base);
//! let hits = search.search(base.slice(3..4), 5)?;
//! assert_eq!(hits[0][0].index, 3); // a vector is nearest to itself
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The GPU path knows nothing of services; it needs a GPU adapter, or a CPU Vulkan driver
//! (Debian's `mesa-vulkan-drivers`) for testing, and reports cleanly when there is none.

mod base;
mod error;
mod gpu;
mod search;

pub use base::{GpuBase, MAX_K, Options};
pub use error::GpuError;
pub use gpu::Gpu;
pub use search::{Placement, VectorSearch};
