//! Learning-rate schedules with PyTorch's semantics.
//!
//! A schedule is a pure function of the step ([`Schedule::lr`]), its arguments checked once, at
//! construction, with PyTorch's messages. `step` counts optimizer steps from 0: `lr(t)` is the value
//! PyTorch's `optimizer.param_groups[0]["lr"]` holds just before the `(t + 1)`-th
//! `optimizer.step()`. Because nothing but the step is needed, a pure schedule resumes from the
//! optimizer's step counter alone.
//!
//! | PyTorch / Keras              | here                              |
//! |------------------------------|-----------------------------------|
//! | `StepLR`                     | [`StepLr`]                        |
//! | `MultiStepLR`                | [`MultiStepLr`]                   |
//! | `ConstantLR`                 | [`ConstantLr`]                    |
//! | `LinearLR`                   | [`LinearLr`]                      |
//! | `ExponentialLR`              | [`ExponentialLr`]                 |
//! | `PolynomialLR`               | [`PolynomialLr`]                  |
//! | `CosineAnnealingLR`          | [`CosineAnnealingLr`]             |
//! | `CosineAnnealingWarmRestarts`| [`CosineAnnealingWarmRestarts`]   |
//! | `CyclicLR`                   | [`CyclicLr`]                      |
//! | `OneCycleLR`                 | [`OneCycleLr`]                    |
//! | `SequentialLR`               | [`SequentialLr`] (a join)         |
//! | `ChainedScheduler`           | [`ChainedScheduler`] (a product)  |
//! | `LambdaLR`, `MultiplicativeLR` | [`LambdaLr`], [`MultiplicativeLr`] |
//! | `ReduceLROnPlateau`          | [`ReduceLrOnPlateau`] (stateful)  |
//! | Keras `InverseTimeDecay`     | [`InverseTimeDecay`]              |
//! | Keras `ExponentialDecay`     | [`ExponentialDecay`]              |
//! | —                            | [`RandomLr`]                      |
//!
//! PyTorch computes most schedules recursively (`lr *= gamma`); these are closed forms, equal to
//! PyTorch's numbers within about 1e-15 relative. An optimizer holds one [`LrScheduler`] per
//! parameter group; [`from_json`] builds one from PyTorch's class and argument names.
//!
//! ```
//! use wgpu_optim::schedule::{
//!     CosineAnnealingLr, CosineAnnealingLrConfig, LinearLr, LinearLrConfig, LrScheduler,
//!     Schedule, SequentialLr,
//! };
//! # fn main() -> wgpu_optim::Result<()> {
//! let warmup = LinearLr::new(0.1, LinearLrConfig { start_factor: 0.1, total_iters: 5, ..Default::default() })?;
//! let cosine = CosineAnnealingLr::new(0.1, CosineAnnealingLrConfig { t_max: 55, eta_min: 1e-3 })?;
//! let sched = SequentialLr::new(vec![Box::new(warmup), Box::new(cosine)], vec![5])?;
//! assert_eq!(sched.lr(5), 0.1); // the cosine counts from its boundary
//! let per_group = LrScheduler::new(sched);
//! assert!(per_group.lr(0) < 0.011);
//! # Ok(())
//! # }
//! ```

use std::fmt::Display;

use serde::{Deserialize, Serialize};

use crate::error::{py_float, Error, Result};

mod chained_scheduler;
mod constant_lr;
mod cosine_annealing_lr;
mod cosine_annealing_warm_restarts;
mod cyclic_lr;
mod exponential_decay;
mod exponential_lr;
mod inverse_time;
mod lambda_lr;
mod linear_lr;
mod multi_step_lr;
mod one_cycle_lr;
#[cfg(feature = "cli")]
mod plot;
mod polynomial_lr;
mod random_lr;
mod reduce_lr_on_plateau;
mod sequential_lr;
mod spec;
mod step_lr;

pub use chained_scheduler::ChainedScheduler;
pub use constant_lr::{ConstantLr, ConstantLrConfig};
pub use cosine_annealing_lr::{CosineAnnealingLr, CosineAnnealingLrConfig};
pub use cosine_annealing_warm_restarts::{CosineAnnealingWarmRestarts, CosineAnnealingWarmRestartsConfig};
pub use cyclic_lr::{CyclicLr, CyclicLrConfig, CyclicMode, ScaleFn, ScaleMode};
pub use exponential_decay::{ExponentialDecay, ExponentialDecayConfig};
pub use exponential_lr::{ExponentialLr, ExponentialLrConfig};
pub use inverse_time::{InverseTimeDecay, InverseTimeDecayConfig};
pub use lambda_lr::{LambdaLr, MultiplicativeLr};
pub use linear_lr::{LinearLr, LinearLrConfig};
pub use multi_step_lr::{MultiStepLr, MultiStepLrConfig};
pub use one_cycle_lr::{AnnealStrategy, OneCycleLr, OneCycleLrConfig};
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub use plot::plot_schedule;
pub use polynomial_lr::{PolynomialLr, PolynomialLrConfig};
pub use random_lr::{RandomLr, RandomLrConfig};
pub use reduce_lr_on_plateau::{PlateauMode, PlateauState, ReduceLrOnPlateau, ReduceLrOnPlateauConfig, ThresholdMode};
pub use sequential_lr::SequentialLr;
pub use spec::{from_json, schedule_from_json};
pub use step_lr::{StepLr, StepLrConfig};

/// A learning rate (and optionally momentum) as a pure function of the optimizer step.
///
/// Implementations check their arguments at construction, so evaluating never fails.
pub trait Schedule: Send + Sync + std::fmt::Debug {
    /// The learning rate used by the `(step + 1)`-th optimizer step (`step` counts from 0).
    fn lr(&self, step: u64) -> f64;

    /// The momentum (SGD's `momentum`, Adam's `beta1`) at `step`, for schedules that cycle it
    /// (`CyclicLR`, `OneCycleLR` with `cycle_momentum`); `None` leaves the optimizer's own.
    fn momentum(&self, _step: u64) -> Option<f64> {
        None
    }

    /// `Some(m)` when `lr(step) == base_lr * m` for PyTorch's chainable, multiplicative schedules
    /// (and at every step or none). [`ChainedScheduler`] multiplies these; schedules that set
    /// the lr outright (`CyclicLR`, `OneCycleLR`, `LambdaLR`, ...) return `None`.
    fn multiplier(&self, _step: u64) -> Option<f64> {
        None
    }

    /// The PyTorch class name (`"StepLR"`), used for plot titles and messages.
    fn name(&self) -> &str {
        "custom"
    }
}

impl<S: Schedule + ?Sized> Schedule for Box<S> {
    fn lr(&self, step: u64) -> f64 {
        (**self).lr(step)
    }
    fn momentum(&self, step: u64) -> Option<f64> {
        (**self).momentum(step)
    }
    fn multiplier(&self, step: u64) -> Option<f64> {
        (**self).multiplier(step)
    }
    fn name(&self) -> &str {
        (**self).name()
    }
}

/// The scheduler an optimizer holds for one parameter group: a pure [`Schedule`], or the one
/// stateful schedule, [`ReduceLrOnPlateau`].
///
/// ```
/// use wgpu_optim::schedule::{LrScheduler, StepLr, StepLrConfig};
/// # fn main() -> wgpu_optim::Result<()> {
/// let mut sched = LrScheduler::new(StepLr::new(0.1, StepLrConfig { step_size: 7, gamma: 0.5 })?);
/// sched.observe(0.3); // a no-op for pure schedules
/// assert_eq!(sched.lr(7), 0.05);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct LrScheduler {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Pure(Box<dyn Schedule>),
    Plateau(ReduceLrOnPlateau),
}

impl LrScheduler {
    /// Wraps a pure schedule.
    pub fn new<S: Schedule + 'static>(schedule: S) -> Self {
        Self::from_boxed(Box::new(schedule))
    }

    /// Wraps a boxed pure schedule.
    pub fn from_boxed(schedule: Box<dyn Schedule>) -> Self {
        Self { kind: Kind::Pure(schedule) }
    }

    /// Wraps a [`ReduceLrOnPlateau`].
    pub fn plateau(plateau: ReduceLrOnPlateau) -> Self {
        Self { kind: Kind::Plateau(plateau) }
    }

    /// The learning rate for `step`; for plateau, the current lr whatever the step.
    pub fn lr(&self, step: u64) -> f64 {
        match &self.kind {
            Kind::Pure(s) => s.lr(step),
            Kind::Plateau(p) => p.lr(),
        }
    }

    /// The cycled momentum / beta1 for `step`, if the schedule cycles it.
    pub fn momentum(&self, step: u64) -> Option<f64> {
        match &self.kind {
            Kind::Pure(s) => s.momentum(step),
            Kind::Plateau(_) => None,
        }
    }

    /// Reports the metric after a step: plateau acts on it, pure schedules ignore it.
    pub fn observe(&mut self, metric: f64) {
        if let Kind::Plateau(p) = &mut self.kind {
            p.observe(metric);
        }
    }

    /// The PyTorch class name of the schedule.
    pub fn name(&self) -> &str {
        match &self.kind {
            Kind::Pure(s) => s.name(),
            Kind::Plateau(_) => "ReduceLROnPlateau",
        }
    }

    /// The pure schedule inside, if it is one.
    pub fn schedule(&self) -> Option<&dyn Schedule> {
        match &self.kind {
            Kind::Pure(s) => Some(s.as_ref()),
            Kind::Plateau(_) => None,
        }
    }

    /// The plateau scheduler inside, if it is one.
    pub fn as_plateau(&self) -> Option<&ReduceLrOnPlateau> {
        match &self.kind {
            Kind::Pure(_) => None,
            Kind::Plateau(p) => Some(p),
        }
    }

    /// What a checkpoint must keep besides the optimizer's step count.
    pub fn state(&self) -> SchedulerState {
        match &self.kind {
            Kind::Pure(_) => SchedulerState::Pure,
            Kind::Plateau(p) => SchedulerState::ReduceLROnPlateau(p.state()),
        }
    }

    /// Restores a state taken by [`LrScheduler::state`] from a scheduler built the same way.
    ///
    /// # Errors
    /// [`Error::Config`] when the state is of the other kind (a plateau state for a pure schedule
    /// or the reverse) or holds an invalid lr.
    pub fn restore(&mut self, state: &SchedulerState) -> Result<()> {
        match (&mut self.kind, state) {
            (Kind::Pure(_), SchedulerState::Pure) => Ok(()),
            (Kind::Plateau(p), SchedulerState::ReduceLROnPlateau(s)) => p.restore(s),
            (Kind::Pure(s), SchedulerState::ReduceLROnPlateau(_)) => {
                Err(config_error(format!("cannot restore a ReduceLROnPlateau state into {}", s.name())))
            }
            (Kind::Plateau(_), SchedulerState::Pure) => {
                Err(config_error("cannot restore a pure schedule's state into ReduceLROnPlateau".into()))
            }
        }
    }
}

impl From<ReduceLrOnPlateau> for LrScheduler {
    fn from(plateau: ReduceLrOnPlateau) -> Self {
        Self::plateau(plateau)
    }
}

impl From<Box<dyn Schedule>> for LrScheduler {
    fn from(schedule: Box<dyn Schedule>) -> Self {
        Self::from_boxed(schedule)
    }
}

/// A scheduler's checkpoint. Serialized with serde, e.g. as
/// `{"kind":"Pure"}` or `{"kind":"ReduceLROnPlateau","lr":0.05,"best":0.41,...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum SchedulerState {
    /// A pure schedule: the optimizer's step count is all it needs.
    Pure,
    /// `ReduceLROnPlateau`'s counters, best metric and current lr.
    ReduceLROnPlateau(PlateauState),
}

/// `Error::Config` for the scheduler.
pub(crate) fn config_error(message: String) -> Error {
    Error::Config { what: "scheduler", message }
}

/// The optimizer's check on the base lr (PyTorch: `Invalid learning rate: -1`); also rejects NaN
/// and infinity, which PyTorch lets through.
pub(crate) fn check_base_lr(lr: f64) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid("lr", format!("Invalid learning rate: {}", py_float(lr))))
    }
}

/// An integer argument that must be at least 1 (PyTorch would divide by it).
pub(crate) fn positive_int(name: &str, shown: impl Display) -> Error {
    Error::invalid(name, format!("Invalid {name} value: {shown} (must be a positive integer)"))
}

/// An integer argument that must be at least 0.
pub(crate) fn non_negative_int(name: &str, shown: impl Display) -> Error {
    Error::invalid(name, format!("Invalid {name} value: {shown} (must be a non-negative integer)"))
}

/// A float argument that must be finite and above 0 (PyTorch or Keras would divide by it).
pub(crate) fn check_positive(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(name, format!("Invalid {name} value: {} (must be positive)", py_float(value))))
    }
}

/// `x ^ n` for a step-sized exponent (`powi` while `n` fits an `i32`).
pub(crate) fn pow_steps(x: f64, n: u64) -> f64 {
    match i32::try_from(n) {
        Ok(n) => x.powi(n),
        Err(_) => x.powf(n as f64),
    }
}
