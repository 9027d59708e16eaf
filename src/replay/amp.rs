//! Mixed-precision golden cases (`tests/data/amp_*.json`, schema in `tests/data/README.md`,
//! "Mixed-precision cases"): PyTorch's loop of `GradScaler` + `unscale_` + `clip_grad_norm_` +
//! a fused optimizer over several tensors, with non-finite gradients injected, EMA weights, and
//! bf16 parameters with an f32 master copy. Replayed on the GPU (loss scaling and clipping on the
//! device) or on the CPU mirror (`cpu::CpuAmp`), and judged against PyTorch's float32 run: every
//! step's scale, skipped flag and growth tracker exactly, its total norm within 1e-5 relative,
//! and the parameters (the master copy, the EMA weights) within the one tolerance.

use std::path::Path;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{floats, CaseReport, Target, Worst, PARAM_RTOL, SCALE_FLOOR};
use crate::algorithm::OptimizerConfig;
use crate::cpu::{CpuAmp, CpuOptimizer};
use crate::error::{Error, Result};
use crate::kernel::{Format, Storage};
use crate::optim::{ClipGradNorm, GradScalerConfig, NormType, Optimizer, ParamBinding};
use crate::pyjson::{self, Float};
use crate::GpuContext;

/// Relative tolerance on the total norm (ours and PyTorch's sum in different orders).
pub const NORM_RTOL: f64 = 1e-5;

/// One mixed-precision case, as read from its file.
#[derive(Clone, Debug)]
pub struct AmpCase {
    /// The case's name.
    pub name: String,
    /// The optimizer's class name and arguments (run fused in PyTorch).
    pub optimizer: serde_json::Value,
    /// Steps `T`.
    pub steps: usize,
    /// `GradScaler`'s arguments.
    pub scaler: GradScalerConfig,
    /// `clip_grad_norm_`'s, if the loop clips.
    pub clip: Option<ClipGradNorm>,
    /// The EMA's decay, if the loop keeps one (`AveragedModel` with `get_ema_multi_avg_fn`).
    pub ema_decay: Option<f64>,
    /// Parameters in bfloat16 (else float32).
    pub bf16_params: bool,
    /// Gradients in bfloat16 (else float32).
    pub bf16_grads: bool,
    /// The optimizer steps an f32 master copy of bf16 parameters.
    pub master_weights: bool,
    /// Each tensor's initial parameter.
    pub init: Vec<Vec<f32>>,
    /// Each step's gradients (scaled, as the backward pass leaves them), per tensor.
    pub grads: Vec<Vec<Vec<f32>>>,
    /// The learning rate read before each step.
    pub lr: Vec<f64>,
    /// The scale each step's gradients carry.
    pub scale: Vec<f32>,
    /// Whether each step was skipped.
    pub found_inf: Vec<bool>,
    /// The growth tracker after each step.
    pub growth_tracker: Vec<u32>,
    /// Each step's total norm (with clipping).
    pub total_norm: Option<Vec<f64>>,
    /// The parameters after each step, per tensor.
    pub params: Vec<Vec<Vec<f32>>>,
    /// The master copies after each step.
    pub master: Option<Vec<Vec<Vec<f32>>>>,
    /// The EMA weights after each step.
    pub ema_params: Option<Vec<Vec<Vec<f32>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorFile {
    n: usize,
    #[serde(default)]
    #[allow(dead_code, reason = "elementwise kernels do not depend on the shape")]
    shape: IgnoredAny,
    init: Vec<Float>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmaFile {
    decay: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "the keys replay does not use are fields only so that they are not unknown")]
struct AmpFile {
    name: String,
    #[serde(default)]
    reference: IgnoredAny,
    #[serde(deserialize_with = "pyjson::unique_keys")]
    optimizer: serde_json::Value,
    #[serde(default, deserialize_with = "pyjson::unique_keys")]
    scheduler: serde_json::Value,
    steps: usize,
    scaler: GradScalerConfig,
    #[serde(deserialize_with = "pyjson::unique_keys")]
    clip: serde_json::Value,
    ema: Option<EmaFile>,
    param_dtype: String,
    grad_dtype: String,
    master_weights: bool,
    #[serde(default)]
    injected: IgnoredAny,
    #[serde(default)]
    note: IgnoredAny,
    tensors: Vec<TensorFile>,
    grads: Vec<Vec<Vec<Float>>>,
    lr: Vec<Float>,
    scale: Vec<Float>,
    found_inf: Vec<bool>,
    growth_tracker: Vec<u32>,
    #[serde(default)]
    total_norm: Option<Vec<Float>>,
    params: Vec<Vec<Vec<Float>>>,
    #[serde(default)]
    master: Option<Vec<Vec<Vec<Float>>>>,
    #[serde(default)]
    ema_params: Option<Vec<Vec<Vec<Float>>>>,
}

fn steps_of(rows: Vec<Vec<Vec<Float>>>) -> Vec<Vec<Vec<f32>>> {
    rows.into_iter().map(|step| step.into_iter().map(floats).collect()).collect()
}

fn dtype(name: &str, what: &str) -> Result<bool> {
    match name {
        "float32" => Ok(false),
        "bfloat16" => Ok(true),
        other => Err(Error::Config { what: "case", message: format!("{what} \"{other}\": float32 or bfloat16") }),
    }
}

/// Whether the file at `path` is a mixed-precision case (its object has a `"scaler"`). A file
/// that does not parse is not one: the plain case's loader says what is wrong with it.
///
/// # Errors
/// [`Error::Io`] if it cannot be read.
pub fn is_amp_case(path: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
    Ok(pyjson::parse(&text).is_ok_and(|value| value.get("scaler").is_some()))
}

impl AmpCase {
    /// Reads and checks a case file.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read, [`Error::Parse`] if it is not a valid case (bad JSON,
    /// a missing, unknown or repeated key, rows of the wrong length, an unknown dtype).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
        let parse = |message: String| Error::Parse { path: path.into(), message };
        let f: AmpFile = pyjson::from_str(&text).map_err(|e| parse(e.to_string()))?;
        Self::from_file(f).map_err(|e| parse(e.to_string()))
    }

    fn from_file(f: AmpFile) -> Result<Self> {
        if !f.scheduler.is_null() {
            return Err(Error::Config {
                what: "case",
                message: "mixed-precision cases run without a scheduler".into(),
            });
        }
        let clip = match &f.clip {
            serde_json::Value::Null => None,
            c => {
                let max_norm = c["max_norm"].as_f64();
                let norm_type = match &c["norm_type"] {
                    serde_json::Value::String(s) if s == "inf" => Some(NormType::Inf),
                    v if v.as_f64() == Some(2.0) => Some(NormType::L2),
                    _ => None,
                };
                match (max_norm, norm_type) {
                    (Some(max_norm), Some(norm_type)) => Some(ClipGradNorm { max_norm, norm_type, groups: None }),
                    _ => {
                        return Err(Error::Config {
                            what: "case",
                            message: format!("\"clip\" {c}: needs max_norm and norm_type 2.0 or \"inf\""),
                        })
                    }
                }
            }
        };
        let case = Self {
            name: f.name,
            optimizer: f.optimizer,
            steps: f.steps,
            scaler: f.scaler,
            clip,
            ema_decay: f.ema.map(|e| e.decay),
            bf16_params: dtype(&f.param_dtype, "param_dtype")?,
            bf16_grads: dtype(&f.grad_dtype, "grad_dtype")?,
            master_weights: f.master_weights,
            init: f.tensors.iter().map(|t| t.init.iter().map(|&x| f32::from(x)).collect()).collect(),
            grads: steps_of(f.grads),
            lr: floats(f.lr),
            scale: floats(f.scale),
            found_inf: f.found_inf,
            growth_tracker: f.growth_tracker,
            total_norm: f.total_norm.map(floats),
            params: steps_of(f.params),
            master: f.master.map(steps_of),
            ema_params: f.ema_params.map(steps_of),
        };
        for (k, t) in f.tensors.iter().enumerate() {
            if t.n != case.init[k].len() {
                return Err(Error::LengthMismatch {
                    what: format!("tensors[{k}].init"),
                    expected: t.n,
                    got: case.init[k].len(),
                });
            }
        }
        case.check()?;
        Ok(case)
    }

    /// Every row has the length `steps` and the tensors imply.
    fn check(&self) -> Result<()> {
        let (t, sizes): (usize, Vec<usize>) = (self.steps, self.init.iter().map(Vec::len).collect());
        if t == 0 || sizes.is_empty() || sizes.contains(&0) {
            return Err(Error::Config { what: "case", message: "a case needs steps, tensors and elements".into() });
        }
        let expect = |what: String, expected: usize, got: usize| match expected == got {
            true => Ok(()),
            false => Err(Error::LengthMismatch { what, expected, got }),
        };
        for (what, len) in [
            ("lr", self.lr.len()),
            ("scale", self.scale.len()),
            ("found_inf", self.found_inf.len()),
            ("growth_tracker", self.growth_tracker.len()),
        ] {
            expect(what.into(), t, len)?;
        }
        if let Some(norms) = &self.total_norm {
            expect("total_norm".into(), t, norms.len())?;
        }
        let trajectories = [Some(&self.grads), Some(&self.params), self.master.as_ref(), self.ema_params.as_ref()];
        for (what, rows) in ["grads", "params", "master", "ema_params"].into_iter().zip(trajectories) {
            let Some(rows) = rows else { continue };
            expect(what.into(), t, rows.len())?;
            for (s, row) in rows.iter().enumerate() {
                expect(format!("{what}[{s}]"), sizes.len(), row.len())?;
                for (k, values) in row.iter().enumerate() {
                    expect(format!("{what}[{s}][{k}]"), sizes[k], values.len())?;
                }
            }
        }
        if self.master_weights != self.master.is_some() || self.ema_decay.is_some() != self.ema_params.is_some() {
            return Err(Error::Config {
                what: "case",
                message: "\"master\" goes with master_weights, \"ema_params\" with \"ema\"".into(),
            });
        }
        Ok(())
    }
}

/// What a run produced at one step.
#[derive(Clone, Debug, Default)]
struct Observed {
    params: Vec<Vec<f64>>,
    master: Option<Vec<Vec<f64>>>,
    ema: Option<Vec<Vec<f64>>>,
    /// The scale the step's gradients carried.
    scale: f64,
    found_inf: bool,
    growth_tracker: u32,
    total_norm: f64,
}

/// `x` rounded to bfloat16, to nearest even (a NaN stays a NaN), as an f32.
pub fn round_bf16(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}

/// The spacing of bfloat16 values at `x` (8 significant bits).
fn bf16_ulp(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return 0.0;
    }
    2f64.powi(x.abs().log2().floor() as i32 - 7)
}

/// Runs a mixed-precision case and judges it.
///
/// # Errors
/// Bad input ([`Error::UnknownOptimizer`], [`Error::InvalidHyperparameter`]); on the GPU,
/// [`Error::Unsupported`] for what the optimizer cannot run, or a device failure.
pub fn run_amp_case(case: &AmpCase, target: Target<'_>) -> Result<CaseReport> {
    case.check()?;
    let config = OptimizerConfig::from_json(&case.optimizer)?;
    case.scaler.validate()?;
    if let Some(c) = &case.clip {
        c.validate()?;
    }
    let observed = match target {
        Target::Cpu => run_cpu(case, &config)?,
        Target::Gpu(ctx) => run_gpu(ctx, case, &config)?,
    };
    Ok(judge(case, &config, &observed, matches!(target, Target::Gpu(_))))
}

/// The EMA after a step: the first update copies (`AveragedModel`), later ones move by
/// `1 - decay` toward the weights.
fn ema_step(ema: &mut Option<Vec<Vec<f64>>>, weights: &[Vec<f64>], decay: f64) {
    match ema {
        None => *ema = Some(weights.to_vec()),
        Some(e) => {
            for (e, w) in e.iter_mut().zip(weights) {
                for (e, &w) in e.iter_mut().zip(w) {
                    *e += (1.0 - decay) * (w - *e);
                }
            }
        }
    }
}

fn run_cpu(case: &AmpCase, config: &OptimizerConfig) -> Result<Vec<Observed>> {
    let mut tensors: Vec<CpuOptimizer> = case
        .init
        .iter()
        .map(|init| CpuOptimizer::new(config.clone(), init.iter().map(|&x| f64::from(x)).collect()))
        .collect::<Result<_>>()?;
    let groups = vec![0; tensors.len()];
    let mut amp = CpuAmp::new(Some(case.scaler.clone()), case.clip.clone());
    let mut ema: Option<Vec<Vec<f64>>> = None;
    let mut out = Vec::with_capacity(case.steps);
    for step in &case.grads {
        let scale = amp.scale;
        let grads: Vec<Option<Vec<f64>>> =
            step.iter().map(|g| Some(g.iter().map(|&x| f64::from(x)).collect())).collect();
        amp.step(&mut tensors, &groups, &grads)?;
        // The optimizer's weights (the master copy with bf16 parameters), and the parameters as
        // stored: rounded to f32, then to bf16.
        let weights: Vec<Vec<f64>> = tensors.iter().map(|t| t.param().to_vec()).collect();
        let params: Vec<Vec<f64>> = match case.bf16_params {
            true => weights.iter().map(|w| w.iter().map(|&x| f64::from(round_bf16(x as f32))).collect()).collect(),
            false => weights.clone(),
        };
        if let Some(decay) = case.ema_decay {
            ema_step(&mut ema, &weights, decay);
        }
        out.push(Observed {
            params,
            master: case.master_weights.then(|| weights.clone()),
            ema: ema.clone(),
            scale,
            found_inf: amp.found_inf,
            growth_tracker: amp.growth_tracker,
            total_norm: amp.total_norm,
        });
    }
    Ok(out)
}

fn run_gpu(ctx: &GpuContext, case: &AmpCase, config: &OptimizerConfig) -> Result<Vec<Observed>> {
    let format = |bf16: bool| if bf16 { Format::BF16 } else { Format::F32 };
    let storage = Storage {
        param: format(case.bf16_params),
        grad: format(case.bf16_grads),
        master: case.master_weights,
        ..Storage::F32
    };
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let device = &ctx.device;
    // Buffers in whole words: a bf16 tensor of odd length has a last half-word of padding.
    let bytes = |f: Format, values: &[f32]| {
        let mut b = f.encode_all(values);
        b.resize(b.len().next_multiple_of(4), 0);
        b
    };
    let (params, grads) = super::scoped(device, "replay buffers", || {
        let params: Vec<wgpu::Buffer> = (case.init.iter())
            .map(|init| super::buffer_init(device, "replay param", &bytes(storage.param, init), usage))
            .collect::<Result<_>>()?;
        let grads: Vec<wgpu::Buffer> = (case.init.iter())
            .map(|init| super::buffer_init(device, "replay grad", &bytes(storage.grad, init), usage))
            .collect::<Result<_>>()?;
        Ok((params, grads))
    })?;
    let mut opt = Optimizer::with_storage(ctx, config.clone(), storage)?;
    opt.set_ema(case.ema_decay)?;
    let bindings: Vec<ParamBinding> = (params.iter().zip(&grads).zip(&case.init))
        .map(|((p, g), init)| ParamBinding::whole(p, g, init.len() as u64))
        .collect();
    opt.add_params(opt.default_group(), &bindings)?;
    opt.set_loss_scaling(Some(case.scaler.clone()))?;
    opt.set_grad_clipping(case.clip.clone())?;
    let mut out = Vec::with_capacity(case.steps);
    let mut scale = f64::from(case.scaler.init_scale as f32);
    let wide = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    for step in &case.grads {
        for (buffer, g) in grads.iter().zip(step) {
            ctx.queue.write_buffer(buffer, 0, &bytes(storage.grad, g));
        }
        opt.step()?;
        let status = opt.amp_status()?.ok_or_else(|| Error::Wgpu("loss scaling was set".into()))?;
        let ranges: Vec<(&wgpu::Buffer, u64, u64)> = params.iter().map(|b| (b, 0, b.size() / 4)).collect();
        let words = crate::readback::read_ranges(ctx, &ranges)?;
        let state = |name: &str| -> Result<Option<Vec<Vec<f64>>>> {
            (0..case.init.len())
                .map(|i| Ok(opt.read_state(i, name)?.map(|v| wide(&v))))
                .collect::<Result<Option<Vec<_>>>>()
        };
        out.push(Observed {
            params: (words.iter().zip(&case.init))
                .map(|(w, init)| wide(&storage.param.decode(w, 0, init.len() as u64)))
                .collect(),
            master: state("master")?,
            ema: state("ema")?,
            scale,
            found_inf: status.found_inf,
            growth_tracker: status.growth_tracker,
            total_norm: f64::from(status.total_norm),
        });
        scale = f64::from(status.scale);
    }
    Ok(out)
}

/// The worst element of `ours` against `reference` (per step, per tensor), each element judged
/// against the largest magnitude it takes in the reference (its initial value included).
/// With `bf16`, an element may also be one bfloat16 ulp of the reference off: a master copy a
/// rounding away from PyTorch's may round to the neighbouring bf16 value.
fn worst_of(ours: &[&[Vec<f64>]], reference: &[Vec<Vec<f32>>], init: &[Vec<f32>], bf16: bool, worst: &mut Worst) {
    // Elements are numbered across tensors: tensor k's first is the sum of the sizes before it.
    let mut before = 0;
    for (k, init) in init.iter().enumerate() {
        let scale: Vec<f64> = (0..init.len())
            .map(|i| {
                let start = f64::from(init[i]).abs().max(SCALE_FLOOR);
                reference.iter().map(|step| f64::from(step[k][i]).abs()).fold(start, f64::max)
            })
            .collect();
        for (step, (row, reference)) in ours.iter().zip(reference).enumerate() {
            // A run that produced nothing for this trajectory compares as NaN: a failure.
            let row: &[f64] = row.get(k).map_or(&[], Vec::as_slice);
            for (i, &b) in reference[k].iter().enumerate() {
                let (a, b) = (row.get(i).copied().unwrap_or(f64::NAN), f64::from(b));
                let allowed = if bf16 { (PARAM_RTOL * scale[i]).max(bf16_ulp(b)) } else { PARAM_RTOL * scale[i] };
                let ratio = (a - b).abs() / allowed;
                if ratio > worst.ratio || ratio.is_nan() && !worst.ratio.is_nan() {
                    *worst = Worst { step, index: before + i, ours: a, reference: b, ratio };
                }
            }
        }
        before += init.len();
    }
}

fn judge(case: &AmpCase, config: &OptimizerConfig, ours: &[Observed], gpu: bool) -> CaseReport {
    let mut worst = Worst::default();
    let params: Vec<&[Vec<f64>]> = ours.iter().map(|o| o.params.as_slice()).collect();
    worst_of(&params, &case.params, &case.init, case.bf16_params, &mut worst);
    if let Some(reference) = &case.master {
        let master: Vec<&[Vec<f64>]> = ours.iter().map(|o| o.master.as_deref().unwrap_or(&[])).collect();
        worst_of(&master, reference, &case.init, false, &mut worst);
    }
    if let Some(reference) = &case.ema_params {
        let ema: Vec<&[Vec<f64>]> = ours.iter().map(|o| o.ema.as_deref().unwrap_or(&[])).collect();
        worst_of(&ema, reference, &case.init, false, &mut worst);
    }
    let mut mismatch = None;
    for (t, o) in ours.iter().enumerate() {
        let norm_ok = match case.total_norm.as_ref().map(|n| n[t]) {
            None => true,
            Some(r) if r.is_nan() => o.total_norm.is_nan(),
            Some(r) if r.is_infinite() => o.total_norm == r,
            Some(r) => (o.total_norm - r).abs() <= NORM_RTOL * r.abs(),
        };
        let what = if o.scale != f64::from(case.scale[t]) {
            Some(format!("scale {} vs {}", o.scale, case.scale[t]))
        } else if o.found_inf != case.found_inf[t] {
            Some(format!("skipped {} vs {}", o.found_inf, case.found_inf[t]))
        } else if o.growth_tracker != case.growth_tracker[t] {
            Some(format!("growth tracker {} vs {}", o.growth_tracker, case.growth_tracker[t]))
        } else if !norm_ok {
            Some(format!("total norm {} vs {}", o.total_norm, case.total_norm.as_ref().map_or(0.0, |n| n[t])))
        } else {
            None
        };
        if let Some(what) = what {
            mismatch = Some(format!("step {t}: {what}"));
            break;
        }
    }
    // The rate is the config's at every step (no scheduler).
    let lr = config.algorithm().lr();
    let worst_lr = (case.lr.iter().enumerate())
        .map(|(t, &r)| (if lr == r { 0.0 } else { (lr - r).abs() / r.abs() }, t))
        .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a });
    CaseReport {
        name: case.name.clone(),
        target: if gpu { "gpu" } else { "cpu" }.into(),
        passed: worst.ratio <= 1.0 && worst_lr.0 <= super::LR_RTOL && mismatch.is_none(),
        worst,
        worst_lr,
        mismatch,
    }
}
