//! `ConstantLR`: a constant factor until `total_iters`.

use super::{check_base_lr, Schedule};
use crate::error::{Error, Result};

/// Arguments of [`ConstantLr`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConstantLrConfig {
    /// The factor applied before `total_iters`, in `(0, 1]`. Default 1/3.
    pub factor: f64,
    /// Steps that use the factor. Default 5.
    pub total_iters: u64,
}

impl Default for ConstantLrConfig {
    fn default() -> Self {
        Self { factor: 1.0 / 3.0, total_iters: 5 }
    }
}

/// PyTorch's `ConstantLR`.
///
/// ```text
/// lr(t) = base_lr * factor   if t < total_iters
///       = base_lr            otherwise
/// ```
///
/// As in PyTorch, `total_iters = 0` keeps the factor for ever (its recursion applies the factor
/// at step 0 and never takes it back).
///
/// ```
/// use wgpu_optim::schedule::{ConstantLr, ConstantLrConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = ConstantLr::new(0.1, ConstantLrConfig { factor: 0.5, total_iters: 10 })?;
/// assert_eq!((sched.lr(9), sched.lr(10)), (0.05, 0.1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ConstantLr {
    base_lr: f64,
    config: ConstantLrConfig,
}

impl ConstantLr {
    /// Checks the arguments and builds the schedule.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid learning rate: -1.0`, or PyTorch's
    /// `Constant multiplicative factor expected to be between 0 and 1.`; and for a factor of 0,
    /// which PyTorch takes and then divides by at `total_iters` (`ZeroDivisionError`),
    /// `Invalid factor value: 0 (must be above 0: the lr is divided by it at total_iters)`.
    pub fn new(base_lr: f64, config: ConstantLrConfig) -> Result<Self> {
        check_base_lr(base_lr)?;
        if !(0.0..=1.0).contains(&config.factor) {
            return Err(Error::invalid(
                "factor",
                "Constant multiplicative factor expected to be between 0 and 1.".into(),
            ));
        }
        if config.factor == 0.0 {
            return Err(Error::invalid(
                "factor",
                format!(
                    "Invalid factor value: {} (must be above 0: the lr is divided by it at total_iters)",
                    crate::error::py_float(config.factor)
                ),
            ));
        }
        Ok(Self { base_lr, config })
    }

    fn multiplier_at(&self, step: u64) -> f64 {
        let ConstantLrConfig { factor, total_iters } = self.config;
        if step < total_iters || total_iters == 0 {
            factor
        } else {
            1.0
        }
    }
}

impl Schedule for ConstantLr {
    fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.multiplier_at(step)
    }
    fn multiplier(&self, step: u64) -> Option<f64> {
        Some(self.multiplier_at(step))
    }
    fn chain(&self, step: u64, lr: f64) -> f64 {
        let ConstantLrConfig { factor, total_iters } = self.config;
        if step == 0 {
            lr * factor
        } else if step != total_iters {
            lr
        } else {
            lr * (1.0 / factor)
        }
    }
    fn name(&self) -> &str {
        "ConstantLR"
    }
}
