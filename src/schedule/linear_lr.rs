//! `LinearLR`: a factor moving linearly from `start_factor` to `end_factor`.

use super::{check_base_lr, Schedule};
use crate::error::{Error, Result};

/// Arguments of [`LinearLr`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearLrConfig {
    /// Factor at step 0, in `(0, 1]`. Default 1/3.
    pub start_factor: f64,
    /// Factor from `total_iters` on, in `[0, 1]`. Default 1.0.
    pub end_factor: f64,
    /// Steps to go from one to the other. Default 5.
    pub total_iters: u64,
}

impl Default for LinearLrConfig {
    fn default() -> Self {
        Self { start_factor: 1.0 / 3.0, end_factor: 1.0, total_iters: 5 }
    }
}

/// PyTorch's `LinearLR`, the usual warmup.
///
/// ```text
/// lr(t) = base_lr * (start_factor + (end_factor - start_factor) * min(t, total_iters) / total_iters)
/// ```
///
/// As in PyTorch, `total_iters = 0` keeps `start_factor` for ever.
///
/// ```
/// use wgpu_optim::schedule::{LinearLr, LinearLrConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let warmup = LinearLr::new(1.0, LinearLrConfig { start_factor: 0.5, end_factor: 1.0, total_iters: 4 })?;
/// assert_eq!((warmup.lr(0), warmup.lr(2), warmup.lr(4), warmup.lr(9)), (0.5, 0.75, 1.0, 1.0));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct LinearLr {
    base_lr: f64,
    config: LinearLrConfig,
}

impl LinearLr {
    /// Checks the arguments and builds the schedule.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] with PyTorch's messages:
    /// `Starting multiplicative factor expected to be greater than 0 and less or equal to 1.`,
    /// `Ending multiplicative factor expected to be between 0 and 1.`; or
    /// `Invalid learning rate: -1.0`.
    pub fn new(base_lr: f64, config: LinearLrConfig) -> Result<Self> {
        check_base_lr(base_lr)?;
        if !(config.start_factor > 0.0 && config.start_factor <= 1.0) {
            return Err(Error::invalid(
                "start_factor",
                "Starting multiplicative factor expected to be greater than 0 and less or equal to 1.".into(),
            ));
        }
        if !(0.0..=1.0).contains(&config.end_factor) {
            return Err(Error::invalid(
                "end_factor",
                "Ending multiplicative factor expected to be between 0 and 1.".into(),
            ));
        }
        Ok(Self { base_lr, config })
    }

    fn multiplier_at(&self, step: u64) -> f64 {
        let LinearLrConfig { start_factor, end_factor, total_iters } = self.config;
        if total_iters == 0 {
            return start_factor;
        }
        start_factor + (end_factor - start_factor) * step.min(total_iters) as f64 / total_iters as f64
    }
}

impl Schedule for LinearLr {
    fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.multiplier_at(step)
    }
    fn multiplier(&self, step: u64) -> Option<f64> {
        Some(self.multiplier_at(step))
    }
    fn chain(&self, step: u64, lr: f64) -> f64 {
        let LinearLrConfig { start_factor, end_factor, total_iters } = self.config;
        if step == 0 {
            return lr * start_factor;
        }
        if step > total_iters {
            return lr;
        }
        let (t, span) = (total_iters as f64, end_factor - start_factor);
        lr * (1.0 + span / (t * start_factor + (step - 1) as f64 * span))
    }
    fn name(&self) -> &str {
        "LinearLR"
    }
}
