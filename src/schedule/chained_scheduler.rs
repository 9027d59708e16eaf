//! `ChainedScheduler`: the product of multiplicative schedules.

use super::{check_base_lr, Schedule};
use crate::error::{Error, Result};

/// PyTorch's `ChainedScheduler`: every schedule's factor applies at once.
///
/// ```text
/// lr(t) = base_lr * m_1(t) * m_2(t) * ...     m_i = schedules[i].multiplier
/// ```
///
/// PyTorch steps each scheduler in turn on the shared lr, which is a product only for the
/// multiplicative ones (`StepLR`, `MultiStepLR`, `ConstantLR`, `LinearLR`, `ExponentialLR`,
/// `PolynomialLR`, `MultiplicativeLR`, `CosineAnnealingLR` with `eta_min = 0` up to `T_max`, and
/// the Keras decays); the others set the lr outright and are refused here. Each piece's own
/// `base_lr` is not used: the chain's is.
///
/// ```
/// use wgpu_optim::schedule::{ChainedScheduler, ConstantLr, ConstantLrConfig, ExponentialLr, ExponentialLrConfig, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = ChainedScheduler::new(
///     1.0,
///     vec![
///         Box::new(ConstantLr::new(1.0, ConstantLrConfig { factor: 0.5, total_iters: 2 })?),
///         Box::new(ExponentialLr::new(1.0, ExponentialLrConfig { gamma: 0.5 })?),
///     ],
/// )?;
/// assert_eq!((sched.lr(0), sched.lr(1), sched.lr(2)), (0.5, 0.25, 0.25));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ChainedScheduler {
    base_lr: f64,
    schedules: Vec<Box<dyn Schedule>>,
}

impl ChainedScheduler {
    /// Checks the arguments and builds the product.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid learning rate: -1`; PyTorch's
    /// `ChainedScheduler expects at least one scheduler to be chained, but got no scheduler.`;
    /// or, for a schedule that is not multiplicative,
    /// `ChainedScheduler multiplies the schedulers' factors, but CyclicLR at index 1 sets the lr
    /// outright`.
    pub fn new(base_lr: f64, schedules: Vec<Box<dyn Schedule>>) -> Result<Self> {
        check_base_lr(base_lr)?;
        if schedules.is_empty() {
            return Err(Error::invalid(
                "schedulers",
                "ChainedScheduler expects at least one scheduler to be chained, but got no scheduler.".into(),
            ));
        }
        if let Some((i, s)) = schedules.iter().enumerate().find(|(_, s)| s.multiplier(0).is_none()) {
            return Err(Error::invalid(
                "schedulers",
                format!(
                    "ChainedScheduler multiplies the schedulers' factors, but {} at index {i} sets \
                     the lr outright",
                    s.name()
                ),
            ));
        }
        Ok(Self { base_lr, schedules })
    }

    fn product(&self, step: u64) -> f64 {
        // A piece that broke the trait's all-or-none contract counts as its lr over the base.
        self.schedules
            .iter()
            .map(|s| {
                s.multiplier(step).unwrap_or_else(|| if self.base_lr == 0.0 { 0.0 } else { s.lr(step) / self.base_lr })
            })
            .product()
    }
}

impl Schedule for ChainedScheduler {
    fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.product(step)
    }
    fn multiplier(&self, step: u64) -> Option<f64> {
        Some(self.product(step))
    }
    fn name(&self) -> &str {
        "ChainedScheduler"
    }
}
