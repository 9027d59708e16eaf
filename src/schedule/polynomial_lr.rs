//! `PolynomialLR`: polynomial decay to 0 over `total_iters`.

use super::{check_base_lr, Schedule};
use crate::error::{py_float, Error, Result};

/// Arguments of [`PolynomialLr`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PolynomialLrConfig {
    /// Steps until the lr reaches 0. Default 5.
    pub total_iters: u64,
    /// The power of the polynomial, at least 0. Default 1.0.
    pub power: f64,
}

impl Default for PolynomialLrConfig {
    fn default() -> Self {
        Self { total_iters: 5, power: 1.0 }
    }
}

/// PyTorch's `PolynomialLR`: reaches 0 at `total_iters` and stays there.
///
/// ```text
/// lr(t) = base_lr * (1 - min(t, total_iters) / total_iters) ^ power
/// ```
///
/// As in PyTorch, `total_iters = 0` keeps `base_lr` for ever.
///
/// ```
/// use wgpu_optim::schedule::{PolynomialLr, PolynomialLrConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = PolynomialLr::new(1.0, PolynomialLrConfig { total_iters: 4, power: 2.0 })?;
/// assert_eq!((sched.lr(2), sched.lr(4), sched.lr(100)), (0.25, 0.0, 0.0));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PolynomialLr {
    base_lr: f64,
    config: PolynomialLrConfig,
}

impl PolynomialLr {
    /// Checks the arguments and builds the schedule.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid learning rate: -1.0`, or
    /// `Invalid power value: -1 (must be non-negative)`: PyTorch does not check it and raises
    /// `ZeroDivisionError` when the lr reaches 0.
    pub fn new(base_lr: f64, config: PolynomialLrConfig) -> Result<Self> {
        check_base_lr(base_lr)?;
        if config.power.is_nan() || config.power < 0.0 {
            return Err(Error::invalid(
                "power",
                format!("Invalid power value: {} (must be non-negative)", py_float(config.power)),
            ));
        }
        Ok(Self { base_lr, config })
    }

    fn multiplier_at(&self, step: u64) -> f64 {
        let PolynomialLrConfig { total_iters, power } = self.config;
        if total_iters == 0 {
            return 1.0;
        }
        (1.0 - step.min(total_iters) as f64 / total_iters as f64).powf(power)
    }
}

impl Schedule for PolynomialLr {
    fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.multiplier_at(step)
    }
    fn multiplier(&self, step: u64) -> Option<f64> {
        Some(self.multiplier_at(step))
    }
    fn chain(&self, step: u64, lr: f64) -> f64 {
        let PolynomialLrConfig { total_iters, power } = self.config;
        if step == 0 || step > total_iters {
            return lr;
        }
        let t = total_iters as f64;
        let decay = ((1.0 - step as f64 / t) / (1.0 - (step - 1) as f64 / t)).powf(power);
        lr * decay
    }
    fn name(&self) -> &str {
        "PolynomialLR"
    }
}
