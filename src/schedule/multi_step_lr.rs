//! `MultiStepLR`: decay by `gamma` at each milestone.

use super::{check_base_lr, check_finite_non_negative, pow_steps, Schedule};
use crate::error::{Error, Result};

/// Arguments of [`MultiStepLr`]. `MultiStepLrConfig::new(milestones)` takes the default `gamma`.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiStepLrConfig {
    /// Steps at which the lr is multiplied by `gamma`. Required, non-decreasing (PyTorch's
    /// "Must be increasing", which it does not check); a milestone given twice decays twice
    /// (PyTorch keeps them in a `Counter`).
    pub milestones: Vec<u64>,
    /// Multiplicative decay factor. Default 0.1.
    pub gamma: f64,
}

impl MultiStepLrConfig {
    /// `milestones` with PyTorch's default `gamma` (0.1).
    pub fn new(milestones: Vec<u64>) -> Self {
        Self { milestones, gamma: 0.1 }
    }
}

/// PyTorch's `MultiStepLR`.
///
/// ```text
/// lr(t) = base_lr * gamma ^ (number of milestones m with m <= t)
/// ```
///
/// ```
/// use wgpu_optim::schedule::{MultiStepLr, MultiStepLrConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = MultiStepLr::new(1.0, MultiStepLrConfig { milestones: vec![10, 25], gamma: 0.5 })?;
/// assert_eq!((sched.lr(9), sched.lr(10), sched.lr(25)), (1.0, 0.5, 0.25));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MultiStepLr {
    base_lr: f64,
    sorted: Vec<u64>,
    gamma: f64,
}

impl MultiStepLr {
    /// Checks the arguments and builds the schedule.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid learning rate: -1.0`; and what PyTorch
    /// takes without a word: `milestones must be non-decreasing, but got [10, 5]`,
    /// `Invalid gamma value: -0.5 (must be finite and non-negative)`.
    pub fn new(base_lr: f64, config: MultiStepLrConfig) -> Result<Self> {
        check_base_lr(base_lr)?;
        let sorted = config.milestones;
        if !sorted.windows(2).all(|w| w[0] <= w[1]) {
            return Err(Error::invalid("milestones", format!("milestones must be non-decreasing, but got {sorted:?}")));
        }
        check_finite_non_negative("gamma", config.gamma)?;
        Ok(Self { base_lr, sorted, gamma: config.gamma })
    }

    fn multiplier_at(&self, step: u64) -> f64 {
        let passed = self.sorted.partition_point(|&m| m <= step);
        pow_steps(self.gamma, passed as u64)
    }
}

impl Schedule for MultiStepLr {
    fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.multiplier_at(step)
    }
    fn multiplier(&self, step: u64) -> Option<f64> {
        Some(self.multiplier_at(step))
    }
    fn chain(&self, step: u64, lr: f64) -> f64 {
        let count = self.sorted.partition_point(|&m| m <= step) - self.sorted.partition_point(|&m| m < step);
        if count == 0 {
            lr
        } else {
            lr * pow_steps(self.gamma, count as u64)
        }
    }
    fn name(&self) -> &str {
        "MultiStepLR"
    }
}
