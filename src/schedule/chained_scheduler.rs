//! `ChainedScheduler`: every scheduler stepped in turn on the group's lr.

use std::sync::Mutex;

use super::{check_base_lr, config_error, Schedule};
use crate::error::{Error, Result};

/// The most steps a chain replays PyTorch's recursion for (about 4e9). Far beyond a run; an
/// `lr` asked past it is NaN and [`Schedule::check`] refuses it.
pub const MAX_CHAIN_STEPS: u64 = 1 << 32;

/// PyTorch's `ChainedScheduler`: at every step each scheduler's `step()` runs in turn, each on
/// the lr the ones before it left (their chainable form, [`Schedule::chain`]).
///
/// ```text
/// lr_before(0)  = base_lr
/// lr_before(t)  = lr(t - 1)
/// lr(t)         = chain_k(t, ... chain_2(t, chain_1(t, lr_before(t))))
/// ```
///
/// At step 0 this is the schedulers' constructors, each of which steps once. Every schedule but
/// `ReduceLROnPlateau` is accepted (PyTorch refuses that one too): the multiplicative ones
/// (`StepLR`, `MultiStepLR`, `ConstantLR`, `LinearLR`, `ExponentialLR`, `PolynomialLR`,
/// `MultiplicativeLR`, the Keras decays) scale the lr, `CosineAnnealingLR` moves it by PyTorch's
/// recursion (which is not a product), and the others (`CyclicLR`, `OneCycleLR`, `LambdaLR`,
/// `CosineAnnealingWarmRestarts`, nested composites) set it outright, discarding what the ones
/// before them did. The momentum is that of the last piece that cycles it, which PyTorch's
/// order lets win.
///
/// **Evaluation.** When every piece is multiplicative, `lr(t)` is the closed form
/// `base_lr * m_1(t) * m_2(t) * ...` (PyTorch's recursion telescopes to it; within about 1e-15
/// relative) at any step in O(pieces). Otherwise the recursion is replayed: the chain remembers
/// the last step it was asked and its lr, so asking the next step (as an optimizer does) costs
/// one step of every piece, while asking an earlier step replays from 0. Either way it stays a
/// function of the step alone, so a checkpoint needs only the step count; a resume at step `t`
/// replays `t` steps once. Steps past [`MAX_CHAIN_STEPS`] are refused.
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
    /// Every piece multiplicative: the closed-form product applies.
    product: bool,
    /// `(t, lr(t))` for the last step the recursion reached.
    memo: Mutex<Option<(u64, f64)>>,
}

impl ChainedScheduler {
    /// Checks the arguments and builds the chain.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid learning rate: -1.0`; PyTorch's
    /// `ChainedScheduler expects at least one scheduler to be chained, but got no scheduler.`
    pub fn new(base_lr: f64, schedules: Vec<Box<dyn Schedule>>) -> Result<Self> {
        check_base_lr(base_lr)?;
        if schedules.is_empty() {
            return Err(Error::invalid(
                "schedulers",
                "ChainedScheduler expects at least one scheduler to be chained, but got no scheduler.".into(),
            ));
        }
        let product = schedules.iter().all(|s| s.multiplier(0).is_some());
        Ok(Self { base_lr, schedules, product, memo: Mutex::new(None) })
    }

    /// Every piece's step `t` on `lr`, in order.
    fn step_all(&self, t: u64, lr: f64) -> f64 {
        self.schedules.iter().fold(lr, |lr, s| s.chain(t, lr))
    }

    fn replay(&self, step: u64) -> f64 {
        if step > MAX_CHAIN_STEPS {
            return f64::NAN;
        }
        // A poisoned lock only means a piece panicked mid-step; the pair itself is always whole.
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        let (mut t, mut lr) = match *memo {
            Some((t, lr)) if t <= step => (t, lr),
            _ => (0, self.step_all(0, self.base_lr)),
        };
        while t < step {
            t += 1;
            lr = self.step_all(t, lr);
        }
        *memo = Some((t, lr));
        lr
    }
}

impl Schedule for ChainedScheduler {
    fn lr(&self, step: u64) -> f64 {
        if self.product {
            self.base_lr * self.schedules.iter().map(|s| s.multiplier(step).unwrap_or(1.0)).product::<f64>()
        } else {
            self.replay(step)
        }
    }

    fn momentum(&self, step: u64) -> Option<f64> {
        self.schedules.iter().rev().find_map(|s| s.momentum(step))
    }

    fn multiplier(&self, step: u64) -> Option<f64> {
        self.product.then(|| self.schedules.iter().map(|s| s.multiplier(step).unwrap_or(1.0)).product())
    }

    /// Every piece's check (PyTorch steps them all), and [`MAX_CHAIN_STEPS`] when replaying.
    fn check(&self, step: u64) -> Result<()> {
        for s in &self.schedules {
            s.check(step)?;
        }
        if !self.product && step > MAX_CHAIN_STEPS {
            return Err(config_error(format!(
                "ChainedScheduler: step {step} is past the {MAX_CHAIN_STEPS} steps its recursion is replayed for"
            )));
        }
        Ok(())
    }

    fn name(&self) -> &str {
        "ChainedScheduler"
    }
}
