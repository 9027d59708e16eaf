//! Keras's `InverseTimeDecay`.

use super::{check_base_lr, check_positive, Schedule};
use crate::error::{py_float, Error, Result};

/// Arguments of [`InverseTimeDecay`], Keras's names (the initial lr is the base lr).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InverseTimeDecayConfig {
    /// Steps per unit of decay, above 0. Required.
    pub decay_steps: f64,
    /// Decay rate, at least 0. Required.
    pub decay_rate: f64,
    /// Decay in whole units (`floor(t / decay_steps)`). Default false.
    pub staircase: bool,
}

/// Keras's `InverseTimeDecay` (PyTorch has no class for it).
///
/// ```text
/// p     = t / decay_steps            (floored if staircase)
/// lr(t) = base_lr / (1 + decay_rate * p)
/// ```
///
/// ```
/// use wgpu_optim::schedule::{InverseTimeDecay, InverseTimeDecayConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = InverseTimeDecay::new(0.1, InverseTimeDecayConfig { decay_steps: 10.0, decay_rate: 0.5, staircase: false })?;
/// assert_eq!((sched.lr(0), sched.lr(20)), (0.1, 0.05));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct InverseTimeDecay {
    base_lr: f64,
    config: InverseTimeDecayConfig,
}

impl InverseTimeDecay {
    /// Checks the arguments and builds the schedule.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid learning rate: -1.0`,
    /// `Invalid decay_steps value: 0 (must be positive)`,
    /// `Invalid decay_rate value: -1 (must be non-negative)` (Keras checks neither).
    pub fn new(base_lr: f64, config: InverseTimeDecayConfig) -> Result<Self> {
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

    fn denominator(&self, step: u64) -> f64 {
        let InverseTimeDecayConfig { decay_steps, decay_rate, staircase } = self.config;
        let mut p = step as f64 / decay_steps;
        if staircase {
            p = p.floor();
        }
        1.0 + decay_rate * p
    }
}

impl Schedule for InverseTimeDecay {
    fn lr(&self, step: u64) -> f64 {
        self.base_lr / self.denominator(step)
    }
    fn multiplier(&self, step: u64) -> Option<f64> {
        Some(1.0 / self.denominator(step))
    }
    fn name(&self) -> &str {
        "InverseTimeDecay"
    }
}
