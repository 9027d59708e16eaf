//! A learning rate drawn at random each step, reproducibly.

use super::Schedule;
use crate::error::{py_float, Error, Result};

/// Arguments of [`RandomLr`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomLrConfig {
    /// Lower bound, at least 0. Required.
    pub min_lr: f64,
    /// Upper bound, at least `min_lr`. Required.
    pub max_lr: f64,
    /// Seed of the stream. Default 0.
    pub seed: u64,
}

/// A rate drawn uniformly in `[min_lr, max_lr]` at every step, a pure function of
/// `(seed, step)`: resuming or evaluating out of order gives the same numbers.
///
/// ```text
/// u(t)  = (splitmix64(seed + (t + 1) * 0x9E3779B97F4A7C15) >> 11) * 2^-53     in [0, 1)
/// lr(t) = min_lr + (max_lr - min_lr) * u(t)
/// ```
///
/// `u(t)` is output `t` of the SplitMix64 generator seeded with `seed`. The optimizer's lr is not
/// used.
///
/// ```
/// use wgpu_optim::schedule::{RandomLr, RandomLrConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = RandomLr::new(0.0, RandomLrConfig { min_lr: 0.01, max_lr: 0.1, seed: 7 })?;
/// let lr = sched.lr(3);
/// assert!((0.01..=0.1).contains(&lr));
/// assert_eq!(lr, sched.lr(3));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RandomLr {
    config: RandomLrConfig,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function (Steele, Lea and Flood 2014).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl RandomLr {
    /// Checks the arguments and builds the schedule; `_optimizer_lr` is ignored.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid min_lr value: -1 (must be finite and
    /// non-negative)`, `Invalid max_lr value: 0.01 (must be finite and at least min_lr 0.1)`.
    pub fn new(_optimizer_lr: f64, config: RandomLrConfig) -> Result<Self> {
        let RandomLrConfig { min_lr, max_lr, .. } = config;
        if !(min_lr.is_finite() && min_lr >= 0.0) {
            return Err(Error::invalid(
                "min_lr",
                format!("Invalid min_lr value: {} (must be finite and non-negative)", py_float(min_lr)),
            ));
        }
        if !(max_lr.is_finite() && max_lr >= min_lr) {
            return Err(Error::invalid(
                "max_lr",
                format!(
                    "Invalid max_lr value: {} (must be finite and at least min_lr {})",
                    py_float(max_lr),
                    py_float(min_lr)
                ),
            ));
        }
        Ok(Self { config })
    }

    /// The uniform draw in `[0, 1)` for `step`.
    pub fn uniform(&self, step: u64) -> f64 {
        let state = self.config.seed.wrapping_add(step.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA));
        (mix(state) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

impl Schedule for RandomLr {
    fn lr(&self, step: u64) -> f64 {
        let RandomLrConfig { min_lr, max_lr, .. } = self.config;
        min_lr + (max_lr - min_lr) * self.uniform(step)
    }
    fn name(&self) -> &str {
        "RandomLR"
    }
}
