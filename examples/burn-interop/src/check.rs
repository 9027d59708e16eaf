//! The lockstep check (on unless `--no-check`): each run against an f64 AdamW fed the very gradients that run's backward pass
//! produced (read back through burn, not through the buffers the bridge located), compared
//! after every step. Two runs drift apart from step 2 on, since each step's rounding changes the
//! next gradients; this lockstep comparison has no such drift, so it holds each optimizer, and
//! the bridge that hands burn's gradients to ours, to f32 rounding at every step.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use wgpu_optim::cpu::CpuOptimizer;
use wgpu_optim::AdamWConfig;

/// The bound, per element, on |run - mirror| after step k: k * (ATOL + RTOL * |mirror|). The run
/// keeps its parameters in f32 and the mirror in f64: each step rounds the decayed parameter and
/// the updated one to f32 (two half-ulps, 2^-23 * |p| together), and those roundings add up,
/// all the more that `p * (1 - lr * weight_decay)` rounds the same way step after step. RTOL is
/// two ulps per step; ATOL covers the rounding of the update itself (lr = 1e-3 times a few f32
/// ulps of the f32 state) and elements near zero.
pub const ATOL: f64 = 1e-8;
pub const RTOL: f64 = 2.0 * f32::EPSILON as f64;

pub struct Mirror {
    tensors: Vec<CpuOptimizer>,
    /// The worst element seen: (|difference| / bound, step, tensor, element, run, mirror).
    worst: Option<(f64, usize, usize, usize, f32, f64)>,
    max_abs: f64,
}

impl Mirror {
    /// One f64 optimizer per tensor (each keeps its own step count, as PyTorch and both runs
    /// do), starting from the run's initial parameters.
    pub fn new(config: AdamWConfig, initial: &[Vec<f32>]) -> Result<Self, wgpu_optim::Error> {
        let tensors = initial
            .iter()
            .map(|p| CpuOptimizer::new(config.clone().into(), p.iter().map(|&x| f64::from(x)).collect()))
            .collect::<Result<_, _>>()?;
        Ok(Self { tensors, worst: None, max_abs: 0.0 })
    }

    /// A step with this step's gradients; a tensor without one is left alone.
    pub fn step(&mut self, grads: &[Option<Vec<f32>>]) -> Result<(), wgpu_optim::Error> {
        for (opt, grad) in self.tensors.iter_mut().zip(grads) {
            if let Some(g) = grad {
                let g: Vec<f64> = g.iter().map(|&x| f64::from(x)).collect();
                opt.step(&g)?;
            }
        }
        Ok(())
    }

    /// Compares the run's parameters after `step` (1-based) with the mirror's.
    pub fn compare(&mut self, step: usize, params: &[Vec<f32>]) {
        for (t, (opt, run)) in self.tensors.iter().zip(params).enumerate() {
            for (i, (&m, &r)) in opt.param().iter().zip(run).enumerate() {
                let d = (f64::from(r) - m).abs();
                self.max_abs = self.max_abs.max(d);
                let ratio = d / (step as f64 * (ATOL + RTOL * m.abs()));
                // NaN compares false: a NaN is the worst of all.
                if !at_most(ratio, self.worst.map_or(0.0, |w| w.0)) {
                    self.worst = Some((ratio, step, t, i, r, m));
                }
            }
        }
    }

    /// A line for the report, and whether every step stayed within the bound.
    pub fn verdict(&self) -> (String, bool) {
        match self.worst {
            None => ("identical to the f64 reference at every step".into(), true),
            Some((ratio, step, t, i, r, m)) => {
                let ok = ratio <= 1.0;
                let word = if ok { "within" } else { "BEYOND" };
                let line = format!(
                    "max |run - f64 reference| {:.3e} over all steps, {word} steps * ({ATOL:e} + {RTOL:.2e} * |ref|) \
                     (nearest the bound: step {step}, tensor {t}, element {i}: run {r}, reference {m:.9})",
                    self.max_abs
                );
                (line, ok)
            }
        }
    }
}

/// This step's gradient of every float parameter of `module`, in visiting order, read back
/// through burn (`None`: no gradient this step).
pub fn grad_values<M: Module>(module: &M, grads: &GradientsParams) -> Result<Vec<Option<Vec<f32>>>, String> {
    struct Read<'a>(&'a GradientsParams, Vec<Result<Option<Vec<f32>>, String>>);
    impl ModuleVisitor for Read<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            // `get` clones the tensor; the clone is gone when this returns, so the bridge's
            // `remove` still hands the gradient over.
            let value =
                self.0.get::<D>(param.id).map(|g| g.to_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}")));
            self.1.push(value.transpose());
        }
    }
    let mut read = Read(grads, Vec::new());
    module.visit(&mut read);
    read.1.into_iter().collect()
}

/// Gradients for `module`'s parameters from host values (as `grad_values` read them), on
/// `device`: to feed burn's AdamW, on a copy of the model with the same parameter ids, the
/// gradients that another run computed.
pub fn grads_from_values<M: Module>(module: &M, values: &[Option<Vec<f32>>], device: &Device) -> GradientsParams {
    struct Feed<'a>(std::slice::Iter<'a, Option<Vec<f32>>>, &'a Device, GradientsParams);
    impl ModuleVisitor for Feed<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(Some(g)) = self.0.next() {
                let data = TensorData::new(g.clone(), param.shape());
                self.2.register::<D>(param.id, Tensor::from_data(data, self.1));
            }
        }
    }
    let mut feed = Feed(values.iter(), device, GradientsParams::new());
    module.visit(&mut feed);
    feed.2
}

/// `x <= bound`, false when either is NaN: so `!at_most(..)` counts a NaN as beyond any bound.
pub fn at_most<T: PartialOrd>(x: T, bound: T) -> bool {
    x <= bound
}
