//! `CosineAnnealingLR`: a cosine from `base_lr` down to `eta_min` over `T_max` steps.

use super::{check_base_lr, check_finite_non_negative, positive_int, Schedule};
use crate::error::Result;

/// Arguments of [`CosineAnnealingLr`] (PyTorch's `T_max`, `eta_min`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineAnnealingLrConfig {
    /// Half-period, in steps (PyTorch's `T_max`). Required, at least 1.
    pub t_max: u64,
    /// The lowest lr. Default 0.0.
    pub eta_min: f64,
}

impl CosineAnnealingLrConfig {
    /// `T_max` with PyTorch's default `eta_min` (0.0).
    pub fn new(t_max: u64) -> Self {
        Self { t_max, eta_min: 0.0 }
    }
}

/// PyTorch's `CosineAnnealingLR`.
///
/// ```text
/// lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2
/// ```
///
/// Like PyTorch it does not stop at `T_max`: the lr rises back to `base_lr` at `2 * T_max`, with
/// period `2 * T_max`. Wrap it in a [`super::SequentialLr`] to hold a value afterwards.
///
/// ```
/// use wgpu_optim::schedule::{CosineAnnealingLr, CosineAnnealingLrConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = CosineAnnealingLr::new(0.1, CosineAnnealingLrConfig { t_max: 20, eta_min: 0.001 })?;
/// assert_eq!(sched.lr(0), 0.1);
/// assert!((sched.lr(20) - 0.001).abs() < 1e-15);
/// assert!((sched.lr(40) - 0.1).abs() < 1e-15);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CosineAnnealingLr {
    base_lr: f64,
    config: CosineAnnealingLrConfig,
}

impl CosineAnnealingLr {
    /// Checks the arguments and builds the schedule.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid learning rate: -1.0`, or
    /// `Invalid T_max value: 0 (must be a positive integer)` (PyTorch divides by zero later),
    /// `Invalid eta_min value: -0.5 (must be finite and non-negative)` (it becomes the lr).
    pub fn new(base_lr: f64, config: CosineAnnealingLrConfig) -> Result<Self> {
        check_base_lr(base_lr)?;
        if config.t_max == 0 {
            return Err(positive_int("T_max", 0));
        }
        check_finite_non_negative("eta_min", config.eta_min)?;
        Ok(Self { base_lr, config })
    }
}

impl Schedule for CosineAnnealingLr {
    fn lr(&self, step: u64) -> f64 {
        let CosineAnnealingLrConfig { t_max, eta_min } = self.config;
        let cos = (std::f64::consts::PI * step as f64 / t_max as f64).cos();
        eta_min + (self.base_lr - eta_min) * (1.0 + cos) / 2.0
    }

    /// PyTorch's recursion, which is not a product: it moves `lr - eta_min` by the ratio of
    /// successive cosines and, one step past each trough, adds `(base_lr - eta_min) *
    /// (1 - cos(pi / T_max)) / 2`.
    fn chain(&self, step: u64, lr: f64) -> f64 {
        let CosineAnnealingLrConfig { t_max, eta_min } = self.config;
        let pi = std::f64::consts::PI;
        if step == 0 {
            return lr;
        }
        let (t, period) = (i128::from(step), 2 * i128::from(t_max));
        if (t - 1 - i128::from(t_max)).rem_euclid(period) == 0 {
            return lr + (self.base_lr - eta_min) * (1.0 - (pi / t_max as f64).cos()) / 2.0;
        }
        (1.0 + (pi * step as f64 / t_max as f64).cos()) / (1.0 + (pi * (step - 1) as f64 / t_max as f64).cos())
            * (lr - eta_min)
            + eta_min
    }

    fn name(&self) -> &str {
        "CosineAnnealingLR"
    }
}
