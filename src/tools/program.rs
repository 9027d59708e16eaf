//! A list of dispatches recorded in one compute pass: what the ceiling kernel and the unfused
//! baseline of `bench` are built from. Arrays larger than one storage binding are cut into
//! binding-sized chunks, one dispatch each, as the optimizer cuts them.

use std::num::NonZeroU64;

use crate::error::Result;
use crate::kernel::{workgroups, WORKGROUP_SIZE};
use crate::replay::buffer_init;

/// The uniform of every tool kernel: the chunk's length and up to four scalars.
/// Keep in sync with `struct Args` in `shaders/unfused.wgsl` and in [`super::ceiling::source`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Args {
    pub n: u32,
    pub _pad: [u32; 3],
    pub c: [f32; 4],
}

/// One storage binding of a kernel: read-only or read-write.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

/// A bind-group layout: the `Args` uniform at 0, then the storage bindings in order.
pub(crate) fn layout(device: &wgpu::Device, storage: &[Access]) -> wgpu::BindGroupLayout {
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: NonZeroU64::new(size_of::<Args>() as u64),
        },
        count: None,
    }];
    for (i, access) in storage.iter().enumerate() {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: 1 + i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: *access == Access::Read },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("wgpu-optim tools"),
        entries: &entries,
    })
}

/// `(first element, length)` of each binding-sized chunk of `n` elements.
pub(crate) fn chunks(device: &wgpu::Device, n: u64) -> Vec<(u64, u64)> {
    let limits = device.limits();
    let align = WORKGROUP_SIZE as u64 * limits.min_storage_buffer_offset_alignment.max(4) as u64;
    let max = (limits.max_storage_buffer_binding_size / 4 / align * align).max(align);
    (0..n.div_ceil(max)).map(|i| (i * max, (n - i * max).min(max))).collect()
}

/// A storage buffer of `n` f32 (at least one), filled with `data` if given.
///
/// # Errors
/// [`crate::Error::Wgpu`] if the buffer could not be created and filled (call within
/// [`crate::replay::scoped`] for wgpu's reason).
pub(crate) fn storage(device: &wgpu::Device, label: &str, n: u64, data: Option<&[f32]>) -> Result<wgpu::Buffer> {
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    match data {
        Some(data) if !data.is_empty() => buffer_init(device, label, bytemuck::cast_slice(data), usage),
        _ => Ok(device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: n.max(1) * 4,
            usage,
            mapped_at_creation: false,
        })),
    }
}

/// A storage buffer of `bytes` bytes (rounded up to whole words, at least one), filled with `data`
/// (padded with zeros to whole words) if given.
///
/// # Errors
/// As [`storage`].
pub(crate) fn storage_bytes(
    device: &wgpu::Device,
    label: &str,
    bytes: u64,
    data: Option<&[u8]>,
) -> Result<wgpu::Buffer> {
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    match data {
        Some(data) if !data.is_empty() => {
            let mut words = data.to_vec();
            words.resize(data.len().next_multiple_of(4), 0);
            buffer_init(device, label, &words, usage)
        }
        _ => Ok(device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.next_multiple_of(4).max(4),
            usage,
            mapped_at_creation: false,
        })),
    }
}

struct Dispatch {
    pipeline: usize,
    bind_group: wgpu::BindGroup,
    workgroups: (u32, u32),
}

/// Dispatches recorded in order in one compute pass.
#[derive(Default)]
pub(crate) struct Program {
    pipelines: Vec<wgpu::ComputePipeline>,
    dispatches: Vec<Dispatch>,
}

impl Program {
    /// Adds a pipeline; returns its index for [`Program::dispatch`].
    pub fn add_pipeline(&mut self, pipeline: wgpu::ComputePipeline) -> usize {
        self.pipelines.push(pipeline);
        self.pipelines.len() - 1
    }

    /// Adds one dispatch per chunk of `n` elements: `buffers` bound at 1, 2, ... (each at the
    /// chunk's offset; a buffer of 16 bytes or less is a placeholder and bound whole), `c` in
    /// the uniform.
    ///
    /// # Errors
    /// As [`storage`], for the uniforms.
    pub fn dispatch(
        &mut self,
        device: &wgpu::Device,
        pipeline: usize,
        layout: &wgpu::BindGroupLayout,
        buffers: &[&wgpu::Buffer],
        n: u64,
        c: [f32; 4],
    ) -> Result<()> {
        self.dispatch_wide(device, pipeline, layout, buffers, n, c, 1)
    }

    /// [`Program::dispatch`] for a kernel that handles `width` elements per invocation (and is
    /// told the element count, `n`, as usual).
    ///
    /// # Errors
    /// As [`storage`], for the uniforms.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_wide(
        &mut self,
        device: &wgpu::Device,
        pipeline: usize,
        layout: &wgpu::BindGroupLayout,
        buffers: &[&wgpu::Buffer],
        n: u64,
        c: [f32; 4],
        width: u64,
    ) -> Result<()> {
        self.dispatch_formats(device, pipeline, layout, buffers, &vec![4; buffers.len()], n, c, width)
    }

    /// [`Program::dispatch_wide`] over buffers whose elements take `element_bytes[i]` bytes each
    /// (4 for f32, 2 for a bf16 array held two to a word): each bound from its chunk's first
    /// element, over whole words.
    ///
    /// # Errors
    /// As [`storage`], for the uniforms.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_formats(
        &mut self,
        device: &wgpu::Device,
        pipeline: usize,
        layout: &wgpu::BindGroupLayout,
        buffers: &[&wgpu::Buffer],
        element_bytes: &[u64],
        n: u64,
        c: [f32; 4],
        width: u64,
    ) -> Result<()> {
        for (start, len) in chunks(device, n) {
            let args = Args { n: len as u32, c, ..Default::default() };
            let uniform =
                buffer_init(device, "wgpu-optim tools args", bytemuck::bytes_of(&args), wgpu::BufferUsages::UNIFORM)?;
            let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
            for (i, (buffer, &bytes)) in buffers.iter().zip(element_bytes).enumerate() {
                let resource = if buffer.size() <= 16 {
                    buffer.as_entire_binding()
                } else {
                    // Chunks start at multiples of 256 aligned words: so does a 2-byte array's.
                    let offset = start * bytes;
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer,
                        offset,
                        size: NonZeroU64::new((len * bytes).next_multiple_of(4).min(buffer.size() - offset)),
                    })
                };
                entries.push(wgpu::BindGroupEntry { binding: 1 + i as u32, resource });
            }
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("wgpu-optim tools"),
                layout,
                entries: &entries,
            });
            self.dispatches.push(Dispatch {
                pipeline,
                bind_group,
                workgroups: workgroups(len.div_ceil(width), device.limits().max_compute_workgroups_per_dimension),
            });
        }
        Ok(())
    }

    /// Dispatches per run.
    pub fn len(&self) -> usize {
        self.dispatches.len()
    }

    /// Records every dispatch in one compute pass.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        timestamp_writes: Option<wgpu::ComputePassTimestampWrites>,
    ) {
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("wgpu-optim tools"), timestamp_writes });
        for d in &self.dispatches {
            pass.set_pipeline(&self.pipelines[d.pipeline]);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.workgroups.0, d.workgroups.1, 1);
        }
    }
}
