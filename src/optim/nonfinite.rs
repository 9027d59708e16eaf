//! The scan behind `Optimizer::found_nonfinite`: whether gradients hold a NaN or an infinity.

use std::num::NonZeroU64;
use std::sync::OnceLock;

use super::plan::window;
use super::Scopes;
use crate::context::GpuContext;
use crate::error::Result;
use crate::kernel::{compute_pipeline, workgroups, Format};

/// Keep in sync with `struct Range` in `shaders/nonfinite.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RangeUniform {
    n: u32,
    off: u32,
    /// The format's exponent bits (see the shader).
    exponent: u32,
    _pad: u32,
}

/// The scan's pipeline.
#[derive(Debug)]
struct NonfinitePipeline {
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
}

impl NonfinitePipeline {
    fn new(device: &wgpu::Device) -> Self {
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("nonfinite"),
            entries: &[
                entry(0, wgpu::BufferBindingType::Uniform),
                entry(1, wgpu::BufferBindingType::Storage { read_only: true }),
                entry(2, wgpu::BufferBindingType::Storage { read_only: false }),
            ],
        });
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("nonfinite"),
            source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/nonfinite.wgsl").into()),
        });
        let pipeline = compute_pipeline(device, &layout, &module, "main", &[]);
        Self { layout, pipeline }
    }
}

/// The gradient scan of one optimizer; its pipeline is built on first use.
#[derive(Debug, Default)]
pub(super) struct NonfiniteScan {
    pipeline: OnceLock<NonfinitePipeline>,
}

impl NonfiniteScan {
    /// Whether any of `slices` (a gradient buffer, its first element and a length, each small
    /// enough for one binding) holds a NaN or an infinity, now: one dispatch per slice, and one
    /// word read back.
    ///
    /// # Errors
    /// [`crate::Error::DeviceLost`] or [`crate::Error::Wgpu`] if the device fails or refuses a buffer.
    pub fn scan<'a>(
        &self,
        ctx: &GpuContext,
        slices: impl Iterator<Item = (&'a wgpu::Buffer, u64, u64, Format)>,
    ) -> Result<bool> {
        ctx.check_known_lost()?;
        let device = &ctx.device;
        let scopes = Scopes::push(device);
        let scan = self.pipeline.get_or_init(|| NonfinitePipeline::new(device));
        let limits = device.limits();
        let align = limits.min_storage_buffer_offset_alignment as u64;
        let slot =
            (size_of::<RangeUniform>() as u64).next_multiple_of(limits.min_uniform_buffer_offset_alignment as u64);
        // Each slice bound as the optimizer binds it.
        let windows: Vec<_> = slices
            .map(|(buffer, start, len, format)| {
                let (resource, off) = window(buffer, start, len, align, format.element_bytes());
                let exponent = match format {
                    Format::BF16 => 0x7f80,
                    Format::F16 => 0x7c00,
                    _ => 0x7f80_0000,
                };
                (resource, off, len, exponent)
            })
            .collect();
        let mut uniforms = vec![0u8; (slot as usize) * windows.len().max(1)];
        for (i, &(_, off, len, exponent)) in windows.iter().enumerate() {
            let range = RangeUniform { n: len as u32, off, exponent, _pad: 0 };
            uniforms[i * slot as usize..][..size_of::<RangeUniform>()].copy_from_slice(bytemuck::bytes_of(&range));
        }
        // Mapped at creation rather than `create_buffer_init`, which panics on a lost device.
        let uniform = ctx.mapped_buffer("nonfinite ranges", &uniforms, wgpu::BufferUsages::UNIFORM)?;
        let found =
            ctx.mapped_buffer("nonfinite flag", &[0; 4], wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC)?;
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("nonfinite") });
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&scan.pipeline);
            for (i, (resource, _, len, _)) in windows.iter().enumerate() {
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("nonfinite"),
                    layout: &scan.layout,
                    entries: &[
                        wgpu::BindGroupEntry {
                            binding: 0,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &uniform,
                                offset: i as u64 * slot,
                                size: NonZeroU64::new(size_of::<RangeUniform>() as u64),
                            }),
                        },
                        wgpu::BindGroupEntry { binding: 1, resource: resource.clone() },
                        wgpu::BindGroupEntry { binding: 2, resource: found.as_entire_binding() },
                    ],
                });
                let (x, y) = workgroups(*len, limits.max_compute_workgroups_per_dimension);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
        }
        ctx.queue.submit([encoder.finish()]);
        scopes.pop("scanning the gradients")?;
        Ok(crate::readback::read_f32(ctx, &found, 0, 1)?[0].to_bits() != 0)
    }
}
