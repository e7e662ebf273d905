//! What can go wrong on the GPU path.

/// Errors of the GPU path. [`GpuError::NoAdapter`] is the normal answer on a machine
/// without a GPU (or a CPU driver such as lavapipe): callers then use the CPU path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GpuError {
    /// No usable adapter; the reason says why (none found, or turned off by `AVX_GPU=off`).
    NoAdapter(String),
    /// The adapter was found but refused a device.
    Device(String),
    /// The device reported an error (out of memory, lost device, a validation error).
    Backend(String),
    /// The input cannot be searched: dimension mismatch, a non-finite value, `k` above the
    /// GPU's [`crate::MAX_K`].
    InvalidInput(String),
}

impl std::fmt::Display for GpuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuError::NoAdapter(why) => write!(f, "no GPU adapter: {why}"),
            GpuError::Device(why) => write!(f, "GPU device unavailable: {why}"),
            GpuError::Backend(why) => write!(f, "GPU error: {why}"),
            GpuError::InvalidInput(why) => write!(f, "invalid input: {why}"),
        }
    }
}

impl std::error::Error for GpuError {}
