//! `ExponentialLR`: decay by `gamma` every step.

use super::{check_base_lr, check_finite_non_negative, pow_steps, Schedule};
use crate::error::Result;

/// Arguments of [`ExponentialLr`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExponentialLrConfig {
    /// Multiplicative decay per step. Required (PyTorch has no default).
    pub gamma: f64,
}

/// PyTorch's `ExponentialLR`.
///
/// ```text
/// lr(t) = base_lr * gamma ^ t
/// ```
///
/// ```
/// use wgpu_optim::schedule::{ExponentialLr, ExponentialLrConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = ExponentialLr::new(1.0, ExponentialLrConfig { gamma: 0.5 })?;
/// assert_eq!(sched.lr(3), 0.125);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ExponentialLr {
    base_lr: f64,
    gamma: f64,
}

impl ExponentialLr {
    /// Checks the arguments and builds the schedule.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid learning rate: -1.0`, or
    /// `Invalid gamma value: -0.5 (must be finite and non-negative)` (PyTorch takes it and flips
    /// the lr's sign every step).
    pub fn new(base_lr: f64, config: ExponentialLrConfig) -> Result<Self> {
        check_base_lr(base_lr)?;
        check_finite_non_negative("gamma", config.gamma)?;
        Ok(Self { base_lr, gamma: config.gamma })
    }
}

impl Schedule for ExponentialLr {
    fn lr(&self, step: u64) -> f64 {
        self.base_lr * pow_steps(self.gamma, step)
    }
    fn multiplier(&self, step: u64) -> Option<f64> {
        Some(pow_steps(self.gamma, step))
    }
    fn chain(&self, step: u64, lr: f64) -> f64 {
        if step == 0 {
            lr
        } else {
            lr * self.gamma
        }
    }
    fn name(&self) -> &str {
        "ExponentialLR"
    }
}
