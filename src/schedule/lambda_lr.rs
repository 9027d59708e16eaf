//! `LambdaLR` and `MultiplicativeLR` over Rust closures.

use std::fmt;
use std::sync::{Arc, Mutex};

use super::{check_base_lr, Schedule};
use crate::error::Result;

type Factor = Arc<dyn Fn(u64) -> f64 + Send + Sync>;

/// PyTorch's `LambdaLR`: the lr is `base_lr` times a function of the step.
///
/// ```text
/// lr(t) = base_lr * f(t)
/// ```
///
/// Not multiplicative in PyTorch's sense: in a [`super::ChainedScheduler`] it sets the lr
/// outright, discarding what the schedulers before it did, as in PyTorch. Not available from
/// JSON.
///
/// ```
/// use wgpu_optim::schedule::{LambdaLr, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = LambdaLr::new(0.1, |t| 1.0 / (1 + t / 30) as f64)?;
/// assert_eq!((sched.lr(29), sched.lr(30)), (0.1, 0.05));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LambdaLr {
    base_lr: f64,
    f: Factor,
}

impl LambdaLr {
    /// Builds the schedule.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid learning rate: -1.0`.
    pub fn new(base_lr: f64, f: impl Fn(u64) -> f64 + Send + Sync + 'static) -> Result<Self> {
        check_base_lr(base_lr)?;
        Ok(Self { base_lr, f: Arc::new(f) })
    }
}

impl fmt::Debug for LambdaLr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LambdaLr").field("base_lr", &self.base_lr).finish_non_exhaustive()
    }
}

impl Schedule for LambdaLr {
    fn lr(&self, step: u64) -> f64 {
        self.base_lr * (self.f)(step)
    }
    fn name(&self) -> &str {
        "LambdaLR"
    }
}

/// PyTorch's `MultiplicativeLR`: every step after the first multiplies the lr by `f(step)`.
///
/// ```text
/// lr(t) = base_lr * f(1) * f(2) * ... * f(t)
/// ```
///
/// The product is remembered for the last step asked, so stepping forward costs one call of
/// `f`; asking for an earlier step starts again from 0. Not available from JSON.
///
/// ```
/// use wgpu_optim::schedule::{MultiplicativeLr, Schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = MultiplicativeLr::new(1.0, |_| 0.5)?;
/// assert_eq!((sched.lr(0), sched.lr(1), sched.lr(3)), (1.0, 0.5, 0.125));
/// # Ok(())
/// # }
/// ```
pub struct MultiplicativeLr {
    base_lr: f64,
    f: Factor,
    /// `(t, f(1) * ... * f(t))` for the last step asked.
    memo: Mutex<(u64, f64)>,
}

impl MultiplicativeLr {
    /// Builds the schedule.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: `Invalid learning rate: -1.0`.
    pub fn new(base_lr: f64, f: impl Fn(u64) -> f64 + Send + Sync + 'static) -> Result<Self> {
        check_base_lr(base_lr)?;
        Ok(Self { base_lr, f: Arc::new(f), memo: Mutex::new((0, 1.0)) })
    }

    fn product(&self, step: u64) -> f64 {
        // A poisoned lock only means `f` panicked mid-update; the pair itself is always whole.
        let (mut t, mut product) = *self.memo.lock().unwrap_or_else(|e| e.into_inner());
        if step < t {
            (t, product) = (0, 1.0);
        }
        while t < step {
            t += 1;
            product *= (self.f)(t);
        }
        *self.memo.lock().unwrap_or_else(|e| e.into_inner()) = (t, product);
        product
    }
}

impl Clone for MultiplicativeLr {
    fn clone(&self) -> Self {
        Self { base_lr: self.base_lr, f: Arc::clone(&self.f), memo: Mutex::new((0, 1.0)) }
    }
}

impl fmt::Debug for MultiplicativeLr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiplicativeLr").field("base_lr", &self.base_lr).finish_non_exhaustive()
    }
}

impl Schedule for MultiplicativeLr {
    fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.product(step)
    }
    fn multiplier(&self, step: u64) -> Option<f64> {
        Some(self.product(step))
    }
    fn chain(&self, step: u64, lr: f64) -> f64 {
        if step == 0 {
            lr
        } else {
            lr * (self.f)(step)
        }
    }
    fn name(&self) -> &str {
        "MultiplicativeLR"
    }
}
