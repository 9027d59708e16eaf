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
/// A milestone may be 0 (as in PyTorch): the pieces before it never run. Equal milestones skip
/// the pieces between them. Matches PyTorch for every piece that PyTorch restarts from its
/// `base_lr` at the milestone (all built-in schedules except `MultiplicativeLR`, which PyTorch
/// continues from the previous lr).
///
/// **Momentum**, as PyTorch leaves it in the group: the active piece's if it cycles momentum
/// (`CyclicLR`, `OneCycleLR` with `cycle_momentum`); after such a piece ends, the value it set at
/// its last step; before any cycling piece has run, the value the last cycling piece in the list
/// set when it was built (its step-0 momentum: PyTorch's constructors set it), taking the
/// schedules to be built in list order, as the usual recipe does; `None` (the optimizer's own)
/// when no piece cycles.
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
    /// `milestones must be non-decreasing, but got [10, 5]`.
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
        if !milestones.windows(2).all(|w| w[0] <= w[1]) {
            return Err(Error::invalid(
                "milestones",
                format!("milestones must be non-decreasing, but got {milestones:?}"),
            ));
        }
        Ok(Self { schedules, milestones })
    }

    /// The index of the active piece and the step it sees.
    fn piece(&self, step: u64) -> (usize, u64) {
        let i = self.milestones.partition_point(|&m| m <= step);
        let local = if i == 0 { step } else { step - self.milestones[i - 1] };
        (i, local)
    }

    /// How many steps piece `j < active` ran (0 for a piece between equal milestones).
    fn ran(&self, j: usize) -> u64 {
        let start = if j == 0 { 0 } else { self.milestones[j - 1] };
        self.milestones[j] - start
    }
}

impl Schedule for SequentialLr {
    fn lr(&self, step: u64) -> f64 {
        let (i, local) = self.piece(step);
        self.schedules[i].lr(local)
    }

    fn momentum(&self, step: u64) -> Option<f64> {
        let (i, local) = self.piece(step);
        let active = self.schedules[i].momentum(local);
        if active.is_some() {
            return active;
        }
        // The last value a piece that ran set: its last step.
        let before = (0..i).rev().find_map(|j| match self.ran(j) {
            0 => None,
            n => self.schedules[j].momentum(n - 1),
        });
        // Else what the constructors left: the last cycling piece's step-0 momentum.
        before.or_else(|| self.schedules.iter().rev().find_map(|s| s.momentum(0)))
    }

    /// In a chain or beside a plateau scheduler, PyTorch's `SequentialLR.step()`: at a milestone
    /// the new piece's closed form at its step 0; otherwise the active piece's own chainable step
    /// on the lr it is given. At step 0 the first active piece starts from its base lr (PyTorch
    /// resets the group's lr to `initial_lr` when it builds the join).
    fn chain(&self, step: u64, lr: f64) -> f64 {
        let (i, local) = self.piece(step);
        if local == 0 {
            self.schedules[i].lr(0)
        } else {
            self.schedules[i].chain(local, lr)
        }
    }

    /// The active piece's check, and those of the pieces that ran before it, as far as they ran
    /// (PyTorch raised when one of them was stepped past its end).
    fn check(&self, step: u64) -> Result<()> {
        let (i, local) = self.piece(step);
        for j in 0..i {
            if let Some(last) = self.ran(j).checked_sub(1) {
                self.schedules[j].check(last)?;
            }
        }
        self.schedules[i].check(local)
    }

    fn name(&self) -> &str {
        "SequentialLR"
    }
}
