//! `CyclicLR`: the lr cycles between `base_lr` and `max_lr` (and momentum inversely).

use std::fmt;
use std::sync::Arc;

use super::{check_finite_non_negative, check_momentum_bound, non_negative_int, positive_int, Schedule};
use crate::error::Result;

/// CyclicLR's built-in policies (PyTorch's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CyclicMode {
    /// `"triangular"`: the same triangle every cycle. The default.
    #[default]
    Triangular,
    /// `"triangular2"`: the amplitude halves every cycle.
    Triangular2,
    /// `"exp_range"`: the amplitude is scaled by `gamma ^ t`.
    ExpRange,
}

/// What a custom [`ScaleFn`] is evaluated on (PyTorch's `scale_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScaleMode {
    /// `"cycle"`: the cycle number, from 1. The default.
    #[default]
    Cycle,
    /// `"iterations"`: the step.
    Iterations,
}

/// A custom amplitude scaling (PyTorch's `scale_fn`), `0 <= f(x) <= 1`.
#[derive(Clone)]
pub struct ScaleFn(pub Arc<dyn Fn(f64) -> f64 + Send + Sync>);

impl fmt::Debug for ScaleFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScaleFn(..)")
    }
}

/// Arguments of [`CyclicLr`], PyTorch's names and defaults. Build with
/// `CyclicLrConfig::new(base_lr, max_lr)` and change fields as needed.
#[derive(Clone, Debug)]
pub struct CyclicLrConfig {
    /// Lower lr boundary. Required. It replaces the optimizer's lr, as in PyTorch.
    pub base_lr: f64,
    /// Upper lr boundary. Required.
    pub max_lr: f64,
    /// Steps in the increasing half of a cycle, at least 1. Default 2000.
    pub step_size_up: u64,
    /// Steps in the decreasing half. Default `None`: the same as `step_size_up`.
    pub step_size_down: Option<u64>,
    /// Built-in policy, ignored when `scale_fn` is set. Default [`CyclicMode::Triangular`].
    pub mode: CyclicMode,
    /// The base of `exp_range`'s `gamma ^ t`. Default 1.0.
    pub gamma: f64,
    /// A custom scaling; replaces `mode`. Default `None`.
    pub scale_fn: Option<ScaleFn>,
    /// What `scale_fn` is evaluated on. Only used with `scale_fn`: like PyTorch, the built-in
    /// modes use `Cycle` (triangular, triangular2) or `Iterations` (exp_range) whatever this says.
    /// Default [`ScaleMode::Cycle`].
    pub scale_mode: ScaleMode,
    /// Cycle momentum inversely to the lr. Default true.
    pub cycle_momentum: bool,
    /// Momentum at the lr's peak. Default 0.8.
    pub base_momentum: f64,
    /// Momentum at the cycle's start. Default 0.9.
    pub max_momentum: f64,
}

impl CyclicLrConfig {
    /// The two boundaries with PyTorch's defaults for everything else.
    pub fn new(base_lr: f64, max_lr: f64) -> Self {
        Self {
            base_lr,
            max_lr,
            step_size_up: 2000,
            step_size_down: None,
            mode: CyclicMode::Triangular,
            gamma: 1.0,
            scale_fn: None,
            scale_mode: ScaleMode::Cycle,
            cycle_momentum: true,
            base_momentum: 0.8,
            max_momentum: 0.9,
        }
    }
}

/// PyTorch's `CyclicLR`. The optimizer's lr is not used (PyTorch overwrites it with `base_lr`).
///
/// ```text
/// total  = step_size_up + step_size_down          ratio = step_size_up / total
/// cycle  = floor(1 + t / total)                   x = 1 + t / total - cycle
/// s      = x / ratio               if x <= ratio
///        = (x - 1) / (ratio - 1)   otherwise
/// scale  = 1 (triangular) | 1 / 2^(cycle - 1) (triangular2) | gamma^t (exp_range) | scale_fn
/// lr(t)       = base_lr + (max_lr - base_lr) * s * scale
/// momentum(t) = max_momentum - (max_momentum - base_momentum) * s * scale   if cycle_momentum
/// ```
///
/// ```
/// use wgpu_optim::schedule::{CyclicLr, CyclicLrConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = CyclicLr::new(0.0, CyclicLrConfig { step_size_up: 10, ..CyclicLrConfig::new(0.01, 0.1) })?;
/// assert_eq!(sched.lr(0), 0.01);
/// assert!((sched.lr(10) - 0.1).abs() < 1e-15);
/// assert_eq!(sched.momentum(0), Some(0.9));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CyclicLr {
    config: CyclicLrConfig,
    total_size: f64,
    step_ratio: f64,
}

impl CyclicLr {
    /// Checks the arguments and builds the schedule; `_optimizer_lr` is ignored, as in PyTorch.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]:
    /// `Invalid step_size_up value: 0 (must be a positive integer)` (PyTorch divides by zero).
    /// The JSON form also gives PyTorch's `mode is invalid and scale_fn is None`. Then what
    /// PyTorch takes only to produce rates no optimizer takes: `Invalid base_lr value: -0.5
    /// (must be finite and non-negative)` (also `max_lr`), `Invalid gamma value: -0.5 (must be
    /// finite and non-negative)`, and with `cycle_momentum`, `Invalid base_momentum value: 1.5
    /// (must be in [0, 1))` (also `max_momentum`).
    pub fn new(_optimizer_lr: f64, config: CyclicLrConfig) -> Result<Self> {
        if config.step_size_up == 0 {
            return Err(positive_int("step_size_up", 0));
        }
        check_finite_non_negative("base_lr", config.base_lr)?;
        check_finite_non_negative("max_lr", config.max_lr)?;
        check_finite_non_negative("gamma", config.gamma)?;
        if config.cycle_momentum {
            check_momentum_bound("base_momentum", config.base_momentum)?;
            check_momentum_bound("max_momentum", config.max_momentum)?;
        }
        let up = config.step_size_up as f64;
        let down = config.step_size_down.map_or(up, |d| d as f64);
        let total_size = up + down;
        Ok(Self { step_ratio: up / total_size, total_size, config })
    }

    /// The arguments it was built with.
    pub fn config(&self) -> &CyclicLrConfig {
        &self.config
    }

    /// `(s, scale)` at `step`, in PyTorch's operation order.
    fn factors(&self, step: u64) -> (f64, f64) {
        let t = step as f64;
        let cycle = (1.0 + t / self.total_size).floor();
        let x = 1.0 + t / self.total_size - cycle;
        let s = if x <= self.step_ratio { x / self.step_ratio } else { (x - 1.0) / (self.step_ratio - 1.0) };
        let scale = match (&self.config.scale_fn, self.config.mode) {
            (Some(f), _) => match self.config.scale_mode {
                ScaleMode::Cycle => (f.0)(cycle),
                ScaleMode::Iterations => (f.0)(t),
            },
            (None, CyclicMode::Triangular) => 1.0,
            (None, CyclicMode::Triangular2) => 1.0 / 2f64.powf(cycle - 1.0),
            (None, CyclicMode::ExpRange) => self.config.gamma.powf(t),
        };
        (s, scale)
    }
}

impl Schedule for CyclicLr {
    fn lr(&self, step: u64) -> f64 {
        let (s, scale) = self.factors(step);
        let CyclicLrConfig { base_lr, max_lr, .. } = self.config;
        let base_height = (max_lr - base_lr) * s;
        base_lr + base_height * scale
    }

    fn momentum(&self, step: u64) -> Option<f64> {
        let CyclicLrConfig { cycle_momentum, base_momentum, max_momentum, .. } = self.config;
        cycle_momentum.then(|| {
            let (s, scale) = self.factors(step);
            let base_height = (max_momentum - base_momentum) * s;
            max_momentum - base_height * scale
        })
    }

    fn name(&self) -> &str {
        "CyclicLR"
    }
}

// `step_size_down` may be 0 (a saw-tooth); only negative JSON values are refused.
pub(crate) fn step_size_down_error(shown: impl fmt::Display) -> crate::error::Error {
    non_negative_int("step_size_down", shown)
}
