//! `wgpu-optim validate`: every kernel and flag combination ([`cases`]) against the f64 CPU
//! reference, on fresh random data, at sizes that stress the dispatch: one element, a size that is
//! no multiple of the workgroup, a grid past 65,535 workgroups in one dimension, and a tensor past
//! the adapter's storage binding limit (where memory allows).
//!
//! The tolerance is [`crate::replay`]'s: `|gpu - cpu| <= PARAM_RTOL * max(scale, SCALE_FLOOR)` per
//! element, where `scale` is the largest magnitude the element takes over the run, its initial
//! value included. State arrays are compared at the end against their largest magnitude.

use serde::Serialize;

use crate::algorithm::OptimizerConfig;
use crate::cpu::CpuOptimizer;
use crate::error::{Error, Result};
use crate::kernel::WORKGROUP_SIZE;
use crate::optim::{Optimizer, ParamBinding};
use crate::readback::read_f32;
use crate::replay::{PARAM_RTOL, SCALE_FLOOR};
use crate::tools::adapters::bytes;
use crate::tools::{available_memory, progress, Rng};
use crate::GpuContext;

pub use super::cases::cases;

/// What `validate` runs.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// Tensor sizes; `None`: [`default_sizes`] for the adapter.
    pub sizes: Option<Vec<u64>>,
    /// Steps per case.
    pub steps: usize,
    /// Seed of the random data (print it to reproduce a failure).
    pub seed: u64,
    /// Only the cases whose name contains this (case-insensitive).
    pub filter: Option<String>,
    /// Every case at every size. Otherwise sizes past [`LARGE`] run one case per kernel: the one
    /// that binds the most state arrays (the dispatch is per kernel; the flags are per element).
    pub full: bool,
}

/// Sizes above this run one case per kernel unless [`ValidateOptions::full`] is set: each such
/// case takes seconds on a CPU adapter.
pub const LARGE: u64 = 1 << 20;

/// For each kernel, the last case of `cases` that uses the most state arrays (the one with the
/// most flags on).
fn widest<'a>(cases: &[(&'a str, OptimizerConfig)]) -> Vec<&'a str> {
    let mut best: Vec<(&str, &str, usize)> = Vec::new();
    for (name, config) in cases {
        let algorithm = config.algorithm();
        let states = algorithm.states_used().iter().filter(|&&u| u).count();
        let kernel = algorithm.kernel().name;
        match best.iter_mut().find(|(k, _, _)| *k == kernel) {
            Some(entry) if states >= entry.2 => *entry = (kernel, name, states),
            Some(_) => {}
            None => best.push((kernel, name, states)),
        }
    }
    best.into_iter().map(|(_, name, _)| name).collect()
}

impl Default for ValidateOptions {
    fn default() -> Self {
        Self { sizes: None, steps: 3, seed: fresh_seed(), filter: None, full: false }
    }
}

/// A seed from the clock: fresh data on every run.
pub fn fresh_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0x5eed)
}

/// The sizes `validate` checks on an adapter: 1, 257, one element past 65,535 (the adapter's
/// per-dimension limit) workgroups of 256, and past the storage binding limit (40M elements, or
/// just past the adapter's limit where that is larger).
pub fn default_sizes(ctx: &GpuContext) -> Vec<u64> {
    let limits = ctx.limits();
    vec![
        1,
        257,
        limits.max_compute_workgroups_per_dimension as u64 * WORKGROUP_SIZE as u64 + 1,
        (40_000_000u64).max(limits.max_storage_buffer_binding_size / 4 + 1_000),
    ]
}

/// A row's verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Verdict {
    /// Within tolerance at every step and in every state array.
    Pass,
    /// Out of tolerance, or wgpu refused the work.
    Fail,
    /// Not run on this adapter; the row's detail says why.
    Skip,
}

/// One case at one size.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The case's name (see [`cases`]).
    pub case: String,
    /// Elements in the tensor.
    pub n: u64,
    /// The verdict.
    pub verdict: Verdict,
    /// The worst error, as a fraction of the tolerance (1.0 is the limit).
    pub worst: f64,
    /// Dispatches per step (more than one past the binding limit).
    pub dispatches: usize,
    /// The worst element (both values), or why the row failed or was skipped.
    pub detail: String,
}

/// Runs every case (or those matching the filter) at every size on one device, one row per case
/// and size. `progress` shows a bar on stderr when it is a terminal.
pub fn run(ctx: &GpuContext, options: &ValidateOptions) -> Vec<Row> {
    let sizes = options.sizes.clone().unwrap_or_else(|| default_sizes(ctx));
    let filter = options.filter.as_deref().map(str::to_lowercase);
    let selected: Vec<_> =
        cases().into_iter().filter(|(name, _)| filter.as_ref().is_none_or(|f| name.contains(f.as_str()))).collect();
    let wide = &widest(&selected);
    let runs = |n: u64| {
        selected.iter().enumerate().filter(move |(_, (name, _))| options.full || n <= LARGE || wide.contains(name))
    };
    let total: usize = sizes.iter().map(|&n| runs(n).count()).sum();
    let bar = progress::bar(total as u64, "validate");
    let mut rows = Vec::new();
    for &n in &sizes {
        for (i, (name, config)) in runs(n) {
            bar.set_message(format!("{name} n={n}"));
            let seed = options.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n;
            rows.push(run_case(ctx, name, config, n, options.steps, seed));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    rows
}

/// One case at one size.
pub fn run_case(ctx: &GpuContext, name: &str, config: &OptimizerConfig, n: u64, steps: usize, seed: u64) -> Row {
    let mut row =
        Row { case: name.to_string(), n, verdict: Verdict::Skip, worst: 0.0, dispatches: 0, detail: String::new() };
    if let Some(reason) = unsupported(ctx, config, n) {
        row.detail = reason;
        return row;
    }
    match compare(ctx, config, n, steps, seed) {
        Ok(c) => {
            row.worst = c.worst;
            row.dispatches = c.dispatches;
            row.verdict = if c.worst <= 1.0 { Verdict::Pass } else { Verdict::Fail };
            row.detail = c.detail;
        }
        Err(e) => {
            row.verdict = Verdict::Fail;
            row.detail = e.to_string();
        }
    }
    row
}

/// Refuses sizes this adapter cannot hold at all: for sizes a user named, where a skipped row
/// would read as a pass (the default sizes past a limit are skipped, saying why).
///
/// # Errors
/// [`Error::Config`] (`what: "validate"`) naming the first such size.
pub fn check_sizes(ctx: &GpuContext, sizes: &[u64]) -> Result<()> {
    let limits = ctx.limits();
    match sizes.iter().find_map(|&n| too_large(&limits, n)) {
        Some(reason) => Err(Error::Config { what: "validate", message: reason }),
        None => Ok(()),
    }
}

/// Why a tensor of `n` f32 cannot exist on a device of these limits: no elements, or past
/// `max_buffer_size`. The byte count is checked: unchecked, 2^62 elements came to 0 bytes, passed,
/// and asked the host for 2^62 values (a capacity-overflow panic).
fn too_large(limits: &wgpu::Limits, n: u64) -> Option<String> {
    if n == 0 {
        return Some("a tensor of 0 elements: nothing to compare".into());
    }
    match n.checked_mul(4) {
        Some(b) if b <= limits.max_buffer_size => None,
        b => Some(format!(
            "a tensor of {n} f32 is {}, past this adapter's max_buffer_size of {}",
            b.map_or_else(|| "2^64 bytes or more".into(), bytes),
            bytes(limits.max_buffer_size)
        )),
    }
}

/// Why this adapter cannot run `config` at `n`, if it cannot: too few storage bindings per
/// stage, a buffer past `max_buffer_size`, or more memory than the machine has free.
fn unsupported(ctx: &GpuContext, config: &OptimizerConfig, n: u64) -> Option<String> {
    let limits = ctx.limits();
    let algorithm = config.algorithm();
    let bindings = 2 + algorithm.kernel().states.len() as u32;
    if bindings > limits.max_storage_buffers_per_shader_stage {
        return Some(format!(
            "the kernel binds {bindings} storage buffers; this adapter allows {} per shader stage",
            limits.max_storage_buffers_per_shader_stage
        ));
    }
    // Checked: unchecked, 2^62 elements came to 0 bytes, passed and asked the host for 2^62
    // values (a capacity-overflow panic).
    if let Some(reason) = too_large(&limits, n) {
        return Some(reason);
    }
    // Device buffers (param, grad, state), and on the host the f64 reference (param, grad,
    // state, scale) with the f32 data and one readback. A CPU adapter's device memory is host
    // memory too. Within max_buffer_size these products stay far below 64 bits.
    let arrays = 2 + algorithm.states_used().iter().filter(|&&u| u).count() as u64;
    let device = arrays * n * 4;
    let host = (arrays + 1) * n * 8 + 3 * n * 4;
    let need = if ctx.adapter_info().device_type == wgpu::DeviceType::Cpu { host + device } else { host };
    match available_memory() {
        Some(free) if need > free / 10 * 8 => {
            Some(format!("needs about {} of host memory, {} is available", bytes(need), bytes(free)))
        }
        _ => None,
    }
}

struct Comparison {
    worst: f64,
    dispatches: usize,
    detail: String,
}

/// Steps `config` on the GPU and the CPU from the same random start with the same gradients;
/// compares the parameters after every step and the state at the end.
fn compare(ctx: &GpuContext, config: &OptimizerConfig, n: u64, steps: usize, seed: u64) -> Result<Comparison> {
    let mut rng = Rng(seed);
    let init = rng.vector(n as usize);
    let device = &ctx.device;
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let buffer = |label| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: n * 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    };
    let (param, grad) = (buffer("validate param"), buffer("validate grad"));
    ctx.queue.write_buffer(&param, 0, bytemuck::cast_slice(&init));
    let mut gpu = Optimizer::new(ctx, config.clone())?;
    gpu.add_params(gpu.default_group(), &[ParamBinding::whole(&param, &grad, n)])?;
    if let Some(e) = pollster::block_on(validation.pop()) {
        return Err(Error::Wgpu(e.to_string()));
    }
    if let Some(e) = pollster::block_on(oom.pop()) {
        return Err(Error::Wgpu(e.to_string()));
    }
    let mut cpu = CpuOptimizer::new(config.clone(), init.iter().map(|&x| x as f64).collect())?;
    drop(init);
    let mut scale: Vec<f64> = cpu.param().iter().map(|x| x.abs()).collect();
    let mut worst = Worst::default();
    for step in 1..=steps {
        let g = rng.vector(n as usize);
        ctx.queue.write_buffer(&grad, 0, bytemuck::cast_slice(&g));
        gpu.step()?;
        cpu.step(&g.iter().map(|&x| x as f64).collect::<Vec<_>>())?;
        drop(g);
        for (s, v) in scale.iter_mut().zip(cpu.param()) {
            *s = s.max(v.abs());
        }
        let ours = read_f32(ctx, &param, 0, n)?;
        worst.update(&format!("param, step {step}"), &ours, cpu.param(), |i| scale[i]);
    }
    for state in gpu.state_names() {
        if let (Some(ours), Some(reference)) = (gpu.read_state(0, state)?, cpu.state(state)) {
            let max = reference.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            worst.update(&format!("{state} after step {steps}"), &ours, reference, |_| max);
        }
    }
    Ok(Comparison { worst: worst.ratio, dispatches: gpu.dispatch_count(), detail: worst.detail })
}

/// The worst element seen so far, as a fraction of the tolerance.
#[derive(Default)]
struct Worst {
    ratio: f64,
    detail: String,
}

impl Worst {
    fn update(&mut self, what: &str, ours: &[f32], reference: &[f64], scale: impl Fn(usize) -> f64) {
        for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
            let ratio = (a as f64 - b).abs() / (PARAM_RTOL * scale(i).max(SCALE_FLOOR));
            // A NaN on either side is always a failure.
            let ratio = if ratio.is_nan() { f64::INFINITY } else { ratio };
            if ratio > self.ratio {
                self.ratio = ratio;
                self.detail = format!("{what}, element {i}: {a:.9e} vs {b:.9e}");
            }
        }
        if ours.len() != reference.len() {
            self.ratio = f64::INFINITY;
            self.detail = format!("{what}: {} elements read back, {} expected", ours.len(), reference.len());
        }
    }
}

/// The rows as a text table, and a last line `N passed, M failed, K skipped`.
pub fn table(rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.case.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<6}{:<width$}  {:>10}  {:>8}  {:>4}  detail\n", "", "case", "n", "worst", "disp");
    for r in rows {
        let verdict = match r.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        };
        let worst = if r.verdict == Verdict::Skip { "-".to_string() } else { format!("{:.3}", r.worst) };
        out += &format!("{verdict:<6}{:<width$}  {:>10}  {worst:>8}  {:>4}  {}\n", r.case, r.n, r.dispatches, r.detail);
    }
    let count = |v: Verdict| rows.iter().filter(|r| r.verdict == v).count();
    out += &format!(
        "{} passed, {} failed, {} skipped (worst: fraction of the tolerance {PARAM_RTOL:e} x scale)\n",
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Skip)
    );
    out
}
