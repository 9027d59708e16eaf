//! The kernels: WGSL source, the uniform every kernel shares, and pipeline creation.
//!
//! Each optimizer family names its [`Kernel`] in its own file (`src/optim/<name>.rs`); the list of
//! families is [`crate::algorithm::OptimizerConfig`], the crate's one registry.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Mutex;

/// Invocations per workgroup in every kernel (`@workgroup_size(256)`).
pub const WORKGROUP_SIZE: u32 = 256;

/// A WGSL compute kernel and the state arrays it binds after `uniform`, `param` and `grad`.
#[derive(Debug)]
pub struct Kernel {
    /// The file name under `shaders/`, without `.wgsl`.
    pub name: &'static str,
    /// The WGSL source.
    pub source: &'static str,
    /// State arrays, bound at 3, 4, ... in this order.
    pub states: &'static [StateArray],
    /// The shader's boolean `override` constants, in the order of the bits of [`Scalars::flags`]
    /// (`OFFSETS` is the host's own and not listed).
    pub flags: &'static [&'static str],
}

/// One state array of a kernel: its name (PyTorch's state key, and the field of `Values` in the
/// WGSL) and the flag that switches it on (`None`: always used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateArray {
    /// PyTorch's state key (`"exp_avg"`).
    pub name: &'static str,
    /// The flag of [`Kernel::flags`] under which the kernel reads and writes it; `None`: always.
    pub flag: Option<&'static str>,
}

impl StateArray {
    /// A state array every step reads and writes.
    pub const fn always(name: &'static str) -> Self {
        Self { name, flag: None }
    }

    /// A state array used only when `flag` is on.
    pub const fn when(name: &'static str, flag: &'static str) -> Self {
        Self { name, flag: Some(flag) }
    }
}

impl Kernel {
    /// The index of the state array called `name`.
    pub fn state_index(&self, name: &str) -> Option<usize> {
        self.states.iter().position(|s| s.name == name)
    }

    /// The names of the state arrays, in binding order.
    pub fn state_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.states.iter().map(|s| s.name)
    }

    /// Which state arrays a step with these flag bits reads and writes (the others are never
    /// allocated).
    pub fn states_used(&self, flags: u32) -> Vec<bool> {
        self.states.iter().map(|s| s.flag.is_none_or(|f| self.flag_on(flags, f))).collect()
    }

    /// Whether the flag called `name` is set in `flags` (false for a name the kernel lacks).
    pub fn flag_on(&self, flags: u32, name: &str) -> bool {
        self.flags.iter().position(|f| *f == name).is_some_and(|bit| flags >> bit & 1 == 1)
    }
}

/// The uniform of one dispatch: where its slice lies in the bound buffers, and the kernel's
/// per-step scalars. Keep in sync with `struct Step` in every `shaders/*.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct StepUniform {
    pub n: u32,
    pub param_off: u32,
    pub grad_off: u32,
    pub state_off: u32,
    pub flags: u32,
    pub _pad: [u32; 3],
    pub scalars: [f32; 8],
}

/// Bytes in every kernel's `struct Step` (the host's `StepUniform`): checked against the WGSL.
pub const UNIFORM_SIZE: u32 = size_of::<StepUniform>() as u32;

/// A kernel's per-step values as uploaded: eight f32 scalars (each kernel names them in its
/// `struct Step`) and a bit set of flags.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Scalars {
    /// The values, in the order of the kernel's `struct Step` after `_pad2`.
    pub values: [f32; 8],
    /// The kernel's flags (`MAXIMIZE`, `AMSGRAD`, ...): bit `k` is the override constant
    /// `Kernel::flags[k]`.
    pub flags: u32,
}

/// A kernel's bind-group layout and its pipelines, one per combination of specialization
/// constants a step has used, compiled on first use.
#[derive(Debug)]
pub(crate) struct KernelPipeline {
    pub layout: wgpu::BindGroupLayout,
    kernel: &'static Kernel,
    module: wgpu::ShaderModule,
    variants: Mutex<HashMap<(u32, bool, bool), wgpu::ComputePipeline>>,
}

impl KernelPipeline {
    pub fn new(device: &wgpu::Device, kernel: &'static Kernel) -> Self {
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                // `main` needs 4 bytes, `main4` 16: wgpu checks each dispatch's bindings against
                // the entry point it runs.
                min_binding_size: None,
            },
            count: None,
        };
        let mut entries = vec![
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: NonZeroU64::new(size_of::<StepUniform>() as u64),
                },
                count: None,
            },
            storage(1, false),
            storage(2, true),
        ];
        entries.extend((0..kernel.states.len() as u32).map(|i| storage(3 + i, false)));
        let layout = device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(kernel.name), entries: &entries });
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name),
            source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
        });
        let pipeline = Self { layout, kernel, module, variants: Mutex::default() };
        // The most common variant, compiled now so that shader errors surface at construction.
        pipeline.variant(device, 0, true, false);
        pipeline.variant(device, 0, false, true);
        pipeline
    }

    /// The pipeline with these flags, with or without offsets into its bindings, running `main4`
    /// (four elements per invocation) or `main`.
    pub fn variant(&self, device: &wgpu::Device, flags: u32, offsets: bool, wide: bool) -> wgpu::ComputePipeline {
        let mut variants = self.variants.lock().unwrap_or_else(|e| e.into_inner());
        variants
            .entry((flags, offsets, wide))
            .or_insert_with(|| {
                let mut constants: Vec<(&str, f64)> = self
                    .kernel
                    .flags
                    .iter()
                    .enumerate()
                    .map(|(bit, name)| (*name, f64::from((flags >> bit) & 1)))
                    .collect();
                constants.push(("OFFSETS", f64::from(u8::from(offsets))));
                let entry = if wide { "main4" } else { "main" };
                compute_pipeline(device, &self.layout, &self.module, entry, &constants)
            })
            .clone()
    }
}

/// A compute pipeline of `module`'s `entry` over one bind group of `layout`, with these values for
/// the shader's `override` constants. Every pipeline of the crate and its tools is made here.
pub(crate) fn compute_pipeline(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    module: &wgpu::ShaderModule,
    entry: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(&pipeline_layout),
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
        cache: None,
    })
}

/// Workgroups for `n` elements as a 2-D grid, so that no dimension exceeds `max_per_dim`.
pub(crate) fn workgroups(n: u64, max_per_dim: u32) -> (u32, u32) {
    let groups = n.div_ceil(WORKGROUP_SIZE as u64);
    if groups == 0 {
        return (0, 0);
    }
    let x = groups.min(max_per_dim as u64);
    (x as u32, groups.div_ceil(x) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_covers_every_element_within_the_limit() {
        for n in [1u64, 255, 256, 257, 65_535 * 256, 65_535 * 256 + 1, 40_000_000] {
            let (x, y) = workgroups(n, 65_535);
            assert!(x <= 65_535 && y <= 65_535);
            assert!(x as u64 * y as u64 * 256 >= n, "n = {n}");
            // No whole row of workgroups is wasted.
            assert!((x as u64 * (y as u64 - 1)) * 256 < n, "n = {n}");
        }
        assert_eq!(workgroups(0, 65_535), (0, 0));
    }
}
