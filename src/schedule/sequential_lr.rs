//! `SequentialLR`: schedules one after another, each counting from its own boundary.

use super::Schedule;
use crate::error::{Error, Result};

/// PyTorch's `SequentialLR`, optax's `join_schedules`: schedule `i` runs from milestone `i - 1`
/// and sees the steps since that milestone.
///
/// ```text
/// i     = number of milestones m with m <= t
/// lr(t) = schedules[i].lr(t - milestones[i - 1])     (t itself for i = 0)
/// ```
///
/// Matches PyTorch for every piece that PyTorch restarts from its `base_lr` at the milestone (all
/// built-in schedules except `MultiplicativeLR`, which PyTorch continues from the previous lr).
/// Momentum comes from the active piece.
///
/// ```
/// use wgpu_optim::schedule::{ConstantLr, ConstantLrConfig, ExponentialLr, ExponentialLrConfig, Schedule, SequentialLr};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = SequentialLr::new(
///     vec![
///         Box::new(ConstantLr::new(1.0, ConstantLrConfig { factor: 0.1, total_iters: 20 })?),
///         Box::new(ExponentialLr::new(1.0, ExponentialLrConfig { gamma: 0.5 })?),
///     ],
///     vec![20],
/// )?;
/// assert_eq!((sched.lr(19), sched.lr(20), sched.lr(21)), (0.1, 1.0, 0.5));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SequentialLr {
    schedules: Vec<Box<dyn Schedule>>,
    milestones: Vec<u64>,
}

impl SequentialLr {
    /// Checks the arguments and builds the join.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] with PyTorch's messages
    /// (`SequentialLR expects at least one scheduler, but got no scheduler.`,
    /// `Sequential Schedulers expects number of schedulers provided to be one more than the number
    /// of milestone points, but got number of schedulers 2 and the number of milestones to be
    /// equal to 2`), and for what PyTorch assumes without checking:
    /// `milestones must be positive and non-decreasing, but got [10, 5]`.
    pub fn new(schedules: Vec<Box<dyn Schedule>>, milestones: Vec<u64>) -> Result<Self> {
        if schedules.is_empty() {
            return Err(Error::invalid(
                "schedulers",
                "SequentialLR expects at least one scheduler, but got no scheduler.".into(),
            ));
        }
        if milestones.len() + 1 != schedules.len() {
            return Err(Error::invalid(
                "milestones",
                format!(
                    "Sequential Schedulers expects number of schedulers provided to be one more than \
                     the number of milestone points, but got number of schedulers {} and the number \
                     of milestones to be equal to {}",
                    schedules.len(),
                    milestones.len()
                ),
            ));
        }
        let ordered = milestones.first().is_none_or(|&m| m > 0) && milestones.windows(2).all(|w| w[0] <= w[1]);
        if !ordered {
            return Err(Error::invalid(
                "milestones",
                format!("milestones must be positive and non-decreasing, but got {milestones:?}"),
            ));
        }
        Ok(Self { schedules, milestones })
    }

    /// The active piece and the step it sees.
    fn piece(&self, step: u64) -> (&dyn Schedule, u64) {
        let i = self.milestones.partition_point(|&m| m <= step);
        let local = if i == 0 { step } else { step - self.milestones[i - 1] };
        (self.schedules[i].as_ref(), local)
    }
}

impl Schedule for SequentialLr {
    fn lr(&self, step: u64) -> f64 {
        let (piece, local) = self.piece(step);
        piece.lr(local)
    }
    fn momentum(&self, step: u64) -> Option<f64> {
        let (piece, local) = self.piece(step);
        piece.momentum(local)
    }
    fn multiplier(&self, step: u64) -> Option<f64> {
        let (piece, local) = self.piece(step);
        piece.multiplier(local)
    }
    fn name(&self) -> &str {
        "SequentialLR"
    }
}
