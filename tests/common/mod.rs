//! Shared by the integration tests: the device, random data, and the one tolerance.
#![allow(dead_code)]

pub mod edit;

use wgpu::util::DeviceExt;
use wgpu_optim::{ContextOptions, GpuContext};

/// The reason GPU tests give when they are turned off on purpose.
pub const SKIP: &str = "WGPU_OPTIM_SKIP_GPU_TESTS is set";

/// A device on the default adapter. Without one, the test fails and says how to get one.
pub fn gpu() -> GpuContext {
    gpu_with(&ContextOptions::default())
}

/// A device with explicit options.
pub fn gpu_with(options: &ContextOptions) -> GpuContext {
    GpuContext::with_options(options).unwrap_or_else(|e| {
        panic!(
            "{e}\n(GPU tests need an adapter. To turn them off on purpose, set WGPU_OPTIM_SKIP_GPU_TESTS=1: \
             they then show as ignored.)"
        )
    })
}

/// A device with wgpu's default error handler, which panics on any error no scope captures, as
/// an engine's device may.
pub fn device_with_default_handler() -> GpuContext {
    pollster::block_on(async {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance.request_adapter(&Default::default()).await.expect("an adapter");
        let (device, queue) = adapter.request_device(&Default::default()).await.expect("a device");
        GpuContext::from_device(device, queue)
    })
}

/// A buffer the optimizer can use and tests can read back.
pub fn buffer(ctx: &GpuContext, data: &[f32]) -> wgpu::Buffer {
    let data = if data.is_empty() { &[0.0][..] } else { data };
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("test"),
        contents: bytemuck::cast_slice(data),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
    })
}

/// A small deterministic generator (splitmix64): tests need reproducible data, not a crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `n` values with per-element magnitudes spread over 1e-3..1e1, a few exact zeros.
    pub fn vector(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                if self.uniform() < 0.02 {
                    0.0
                } else {
                    (self.normal() * 10f64.powf(self.uniform() * 4.0 - 3.0)) as f32
                }
            })
            .collect()
    }
}

/// The tolerance of DESIGN.md: `|ours - reference| <= 1e-5 * scale` per element, where `scale` is
/// the largest magnitude the reference takes (floor 1e-6). Panics naming the worst element.
pub fn assert_close(what: &str, ours: &[f32], reference: &[f64], scale: &[f64]) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths differ");
    let mut worst = (0.0f64, 0usize);
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        let ratio = (a as f64 - b).abs() / (1e-5 * scale[i].max(1e-6));
        if ratio > worst.0 || ratio.is_nan() {
            worst = (ratio, i);
            if ratio.is_nan() {
                break;
            }
        }
    }
    let (ratio, i) = worst;
    assert!(
        ratio <= 1.0,
        "{what}: element {i} is {} against the reference {}, {ratio:.2} times the tolerance",
        ours[i],
        reference[i]
    );
}

/// Element-wise running maximum of magnitudes, for [`assert_close`]'s scale.
pub fn track_scale(scale: &mut Vec<f64>, values: &[f64]) {
    scale.resize(values.len(), 0.0);
    for (s, v) in scale.iter_mut().zip(values) {
        *s = s.max(v.abs());
    }
}

/// A bundled golden case's path.
pub fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// A fresh, empty scratch directory for this test process (`{tmp}/wgpu-optim-{name}-{pid}`).
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-optim-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
