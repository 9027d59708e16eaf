//! Replays PyTorch's golden cases (`../shared/goldens/README.md` describes the schema) on the GPU
//! or on the CPU reference, and judges them by one tolerance.
//!
//! Tolerance: for each element, `|ours - params_f64| <= 1e-5 * scale`, where `scale` is the
//! largest magnitude that element takes over the run, its initial value included (floor 1e-6); the learning rate of every step
//! within 1e-12 relative. PyTorch's own float32 run stays within 2.5e-6 by this measure.
//!
//! Case files are JSON as Python's `json.dump` writes it: besides strict JSON, the bare tokens
//! `NaN`, `Infinity` and `-Infinity` are read as floats ([`crate::pyjson`]), so that an optimizer
//! or scheduler argument written as `"lr": NaN` is refused by the check that names it
//! (`Invalid learning rate: nan`), not by the parser. A key repeated in any object is refused.

pub mod amp;

use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::algorithm::{check_non_negative, OptimizerConfig};
use crate::cpu::CpuOptimizer;
use crate::error::{py_float, Error, Result};
use crate::optim::{Optimizer, ParamBinding};
use crate::pyjson::{self, Float};
use crate::schedule::{self, LrScheduler};
use crate::GpuContext;

/// Relative tolerance on parameters, against each element's scale.
pub const PARAM_RTOL: f64 = 1e-5;
/// The smallest scale an element is judged against.
pub const SCALE_FLOOR: f64 = 1e-6;
/// Relative tolerance on the learning rate.
pub const LR_RTOL: f64 = 1e-12;

/// One golden case, as read from its JSON file.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "CaseFile")]
pub struct GoldenCase {
    /// The case's name.
    pub name: String,
    /// The optimizer's class name and arguments.
    pub optimizer: serde_json::Value,
    /// The scheduler's class name and arguments, or `null`.
    pub scheduler: serde_json::Value,
    /// Steps `T`.
    pub steps: usize,
    /// The initial parameter (n float32).
    pub init: Vec<f32>,
    /// The gradient of each step (T rows of n float32); `None` (JSON `null`) where the step has
    /// no gradient (PyTorch's `p.grad = None`: the parameter and its state sit the step out).
    pub grads: Vec<Option<Vec<f32>>>,
    /// The learning rate read before each step (T float64).
    pub lr: Vec<f64>,
    /// The parameter after each step, computed in float64 (T rows of n).
    pub params_f64: Vec<Vec<f64>>,
    /// The metric passed to ReduceLROnPlateau after each step.
    pub losses: Option<Vec<f64>>,
}

/// A case file as the schema (`../shared/goldens/README.md`) writes it: every documented key and
/// no other, so that a misspelt key (`"schedular"`) is an error instead of a case that quietly runs
/// without it. The keys replay does not use are read past and dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "the keys replay does not use are fields only so that they are not unknown")]
struct CaseFile {
    name: String,
    #[serde(deserialize_with = "pyjson::unique_keys")]
    optimizer: serde_json::Value,
    #[serde(default, deserialize_with = "pyjson::unique_keys")]
    scheduler: serde_json::Value,
    steps: usize,
    init: Vec<Float>,
    grads: Vec<Option<Vec<Float>>>,
    lr: Vec<Float>,
    params_f64: Vec<Vec<Float>>,
    #[serde(default)]
    losses: Option<Vec<Float>>,
    // Documented, not used here: PyTorch's float32 run, the package that made the case, a note
    // for readers, a matrix shape (elementwise kernels do not depend on it), and the extra
    // trajectories of Schedule-Free and Muon (optimizers replay does not run).
    #[serde(default)]
    params: IgnoredAny,
    #[serde(default)]
    reference: IgnoredAny,
    #[serde(default)]
    note: IgnoredAny,
    #[serde(default)]
    shape: IgnoredAny,
    #[serde(default)]
    eval_params: IgnoredAny,
    #[serde(default)]
    eval_params_f64: IgnoredAny,
    #[serde(default)]
    params_bf16_ns: IgnoredAny,
}

impl From<CaseFile> for GoldenCase {
    fn from(f: CaseFile) -> Self {
        Self {
            name: f.name,
            optimizer: f.optimizer,
            scheduler: f.scheduler,
            steps: f.steps,
            init: floats(f.init),
            grads: f.grads.into_iter().map(|row| row.map(floats)).collect(),
            lr: floats(f.lr),
            params_f64: rows(f.params_f64),
            losses: f.losses.map(floats),
        }
    }
}

/// Parses JSON text as [`crate::pyjson::parse`] does: like `serde_json::from_str::<Value>`,
/// except that Python's `NaN`, `Infinity` and `-Infinity` are read (as markers that the configs
/// read as floats) and an object that repeats a key is an error naming the key (and where it is),
/// not its last value.
///
/// # Errors
/// serde_json's error for text that is not JSON, or that repeats a key.
pub fn parse_unique_keys(text: &str) -> serde_json::Result<serde_json::Value> {
    pyjson::parse(text)
}

/// Rows of floats as read from a case file: numbers or Python's tokens.
fn floats<T: From<Float>>(row: Vec<Float>) -> Vec<T> {
    row.into_iter().map(T::from).collect()
}

fn rows<T: From<Float>>(rows: Vec<Vec<Float>>) -> Vec<Vec<T>> {
    rows.into_iter().map(floats).collect()
}

impl GoldenCase {
    /// Reads and checks a case file (see [`GoldenCase::check`]).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, [`Error::Parse`] if it is not a valid case
    /// (bad JSON, a missing, unknown or repeated key, an empty case, a row of the wrong length).
    /// Python's `NaN`, `Infinity` and `-Infinity` are read wherever a float may stand (see the
    /// module docs); [`run_case`] then refuses them in the optimizer's and scheduler's arguments.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
        let parse = |message: String| Error::Parse { path: path.into(), message };
        let case: Self = pyjson::from_str(&text).map_err(|e| parse(e.to_string()))?;
        case.check().map_err(|e| parse(e.to_string()))?;
        Ok(case)
    }

    /// Checks that the case has something to compare (a step and an element: an empty case
    /// would pass having checked nothing) and that every row has the length `steps` and `init`
    /// imply.
    ///
    /// # Errors
    /// [`Error::Config`] (`what: "case"`) for no steps or no elements, [`Error::LengthMismatch`]
    /// naming the first row of the wrong length.
    pub fn check(&self) -> Result<()> {
        let (t, n) = (self.steps, self.init.len());
        let empty = |message: &str| Err(Error::Config { what: "case", message: message.into() });
        if t == 0 {
            return empty("\"steps\" is 0: a case needs at least one step to compare");
        }
        if n == 0 {
            return empty("\"init\" is empty: a case needs at least one element to compare");
        }
        let expect = |what: String, expected: usize, got: usize| {
            if expected == got {
                Ok(())
            } else {
                Err(Error::LengthMismatch { what, expected, got })
            }
        };
        expect("grads".into(), t, self.grads.len())?;
        expect("lr".into(), t, self.lr.len())?;
        expect("params_f64".into(), t, self.params_f64.len())?;
        for (i, row) in self.grads.iter().enumerate() {
            if let Some(row) = row {
                expect(format!("grads[{i}]"), n, row.len())?;
            }
        }
        for (i, row) in self.params_f64.iter().enumerate() {
            expect(format!("params_f64[{i}]"), n, row.len())?;
        }
        if let Some(losses) = &self.losses {
            expect("losses".into(), t, losses.len())?;
        }
        Ok(())
    }
}

/// Where a case runs.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// The GPU kernels, on this device.
    Gpu(&'a GpuContext),
    /// The f64 CPU reference.
    Cpu,
}

/// The worst element of a run, against the tolerance.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Worst {
    /// Step (from 0) where it happened.
    pub step: usize,
    /// Element index.
    pub index: usize,
    /// Our value.
    pub ours: f64,
    /// PyTorch's float64 value.
    pub reference: f64,
    /// `|ours - reference| / (1e-5 * scale)`: at most 1 passes.
    pub ratio: f64,
}

/// The verdict on one case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseReport {
    /// The case's name.
    pub name: String,
    /// `gpu` or `cpu`.
    pub target: String,
    /// Whether every parameter and learning rate was within tolerance.
    pub passed: bool,
    /// The worst parameter element.
    pub worst: Worst,
    /// The largest relative learning-rate error, and its step.
    pub worst_lr: (f64, usize),
    /// What else disagreed (mixed-precision cases: the scale, a skipped step, the norm), if
    /// anything: the first such step and value.
    pub mismatch: Option<String>,
}

/// The case's scheduler, built on the optimizer's lr (`None` for `"scheduler": null`).
fn scheduler(case: &GoldenCase, config: &OptimizerConfig) -> Result<Option<LrScheduler>> {
    if case.scheduler.is_null() {
        return Ok(None);
    }
    let scheduler = schedule::from_json(&case.scheduler, config.algorithm().lr())?;
    if scheduler.as_plateau().is_some() && case.losses.is_none() {
        return Err(Error::Config {
            what: "scheduler",
            message: "ReduceLROnPlateau needs the case's \"losses\" (one metric per step)".into(),
        });
    }
    Ok(Some(scheduler))
}

/// The learning rate (and momentum, if cycled) of each step, as PyTorch's loop sets them: read
/// before step t, with the metric of step t reported after it.
fn plan(case: &GoldenCase, config: &OptimizerConfig) -> Result<Vec<(f64, Option<f64>)>> {
    let Some(mut scheduler) = scheduler(case, config)? else {
        return Ok(vec![(config.algorithm().lr(), None); case.steps]);
    };
    let mut out = Vec::with_capacity(case.steps);
    for t in 0..case.steps {
        out.push((scheduler.lr(t as u64)?, scheduler.momentum(t as u64)?));
        if let Some(losses) = &case.losses {
            scheduler.observe_at(t as u64 + 1, losses[t]);
        }
    }
    Ok(out)
}

/// Checks the lr and momentum of every step of the plan as the GPU optimizer checks its own: the
/// lr finite and non-negative (what [`Optimizer::record`] refuses), a cycled momentum (or beta1)
/// only on an algorithm that has one (what [`Optimizer::set_schedule`] refuses) and in
/// `[0, 1)` (what [`Optimizer::set_momentum`] refuses). Done for both targets before anything
/// runs, so that the CPU reference, which checks none of these, gives the GPU's answer, and a
/// schedule that drives beta1 past 1 is refused on either rather than run.
fn check_plan(config: &OptimizerConfig, plan: &[(f64, Option<f64>)]) -> Result<()> {
    let cycled = plan.iter().any(|(_, momentum)| momentum.is_some());
    if cycled && config.algorithm().momentum().is_none() {
        return Err(Error::invalid(
            "cycle_momentum",
            format!(
                "the schedule cycles the momentum (cycle_momentum), but {} has none to cycle: turn \
                 cycle_momentum off",
                config.name()
            ),
        ));
    }
    for (t, &(lr, momentum)) in plan.iter().enumerate() {
        let at_step = |e: Error| Error::invalid("lr", format!("{e} (the schedule's, at step {t})"));
        check_non_negative("lr", "Invalid learning rate", lr).map_err(at_step)?;
        if let Some(m) = momentum.filter(|m| !(0.0..1.0).contains(m)) {
            return Err(Error::invalid(
                "momentum",
                format!("Invalid momentum value: {} (the schedule's, at step {t}; it must be in [0, 1))", py_float(m)),
            ));
        }
    }
    Ok(())
}

/// Runs a case and judges it.
///
/// # Errors
/// Bad input: [`Error::Config`] or [`Error::LengthMismatch`] (see [`GoldenCase::check`]),
/// [`Error::UnknownOptimizer`], [`Error::InvalidHyperparameter`] (also for a schedule's lr or
/// momentum out of range at any step, checked before either target runs), [`Error::UnsupportedScheduler`]; or a
/// device failure on the GPU.
pub fn run_case(case: &GoldenCase, target: Target<'_>) -> Result<CaseReport> {
    case.check()?;
    let config = OptimizerConfig::from_json(&case.optimizer)?;
    let plan = plan(case, &config)?;
    check_plan(&config, &plan)?;
    let (trajectory, plan) = match target {
        Target::Cpu => (run_cpu(case, &config, &plan)?, plan),
        Target::Gpu(ctx) => run_gpu(ctx, case, &config)?,
    };
    Ok(judge(case, &plan, &trajectory, matches!(target, Target::Gpu(_))))
}

fn run_cpu(case: &GoldenCase, config: &OptimizerConfig, plan: &[(f64, Option<f64>)]) -> Result<Vec<Vec<f64>>> {
    // A schedule that cycles the momentum sets it in the config first, as `set_schedule` does.
    let config = match plan.first() {
        Some(&(_, Some(first))) => config.for_cycled_momentum(first),
        _ => config.clone(),
    };
    let mut opt = CpuOptimizer::new(config, case.init.iter().map(|&x| x as f64).collect())?;
    let mut out = Vec::with_capacity(case.steps);
    for (grad, &(lr, momentum)) in case.grads.iter().zip(plan) {
        opt.set_lr(lr);
        opt.set_momentum(momentum);
        // A step without a gradient leaves the tensor alone, its step count included.
        if let Some(grad) = grad {
            opt.step(&grad.iter().map(|&g| g as f64).collect::<Vec<_>>())?;
        }
        out.push(opt.param().to_vec());
    }
    Ok(out)
}

/// Runs `f` inside an out-of-memory and a validation error scope and returns what they caught as
/// [`Error::Wgpu`] after `what: `, out of memory first (the validation errors that follow it only
/// say that a buffer is invalid). Outside a scope, a buffer wgpu cannot create reaches the
/// uncaptured-error handler (wgpu's default panics; a [`GpuContext`]'s own prints) and the caller
/// carries on with an invalid buffer. Shared with the tools; the optimizer has its own.
pub(crate) fn scoped<T>(device: &wgpu::Device, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let out_of_memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let invalid = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let value = f();
    let invalid = pollster::block_on(invalid.pop());
    let out_of_memory = pollster::block_on(out_of_memory.pop());
    match (out_of_memory, invalid) {
        (Some(error), _) => {
            let cause = std::error::Error::source(&error).map(|s| format!(" ({s})")).unwrap_or_default();
            Err(Error::Wgpu(format!("{what}: out of memory{cause}")))
        }
        (None, Some(error)) => Err(Error::Wgpu(format!("{what}: {error}"))),
        (None, None) => value,
    }
}

/// A buffer of `usage` holding `data` (at least 4 bytes). Unlike wgpu's `create_buffer_init`,
/// which panics (`expect`) when the buffer it maps could not be created, a failure comes back as
/// [`Error::Wgpu`]; call it within [`scoped`] to hear wgpu's reason.
pub(crate) fn buffer_init(
    device: &wgpu::Device,
    label: &str,
    data: &[u8],
    usage: wgpu::BufferUsages,
) -> Result<wgpu::Buffer> {
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (data.len() as u64).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT).max(wgpu::COPY_BUFFER_ALIGNMENT),
        usage,
        mapped_at_creation: true,
    });
    buffer
        .get_mapped_range_mut(..)
        .map_err(|e| Error::Wgpu(format!("{label}: {e}")))?
        .slice(..data.len())
        .copy_from_slice(data);
    buffer.unmap();
    Ok(buffer)
}

/// Runs the case through the optimizer's own schedule handling; returns the parameters and the
/// (lr, momentum) the optimizer used at each step.
#[allow(clippy::type_complexity)]
fn run_gpu(
    ctx: &GpuContext,
    case: &GoldenCase,
    config: &OptimizerConfig,
) -> Result<(Vec<Vec<f64>>, Vec<(f64, Option<f64>)>)> {
    let device = &ctx.device;
    let n = case.init.len() as u64;
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let buffer = |label, size, usage| {
        device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
    };
    // A long case's history can pass the device's limits; a size that overflows is refused by wgpu.
    let history_bytes = n.saturating_mul(case.steps as u64).saturating_mul(4);
    let (param, grad, history) = scoped(device, "replay buffers", || {
        Ok((
            buffer_init(device, "replay param", bytemuck::cast_slice(&case.init), usage)?,
            buffer("replay grad", n * 4, usage),
            buffer("replay history", history_bytes, wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC),
        ))
    })?;
    let mut opt = Optimizer::new(ctx, config.clone())?;
    let group = opt.default_group();
    // The schedule before the tensor, as PyTorch builds its scheduler before the first step: one
    // that cycles a momentum-0 SGD's momentum gives it its buffer, laid out at registration.
    if let Some(scheduler) = scheduler(case, config)? {
        opt.set_schedule(group, scheduler)?;
    }
    opt.add_params(group, &[ParamBinding::whole(&param, &grad, n)])?;
    let mut used = Vec::with_capacity(case.steps);
    for (t, row) in case.grads.iter().enumerate() {
        // A null row: the tensor has no gradient this step (the step still counts for the schedule).
        opt.set_has_grad(0, row.is_some())?;
        if let Some(row) = row {
            ctx.queue.write_buffer(&grad, 0, bytemuck::cast_slice(row));
        }
        used.push((opt.lr(group)?, opt.momentum(group)?));
        opt.step()?;
        if let Some(losses) = &case.losses {
            opt.observe(losses[t]);
        }
        let mut encoder = device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&param, 0, &history, t as u64 * n * 4, n * 4);
        ctx.queue.submit([encoder.finish()]);
    }
    let flat = crate::readback::read_f32(ctx, &history, 0, n * case.steps as u64)?;
    let rows = flat.chunks(n as usize).take(case.steps).map(|row| row.iter().map(|&x| x as f64).collect());
    Ok((rows.collect(), used))
}

pub(crate) fn judge(case: &GoldenCase, plan: &[(f64, Option<f64>)], ours: &[Vec<f64>], gpu: bool) -> CaseReport {
    let n = case.init.len();
    let scale: Vec<f64> =
        (0..n).map(|i| case.params_f64.iter().map(|row| row[i].abs()).fold(SCALE_FLOOR, f64::max)).collect();
    let mut worst = Worst::default();
    for (step, (row, reference)) in ours.iter().zip(&case.params_f64).enumerate() {
        for (index, (&a, &b)) in row.iter().zip(reference).enumerate() {
            let ratio = (a - b).abs() / (PARAM_RTOL * scale[index]);
            // NaN compares false, so a NaN result becomes the worst element and fails.
            if ratio > worst.ratio || ratio.is_nan() && !worst.ratio.is_nan() {
                worst = Worst { step, index, ours: a, reference: b, ratio };
            }
        }
    }
    let mut worst_lr = (0.0, 0);
    for (step, (&(lr, _), &reference)) in plan.iter().zip(&case.lr).enumerate() {
        let error = if lr == reference { 0.0 } else { (lr - reference).abs() / reference.abs() };
        if error > worst_lr.0 || error.is_nan() && !worst_lr.0.is_nan() {
            worst_lr = (error, step);
        }
    }
    CaseReport {
        name: case.name.clone(),
        target: if gpu { "gpu" } else { "cpu" }.into(),
        passed: worst.ratio <= 1.0 && worst_lr.0 <= LR_RTOL,
        worst,
        worst_lr,
        mismatch: None,
    }
}

/// Loads and runs one case file: a plain case, or a mixed-precision one (a file with a
/// `"scaler"`, see [`amp`]).
///
/// # Errors
/// As [`GoldenCase::load`] and [`run_case`] (or [`amp::AmpCase::load`] and [`amp::run_amp_case`]).
pub fn replay_file(path: &Path, target: Target<'_>) -> Result<CaseReport> {
    if amp::is_amp_case(path)? {
        return amp::run_amp_case(&amp::AmpCase::load(path)?, target);
    }
    run_case(&GoldenCase::load(path)?, target)
}

/// The golden cases bundled with the crate's tests (`tests/data/*.json`), sorted by name.
pub fn bundled_cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    paths
}
