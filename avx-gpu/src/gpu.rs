//! The GPU context: one adapter, device and queue, found once.

use std::sync::{Arc, OnceLock};

use crate::error::GpuError;

/// A GPU adapter with its device and queue, and the limits the search respects.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .field("device_type", &self.info.device_type)
            .finish()
    }
}

impl Gpu {
    /// Finds an adapter (Vulkan first, then OpenGL ES) and opens a device on it, or says
    /// cleanly why there is none: never panics, prints nothing. `AVX_GPU=off` in the
    /// environment turns the GPU path off.
    pub fn new() -> Result<Gpu, GpuError> {
        if std::env::var("AVX_GPU").is_ok_and(|v| v.eq_ignore_ascii_case("off")) {
            return Err(GpuError::NoAdapter("turned off by AVX_GPU=off".into()));
        }
        let mut reasons = Vec::new();
        for backends in [wgpu::Backends::VULKAN, wgpu::Backends::GL] {
            let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
            descriptor.backends = backends;
            descriptor.flags = wgpu::InstanceFlags::empty();
            let instance = wgpu::Instance::new(descriptor);
            let options = wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            };
            match pollster::block_on(instance.request_adapter(&options)) {
                Ok(adapter) => return Gpu::open(adapter),
                Err(e) => reasons.push(format!("{backends:?}: {e}")),
            }
        }
        Err(GpuError::NoAdapter(reasons.join("; ")))
    }

    fn open(adapter: wgpu::Adapter) -> Result<Gpu, GpuError> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("avx-gpu"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            ..wgpu::DeviceDescriptor::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
            .map_err(|e| GpuError::Device(format!("{} ({:?}): {e}", info.name, info.backend)))?;
        // Work is wrapped in error scopes (see base.rs); anything outside them must not
        // take wgpu's default handler, which panics.
        device.on_uncaptured_error(Arc::new(|_: wgpu::Error| {}));
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
        })
    }

    /// The process-wide GPU, found on first use; `None` when there is none (the reason is
    /// in [`Gpu::shared_error`]).
    pub fn shared() -> Option<Arc<Gpu>> {
        shared_slot().as_ref().ok().cloned()
    }

    /// Why [`Gpu::shared`] found no GPU, if it did not.
    pub fn shared_error() -> Option<GpuError> {
        shared_slot().as_ref().err().cloned()
    }

    /// The adapter's name, e.g. `NVIDIA H100` or `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The adapter's description: name, backend and kind.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Whether this is a software adapter running on the CPU (lavapipe, llvmpipe).
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }
}

fn shared_slot() -> &'static Result<Arc<Gpu>, GpuError> {
    static SHARED: OnceLock<Result<Arc<Gpu>, GpuError>> = OnceLock::new();
    SHARED.get_or_init(|| Gpu::new().map(Arc::new))
}
