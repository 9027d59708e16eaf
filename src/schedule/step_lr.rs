//! `StepLR`: decay by `gamma` every `step_size` steps.

use super::{check_base_lr, check_finite_non_negative, positive_int, pow_steps, Schedule};
use crate::error::Result;

/// Arguments of [`StepLr`], PyTorch's names. `StepLrConfig::new(step_size)` takes the default
/// `gamma`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLrConfig {
    /// Period of the decay, in steps. Required, at least 1.
    pub step_size: u64,
    /// Multiplicative decay factor. Default 0.1.
    pub gamma: f64,
}

impl StepLrConfig {
    /// `step_size` with PyTorch's default `gamma` (0.1).
    pub fn new(step_size: u64) -> Self {
        Self { step_size, gamma: 0.1 }
    }
}

/// PyTorch's `StepLR`.
///
/// ```text
/// lr(t) = base_lr * gamma ^ floor(t / step_size)
/// ```
///
/// ```
/// use wgpu_optim::schedule::{Schedule, StepLr, StepLrConfig};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = StepLr::new(0.1, StepLrConfig { step_size: 7, gamma: 0.5 })?;
/// assert_eq!((sched.lr(6), sched.lr(7), sched.lr(14)), (0.1, 0.05, 0.025));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct StepLr {
    base_lr: f64,
    config: StepLrConfig,
}

impl StepLr {
    /// Checks the arguments and builds the schedule.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid learning rate: -1.0`, or
    /// `Invalid step_size value: 0 (must be a positive integer)` (PyTorch itself does not check
    /// `step_size` and divides by zero later), `Invalid gamma value: -0.5 (must be finite and
    /// non-negative)` (PyTorch takes it and flips the lr's sign).
    pub fn new(base_lr: f64, config: StepLrConfig) -> Result<Self> {
        check_base_lr(base_lr)?;
        if config.step_size == 0 {
            return Err(positive_int("step_size", 0));
        }
        check_finite_non_negative("gamma", config.gamma)?;
        Ok(Self { base_lr, config })
    }
}

impl Schedule for StepLr {
    fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.multiplier_at(step)
    }
    fn multiplier(&self, step: u64) -> Option<f64> {
        Some(self.multiplier_at(step))
    }
    fn chain(&self, step: u64, lr: f64) -> f64 {
        if step == 0 || !step.is_multiple_of(self.config.step_size) {
            lr
        } else {
            lr * self.config.gamma
        }
    }
    fn name(&self) -> &str {
        "StepLR"
    }
}

impl StepLr {
    fn multiplier_at(&self, step: u64) -> f64 {
        pow_steps(self.config.gamma, step / self.config.step_size)
    }
}
