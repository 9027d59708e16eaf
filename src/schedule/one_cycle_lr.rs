//! `OneCycleLR`: warm up to `max_lr`, then anneal far below the start (1cycle policy).

use super::{check_finite_non_negative, check_momentum_bound, Schedule};
use crate::error::{py_float, Error, Result};

/// How a phase moves from its start value to its end value (PyTorch's `anneal_strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AnnealStrategy {
    /// `"cos"`: `end + (start - end) / 2 * (1 + cos(pi * pct))`. The default.
    #[default]
    Cos,
    /// `"linear"`: `(end - start) * pct + start`.
    Linear,
}

impl AnnealStrategy {
    fn anneal(self, start: f64, end: f64, pct: f64) -> f64 {
        match self {
            Self::Cos => end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0),
            Self::Linear => (end - start) * pct + start,
        }
    }
}

/// Arguments of [`OneCycleLr`], PyTorch's names and defaults. Build with
/// [`OneCycleLrConfig::new`] (`total_steps`) or [`OneCycleLrConfig::with_epochs`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneCycleLrConfig {
    /// The peak lr. Required.
    pub max_lr: f64,
    /// Steps in the cycle; takes precedence over `epochs * steps_per_epoch`. Default `None`.
    pub total_steps: Option<u64>,
    /// With `steps_per_epoch`, gives `total_steps`. Default `None`.
    pub epochs: Option<u64>,
    /// With `epochs`, gives `total_steps`. Default `None`.
    pub steps_per_epoch: Option<u64>,
    /// Fraction of the cycle spent warming up, in `[0, 1]`. Default 0.3.
    pub pct_start: f64,
    /// Default [`AnnealStrategy::Cos`].
    pub anneal_strategy: AnnealStrategy,
    /// Cycle momentum inversely to the lr. Default true.
    pub cycle_momentum: bool,
    /// Momentum at the peak lr. Default 0.85.
    pub base_momentum: f64,
    /// Momentum at the start and the end. Default 0.95.
    pub max_momentum: f64,
    /// The lr starts at `max_lr / div_factor`. Default 25.0.
    pub div_factor: f64,
    /// The lr ends at `max_lr / div_factor / final_div_factor`. Default 1e4.
    pub final_div_factor: f64,
    /// Warm up, come back down symmetrically, then anneal (the paper's form). Default false.
    pub three_phase: bool,
}

impl OneCycleLrConfig {
    /// `max_lr` over `total_steps`, with PyTorch's defaults for everything else.
    pub fn new(max_lr: f64, total_steps: u64) -> Self {
        Self {
            max_lr,
            total_steps: Some(total_steps),
            epochs: None,
            steps_per_epoch: None,
            pct_start: 0.3,
            anneal_strategy: AnnealStrategy::Cos,
            cycle_momentum: true,
            base_momentum: 0.85,
            max_momentum: 0.95,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
        }
    }

    /// `max_lr` over `epochs * steps_per_epoch` steps, with PyTorch's defaults.
    pub fn with_epochs(max_lr: f64, epochs: u64, steps_per_epoch: u64) -> Self {
        Self { total_steps: None, epochs: Some(epochs), steps_per_epoch: Some(steps_per_epoch), ..Self::new(max_lr, 0) }
    }
}

/// One phase: ends at `end_step`, moves lr and momentum between the given values.
#[derive(Clone, Copy, Debug)]
struct Phase {
    end_step: f64,
    lr: (f64, f64),
    momentum: (f64, f64),
}

/// PyTorch's `OneCycleLR`. The optimizer's lr is not used (PyTorch overwrites it).
///
/// ```text
/// initial = max_lr / div_factor           min = initial / final_div_factor
/// two phases:   [0, pct_start*T - 1]          initial -> max_lr   max_momentum -> base_momentum
///               [.., T - 1]                   max_lr -> min       base_momentum -> max_momentum
/// three phases: [0, pct_start*T - 1]          initial -> max_lr   max_momentum -> base_momentum
///               [.., 2*pct_start*T - 2]       max_lr -> initial   base_momentum -> max_momentum
///               [.., T - 1]                   initial -> min      max_momentum
/// in a phase [s, e]: pct = (t - s) / (e - s), value = anneal(start, end, pct)
/// ```
///
/// `T` is `total_steps`. Step `T` is the last that PyTorch computes (one step past the
/// minimum); past it PyTorch raises `Tried to step 101 times. The specified number of total
/// steps is 100`, and so does [`Schedule::check`] here ([`crate::Error::ScheduleEnded`]), which
/// an optimizer step asks first. `lr` and `momentum` themselves keep step `T`'s values there.
///
/// ```
/// use wgpu_optim::schedule::{OneCycleLr, OneCycleLrConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = OneCycleLr::new(0.0, OneCycleLrConfig::new(0.1, 100))?;
/// assert!((sched.lr(0) - 0.004).abs() < 1e-15);
/// assert_eq!(sched.lr(29), 0.1); // the peak, at pct_start * T - 1
/// assert_eq!(sched.momentum(29), Some(0.85));
/// assert!((sched.lr(99) - 4e-7).abs() < 1e-20);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct OneCycleLr {
    total_steps: u64,
    phases: Vec<Phase>,
    strategy: AnnealStrategy,
    cycle_momentum: bool,
}

fn positive_error(name: &str, shown: impl std::fmt::Display) -> Error {
    Error::invalid(name, format!("Expected positive integer {name}, but got {shown}"))
}

impl OneCycleLr {
    /// Checks the arguments, in PyTorch's order, and builds the schedule; `_optimizer_lr` is
    /// ignored, as in PyTorch.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] with PyTorch's messages:
    /// `Expected positive integer total_steps, but got 0` (likewise `epochs`, `steps_per_epoch`),
    /// `You must define either total_steps OR (epochs AND steps_per_epoch)`,
    /// `Expected float between 0 and 1 pct_start, but got 1.5`; and where PyTorch raises
    /// `ZeroDivisionError`: `Invalid div_factor value: 0 (must be non-zero)` (also
    /// `final_div_factor`), and `pct_start * total_steps` equal to 1 (a warm-up of no length).
    /// The JSON form also gives `anneal_strategy must be one of 'cos' or 'linear', instead got x`.
    /// Then what PyTorch accepts only to produce rates no optimizer takes, each naming the value:
    /// `Invalid max_lr value: -0.1 (must be finite and non-negative)`,
    /// `Invalid div_factor value: -25.0 (must be finite and positive)` (also `final_div_factor`),
    /// and with `cycle_momentum`, `Invalid base_momentum value: 1.5 (must be in [0, 1))` (also
    /// `max_momentum`).
    pub fn new(_optimizer_lr: f64, config: OneCycleLrConfig) -> Result<Self> {
        let total_steps = Self::pytorch_checks(&config)?;
        let pct = config.pct_start;
        let divisors = [("div_factor", config.div_factor), ("final_div_factor", config.final_div_factor)];
        for (name, value) in divisors {
            if value == 0.0 {
                return Err(Error::invalid(name, format!("Invalid {name} value: 0 (must be non-zero)")));
            }
        }
        check_finite_non_negative("max_lr", config.max_lr)?;
        for (name, value) in divisors {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::invalid(
                    name,
                    format!("Invalid {name} value: {} (must be finite and positive)", py_float(value)),
                ));
            }
        }
        if config.cycle_momentum {
            check_momentum_bound("base_momentum", config.base_momentum)?;
            check_momentum_bound("max_momentum", config.max_momentum)?;
        }
        let total = total_steps as f64;
        let warmup_end = pct * total - 1.0;
        // PyTorch computes step 0's pct as 0 / 0 here and raises ZeroDivisionError.
        if warmup_end == 0.0 {
            return Err(Error::invalid(
                "pct_start",
                format!(
                    "pct_start * total_steps must not be 1: the warm-up would have no length \
                     (pct_start {}, total_steps {total_steps})",
                    py_float(pct)
                ),
            ));
        }
        let initial = config.max_lr / config.div_factor;
        let min = initial / config.final_div_factor;
        let (max_lr, lo_m, hi_m) = (config.max_lr, config.base_momentum, config.max_momentum);
        let last = total - 1.0;
        let phases = if config.three_phase {
            vec![
                Phase { end_step: warmup_end, lr: (initial, max_lr), momentum: (hi_m, lo_m) },
                Phase { end_step: 2.0 * pct * total - 2.0, lr: (max_lr, initial), momentum: (lo_m, hi_m) },
                Phase { end_step: last, lr: (initial, min), momentum: (hi_m, hi_m) },
            ]
        } else {
            vec![
                Phase { end_step: warmup_end, lr: (initial, max_lr), momentum: (hi_m, lo_m) },
                Phase { end_step: last, lr: (max_lr, min), momentum: (lo_m, hi_m) },
            ]
        };
        Ok(Self { total_steps, phases, strategy: config.anneal_strategy, cycle_momentum: config.cycle_momentum })
    }

    /// PyTorch's checks before `anneal_strategy`: `total_steps` (returned) and `pct_start`.
    pub(crate) fn pytorch_checks(config: &OneCycleLrConfig) -> Result<u64> {
        let total_steps = Self::total_steps(config)?;
        let pct = config.pct_start;
        if !(0.0..=1.0).contains(&pct) {
            return Err(Error::invalid(
                "pct_start",
                format!("Expected float between 0 and 1 pct_start, but got {}", py_float(pct)),
            ));
        }
        Ok(total_steps)
    }

    fn total_steps(config: &OneCycleLrConfig) -> Result<u64> {
        match (config.total_steps, config.epochs, config.steps_per_epoch) {
            (Some(0), _, _) => Err(positive_error("total_steps", 0)),
            (Some(total), _, _) => Ok(total),
            (None, Some(0), Some(_)) => Err(positive_error("epochs", 0)),
            (None, Some(_), Some(0)) => Err(positive_error("steps_per_epoch", 0)),
            (None, Some(epochs), Some(per_epoch)) => epochs.checked_mul(per_epoch).ok_or_else(|| {
                Error::invalid("epochs", format!("epochs * steps_per_epoch overflows: {epochs} * {per_epoch}"))
            }),
            _ => Err(Error::invalid(
                "total_steps",
                "You must define either total_steps OR (epochs AND steps_per_epoch)".into(),
            )),
        }
    }

    /// The lr at step 0, `max_lr / div_factor` (what PyTorch writes to `initial_lr`).
    pub fn initial_lr(&self) -> f64 {
        self.phases[0].lr.0
    }

    /// `(lr, momentum)` at `step`: the first phase whose end is not before the step, else the
    /// last one, as PyTorch's loop finds it.
    fn values(&self, step: u64) -> (f64, f64) {
        let step = step.min(self.total_steps) as f64;
        let last = self.phases.len() - 1;
        let i = self.phases.iter().position(|p| step <= p.end_step).unwrap_or(last);
        let start_step = if i == 0 { 0.0 } else { self.phases[i - 1].end_step };
        let phase = self.phases[i];
        let span = phase.end_step - start_step;
        // Only a last phase of no length gets here with span 0 (PyTorch: 0 / 0 at step T).
        let pct = if span == 0.0 { 1.0 } else { (step - start_step) / span };
        let lr = self.strategy.anneal(phase.lr.0, phase.lr.1, pct);
        let momentum = self.strategy.anneal(phase.momentum.0, phase.momentum.1, pct);
        (lr, momentum)
    }
}

impl Schedule for OneCycleLr {
    fn lr(&self, step: u64) -> f64 {
        self.values(step).0
    }
    fn momentum(&self, step: u64) -> Option<f64> {
        self.cycle_momentum.then(|| self.values(step).1)
    }
    fn check(&self, step: u64) -> Result<()> {
        if step > self.total_steps {
            return Err(Error::ScheduleEnded { step, total_steps: self.total_steps });
        }
        Ok(())
    }
    fn name(&self) -> &str {
        "OneCycleLR"
    }
}
