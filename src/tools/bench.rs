//! `wgpu-optim bench`: ms/step and GB/s of the fused kernels, against what the same adapter does in
//! the same run with the same bytes: the ceiling kernel (reads and writes the same arrays, no
//! arithmetic), `copy_buffer_to_buffer`, and the unfused baseline (one dispatch per elementwise
//! operation).
//!
//! The fused step runs over the tensors in one of two layouts (`--layout`): an arena (one
//! parameter and one gradient buffer for all, one dispatch) or one parameter and one gradient
//! buffer per tensor, as an engine allocates them (a dispatch per tensor, and one more for each
//! tensor's last `len % 4` elements). The baselines always run over one buffer per array.
//!
//! Each figure is the median of `reps` steps after `warmup` steps, each step submitted and waited
//! for on its own; the four workloads take turns step by step, so that the machine's drift hits
//! them alike. Time is GPU time from timestamp queries where the adapter has `TIMESTAMP_QUERY`,
//! wall time from submit to the end of the wait otherwise.
//!
//! GB/s counts the bytes the step must move: 4 B per element for each array read and each array
//! written (the gradient is read, the parameter and each state array read and written), so
//! `12 + 8 * states`: plain SGD 12, SGD with momentum 20, AdaGrad 20, RMSProp 20 (+8 centered, +8
//! momentum), Adam 28, AMSGrad 36. A configuration with loss scaling or clipping (`AdamW-amp`,
//! `SGD-momentum-amp`) reads every gradient once more (the scan: +4 B per element) and its scan
//! writes a partial norm per invocation that `finish` reads back (8 B each way per 256 elements of
//! a four-wide dispatch, counted exactly from [`Optimizer::scan_partials`]); its ceiling is still
//! the kernel over the update's arrays, and each side's GB/s counts its own bytes.
//!
//! A configuration with low-precision storage ([`bf16_variants`]) counts each array in its format:
//! a bf16 parameter or gradient 2 B per element each way, an f32 master copy one more f32 state
//! array (read and written: +8 B, and 4 B of state per parameter) from which the update reads the
//! parameter, so that the parameter is only written. `AdamW-bf16-master` moves 28 B per element,
//! `AdamW-bf16-sr` 22, `AdamW-bf16grad` 26. Its ceiling kernel moves the same arrays
//! in the same formats (a bf16 array as the u32 words that hold it), its copy the same bytes; the
//! unfused baseline is f32 only (`n/a`).

use serde::Serialize;

use super::adapters::bytes as bytes_text;
use super::program::Program;
use super::{available_memory, backend_name, ceiling, progress, unfused, Rng};
use crate::algorithm::OptimizerConfig;
use crate::error::{Error, Result};
use crate::kernel::{Format, Rounding, Storage};
use crate::optim::{ClipGradNorm, GradScalerConfig, Optimizer, ParamBinding};
use crate::replay::scoped;
use crate::{GpuContext, ParamArena};

pub use super::ceiling::{
    source as ceiling_source, source_formats as ceiling_source_formats, source_wide as ceiling_source_wide,
};
pub use super::unfused::SOURCE as UNFUSED_SOURCE;

/// An optimizer configuration `bench` measures, and what it runs with.
#[derive(Clone, Debug)]
pub struct Variant {
    /// Its name in `--optimizer` and in the records (`Adam`, `Adam-amsgrad`, `AdamW-amp`, ...).
    pub name: &'static str,
    /// The configuration.
    pub config: OptimizerConfig,
    /// The storage formats of parameters, gradients and state ([`Storage::F32`], or bf16
    /// parameters and gradients: [`bf16_variants`]). The byte counts follow it, each role in its
    /// format, a master copy as one more f32 state array.
    pub storage: Storage,
    /// Loss scaling ([`Optimizer::set_loss_scaling`]), if the step runs with it.
    pub loss_scaling: Option<GradScalerConfig>,
    /// Gradient clipping ([`Optimizer::set_grad_clipping`]), if the step runs with it.
    pub clipping: Option<ClipGradNorm>,
}

impl Variant {
    /// The configuration in f32, without loss scaling or clipping.
    pub fn plain(name: &'static str, config: OptimizerConfig) -> Self {
        Self { name, config, storage: Storage::F32, loss_scaling: None, clipping: None }
    }

    /// State arrays the update reads and writes (the algorithm's; not the master copy).
    pub fn states(&self) -> usize {
        self.config.algorithm().states_used().iter().filter(|&&used| used).count()
    }

    /// f32 arrays besides the parameter and the gradient that the update reads and writes: the
    /// state arrays and the master copy, if kept. What the ceiling kernel's state arrays are.
    pub fn f32_arrays(&self) -> usize {
        self.states() + usize::from(self.storage.master)
    }

    /// Whether the step scans the gradients first (loss scaling or clipping): one more read of
    /// every gradient, partial norms and one `finish` workgroup.
    pub fn scans(&self) -> bool {
        self.loss_scaling.is_some() || self.clipping.is_some()
    }

    /// Bytes per element the update moves: the gradient read, the parameter and each state array
    /// read and written, each in its storage format (f32: `12 + 8 * states`). With a master copy
    /// the update reads the copy instead of the parameter: the copy is read and written (an f32
    /// state array, +8) and the parameter only written (bf16: 2). What the ceiling kernel moves.
    pub fn update_bytes_per_element(&self) -> u64 {
        let Storage { param, grad, state, master, .. } = self.storage;
        let (param, master) = if master { (param.element_bytes(), 8) } else { (2 * param.element_bytes(), 0) };
        param + grad.element_bytes() + 2 * state.element_bytes() * self.states() as u64 + master
    }

    /// Bytes per element the step moves: the update's, and with loss scaling or clipping the
    /// scan's read of every gradient once more (f32: `+4`). The scan's partial norms (8 bytes per
    /// scan invocation, written and read back: 16 B per 256 elements four-wide) are not per element:
    /// [`Setup::bytes`] adds them.
    pub fn bytes_per_element(&self) -> u64 {
        self.update_bytes_per_element() + if self.scans() { self.storage.grad.element_bytes() } else { 0 }
    }

    /// Bytes of optimizer state per parameter element: each state array in its format (f32: Adam
    /// 8, AMSGrad 12, SGD with momentum 4, plain SGD 0), and 4 for an f32 master copy.
    pub fn state_bytes_per_param(&self) -> u64 {
        self.storage.state.element_bytes() * self.states() as u64 + if self.storage.master { 4 } else { 0 }
    }
}

/// Every configuration `bench` knows, read from the registry ([`OptimizerConfig::defaults`] and
/// [`OptimizerConfig::cases`]), in registry order: each algorithm with its reference's defaults,
/// named by its PyTorch name (`Adam`); then, where one of the algorithm's cases keeps more state
/// arrays than its defaults do, the first case with the most state arrays, named by the PyTorch
/// name and the case's flags (`adam amsgrad` → `Adam-amsgrad`, `rmsprop centered momentum` →
/// `RMSprop-centered-momentum`); then [`amp_variants`], then [`bf16_variants`]. Built once.
pub fn variants() -> Vec<Variant> {
    static VARIANTS: std::sync::OnceLock<Vec<Variant>> = std::sync::OnceLock::new();
    VARIANTS
        .get_or_init(|| {
            let mut all = registry_variants();
            all.extend(amp_variants(&all));
            all.extend(bf16_variants(&all));
            all
        })
        .clone()
}

/// The low-precision configurations: `AdamW` (from `registry`) with
/// - `AdamW-bf16-master`: bf16 parameters and gradients, f32 state and an f32 master copy
///   (28 B per element moved: the parameter written, not read; 12 B of state per parameter);
/// - `AdamW-bf16-sr`: bf16 parameters and gradients rounded stochastically, no master copy
///   (22 B per element, 8 B of state);
/// - `AdamW-bf16grad`: f32 parameters, bf16 gradients (26 B per element, 8 B of state).
pub fn bf16_variants(registry: &[Variant]) -> Vec<Variant> {
    let storages = [
        ("bf16-master", Storage { param: Format::BF16, grad: Format::BF16, master: true, ..Storage::F32 }),
        (
            "bf16-sr",
            Storage {
                param: Format::BF16,
                grad: Format::BF16,
                rounding: Rounding::Stochastic { seed: 0x5eed },
                ..Storage::F32
            },
        ),
        ("bf16grad", Storage { grad: Format::BF16, ..Storage::F32 }),
    ];
    let Some(adamw) = registry.iter().find(|v| v.name == "AdamW") else {
        return Vec::new();
    };
    storages
        .into_iter()
        .map(|(suffix, storage)| Variant { name: format!("AdamW-{suffix}").leak(), storage, ..adamw.clone() })
        .collect()
}

/// The mixed-precision configurations, named `<variant>-amp`: `AdamW` and `SGD-momentum` (from
/// `registry`) with loss scaling (`GradScalerConfig::default()`) and clipping
/// (`ClipGradNorm::new(1.0)`), in f32.
pub fn amp_variants(registry: &[Variant]) -> Vec<Variant> {
    ["AdamW", "SGD-momentum"]
        .into_iter()
        .filter_map(|base| registry.iter().find(|v| v.name == base))
        .map(|v| Variant {
            name: format!("{}-amp", v.name).leak(),
            loss_scaling: Some(GradScalerConfig::default()),
            clipping: Some(ClipGradNorm::new(1.0)),
            ..v.clone()
        })
        .collect()
}

fn registry_variants() -> Vec<Variant> {
    let states = |config: &OptimizerConfig| config.algorithm().states_used().iter().filter(|&&used| used).count();
    let cases = OptimizerConfig::cases();
    let mut variants = Vec::new();
    for config in OptimizerConfig::defaults() {
        let name = config.name();
        let mut most: Option<(&str, &OptimizerConfig)> = None;
        for (case, c) in cases.iter().filter(|(_, c)| c.name() == name) {
            if states(c) > most.map_or(states(&config), |(_, m)| states(m)) {
                most = Some((case, c));
            }
        }
        let extra = most.map(|(case, c)| {
            let flags: Vec<&str> = case.split_whitespace().skip(1).collect();
            let name: &'static str = format!("{name}-{}", flags.join("-")).leak();
            Variant::plain(name, c.clone())
        });
        variants.push(Variant::plain(name, config));
        variants.extend(extra);
    }
    variants
}

/// The variants named in a comma-separated list (case-insensitive).
///
/// # Errors
/// [`Error::UnknownOptimizer`] naming the first unknown name and listing the known ones.
pub fn find(names: &str) -> Result<Vec<Variant>> {
    let all = variants();
    names
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            all.iter().find(|v| v.name.eq_ignore_ascii_case(name)).cloned().ok_or_else(|| Error::UnknownOptimizer {
                name: name.to_string(),
                known: all.iter().map(|v| v.name).collect::<Vec<_>>().join(", "),
            })
        })
        .collect()
}

/// `n` elements cut into `tensors` tensors shaped like a small transformer's parameter list: the
/// 148 tensors of GPT-2 small (token and position embeddings; per layer two LayerNorms, the
/// attention's qkv and projection, the MLP's two matrices, each with its bias; a final LayerNorm),
/// their sizes scaled to add up to `n`. Fewer tensors take the first ones of the list, more
/// add layers. Small tensors get at least one element while `n` is well above `tensors`.
pub fn transformer_shapes(n: u64, tensors: usize) -> Vec<u64> {
    if tensors <= 1 {
        return vec![n];
    }
    let (d, vocab, positions) = (768u64, 50_257u64, 1_024u64);
    let layer = [d, d, 3 * d * d, 3 * d, d * d, d, d, d, 4 * d * d, 4 * d, 4 * d * d, d];
    let mut lens = vec![vocab * d, positions * d];
    while lens.len() + 2 < tensors {
        lens.extend(layer);
    }
    lens.truncate(tensors.saturating_sub(2));
    lens.extend([d, d]);
    lens.truncate(tensors);
    let total: u64 = lens.iter().sum();
    let floor = u64::from(n >= tensors as u64);
    let mut scaled: Vec<u64> =
        lens.iter().map(|&len| ((len as f64 * n as f64 / total as f64) as u64).max(floor)).collect();
    // The embedding takes up the rounding, so that the total is exactly n.
    let rest: u64 = scaled[1..].iter().sum();
    scaled[0] = n.saturating_sub(rest);
    scaled
}

/// Where the fused step's tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Back to back in one parameter and one gradient buffer (a [`ParamArena`]).
    Arena,
    /// One parameter and one gradient buffer per tensor, as an engine allocates them.
    Buffers,
}

impl Layout {
    /// Its name in `--layout` and in the records.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Arena => "arena",
            Layout::Buffers => "buffers",
        }
    }
}

/// One of the four workloads of a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The fused optimizer kernel, through [`Optimizer::record_timed`].
    Fused,
    /// The ceiling kernel: the same arrays moved with no arithmetic.
    Ceiling,
    /// `copy_buffer_to_buffer` of the same number of bytes (half read, half written).
    Copy,
    /// One dispatch per elementwise operation, with temporaries.
    Unfused,
}

impl Kind {
    /// The four, in the order a measurement takes turns.
    pub const ALL: [Kind; 4] = [Kind::Fused, Kind::Ceiling, Kind::Copy, Kind::Unfused];
}

/// Everything one measurement runs, built once: the optimizer over `tensors` tensors in a
/// [`Layout`], the ceiling kernel, the copy buffers and the unfused program, each on buffers of its
/// own with the same random parameters and gradients.
pub struct Setup {
    /// The configuration.
    pub variant: Variant,
    /// Elements in all.
    pub n: u64,
    /// Tensors the elements are cut into (see [`transformer_shapes`]).
    pub tensors: usize,
    /// Where the fused step's tensors live.
    pub layout: Layout,
    optimizer: Optimizer,
    ceiling: Program,
    copy: (wgpu::Buffer, wgpu::Buffer),
    /// `None` for a configuration the unfused baseline does not run: one with low-precision
    /// storage (the baseline is f32 only).
    unfused: Option<Program>,
}

impl Setup {
    /// Builds the four workloads for `variant` over `n` elements in `tensors` tensors of an arena.
    ///
    /// # Errors
    /// As [`Setup::with_layout`].
    pub fn new(ctx: &GpuContext, variant: &Variant, n: u64, tensors: usize) -> Result<Self> {
        Self::with_layout(ctx, variant, n, tensors, Layout::Arena)
    }

    /// Builds the four workloads for `variant` over `n` elements in `tensors` tensors laid out as
    /// `layout` says.
    ///
    /// # Errors
    /// [`Error::Config`] (`what: "bench"`) for no elements, a byte count past 64 bits, or more
    /// memory than the machine has available (counting the host's copies, and the device's
    /// buffers on a CPU adapter); [`Error::OutOfBounds`] past the adapter's `max_buffer_size`;
    /// [`Error::Wgpu`] if wgpu refuses a buffer or a pipeline (out of memory, say).
    pub fn with_layout(ctx: &GpuContext, variant: &Variant, n: u64, tensors: usize, layout: Layout) -> Result<Self> {
        let device = &ctx.device;
        let copy_bytes = check_size(ctx, variant, n)?;
        scoped(device, &format!("bench of {} at {n} elements", variant.name), || {
            let mut rng = Rng(0xbe4c_0000 ^ n);
            let (param, grad) = (rng.vector(n as usize), rng.vector(n as usize));
            let formats = (variant.storage.param, variant.storage.grad);
            let bindings = tensors_in(ctx, layout, &transformer_shapes(n, tensors), formats, &param, &grad)?;
            let mut optimizer = Optimizer::with_storage(ctx, variant.config.clone(), variant.storage)?;
            optimizer.set_loss_scaling(variant.loss_scaling.clone())?;
            optimizer.set_grad_clipping(variant.clipping.clone())?;
            optimizer.add_params(optimizer.default_group(), &bindings)?;
            let param_read = !variant.storage.master;
            let ceiling = ceiling::program(device, n, formats, variant.f32_arrays(), param_read, &param, &grad)?;
            let unfused = match variant.storage == Storage::F32 {
                true => Some(unfused::program(device, &variant.config, n, &param, &grad)?),
                false => None,
            };
            let copy_buffer = |usage| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("bench copy"),
                    size: copy_bytes,
                    usage,
                    mapped_at_creation: false,
                })
            };
            let copy = (copy_buffer(wgpu::BufferUsages::COPY_SRC), copy_buffer(wgpu::BufferUsages::COPY_DST));
            Ok(Self { variant: variant.clone(), n, tensors, layout, optimizer, ceiling, copy, unfused })
        })
    }

    /// Dispatches one step of `kind` records (the copy: none). A fused step with loss scaling or
    /// clipping counts the scan's dispatches (as many as the update's) and `finish`'s one.
    pub fn dispatches(&mut self, kind: Kind) -> usize {
        match kind {
            Kind::Fused if self.variant.scans() => 2 * self.optimizer.dispatch_count() + 1,
            Kind::Fused => self.optimizer.dispatch_count(),
            Kind::Ceiling => self.ceiling.len(),
            Kind::Copy => 0,
            Kind::Unfused => self.unfused.as_ref().map_or(0, Program::len),
        }
    }

    /// Records one step of `kind`. With a query set, writes timestamps at its indices 0 (start)
    /// and 1 (end); the copy is bracketed by two empty timed passes.
    ///
    /// # Errors
    /// As [`Optimizer::record`].
    pub fn record(
        &mut self,
        kind: Kind,
        encoder: &mut wgpu::CommandEncoder,
        timestamps: Option<&wgpu::QuerySet>,
    ) -> Result<()> {
        let writes = |begin, end| {
            timestamps.map(|query_set| wgpu::ComputePassTimestampWrites {
                query_set,
                beginning_of_pass_write_index: begin,
                end_of_pass_write_index: end,
            })
        };
        match kind {
            Kind::Fused => self.optimizer.record_timed(encoder, writes(Some(0), Some(1)))?,
            Kind::Ceiling => self.ceiling.record(encoder, writes(Some(0), Some(1))),
            Kind::Unfused => match &self.unfused {
                Some(unfused) => unfused.record(encoder, writes(Some(0), Some(1))),
                // Nothing to run: an empty timed pass.
                None => drop(encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("bench unfused (none)"),
                    timestamp_writes: writes(Some(0), Some(1)),
                })),
            },
            Kind::Copy => {
                let mark = |encoder: &mut wgpu::CommandEncoder, begin, end| {
                    drop(encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("bench copy timestamp"),
                        timestamp_writes: writes(begin, end),
                    }));
                };
                mark(encoder, None, Some(0));
                let (src, dst) = &self.copy;
                encoder.copy_buffer_to_buffer(src, 0, dst, 0, src.size());
                mark(encoder, Some(1), None);
            }
        }
        Ok(())
    }

    /// Bytes one fused step moves: [`Variant::bytes_per_element`] for each element, and with loss
    /// scaling or clipping 16 bytes per partial norm of the scan (8 written, 8 read by `finish`).
    /// The few words of the `amp` buffer every invocation of the update reads (the same ones,
    /// cached) are not counted.
    pub fn bytes(&self) -> u64 {
        self.n * self.variant.bytes_per_element() + 16 * self.optimizer.scan_partials()
    }

    /// Bytes one copy moves, half read and half written: `n * bytes_per_element` (rounded up to
    /// the copy alignment).
    pub fn copy_bytes(&self) -> u64 {
        2 * self.copy.0.size()
    }

    /// Bytes one step of the ceiling kernel moves: the update's arrays, once each.
    pub fn ceiling_bytes(&self) -> u64 {
        self.n * self.variant.update_bytes_per_element()
    }

    /// With loss scaling: the steps the device skipped so far for a non-finite gradient (a
    /// skipped step moves fewer bytes than the figures count). `None` without loss scaling or
    /// clipping.
    ///
    /// # Errors
    /// As [`Optimizer::amp_status`].
    pub fn skipped_steps(&self) -> Result<Option<u32>> {
        Ok(self.optimizer.amp_status()?.map(|s| s.skipped_steps))
    }
}

/// Bytes a [`Setup`] of `n` elements of `variant` takes, about: on the host, the random parameter
/// and gradient (and AdaGrad's ones for the unfused baseline), 12 bytes per element; on the
/// device, the optimizer's and the ceiling's arrays (`2 + states` each, and the master copy, in
/// their formats), the copy's `bytes_per_element` and the unfused baseline's seven arrays (f32
/// configurations only). `None` past 64 bits.
fn memory_needed(variant: &Variant, n: u64, device_type: wgpu::DeviceType) -> Option<u64> {
    let host = 12;
    let Storage { param, grad, state, master, .. } = variant.storage;
    let arrays = param.element_bytes()
        + grad.element_bytes()
        + state.element_bytes() * variant.states() as u64
        + if master { 4 } else { 0 };
    let unfused = if variant.storage == Storage::F32 { 7 * 4 } else { 0 };
    let device = 2 * arrays + variant.bytes_per_element() + unfused;
    // A CPU adapter's device memory is host memory too.
    let per_element = if device_type == wgpu::DeviceType::Cpu { host + device } else { host };
    n.checked_mul(per_element)
}

/// Refuses `n` elements of `variant` before anything is allocated; returns the bytes of each copy
/// buffer. The byte counts are checked: unchecked, 2^62 elements of Adam came to 0 bytes, passed
/// the size check and asked the host for 2^62 values (a capacity-overflow panic).
fn check_size(ctx: &GpuContext, variant: &Variant, n: u64) -> Result<u64> {
    let refuse = |message: String| Err(Error::Config { what: "bench", message });
    let what = || format!("{} at {n} elements", variant.name);
    if n == 0 {
        return refuse(format!("{}: nothing to measure", what()));
    }
    let max = ctx.limits().max_buffer_size;
    let Some(bytes) = n.checked_mul(variant.bytes_per_element()) else {
        return refuse(format!(
            "{}: {} bytes per element overflow a 64-bit byte count (this adapter's largest buffer is {})",
            what(),
            variant.bytes_per_element(),
            bytes_text(max)
        ));
    };
    // The copy moves the update's bytes, half read and half written: its buffers are the largest.
    let copy_bytes = (bytes / 2).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
    if copy_bytes > max {
        return Err(Error::OutOfBounds {
            what: format!("bench of {}", what()),
            offset: 0,
            end: copy_bytes / 4,
            buffer_len: max / 4,
        });
    }
    let need = memory_needed(variant, n, ctx.adapter_info().device_type).unwrap_or(u64::MAX);
    match available_memory() {
        Some(free) if need > free / 10 * 8 => {
            refuse(format!("{} needs about {} of memory, {} is available", what(), bytes_text(need), bytes_text(free)))
        }
        _ => Ok(copy_bytes),
    }
}

/// Tensors of `lens` in `layout`, holding `param` and `grad` (cut in order) stored in the
/// formats `(param, grad)`, in buffers that `STORAGE | COPY_DST | COPY_SRC` usage allows an engine
/// to write and read. An f32 arena is a [`ParamArena`]; an arena with a 2-byte format is one
/// buffer per role of whole words holding the tensors back to back, as a [`ParamArena`] lays them
/// out (the same offsets, in elements of each format).
fn tensors_in(
    ctx: &GpuContext,
    layout: Layout,
    lens: &[u64],
    (param_format, grad_format): (Format, Format),
    param: &[f32],
    grad: &[f32],
) -> Result<Vec<ParamBinding>> {
    let f32_only = param_format == Format::F32 && grad_format == Format::F32;
    if layout == Layout::Arena && f32_only {
        let arena = ParamArena::new(ctx, lens)?;
        ctx.queue.write_buffer(arena.params(), 0, bytemuck::cast_slice(param));
        ctx.queue.write_buffer(arena.grads(), 0, bytemuck::cast_slice(grad));
        return Ok(arena.bindings());
    }
    let buffer = |format: Format, values: &[f32]| {
        let mut bytes = format.encode_all(values);
        bytes.resize(bytes.len().next_multiple_of(4).max(4), 0);
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bench tensor"),
            size: bytes.len() as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        ctx.queue.write_buffer(&buffer, 0, &bytes);
        buffer
    };
    if layout == Layout::Arena {
        let (params, grads) = (buffer(param_format, param), buffer(grad_format, grad));
        let mut start = 0;
        let mut bindings = Vec::with_capacity(lens.len());
        for &len in lens {
            bindings.push(ParamBinding {
                param: params.clone(),
                param_offset: start,
                grad: grads.clone(),
                grad_offset: start,
                len,
            });
            start += len;
        }
        return Ok(bindings);
    }
    let mut start = 0;
    let mut bindings = Vec::with_capacity(lens.len());
    for &len in lens {
        let range = start as usize..(start + len) as usize;
        let (p, g) = (buffer(param_format, &param[range.clone()]), buffer(grad_format, &grad[range]));
        bindings.push(ParamBinding::whole(&p, &g, len));
        start += len;
    }
    Ok(bindings)
}

/// Times steps: GPU time from a query set where the device has `TIMESTAMP_QUERY`, else wall time.
pub struct Timer {
    queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
    period_ns: f64,
}

impl Timer {
    /// A timer for `ctx`'s device: timestamp queries where it has them, else wall time. Its query
    /// set and buffers are made inside error scopes.
    ///
    /// # Errors
    /// [`Error::Wgpu`] if the device cannot make them (out of memory, a lost device).
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let device = &ctx.device;
        let queries = crate::replay::scoped(device, "bench timestamps", || {
            Ok(Self::source_of(ctx).eq("gpu").then(|| {
                let set = device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("bench timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                });
                let buffer = |usage| {
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("bench timestamps"),
                        size: 16,
                        usage,
                        mapped_at_creation: false,
                    })
                };
                let resolve = buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
                let read = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
                (set, resolve, read)
            }))
        })?;
        Ok(Self { queries, period_ns: ctx.queue.get_timestamp_period() as f64 })
    }

    /// What a timer on `ctx`'s device measures, without making one: `"gpu"` or `"wall"`.
    pub fn source_of(ctx: &GpuContext) -> &'static str {
        if ctx.device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            "gpu"
        } else {
            "wall"
        }
    }

    /// `"gpu"` (timestamp queries) or `"wall"`.
    pub fn source(&self) -> &'static str {
        if self.queries.is_some() {
            "gpu"
        } else {
            "wall"
        }
    }

    /// Seconds one step of `kind` takes: recorded, submitted and waited for.
    ///
    /// # Errors
    /// As [`Setup::record`]; [`Error::DeviceLost`] or [`Error::Wgpu`] if the device fails.
    pub fn time(&self, ctx: &GpuContext, setup: &mut Setup, kind: Kind) -> Result<f64> {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        setup.record(kind, &mut encoder, self.queries.as_ref().map(|q| &q.0))?;
        if let Some((set, resolve, read)) = &self.queries {
            encoder.resolve_query_set(set, 0..2, resolve, 0);
            encoder.copy_buffer_to_buffer(resolve, 0, read, 0, 16);
        }
        let start = std::time::Instant::now();
        ctx.queue.submit([encoder.finish()]);
        ctx.wait()?;
        let wall = start.elapsed().as_secs_f64();
        let Some((_, _, read)) = &self.queries else {
            return Ok(wall);
        };
        let (tx, rx) = std::sync::mpsc::channel();
        read.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        ctx.wait()?;
        rx.recv()
            .map_err(|_| Error::DeviceLost("the timestamp readback was never answered".into()))?
            .map_err(|e| Error::Wgpu(e.to_string()))?;
        let ticks: [u64; 2] = {
            let view = read.slice(..).get_mapped_range().map_err(|e| Error::Wgpu(e.to_string()))?;
            let values: &[u64] = bytemuck::cast_slice(&view);
            [values[0], values[1]]
        };
        read.unmap();
        Ok(ticks[1].saturating_sub(ticks[0]) as f64 * self.period_ns * 1e-9)
    }
}

/// What `bench` runs.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Configurations.
    pub variants: Vec<Variant>,
    /// Total elements.
    pub sizes: Vec<u64>,
    /// Tensor counts the total is cut into.
    pub tensors: Vec<usize>,
    /// Where the fused step's tensors live.
    pub layouts: Vec<Layout>,
    /// Steps run before measuring.
    pub warmup: usize,
    /// Steps measured; the median is reported.
    pub reps: usize,
}

impl BenchOptions {
    /// The steps [`run`] takes in all (warm-up and measured, over every configuration, size,
    /// tensor count and layout), refusing counts it cannot run: no measured step (the median of
    /// none is NaN), or a sum or product past 64 bits (`--warmup 18446744073709551615` wrapped to
    /// a handful of steps, measured none and reported NaN).
    ///
    /// # Errors
    /// [`Error::Config`] (`what: "bench"`) naming the counts.
    pub fn check(&self) -> Result<u64> {
        let refuse = |message: String| Error::Config { what: "bench", message };
        if self.reps == 0 {
            return Err(refuse("reps is 0: at least one step must be measured".into()));
        }
        let steps = self
            .warmup
            .checked_add(self.reps)
            .ok_or_else(|| refuse(format!("warmup {} + reps {} overflow", self.warmup, self.reps)))?;
        [self.variants.len(), self.sizes.len(), self.tensors.len(), self.layouts.len()]
            .into_iter()
            .try_fold(steps as u64, |total, count| total.checked_mul(count as u64))
            .ok_or_else(|| {
                refuse(format!(
                    "{steps} steps for each of {} configurations, {} sizes, {} tensor counts and {} layouts overflow",
                    self.variants.len(),
                    self.sizes.len(),
                    self.tensors.len(),
                    self.layouts.len()
                ))
            })
    }
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            variants: variants(),
            sizes: vec![1 << 20, 1 << 22],
            tensors: vec![1, 148],
            layouts: vec![Layout::Arena],
            warmup: 3,
            reps: 10,
        }
    }
}

/// One line of the bench: a configuration at a size, tensor count and layout.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// The adapter's name.
    pub adapter: String,
    /// Its backend.
    pub backend: String,
    /// The configuration's name (see [`variants`]).
    pub optimizer: String,
    /// Elements in all.
    pub n: u64,
    /// Tensors.
    pub tensors: usize,
    /// Where the tensors live: `arena` or `buffers` (see [`Layout`]).
    pub layout: Layout,
    /// Dispatches of one fused step.
    pub dispatches: usize,
    /// Bytes per element the step moves ([`Variant::bytes_per_element`]: with loss scaling or
    /// clipping, the scan's read of the gradient too).
    pub bytes_per_element: u64,
    /// Bytes one fused step moves in all: `n * bytes_per_element` and, with loss scaling or
    /// clipping, 16 per partial norm of the scan ([`Setup::bytes`]).
    pub bytes_per_step: u64,
    /// Bytes per element the ceiling kernel moves: the update's arrays.
    pub ceiling_bytes_per_element: u64,
    /// Bytes of optimizer state per parameter element ([`Variant::state_bytes_per_param`]).
    pub state_bytes_per_param: u64,
    /// The storage formats, as [`Storage::name`] spells them: `f32-f32-f32`, `bf16-bf16-f32-master`,
    /// `bf16-bf16-f32-sr`, `f32-bf16-f32`.
    pub storage: String,
    /// Whether the step runs with loss scaling.
    pub loss_scaling: bool,
    /// Whether the step runs with gradient clipping.
    pub clipping: bool,
    /// `gpu` (timestamp queries) or `wall`.
    pub timer: String,
    /// Median milliseconds per fused step.
    pub ms_per_step: f64,
    /// GB/s of the fused step, by `bytes_per_step`.
    pub gbps: f64,
    /// GB/s of the ceiling kernel on the update's arrays, by `ceiling_bytes_per_element`.
    pub ceiling_gbps: f64,
    /// `gbps / ceiling_gbps`.
    pub ratio: f64,
    /// GB/s of `copy_buffer_to_buffer` moving the same bytes.
    pub copy_gbps: f64,
    /// Median milliseconds per unfused step; `None` (JSON `null`, `n/a` in the table) for an
    /// algorithm the unfused baseline does not cover, and for a step with loss scaling or
    /// clipping (the baseline has neither).
    pub unfused_ms_per_step: Option<f64>,
    /// Dispatches of one unfused step; `None` where there is no unfused baseline.
    pub unfused_dispatches: Option<usize>,
    /// Steps measured.
    pub reps: usize,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => xs[len / 2],
        len => (xs[len / 2 - 1] + xs[len / 2]) / 2.0,
    }
}

/// Measures every variant at every size, tensor count and layout on one device.
///
/// # Errors
/// As [`BenchOptions::check`], [`Timer::new`], [`Setup::with_layout`] and [`Timer::time`].
pub fn run(ctx: &GpuContext, options: &BenchOptions) -> Result<Vec<Record>> {
    let total = options.check()?;
    let timer = Timer::new(ctx)?;
    let bar = progress::bar(total, "bench");
    let mut records = Vec::new();
    for variant in &options.variants {
        for &n in &options.sizes {
            for &tensors in &options.tensors {
                for &layout in &options.layouts {
                    bar.set_message(format!("{} n={n} x{tensors} {}", variant.name, layout.name()));
                    let mut setup = Setup::with_layout(ctx, variant, n, tensors, layout)?;
                    records.push(measure(ctx, &timer, &mut setup, options, &bar)?);
                }
            }
        }
    }
    bar.finish_and_clear();
    Ok(records)
}

/// Times `options.reps` steps of each workload of `setup` after `options.warmup`, taking turns.
/// With loss scaling, refuses a measurement in which the device skipped a step.
fn measure(
    ctx: &GpuContext,
    timer: &Timer,
    setup: &mut Setup,
    options: &BenchOptions,
    bar: &indicatif::ProgressBar,
) -> Result<Record> {
    let info = ctx.adapter_info();
    // Adadelta, ASGD, Rprop and Lion have no unfused baseline, nor has any configuration with
    // loss scaling or clipping or with low-precision storage: nothing to time.
    let unfused_dispatches = Some(setup.dispatches(Kind::Unfused)).filter(|&d| d > 0 && !setup.variant.scans());
    let mut times: [Vec<f64>; 4] = Default::default();
    for rep in 0..options.warmup + options.reps {
        for (k, kind) in Kind::ALL.into_iter().enumerate() {
            if kind == Kind::Unfused && unfused_dispatches.is_none() {
                continue;
            }
            let t = timer.time(ctx, setup, kind)?;
            if rep >= options.warmup {
                times[k].push(t);
            }
        }
        bar.inc(1);
    }
    // A skipped step moves fewer bytes than counted: the gradients are finite, so none may be.
    if let Some(skipped) = setup.skipped_steps()?.filter(|&s| s > 0) {
        return Err(Error::Config {
            what: "bench",
            message: format!(
                "{} at {} elements: the device skipped {skipped} of {} steps for a non-finite gradient, \
                 so the figures would count bytes those steps did not move",
                setup.variant.name,
                setup.n,
                options.warmup + options.reps
            ),
        });
    }
    let [fused, ceiling, copy, unfused] = times.map(median);
    let gb = setup.bytes() as f64 / 1e9;
    let ceiling_gb = setup.ceiling_bytes() as f64 / 1e9;
    Ok(Record {
        adapter: info.name.clone(),
        backend: backend_name(info.backend),
        optimizer: setup.variant.name.to_string(),
        n: setup.n,
        tensors: setup.tensors,
        layout: setup.layout,
        dispatches: setup.dispatches(Kind::Fused),
        bytes_per_element: setup.variant.bytes_per_element(),
        bytes_per_step: setup.bytes(),
        ceiling_bytes_per_element: setup.variant.update_bytes_per_element(),
        state_bytes_per_param: setup.variant.state_bytes_per_param(),
        storage: setup.variant.storage.name(),
        loss_scaling: setup.variant.loss_scaling.is_some(),
        clipping: setup.variant.clipping.is_some(),
        timer: timer.source().to_string(),
        ms_per_step: fused * 1e3,
        gbps: gb / fused,
        ceiling_gbps: ceiling_gb / ceiling,
        ratio: (gb / fused) / (ceiling_gb / ceiling),
        copy_gbps: setup.copy_bytes() as f64 / 1e9 / copy,
        unfused_ms_per_step: unfused_dispatches.map(|_| unfused * 1e3),
        unfused_dispatches,
        reps: options.reps,
    })
}

/// The records as a text table. `B/el` is the bytes one fused step moves per element (with the
/// scan's partial norms, so not always whole), `state` the bytes of optimizer state per parameter.
pub fn table(records: &[Record]) -> String {
    let mut out = format!(
        "{:<26} {:>10} {:>7} {:>7} {:>5} {:>6} {:>5} {:>10} {:>8} {:>9} {:>6} {:>8} {:>11} {:>6}\n",
        "optimizer",
        "n",
        "tensors",
        "layout",
        "disp",
        "B/el",
        "state",
        "ms/step",
        "GB/s",
        "ceiling",
        "ratio",
        "copy",
        "unfused ms",
        "x"
    );
    for r in records {
        let (unfused, x) = match r.unfused_ms_per_step {
            Some(ms) => (format!("{ms:.3}"), format!("{:.2}", ms / r.ms_per_step)),
            None => ("n/a".to_string(), "n/a".to_string()),
        };
        out += &format!(
            "{:<26} {:>10} {:>7} {:>7} {:>5} {:>6.2} {:>5} {:>10.3} {:>8.2} {:>9.2} {:>6.2} {:>8.2} {:>11} {:>6}\n",
            r.optimizer,
            r.n,
            r.tensors,
            r.layout.name(),
            r.dispatches,
            r.bytes_per_step as f64 / r.n as f64,
            r.state_bytes_per_param,
            r.ms_per_step,
            r.gbps,
            r.ceiling_gbps,
            r.ratio,
            r.copy_gbps,
            unfused,
            x
        );
    }
    out
}
