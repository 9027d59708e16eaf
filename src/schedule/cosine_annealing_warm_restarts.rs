//! `CosineAnnealingWarmRestarts` (SGDR): cosine cycles that restart at `base_lr`.

use super::{check_base_lr, check_finite_non_negative, Schedule};
use crate::error::{Error, Result};

/// Arguments of [`CosineAnnealingWarmRestarts`] (PyTorch's `T_0`, `T_mult`, `eta_min`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineAnnealingWarmRestartsConfig {
    /// Length of the first cycle (PyTorch's `T_0`). Required, at least 1.
    pub t_0: u64,
    /// Each cycle is `T_mult` times as long as the one before (PyTorch's `T_mult`). Default 1.
    pub t_mult: u64,
    /// The lowest lr. Default 0.0.
    pub eta_min: f64,
}

impl CosineAnnealingWarmRestartsConfig {
    /// `T_0` with PyTorch's defaults (`T_mult` 1, `eta_min` 0.0).
    pub fn new(t_0: u64) -> Self {
        Self { t_0, t_mult: 1, eta_min: 0.0 }
    }
}

/// PyTorch's `CosineAnnealingWarmRestarts`.
///
/// ```text
/// T_i   = T_0 * T_mult ^ i                  length of cycle i
/// T_cur = t - (T_0 + T_0 * T_mult + ... )   steps since the last restart
/// lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2
/// ```
///
/// Restarts are found in integer arithmetic, as PyTorch's step-by-step recursion does (its
/// `epoch=` form uses a floating-point logarithm instead).
///
/// ```
/// use wgpu_optim::schedule::{CosineAnnealingWarmRestarts, CosineAnnealingWarmRestartsConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = CosineAnnealingWarmRestarts::new(
///     0.1,
///     CosineAnnealingWarmRestartsConfig { t_0: 10, t_mult: 2, eta_min: 0.0 },
/// )?;
/// assert_eq!((sched.lr(0), sched.lr(10), sched.lr(30)), (0.1, 0.1, 0.1)); // restarts
/// assert!((sched.lr(20) - 0.05).abs() < 1e-15); // halfway through the 20-step cycle
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CosineAnnealingWarmRestarts {
    base_lr: f64,
    config: CosineAnnealingWarmRestartsConfig,
}

/// PyTorch's message for a bad `T_0`.
pub(crate) fn t_0_error(shown: impl std::fmt::Display) -> Error {
    Error::invalid("T_0", format!("Expected positive integer T_0, but got {shown}"))
}

/// PyTorch's message for a bad `T_mult`.
pub(crate) fn t_mult_error(shown: impl std::fmt::Display) -> Error {
    Error::invalid("T_mult", format!("Expected integer T_mult >= 1, but got {shown}"))
}

impl CosineAnnealingWarmRestarts {
    /// Checks the arguments and builds the schedule.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] with PyTorch's messages:
    /// `Expected positive integer T_0, but got 0`, `Expected integer T_mult >= 1, but got 0`;
    /// or `Invalid learning rate: -1.0`; `Invalid eta_min value: -0.5 (must be finite and
    /// non-negative)` (it becomes the lr).
    pub fn new(base_lr: f64, config: CosineAnnealingWarmRestartsConfig) -> Result<Self> {
        if config.t_0 == 0 {
            return Err(t_0_error(0));
        }
        if config.t_mult == 0 {
            return Err(t_mult_error(0));
        }
        check_finite_non_negative("eta_min", config.eta_min)?;
        check_base_lr(base_lr)?;
        Ok(Self { base_lr, config })
    }

    /// `(T_cur, T_i)` at `step`.
    fn position(&self, step: u64) -> (u64, u64) {
        let CosineAnnealingWarmRestartsConfig { t_0, t_mult, .. } = self.config;
        if t_mult == 1 {
            return (step % t_0, t_0);
        }
        // At most 64 cycles fit in a u64 when T_mult >= 2; saturation ends the loop past that.
        let (mut start, mut len) = (0u64, t_0);
        while step - start >= len {
            start += len;
            len = len.saturating_mul(t_mult);
        }
        (step - start, len)
    }
}

impl Schedule for CosineAnnealingWarmRestarts {
    fn lr(&self, step: u64) -> f64 {
        let (t_cur, t_i) = self.position(step);
        let eta_min = self.config.eta_min;
        let cos = (std::f64::consts::PI * t_cur as f64 / t_i as f64).cos();
        eta_min + (self.base_lr - eta_min) * (1.0 + cos) / 2.0
    }
    fn name(&self) -> &str {
        "CosineAnnealingWarmRestarts"
    }
}
