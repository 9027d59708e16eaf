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
//! | `ChainedScheduler`           | [`ChainedScheduler`] (in order)   |
//! | `LambdaLR`, `MultiplicativeLR` | [`LambdaLr`], [`MultiplicativeLr`] |
//! | `ReduceLROnPlateau`          | [`ReduceLrOnPlateau`] (stateful)  |
//! | a schedule + `ReduceLROnPlateau` | [`LrScheduler::with_plateau`] |
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
//! assert!(per_group.lr(0)? < 0.011);
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

pub use chained_scheduler::{ChainedScheduler, MAX_CHAIN_STEPS};
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

    /// PyTorch's chainable form (`get_lr`): the lr this schedule's `step()` sets at `step` (its
    /// `last_epoch`; 0 is the constructor's initial step) when the group's lr is `lr` before it.
    /// [`ChainedScheduler`] and a schedule run with [`ReduceLrOnPlateau`] apply it to the lr
    /// that the other schedulers left.
    ///
    /// The default: a schedule with a [`Schedule::multiplier`] scales `lr` by
    /// `multiplier(step) / multiplier(step - 1)` (by `multiplier(0)` at step 0; a previous
    /// factor of 0 leaves `lr`), one without sets `lr(step)` outright (`CyclicLR`,
    /// `OneCycleLR`, `LambdaLR`, ...). PyTorch's recursive classes override it with PyTorch's
    /// own recursion.
    fn chain(&self, step: u64, lr: f64) -> f64 {
        match self.multiplier(step) {
            None => self.lr(step),
            Some(m) if step == 0 => lr * m,
            Some(m) => match self.multiplier(step - 1) {
                Some(previous) if previous != 0.0 => lr * (m / previous),
                _ => lr,
            },
        }
    }

    /// Whether `step` is one the schedule is defined at. PyTorch raises past `OneCycleLR`'s
    /// `total_steps`; [`LrScheduler::lr`] asks this first, so an optimizer step there fails.
    ///
    /// # Errors
    /// [`Error::ScheduleEnded`] with PyTorch's message, for a step past the schedule's end.
    fn check(&self, _step: u64) -> Result<()> {
        Ok(())
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
    fn chain(&self, step: u64, lr: f64) -> f64 {
        (**self).chain(step, lr)
    }
    fn check(&self, step: u64) -> Result<()> {
        (**self).check(step)
    }
    fn name(&self) -> &str {
        (**self).name()
    }
}

/// The scheduler an optimizer holds for one parameter group: a pure [`Schedule`], the one
/// stateful schedule, [`ReduceLrOnPlateau`], or both at once ([`LrScheduler::with_plateau`]).
///
/// ```
/// use wgpu_optim::schedule::{LrScheduler, StepLr, StepLrConfig};
/// # fn main() -> wgpu_optim::Result<()> {
/// let mut sched = LrScheduler::new(StepLr::new(0.1, StepLrConfig { step_size: 7, gamma: 0.5 })?);
/// sched.observe(0.3); // a no-op for pure schedules
/// assert_eq!(sched.lr(7)?, 0.05);
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
    WithPlateau(WithPlateau),
}

/// A schedule and a plateau scheduler on one group. The group's lr lives in the plateau's state
/// (`PlateauState::lr`), which is the lr of step `at`.
#[derive(Debug)]
struct WithPlateau {
    schedule: Box<dyn Schedule>,
    plateau: ReduceLrOnPlateau,
    /// `"{schedule}+ReduceLROnPlateau"`.
    name: String,
    at: u64,
    /// `(t, lr(t))` reached from `at` without a metric (the schedule alone), for the next ask.
    ahead: std::sync::Mutex<Option<(u64, f64)>>,
}

impl WithPlateau {
    /// The lr at `step >= at` with no metric observed since `at`.
    fn advance(&self, step: u64) -> Result<f64> {
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        let (mut t, mut lr) = match *ahead {
            Some((t, lr)) if t >= self.at && t <= step => (t, lr),
            _ => (self.at, self.plateau.lr()),
        };
        while t < step {
            t += 1;
            self.schedule.check(t)?;
            lr = self.schedule.chain(t, lr);
        }
        *ahead = Some((t, lr));
        Ok(lr)
    }
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

    /// A schedule (a warmup, say) and a [`ReduceLrOnPlateau`] on one group, in PyTorch's order:
    /// after every optimizer step the schedule's `step()` moves the group's lr by its chainable
    /// form ([`Schedule::chain`]), and when a metric is observed the plateau then cuts that lr
    /// (`lr = max(lr * factor, min_lr)`), which the schedule's next steps continue from.
    ///
    /// ```text
    /// lr(0)   = schedule.chain(0, base_lr)                       (its constructor's step)
    /// after step t (t + 1 steps done):
    ///   lr    = schedule.chain(t + 1, lr)
    ///   if a metric was observed: plateau.observe(metric) on lr
    /// ```
    ///
    /// The plateau's own lr is taken as `base_lr`. Multiplicative schedules (`LinearLR`,
    /// `ExponentialLR`, ...) scale the cut lr; schedules that set the lr outright (`OneCycleLR`,
    /// `CyclicLR`) overwrite the cut at their next step, as in PyTorch. The lr depends on the
    /// metrics seen, so asking a step before the last observation gives the lr of that
    /// observation (the scheduler does not rewind); checkpoints keep the step and the plateau's
    /// state ([`SchedulerState::WithPlateau`]).
    ///
    /// ```
    /// use wgpu_optim::schedule::{LinearLr, LinearLrConfig, LrScheduler, ReduceLrOnPlateau, ReduceLrOnPlateauConfig};
    /// # fn main() -> wgpu_optim::Result<()> {
    /// let warmup = LinearLr::new(1.0, LinearLrConfig { start_factor: 0.5, end_factor: 1.0, total_iters: 4 })?;
    /// let plateau = ReduceLrOnPlateau::new(1.0, ReduceLrOnPlateauConfig { patience: 0, factor: 0.5, ..Default::default() })?;
    /// let mut sched = LrScheduler::with_plateau(warmup, plateau);
    /// assert_eq!(sched.lr(0)?, 0.5);
    /// sched.observe_at(1, 1.0); // improves on inf
    /// sched.observe_at(2, 1.0); // no better: cut
    /// assert_eq!(sched.lr(2)?, 0.375); // 0.5 -> 0.625 -> 0.75, cut to 0.375
    /// assert!((sched.lr(3)? - 0.4375).abs() < 1e-15); // the warmup continues from the cut: * 7/6
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_plateau<S: Schedule + 'static>(schedule: S, plateau: ReduceLrOnPlateau) -> Self {
        Self::with_plateau_boxed(Box::new(schedule), plateau)
    }

    /// [`LrScheduler::with_plateau`] for a boxed schedule.
    pub fn with_plateau_boxed(schedule: Box<dyn Schedule>, mut plateau: ReduceLrOnPlateau) -> Self {
        plateau.set_lr(schedule.chain(0, plateau.lr()));
        let name = format!("{}+ReduceLROnPlateau", schedule.name());
        let both = WithPlateau { schedule, plateau, name, at: 0, ahead: std::sync::Mutex::new(None) };
        Self { kind: Kind::WithPlateau(both) }
    }

    /// The learning rate for `step` (the optimizer's step count before the step); for plateau,
    /// the current lr whatever the step.
    ///
    /// # Errors
    /// The schedule's [`Schedule::check`]: [`Error::ScheduleEnded`] past `OneCycleLR`'s end.
    pub fn lr(&self, step: u64) -> Result<f64> {
        match &self.kind {
            Kind::Pure(s) => s.check(step).map(|()| s.lr(step)),
            Kind::Plateau(p) => Ok(p.lr()),
            Kind::WithPlateau(w) if step <= w.at => Ok(w.plateau.lr()),
            Kind::WithPlateau(w) => w.advance(step),
        }
    }

    /// The cycled momentum / beta1 for `step`, if the schedule cycles it.
    ///
    /// # Errors
    /// As [`LrScheduler::lr`].
    pub fn momentum(&self, step: u64) -> Result<Option<f64>> {
        match &self.kind {
            Kind::Pure(s) | Kind::WithPlateau(WithPlateau { schedule: s, .. }) => {
                s.check(step).map(|()| s.momentum(step))
            }
            Kind::Plateau(_) => Ok(None),
        }
    }

    /// Reports the metric after a step: plateau acts on it, pure schedules ignore it. With
    /// [`LrScheduler::with_plateau`], this is [`LrScheduler::observe_at`] one step after the
    /// last observation (one metric per step); use `observe_at` otherwise.
    pub fn observe(&mut self, metric: f64) {
        let at = match &self.kind {
            Kind::WithPlateau(w) => w.at.saturating_add(1),
            _ => 0,
        };
        self.observe_at(at, metric);
    }

    /// Reports the metric observed when `steps` optimizer steps are done (PyTorch's
    /// `plateau.step(metric)` after the other schedulers' `step()`); what [`crate::Optimizer`]
    /// calls. Only [`LrScheduler::with_plateau`] reads `steps`: its schedule first steps up to
    /// it (a `steps` before the last observation is taken as that one). A step past the
    /// schedule's end (`OneCycleLR`) leaves the lr where the schedule ended.
    pub fn observe_at(&mut self, steps: u64, metric: f64) {
        match &mut self.kind {
            Kind::Pure(_) => {}
            Kind::Plateau(p) => p.observe(metric),
            Kind::WithPlateau(w) => {
                if steps > w.at {
                    // A refused step cannot have been taken; the lr stays at the last good one.
                    let mut reached = w.at;
                    while reached < steps && w.schedule.check(reached + 1).is_ok() {
                        reached += 1;
                    }
                    if let Ok(lr) = w.advance(reached) {
                        w.plateau.set_lr(lr);
                    }
                    w.at = steps;
                }
                w.plateau.observe(metric);
                *w.ahead.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
            }
        }
    }

    /// The PyTorch class name of the schedule (`"LinearLR+ReduceLROnPlateau"` for both).
    pub fn name(&self) -> &str {
        match &self.kind {
            Kind::Pure(s) => s.name(),
            Kind::Plateau(_) => "ReduceLROnPlateau",
            Kind::WithPlateau(w) => &w.name,
        }
    }

    /// The pure schedule inside, if it is one (also the schedule beside a plateau).
    pub fn schedule(&self) -> Option<&dyn Schedule> {
        match &self.kind {
            Kind::Pure(s) | Kind::WithPlateau(WithPlateau { schedule: s, .. }) => Some(s.as_ref()),
            Kind::Plateau(_) => None,
        }
    }

    /// The plateau scheduler inside, if there is one.
    pub fn as_plateau(&self) -> Option<&ReduceLrOnPlateau> {
        match &self.kind {
            Kind::Pure(_) => None,
            Kind::Plateau(p) | Kind::WithPlateau(WithPlateau { plateau: p, .. }) => Some(p),
        }
    }

    /// What a checkpoint must keep besides the optimizer's step count.
    pub fn state(&self) -> SchedulerState {
        match &self.kind {
            Kind::Pure(_) => SchedulerState::Pure,
            Kind::Plateau(p) => SchedulerState::ReduceLROnPlateau(p.state()),
            Kind::WithPlateau(w) => SchedulerState::WithPlateau { at: w.at, plateau: w.plateau.state() },
        }
    }

    /// Restores a state taken by [`LrScheduler::state`] from a scheduler built the same way.
    ///
    /// # Errors
    /// [`Error::Config`] when the state is of another kind (a plateau state for a pure schedule
    /// or the reverse) or holds an invalid lr or counters.
    pub fn restore(&mut self, state: &SchedulerState) -> Result<()> {
        match (&mut self.kind, state) {
            (Kind::Pure(_), SchedulerState::Pure) => Ok(()),
            (Kind::Plateau(p), SchedulerState::ReduceLROnPlateau(s)) => p.restore(s),
            (Kind::WithPlateau(w), SchedulerState::WithPlateau { at, plateau }) => {
                if *at > 1 << 53 {
                    return Err(config_error(format!("WithPlateau state: at is {at}, past 2^53")));
                }
                w.plateau.restore(plateau)?;
                w.at = *at;
                *w.ahead.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(())
            }
            (_, state) => Err(config_error(format!(
                "cannot restore a {} state into {}",
                match state {
                    SchedulerState::Pure => "pure schedule's",
                    SchedulerState::ReduceLROnPlateau(_) => "ReduceLROnPlateau",
                    SchedulerState::WithPlateau { .. } => "WithPlateau",
                },
                self.name()
            ))),
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

/// A scheduler's checkpoint. Serialized with serde, e.g. as `{"kind":"Pure"}`,
/// `{"kind":"ReduceLROnPlateau","lr":0.05,"best":0.41,...}` or
/// `{"kind":"WithPlateau","at":120,"plateau":{"lr":0.05,...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum SchedulerState {
    /// A pure schedule: the optimizer's step count is all it needs.
    Pure,
    /// `ReduceLROnPlateau`'s counters, best metric and current lr.
    ReduceLROnPlateau(PlateauState),
    /// [`LrScheduler::with_plateau`]: the step of the last observation and the plateau's state,
    /// whose `lr` is the group's lr at that step.
    WithPlateau {
        /// The optimizer steps done at the last observation.
        at: u64,
        /// The plateau's counters, best metric and the lr at `at`.
        plateau: PlateauState,
    },
}

/// `Error::Config` for the scheduler.
pub(crate) fn config_error(message: String) -> Error {
    Error::Config { what: "scheduler", message }
}

/// The optimizer's check on the base lr (PyTorch: `Invalid learning rate: -1.0`); also rejects NaN
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

/// A float argument that becomes a rate (`max_lr`, `eta_min`, `min_lr`) or a decay factor
/// (`gamma`, a plateau's `factor`, which PyTorch takes negative, flipping the lr's sign every
/// decay): finite and at least 0.
pub(crate) fn check_finite_non_negative(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            name,
            format!("Invalid {name} value: {} (must be finite and non-negative)", py_float(value)),
        ))
    }
}

/// A momentum a schedule cycles to (`base_momentum`, `max_momentum`): in `[0, 1)`, what the
/// optimizer takes.
pub(crate) fn check_momentum_bound(name: &str, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(name, format!("Invalid {name} value: {} (must be in [0, 1))", py_float(value))))
    }
}

/// `x ^ n` for a step-sized exponent (`powi` while `n` fits an `i32`).
pub(crate) fn pow_steps(x: f64, n: u64) -> f64 {
    match i32::try_from(n) {
        Ok(n) => x.powi(n),
        Err(_) => x.powf(n as f64),
    }
}
