//! Replays PyTorch's golden cases (`../shared/goldens/README.md` describes the schema) on the GPU
//! or on the CPU reference, and judges them by one tolerance.
//!
//! Tolerance: for each element, `|ours - params_f64| <= 1e-5 * scale`, where `scale` is the
//! largest magnitude that element takes over the run, its initial value included (floor 1e-6); the learning rate of every step
//! within 1e-12 relative. PyTorch's own float32 run stays within 2.5e-6 by this measure.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::algorithm::OptimizerConfig;
use crate::cpu::CpuOptimizer;
use crate::error::{Error, Result};
use crate::optim::{Optimizer, ParamBinding};
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
pub struct GoldenCase {
    /// The case's name.
    pub name: String,
    /// The optimizer's class name and arguments.
    pub optimizer: serde_json::Value,
    /// The scheduler's class name and arguments, or `null`.
    #[serde(default)]
    pub scheduler: serde_json::Value,
    /// Steps `T`.
    pub steps: usize,
    /// The initial parameter (n float32).
    pub init: Vec<f32>,
    /// The gradient of each step (T rows of n float32).
    pub grads: Vec<Vec<f32>>,
    /// The learning rate read before each step (T float64).
    pub lr: Vec<f64>,
    /// The parameter after each step, computed in float64 (T rows of n).
    pub params_f64: Vec<Vec<f64>>,
    /// The metric passed to ReduceLROnPlateau after each step.
    #[serde(default)]
    pub losses: Option<Vec<f64>>,
}

impl GoldenCase {
    /// Reads and checks a case file: every row must have the lengths `steps` and `init` imply.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, [`Error::Parse`] if it is not a valid case
    /// (bad JSON, a missing key, a row of the wrong length).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
        let parse = |message: String| Error::Parse { path: path.into(), message };
        let case: Self = serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?;
        let (t, n) = (case.steps, case.init.len());
        let expect = |what: String, expected: usize, got: usize| {
            if expected == got {
                Ok(())
            } else {
                Err(parse(Error::LengthMismatch { what, expected, got }.to_string()))
            }
        };
        expect("grads".into(), t, case.grads.len())?;
        expect("lr".into(), t, case.lr.len())?;
        expect("params_f64".into(), t, case.params_f64.len())?;
        for (i, row) in case.grads.iter().enumerate() {
            expect(format!("grads[{i}]"), n, row.len())?;
        }
        for (i, row) in case.params_f64.iter().enumerate() {
            expect(format!("params_f64[{i}]"), n, row.len())?;
        }
        if let Some(losses) = &case.losses {
            expect("losses".into(), t, losses.len())?;
        }
        Ok(case)
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
        out.push((scheduler.lr(t as u64), scheduler.momentum(t as u64)));
        if let Some(losses) = &case.losses {
            scheduler.observe(losses[t]);
        }
    }
    Ok(out)
}

/// Runs a case and judges it.
///
/// # Errors
/// Bad input: [`Error::UnknownOptimizer`], [`Error::Config`], [`Error::InvalidHyperparameter`],
/// [`Error::UnsupportedScheduler`]; or a device failure on the GPU.
pub fn run_case(case: &GoldenCase, target: Target<'_>) -> Result<CaseReport> {
    let config = OptimizerConfig::from_json(&case.optimizer)?;
    let (trajectory, plan) = match target {
        Target::Cpu => {
            let plan = plan(case, &config)?;
            (run_cpu(case, &config, &plan)?, plan)
        }
        Target::Gpu(ctx) => run_gpu(ctx, case, &config)?,
    };
    Ok(judge(case, &plan, &trajectory, matches!(target, Target::Gpu(_))))
}

fn run_cpu(case: &GoldenCase, config: &OptimizerConfig, plan: &[(f64, Option<f64>)]) -> Result<Vec<Vec<f64>>> {
    let mut opt = CpuOptimizer::new(config.clone(), case.init.iter().map(|&x| x as f64).collect())?;
    let mut out = Vec::with_capacity(case.steps);
    for (grad, &(lr, momentum)) in case.grads.iter().zip(plan) {
        opt.set_lr(lr);
        opt.set_momentum(momentum);
        opt.step(&grad.iter().map(|&g| g as f64).collect::<Vec<_>>())?;
        out.push(opt.param().to_vec());
    }
    Ok(out)
}

/// Runs the case through the optimizer's own schedule handling; returns the parameters and the
/// (lr, momentum) the optimizer used at each step.
#[allow(clippy::type_complexity)]
fn run_gpu(
    ctx: &GpuContext,
    case: &GoldenCase,
    config: &OptimizerConfig,
) -> Result<(Vec<Vec<f64>>, Vec<(f64, Option<f64>)>)> {
    use wgpu::util::DeviceExt;
    let n = case.init.len() as u64;
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    // wgpu refuses empty buffers; a zero-length case still gets one element of room.
    let room = |data: &[f32]| if data.is_empty() { vec![0.0f32] } else { data.to_vec() };
    let param = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("replay param"),
        contents: bytemuck::cast_slice(&room(&case.init)),
        usage,
    });
    let grad = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("replay grad"),
        size: n.max(1) * 4,
        usage,
        mapped_at_creation: false,
    });
    let history = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("replay history"),
        size: (n * case.steps as u64).max(1) * 4,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut opt = Optimizer::new(ctx, config.clone())?;
    let group = opt.default_group();
    opt.add_params(group, &[ParamBinding::whole(&param, &grad, n)])?;
    if let Some(scheduler) = scheduler(case, config)? {
        opt.set_schedule(group, scheduler)?;
    }
    let mut used = Vec::with_capacity(case.steps);
    for (t, row) in case.grads.iter().enumerate() {
        if n > 0 {
            ctx.queue.write_buffer(&grad, 0, bytemuck::cast_slice(row));
        }
        used.push((opt.lr(group)?, opt.momentum(group)?));
        opt.step()?;
        if let Some(losses) = &case.losses {
            opt.observe(losses[t]);
        }
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&param, 0, &history, t as u64 * n * 4, n * 4);
        ctx.queue.submit([encoder.finish()]);
    }
    let flat = crate::readback::read_f32(ctx, &history, 0, n * case.steps as u64)?;
    let rows = flat.chunks(n.max(1) as usize).take(case.steps).map(|row| row.iter().map(|&x| x as f64).collect());
    Ok((rows.collect(), used))
}

fn judge(case: &GoldenCase, plan: &[(f64, Option<f64>)], ours: &[Vec<f64>], gpu: bool) -> CaseReport {
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
    }
}

/// Loads and runs one case file.
///
/// # Errors
/// As [`GoldenCase::load`] and [`run_case`].
pub fn replay_file(path: &Path, target: Target<'_>) -> Result<CaseReport> {
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
