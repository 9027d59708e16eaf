//! The kernels: each one's declaration, the composition of its WGSL module, the uniform every
//! kernel shares, and pipeline creation.
//!
//! A kernel is declared once, in Rust, in its algorithm's file (`src/algorithm/<name>.rs`): its
//! state arrays (and the flag that switches each on), its per-step scalars (names and order, with
//! the [`scalars!`](crate::scalars) macro) and its flags. Its WGSL file (`shaders/<name>.wgsl`)
//! holds only `update()` and its helpers; [`compose()`] builds the rest (the `Step` struct, the
//! bindings, loads and stores per storage [`Format`], the entry points, the guards). The list of
//! algorithms is [`crate::algorithm::OptimizerConfig`], the crate's one registry.

mod compose;
mod format;

pub use compose::{compose, compose_correct, compose_variant, Variant};
pub(crate) use format::{bf16_helpers, f16_helpers};
pub use format::{pcg_hash, sr_bits, Format, Rounding, Storage};

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Mutex;

/// Invocations per workgroup in every kernel (`@workgroup_size(256)`).
pub const WORKGROUP_SIZE: u32 = 256;

/// Items (four-element vectors in `scan4`, elements in `scan`) each invocation of the gradient
/// scan reads (one of every 32, in a block that 32 lanes walk side by side) before it writes its
/// partial norm: the scan launches
/// `1 / SCAN_ITEMS` of the update's invocations and needs no workgroup barrier (each invocation
/// writes its own partial; `finish` reduces them), which on a CPU adapter costs more than the
/// reads.
pub const SCAN_ITEMS: u32 = 64;

/// The most per-step scalars a kernel can declare (the f32 slots of the uniform every composed `struct Step` mirrors).
pub const MAX_SCALARS: usize = 8;

/// A kernel's declaration: its WGSL `update()`, its state arrays, flags and per-step scalars.
/// [`compose()`] turns it into the module that runs.
#[derive(Debug)]
pub struct Kernel {
    /// The file name under `shaders/`, without `.wgsl`.
    pub name: &'static str,
    /// The kernel's own WGSL: `update(grad: vec4<f32>, x: Values) -> Values` and its helpers.
    pub source: &'static str,
    /// State arrays, bound at 3, 4, ... in this order.
    pub states: &'static [StateArray],
    /// The kernel's boolean flags (WGSL `const`s of each variant), in the order of the bits of
    /// [`Scalars::flags`].
    pub flags: &'static [&'static str],
    /// The per-step scalars, in upload order: the fields of the WGSL `struct Step`.
    pub scalars: &'static [&'static str],
    /// Each scalar's doc line, written beside its field in the composed `struct Step`.
    pub scalar_docs: &'static [&'static str],
    /// How the scalars depend on the tensor's own step count, which loss scaling can hold back
    /// on the device (a skipped step is not counted, as in PyTorch's fused path).
    pub device_step: DeviceStep,
}

/// How a kernel's per-step scalars depend on the tensor's own step count `t`. With loss scaling
/// the host computes the scalars for its own count, but steps the device skipped (non-finite
/// gradients) do not count: the kernel then corrects them on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStep {
    /// The scalars do not depend on `t` (or only through a first-step flag that follows the
    /// host's count: SGD's momentum buffer, see `SgdConfig`).
    Independent,
    /// WGSL source of `fn at_step(s: Step, t: f32, t_host: f32) -> Step`: the scalars `s`
    /// computed by the host for its count `t_host`, corrected to the device's count `t`.
    Corrected(&'static str),
    /// The scalars depend on `t` and no correction is written yet: loss scaling is refused.
    Unsupported,
}

/// One state array of a kernel: its name (PyTorch's state key, and the field of `Values` in the
/// WGSL), the flag that switches it on (`None`: always used) and whether its values are never
/// negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateArray {
    /// PyTorch's state key (`"exp_avg"`).
    pub name: &'static str,
    /// The flag of [`Kernel::flags`] under which the kernel reads and writes it; `None`: always.
    pub flag: Option<&'static str>,
    /// The kernel never makes it negative (a sum or average of squares, a step size): a
    /// checkpoint holding a negative value there was not written by a valid run and is refused.
    pub non_negative: bool,
}

impl StateArray {
    /// A state array every step reads and writes.
    pub const fn always(name: &'static str) -> Self {
        Self { name, flag: None, non_negative: false }
    }

    /// A state array used only when `flag` is on.
    pub const fn when(name: &'static str, flag: &'static str) -> Self {
        Self { name, flag: Some(flag), non_negative: false }
    }

    /// The same array, declared never negative.
    pub const fn non_negative(self) -> Self {
        Self { non_negative: true, ..self }
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

    /// The names of the flags set in `flags`, in bit order.
    pub fn flags_on(&self, flags: u32) -> Vec<&'static str> {
        self.flags.iter().enumerate().filter(|(bit, _)| flags >> bit & 1 == 1).map(|(_, f)| *f).collect()
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
    /// With `SPANS`: where the span pairs start in the `spans` binding (after the block table),
    /// how many there are, and the dispatch's first element within its run (the spans'
    /// coordinates).
    pub span_first: u32,
    pub span_count: u32,
    pub first: u32,
    /// The host's own step count of the dispatch's tensors (from 1): with loss scaling, the
    /// device subtracts the steps it skipped ([`Kernel::device_step`]).
    pub t: u32,
    /// With loss scaling: the tensors' skip counter in the `amp` buffer, and where the
    /// dispatch's gradient scan writes its workgroups' partial norms.
    pub amp_class: u32,
    pub partial_first: u32,
    /// With clipping: 1 when the dispatch's group is clipped (its gradients count in the norm
    /// and are scaled by the clip coefficient).
    pub clipped: u32,
    /// With stochastic rounding: the step's seed, a hash of the group's seed and the tensors'
    /// own step count ([`Rounding::step_seed`]); 0 otherwise.
    pub seed: u32,
    /// With an EMA of the weights: `1 - decay` (the first update copies: weight 1).
    pub ema_weight: f32,
    /// Under loss scaling or clipping, written on the device by the `correct` pass after
    /// `finish` (the host leaves them 0): whether the step is skipped, `1 / scale`, and the clip
    /// coefficient (1 where the group is not clipped), so that the update reads them as uniforms.
    pub skip: u32,
    pub inv_scale: f32,
    pub clip_coef: f32,
    pub _pad: [u32; 3],
    pub scalars: [f32; 8],
}

/// Bytes in every kernel's `struct Step` (the host's `StepUniform`): checked against the WGSL.
pub const UNIFORM_SIZE: u32 = size_of::<StepUniform>() as u32;

/// Bytes from one dispatch's slot of a step's scalars to the next on this device: the uniform's
/// size at the alignment of both uniform and storage offsets (the slots are read as either).
pub fn slot_size(limits: &wgpu::Limits) -> u64 {
    let align = limits.min_uniform_buffer_offset_alignment.max(limits.min_storage_buffer_offset_alignment);
    u64::from(UNIFORM_SIZE).next_multiple_of(u64::from(align))
}

/// A kernel's per-step values as uploaded: eight f32 scalars (named by [`Kernel::scalars`]) and
/// a bit set of flags.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Scalars {
    /// The values, in the order of [`Kernel::scalars`] (the kernel's `struct Step` after its
    /// u32 header).
    pub values: [f32; 8],
    /// The kernel's flags (`MAXIMIZE`, `AMSGRAD`, ...): bit `k` is `Kernel::flags[k]`.
    pub flags: u32,
    /// The step's stochastic-rounding seed ([`Rounding::step_seed`]); 0 without.
    pub seed: u32,
    /// With an EMA of the weights: `1 - decay`; 0 without.
    pub ema_weight: f32,
}

impl Scalars {
    /// f64 values rounded once to f32, in order, and the flags as bits (bit `k` is `flags[k]`).
    pub fn pack(values: &[f64], flags: &[bool]) -> Self {
        let mut out = Scalars { values: [0.0; MAX_SCALARS], flags: 0, seed: 0, ema_weight: 0.0 };
        for (slot, v) in out.values.iter_mut().zip(values) {
            *slot = *v as f32;
        }
        out.flags = flags.iter().enumerate().fold(0, |acc, (bit, &on)| acc | (u32::from(on) << bit));
        out
    }
}

/// Declares a kernel's per-step scalars once: an f64 struct that the host fills and the CPU
/// mirror reads, its field names in upload order (`NAMES`, which become the fields of the
/// composed WGSL `struct Step`, with `DOCS` beside them), its switches (plain `bool` fields),
/// its flags (`FLAGS`, each computed from the struct) and `pack()`, the upload.
///
/// ```ignore
/// scalars! {
///     /// Lion's per-step scalars.
///     pub struct LionScalars {
///         /// `1 - lr * weight_decay`.
///         decay,
///         lr,
///     }
///     switches {}
///     flags { WEIGHT_DECAY = |u| u.decay != 1.0 }
/// }
/// ```
#[macro_export]
#[doc(hidden)]
macro_rules! scalars {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[doc = $doc:literal])* $field:ident,)*
        }
        switches {
            $($(#[doc = $sdoc:literal])* $switch:ident,)*
        }
        flags { $($flag:ident = |$u:ident| $test:expr),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct $name {
            $($(#[doc = $doc])* pub $field: f64,)*
            $($(#[doc = $sdoc])* pub $switch: bool,)*
        }

        impl $name {
            /// The scalars' names in upload order: the fields of the kernel's WGSL `struct Step`.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];
            /// Each scalar's doc, in the order of `NAMES`.
            pub const DOCS: &'static [&'static str] = &[$(concat!($($doc, " "),*)),*];
            /// The flags' names in bit order: the kernel's WGSL `const`s.
            pub const FLAGS: &'static [&'static str] = &[$(stringify!($flag)),*];

            /// The values in upload order (rounded once to f32) and the flags as bits.
            pub fn pack(&self) -> $crate::kernel::Scalars {
                $crate::kernel::Scalars::pack(&[$(self.$field),*], &[$({ let $u = self; $test }),*])
            }
        }

        const _: () = assert!($name::NAMES.len() <= $crate::kernel::MAX_SCALARS, "too many scalars for StepUniform");
    };
}

/// A kernel's bind-group layout and its pipelines, one per combination of specialization
/// constants a step has used, compiled on first use.
#[derive(Debug)]
pub(crate) struct KernelPipeline {
    pub layout: wgpu::BindGroupLayout,
    kernel: &'static Kernel,
    storage: Storage,
    /// The loss-scaling variant ([`compose_variant`]), with the `amp` binding.
    amp: bool,
    /// One composed module per flag combination a step has used.
    modules: Mutex<HashMap<u32, wgpu::ShaderModule>>,
    variants: Mutex<HashMap<VariantKey, wgpu::ComputePipeline>>,
}

/// A pipeline's flags, `OFFSETS`, four-wide, `SPANS` and entry point.
type VariantKey = (u32, bool, bool, bool, Entry);

/// Which entry point of a kernel's module a dispatch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Entry {
    /// `main` / `main4`: the update.
    Update,
    /// `scan` / `scan4` (loss scaling and clipping): the gradients' partial norms.
    Scan,
    /// `swap` / `swap4` (an EMA of the weights): the EMA exchanged with the weights.
    Swap,
}

impl KernelPipeline {
    /// The kernel's bind-group layout and its most common pipelines, for these storage formats.
    ///
    /// # Errors
    /// [`crate::Error::UnsupportedStorage`] or [`crate::Error::ShaderF16Unsupported`] for a
    /// storage the device cannot run; [`crate::Error::Wgpu`] if wgpu refuses the composed module
    /// or its pipelines.
    pub fn with_storage(
        device: &wgpu::Device,
        kernel: &'static Kernel,
        storage: Storage,
        amp: bool,
    ) -> crate::Result<Self> {
        storage.check_features(device.features())?;
        // No minimum binding size: `main` needs 4 bytes, `main4` 16, and wgpu checks each
        // dispatch's bindings against the entry point it runs.
        let storage_entry = storage_layout_entry;
        let mut entries = vec![
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    // Each dispatch's slot, chosen per step: one bind group serves a run however
                    // tensors without gradients cut it.
                    has_dynamic_offset: true,
                    min_binding_size: NonZeroU64::new(size_of::<StepUniform>() as u64),
                },
                count: None,
            },
            storage_entry(1, false),
            // The gradients: read only, bound read-write (see `compose`: one buffer may hold a
            // tensor's parameter and its gradient).
            storage_entry(2, false),
        ];
        entries.extend((0..kernel.states.len() as u32).map(|i| storage_entry(3 + i, false)));
        // The spans a `SPANS` dispatch updates (tensors without gradients left out).
        entries.push(storage_entry(spans_binding(kernel), true));
        // The parameter's f32 master copy, after the spans; the EMA of the weights after it.
        if storage.master {
            entries.push(storage_entry(master_binding(kernel), false));
        }
        if storage.ema {
            entries.push(storage_entry(ema_binding(kernel, storage), false));
        }
        if amp {
            // The loss scale, the step's decision and the scan's partials (`shaders/amp_state.wgsl`).
            entries.push(storage_entry(amp_binding(kernel, storage), false));
        }
        let layout = device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(kernel.name), entries: &entries });
        // The seed is uploaded per step: the module depends only on the rest.
        let storage = storage.variant();
        let pipeline = Self { layout, kernel, storage, amp, modules: Mutex::default(), variants: Mutex::default() };
        // The most common variants, compiled now so that shader errors surface at construction.
        pipeline.variant(device, 0, true, false, false, Entry::Update)?;
        pipeline.variant(device, 0, false, true, false, Entry::Update)?;
        if amp {
            pipeline.variant(device, 0, false, true, false, Entry::Scan)?;
        }
        Ok(pipeline)
    }

    /// The pipeline with these flags, with or without offsets into its bindings, running `main4`
    /// (four elements per invocation) or `main`. The module of a flag combination is composed and
    /// compiled the first time a step needs it, in an error scope of its own: a pipeline wgpu
    /// refuses is not kept, and comes back as an error.
    ///
    /// # Errors
    /// [`crate::Error::Wgpu`] if wgpu refuses the module or the pipeline.
    pub fn variant(
        &self,
        device: &wgpu::Device,
        flags: u32,
        offsets: bool,
        wide: bool,
        spans: bool,
        entry: Entry,
    ) -> crate::Result<wgpu::ComputePipeline> {
        // Bits past the kernel's flags mean nothing to it.
        let flags = flags & ((1u32 << self.kernel.flags.len()) - 1);
        let mut variants = self.variants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pipeline) = variants.get(&(flags, offsets, wide, spans, entry)) {
            return Ok(pipeline.clone());
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        let module = modules.entry(flags).or_insert_with(|| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(self.kernel.name),
                source: wgpu::ShaderSource::Wgsl(compose_variant(self.kernel, self.storage, flags, self.amp).into()),
            })
        });
        let name = match (entry, wide) {
            (Entry::Update, true) => "main4",
            (Entry::Update, false) => "main",
            (Entry::Scan, true) => "scan4",
            (Entry::Scan, false) => "scan",
            (Entry::Swap, true) => "swap4",
            (Entry::Swap, false) => "swap",
        };
        let constants = [("OFFSETS", f64::from(u8::from(offsets))), ("SPANS", f64::from(u8::from(spans)))];
        let pipeline = compute_pipeline(device, &self.layout, module, name, &constants);
        if let Some(error) = pollster::block_on(scope.pop()) {
            modules.remove(&flags);
            return Err(crate::Error::Wgpu(format!("kernel {} (flags {flags:#b}): {error}", self.kernel.name)));
        }
        variants.insert((flags, offsets, wide, spans, entry), pipeline.clone());
        Ok(pipeline)
    }
}

/// A storage-buffer entry of a compute bind-group layout, bound whole (no dynamic offset).
pub(crate) fn storage_layout_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
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

/// Elements of a run per entry of a `SPANS` dispatch's block table (the first span that may hold
/// them), so that an invocation finds its span in a step or two, not a search.
pub(crate) const SPAN_BLOCK: u64 = 1024;

/// The binding of the `spans` array: after the kernel's state arrays.
pub(crate) fn spans_binding(kernel: &Kernel) -> u32 {
    3 + kernel.states.len() as u32
}

/// The binding of a low-precision parameter's f32 master copy (where the storage keeps one):
/// after the spans.
pub(crate) fn master_binding(kernel: &Kernel) -> u32 {
    spans_binding(kernel) + 1
}

/// The binding of the `amp` buffer (loss scaling and clipping): after the spans and the master
/// copy, if any.
pub(crate) fn amp_binding(kernel: &Kernel, storage: Storage) -> u32 {
    ema_binding(kernel, storage) + u32::from(storage.ema)
}

/// The binding of the EMA of the weights: after the spans and the master copy, if any.
pub(crate) fn ema_binding(kernel: &Kernel, storage: Storage) -> u32 {
    master_binding(kernel) + u32::from(storage.master)
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
