//! Keras's `ExponentialDecay`.

use super::{check_base_lr, check_positive, Schedule};
use crate::error::{py_float, Error, Result};

/// Arguments of [`ExponentialDecay`], Keras's names (the initial lr is the base lr).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExponentialDecayConfig {
    /// Steps per unit of decay, above 0. Required.
    pub decay_steps: f64,
    /// Factor per unit of decay, at least 0. Required.
    pub decay_rate: f64,
    /// Decay in whole units (`floor(t / decay_steps)`). Default false.
    pub staircase: bool,
}

/// Keras's (and TensorFlow's) `ExponentialDecay`.
///
/// ```text
/// p     = t / decay_steps            (floored if staircase)
/// lr(t) = base_lr * decay_rate ^ p
/// ```
///
/// ```
/// use wgpu_optim::schedule::{ExponentialDecay, ExponentialDecayConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = ExponentialDecay::new(1.0, ExponentialDecayConfig { decay_steps: 10.0, decay_rate: 0.5, staircase: true })?;
/// assert_eq!((sched.lr(9), sched.lr(10), sched.lr(25)), (1.0, 0.5, 0.25));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ExponentialDecay {
    base_lr: f64,
    config: ExponentialDecayConfig,
}

impl ExponentialDecay {
    /// Checks the arguments and builds the schedule.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid learning rate: -1.0`,
    /// `Invalid decay_steps value: 0 (must be positive)`,
    /// `Invalid decay_rate value: -1 (must be non-negative)`.
    pub fn new(base_lr: f64, config: ExponentialDecayConfig) -> Result<Self> {
        check_base_lr(base_lr)?;
        check_positive("decay_steps", config.decay_steps)?;
        if !(config.decay_rate.is_finite() && config.decay_rate >= 0.0) {
            return Err(Error::invalid(
                "decay_rate",
                format!("Invalid decay_rate value: {} (must be non-negative)", py_float(config.decay_rate)),
            ));
        }
        Ok(Self { base_lr, config })
    }

    fn multiplier_at(&self, step: u64) -> f64 {
        let ExponentialDecayConfig { decay_steps, decay_rate, staircase } = self.config;
        let mut p = step as f64 / decay_steps;
        if staircase {
            p = p.floor();
        }
        decay_rate.powf(p)
    }
}

impl Schedule for ExponentialDecay {
    fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.multiplier_at(step)
    }
    fn multiplier(&self, step: u64) -> Option<f64> {
        Some(self.multiplier_at(step))
    }
    fn name(&self) -> &str {
        "ExponentialDecay"
    }
}
