//! Loss scaling, as `torch.amp.GradScaler` drives a fused optimizer, and global gradient-norm
//! clipping, as `torch.nn.utils.clip_grad_norm_`, decided on the device each step: nothing is
//! read back while training.
//!
//! A step under either records two compute passes. The first: the gradient scan (`scan`/`scan4`
//! of the kernel's module, over the same tensors as each update dispatch, an invocation per 64
//! of the update's, lanes walking blocks in order: a partial norm and the non-finite flags per
//! invocation, no workgroup barrier), `finish` (`shaders/amp.wgsl`, one workgroup: the total
//! norm, whether the step is skipped, the clip coefficient, the skipped-step counters, the next
//! scale), and `correct` (`kernel::compose_correct`: each dispatch's uniform completed with that
//! decision and, where a kernel's scalars depend on the step count, corrected). The second: the
//! update, which reads only its uniform, unscales and clips each gradient as it loads it, and
//! returns at once when the step is skipped.
//!
//! **Step counts.** A skipped step does not count for the tensors that had a gradient in it
//! (PyTorch's fused Adam takes its step count back). The host cannot know which steps the
//! device skipped, so the device keeps the count: each tensor belongs to a *class*, tensors that
//! stepped together through every step since they were registered; each class has a counter of
//! skipped steps in the `amp` buffer, and a kernel whose scalars depend on the step count
//! corrects them there ([`crate::kernel::DeviceStep`]). A class whose tensors part (some have a
//! gradient in a step and some do not) is split: the new class starts from the old one's count.

use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

use super::Scopes;
use crate::context::GpuContext;
use crate::error::{py_float, Error, Result};
use crate::kernel::compute_pipeline;

/// `torch.amp.GradScaler`'s arguments, names and defaults: the loss scale and how it changes.
///
/// ```text
/// after a step with an infinity or a NaN in any gradient:  scale = scale * backoff_factor
/// after growth_interval steps in a row without one:        scale = scale * growth_factor
/// ```
/// (the step itself changes nothing: no parameter, no state, no step count). Defaults:
/// `init_scale` 65536 (2^16), `growth_factor` 2, `backoff_factor` 0.5, `growth_interval` 2000.
///
/// # Errors
/// [`Error::InvalidHyperparameter`] with PyTorch's messages: `The growth factor must be > 1.0.`,
/// `The backoff factor must be < 1.0.`; and, where PyTorch has no check but a scale could not
/// stay a positive finite number: `Invalid init_scale value: {init_scale}`,
/// `Invalid backoff_factor value: {backoff_factor}` (not > 0).
///
/// # Example
/// ```
/// use wgpu_optim::GradScalerConfig;
/// assert_eq!(GradScalerConfig::default().init_scale, 65536.0);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradScalerConfig {
    /// The scale of the first step.
    pub init_scale: f64,
    /// What the scale is multiplied by after `growth_interval` steps without a non-finite gradient.
    pub growth_factor: f64,
    /// What the scale is multiplied by after a step with one.
    pub backoff_factor: f64,
    /// Steps in a row without a non-finite gradient before the scale grows.
    pub growth_interval: u32,
}

impl Default for GradScalerConfig {
    fn default() -> Self {
        Self { init_scale: 65536.0, growth_factor: 2.0, backoff_factor: 0.5, growth_interval: 2000 }
    }
}

impl GradScalerConfig {
    /// PyTorch's checks, and that the scale stays a positive finite f32.
    ///
    /// # Errors
    /// See [`GradScalerConfig`].
    pub fn validate(&self) -> Result<()> {
        let invalid = |name: &str, message: String| Err(Error::InvalidHyperparameter { name: name.into(), message });
        if !(self.growth_factor.is_finite() && self.growth_factor > 1.0) {
            return invalid("growth_factor", "The growth factor must be > 1.0.".into());
        }
        if self.backoff_factor.is_nan() || self.backoff_factor >= 1.0 {
            return invalid("backoff_factor", "The backoff factor must be < 1.0.".into());
        }
        if self.backoff_factor <= 0.0 {
            return invalid(
                "backoff_factor",
                format!("Invalid backoff_factor value: {}", py_float(self.backoff_factor)),
            );
        }
        let scale = self.init_scale as f32;
        if !(scale.is_finite() && scale > 0.0 && (1.0 / scale).is_normal()) {
            return invalid("init_scale", format!("Invalid init_scale value: {}", py_float(self.init_scale)));
        }
        Ok(())
    }
}

/// The norm [`ClipGradNorm`] measures: `norm_type` 2 or infinity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NormType {
    /// `sqrt(sum of g^2)` over every element of every clipped gradient.
    #[default]
    L2,
    /// `max |g|`.
    Inf,
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)` before every step, on the device:
///
/// ```text
/// total_norm = || (||g_1||, ||g_2||, ...) ||     over the clipped groups' unscaled gradients
/// g          = g * min(1, max_norm / (total_norm + 1e-6))
/// ```
/// With loss scaling the norm is of the unscaled gradients (as `scaler.unscale_` before
/// `clip_grad_norm_` gives). `groups`: the group indices clipped together (`None`: all). Read the
/// norm with [`crate::Optimizer::amp_status`].
///
/// # Errors
/// [`Error::InvalidHyperparameter`] for a negative or non-finite `max_norm`
/// (`Invalid max_norm value: {max_norm}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipGradNorm {
    /// The largest total norm the gradients keep.
    pub max_norm: f64,
    /// 2 or infinity.
    pub norm_type: NormType,
    /// The groups clipped together (by index), or `None` for every group.
    pub groups: Option<Vec<usize>>,
}

impl ClipGradNorm {
    /// Every group, norm 2.
    pub fn new(max_norm: f64) -> Self {
        Self { max_norm, norm_type: NormType::L2, groups: None }
    }

    /// Checks `max_norm`.
    ///
    /// # Errors
    /// See [`ClipGradNorm`].
    pub fn validate(&self) -> Result<()> {
        if !(self.max_norm.is_finite() && self.max_norm >= 0.0) {
            return Err(Error::InvalidHyperparameter {
                name: "max_norm".into(),
                message: format!("Invalid max_norm value: {}", py_float(self.max_norm)),
            });
        }
        Ok(())
    }

    /// Whether group `g` is clipped.
    pub fn clips(&self, g: usize) -> bool {
        self.groups.as_ref().is_none_or(|groups| groups.contains(&g))
    }
}

/// What the device decided at the last step, read back for logging ([`crate::Optimizer::amp_status`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AmpStatus {
    /// The loss scale the next step's gradients should carry (GradScaler's `get_scale()`).
    pub scale: f32,
    /// Steps in a row without a non-finite gradient since the scale last changed.
    pub growth_tracker: u32,
    /// Whether the last step was skipped (a gradient held an infinity or a NaN).
    pub found_inf: bool,
    /// Steps skipped since loss scaling was set.
    pub skipped_steps: u32,
    /// The last step's norm of the unscaled gradients of the clipped groups (NaN or infinity where
    /// one held them; 0 without clipping).
    pub total_norm: f32,
    /// The last step's clip coefficient (1 without clipping).
    pub clip_coef: f32,
}

/// The device's words of `struct Amp` (`shaders/amp_state.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct DeviceWords {
    scale: f32,
    growth_tracker: u32,
    found_inf: u32,
    skipped: u32,
    inv_scale: f32,
    step_inv_scale: f32,
    clip_coef: f32,
    total_norm: f32,
}

/// The words the host writes before each step.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct HostWords {
    control: u32,
    growth_interval: u32,
    growth_factor: f32,
    backoff_factor: f32,
    max_norm: f32,
    partial_count: u32,
    copies: u32,
    increments: u32,
    ops_first: u32,
    partials_first: u32,
    dispatches: u32,
    _pad: u32,
}

const DEVICE_BYTES: u64 = size_of::<DeviceWords>() as u64;
const HEADER_BYTES: u64 = DEVICE_BYTES + size_of::<HostWords>() as u64;
const SCALING: u32 = 1;
const CLIP: u32 = 2;
const NORM_INF: u32 = 4;

/// A step's class operations: counters copied (a class split) and classes that step.
#[derive(Debug, Default)]
pub(super) struct ClassOps {
    /// (source, destination).
    pub copies: Vec<(u32, u32)>,
    /// Classes with a tensor that has a gradient this step.
    pub increments: Vec<u32>,
}

/// Loss scaling and clipping of one optimizer: the settings, the device buffer and `finish`.
#[derive(Debug)]
pub(super) struct Amp {
    pub scaler: Option<GradScalerConfig>,
    pub clip: Option<ClipGradNorm>,
    buffer: wgpu::Buffer,
    /// Class counters the buffer holds (and room for three times as many operation words).
    class_capacity: u32,
    /// Partial norms it holds.
    partial_capacity: u32,
    /// Classes handed out.
    classes: u32,
    /// Bumped whenever the buffer is replaced: bind groups made with the old one are stale.
    pub generation: u64,
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
}

impl Amp {
    /// Buffers and the `finish` pipeline, the scale set to `init_scale` (1 without loss scaling).
    ///
    /// # Errors
    /// [`Error::Wgpu`] if the device refuses them.
    pub fn new(ctx: &GpuContext, scaler: Option<GradScalerConfig>, clip: Option<ClipGradNorm>) -> Result<Self> {
        let device = &ctx.device;
        let scopes = Scopes::push(device);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("wgpu-optim amp"),
            entries: &[crate::kernel::storage_layout_entry(0, false)],
        });
        let source =
            format!("{}\n{}", include_str!("../../shaders/amp_state.wgsl"), include_str!("../../shaders/amp.wgsl"));
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("wgpu-optim amp"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = compute_pipeline(device, &layout, &module, "finish", &[]);
        let (class_capacity, partial_capacity) = (64, 1024);
        let buffer = Self::buffer(ctx, class_capacity, partial_capacity);
        let scale = scaler.as_ref().map_or(1.0, |s| s.init_scale);
        let words = DeviceWords {
            scale: scale as f32,
            // PyTorch: `scale.double().reciprocal().float()`.
            inv_scale: (1.0 / f64::from(scale as f32)) as f32,
            step_inv_scale: 1.0,
            clip_coef: 1.0,
            ..Default::default()
        };
        ctx.queue.write_buffer(&buffer, 0, bytemuck::bytes_of(&words));
        let bind_group = Self::bind_group(device, &layout, &buffer);
        scopes.pop("setting up loss scaling")?;
        Ok(Self {
            scaler,
            clip,
            buffer,
            class_capacity,
            partial_capacity,
            classes: 1,
            generation: 0,
            layout,
            pipeline,
            bind_group,
        })
    }

    fn buffer(ctx: &GpuContext, classes: u32, partials: u32) -> wgpu::Buffer {
        let words = 4 * u64::from(classes) + 2 * u64::from(partials);
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-optim amp"),
            size: HEADER_BYTES + 4 * words,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    fn bind_group(device: &wgpu::Device, layout: &wgpu::BindGroupLayout, buffer: &wgpu::Buffer) -> wgpu::BindGroup {
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("wgpu-optim amp"),
            layout,
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: buffer.as_entire_binding() }],
        })
    }

    /// The buffer the kernels bind; its first f32 is the loss scale.
    pub fn buffer_ref(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// A new class, its counter at 0.
    pub fn new_class(&mut self) -> u32 {
        self.classes += 1;
        self.classes - 1
    }

    /// Makes room for the classes handed out and `partials` partial norms: a larger buffer, the
    /// header and counters copied over in `encoder` (before the step that needs them). Returns
    /// whether the buffer was replaced. Nothing changes if the device refuses it.
    ///
    /// # Errors
    /// [`Error::Wgpu`] if the device cannot allocate it.
    pub fn reserve(&mut self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, partials: u64) -> Result<bool> {
        if self.classes <= self.class_capacity && partials <= u64::from(self.partial_capacity) {
            return Ok(false);
        }
        let classes = self.classes.max(self.class_capacity).next_power_of_two();
        let partials = u32::try_from(partials.max(u64::from(self.partial_capacity)).next_power_of_two())
            .map_err(|_| Error::Wgpu(format!("{partials} partial norms do not fit one buffer")))?;
        let scopes = Scopes::push(&ctx.device);
        let buffer = Self::buffer(ctx, classes, partials);
        let bind_group = Self::bind_group(&ctx.device, &self.layout, &buffer);
        scopes.pop("growing the loss-scaling buffer")?;
        // The device's words and every class counter (host words are written each step).
        encoder.copy_buffer_to_buffer(&self.buffer, 0, &buffer, 0, HEADER_BYTES + 4 * u64::from(self.class_capacity));
        self.buffer = buffer;
        self.bind_group = bind_group;
        self.class_capacity = classes;
        self.partial_capacity = partials;
        self.generation += 1;
        Ok(true)
    }

    /// The words the host writes before a step: the settings, where this step's operations and
    /// partials lie, and the operations.
    pub fn step_words(&self, partials: u32, dispatches: u32, ops: &ClassOps, clipping: bool) -> Vec<u8> {
        let scaler = self.scaler.clone().unwrap_or_default();
        let clip = self.clip.as_ref().filter(|_| clipping);
        let mut control = 0;
        if self.scaler.is_some() {
            control |= SCALING;
        }
        if let Some(c) = clip {
            control |= CLIP;
            if c.norm_type == NormType::Inf {
                control |= NORM_INF;
            }
        }
        let words = HostWords {
            control,
            growth_interval: scaler.growth_interval,
            growth_factor: scaler.growth_factor as f32,
            backoff_factor: scaler.backoff_factor as f32,
            max_norm: clip.map_or(0.0, |c| c.max_norm as f32),
            partial_count: partials,
            copies: ops.copies.len() as u32,
            increments: ops.increments.len() as u32,
            ops_first: self.class_capacity,
            partials_first: 4 * self.class_capacity,
            dispatches,
            _pad: 0,
        };
        // The operations follow in `data` after the class counters: a separate upload
        // (`ops_bytes`), so that the counters between are not written over.
        bytemuck::bytes_of(&words).to_vec()
    }

    /// Where the host words go, and the operations' bytes and offset.
    pub fn ops_bytes(&self, ops: &ClassOps) -> (u64, Vec<u8>) {
        let mut words: Vec<u32> = ops.copies.iter().flat_map(|&(a, b)| [a, b]).collect();
        words.extend(&ops.increments);
        (HEADER_BYTES + 4 * u64::from(self.class_capacity), bytemuck::cast_slice(&words).to_vec())
    }

    /// Byte offset of the host words.
    pub const HOST_OFFSET: u64 = DEVICE_BYTES;

    /// Puts a checkpoint's scaler state in place: the scale, the growth tracker, the steps
    /// skipped, and one class per entry of `counters` (its count of skipped steps). Queued on the
    /// device's queue, as a loaded state is. A buffer too small for the classes is replaced.
    pub fn restore(&mut self, ctx: &GpuContext, scale: f32, growth_tracker: u32, skipped: u32, counters: &[u32]) {
        self.classes = counters.len().max(1) as u32;
        if self.classes > self.class_capacity {
            self.class_capacity = self.classes.next_power_of_two();
            self.buffer = Self::buffer(ctx, self.class_capacity, self.partial_capacity);
            self.bind_group = Self::bind_group(&ctx.device, &self.layout, &self.buffer);
            self.generation += 1;
        }
        let words = DeviceWords {
            scale,
            growth_tracker,
            skipped,
            inv_scale: (1.0 / f64::from(scale)) as f32,
            step_inv_scale: 1.0,
            clip_coef: 1.0,
            ..Default::default()
        };
        ctx.queue.write_buffer(&self.buffer, 0, bytemuck::bytes_of(&words));
        ctx.queue.write_buffer(&self.buffer, HEADER_BYTES, bytemuck::cast_slice(counters));
    }

    /// `finish`, recorded into the step's pass between the scan and the update.
    pub fn record_finish(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }

    /// The device's words, read back now (logging only).
    ///
    /// # Errors
    /// [`Error::DeviceLost`] or [`Error::Wgpu`] if the device fails.
    pub fn status(&self, ctx: &GpuContext) -> Result<AmpStatus> {
        let words = crate::readback::read_f32(ctx, &self.buffer, 0, DEVICE_BYTES / 4)?;
        let w: DeviceWords = bytemuck::pod_read_unaligned(bytemuck::cast_slice(&words));
        Ok(AmpStatus {
            scale: w.scale,
            growth_tracker: w.growth_tracker,
            found_inf: w.found_inf != 0,
            skipped_steps: w.skipped,
            total_norm: w.total_norm,
            clip_coef: w.clip_coef,
        })
    }

    /// Each class's counter of skipped steps, read back now (checkpoints).
    ///
    /// # Errors
    /// As [`Amp::status`].
    pub fn class_skips(&self, ctx: &GpuContext) -> Result<Vec<u32>> {
        let words = crate::readback::read_f32(ctx, &self.buffer, HEADER_BYTES / 4, u64::from(self.classes))?;
        Ok(words.into_iter().map(f32::to_bits).collect())
    }

    /// The size of the host words (for the upload).
    pub fn host_size() -> NonZeroU64 {
        NonZeroU64::new(size_of::<HostWords>() as u64).expect("not empty")
    }
}
