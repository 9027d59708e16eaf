//! `ReduceLROnPlateau`: the one stateful schedule, driven by a reported metric.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{check_base_lr, check_finite_non_negative, config_error};
use crate::error::{py_float, Error, Result};

/// Whether a lower or a higher metric is better (PyTorch's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PlateauMode {
    /// `"min"`: lower is better (a loss). The default.
    #[default]
    Min,
    /// `"max"`: higher is better (an accuracy).
    Max,
}

impl FromStr for PlateauMode {
    type Err = Error;
    /// `"min"` or `"max"`; anything else is PyTorch's `mode x is unknown!`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "min" => Ok(Self::Min),
            "max" => Ok(Self::Max),
            _ => Err(Error::invalid("mode", format!("mode {s} is unknown!"))),
        }
    }
}

/// How `threshold` measures a significant improvement (PyTorch's `threshold_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ThresholdMode {
    /// `"rel"`: better than `best * (1 -+ threshold)`. The default.
    #[default]
    Rel,
    /// `"abs"`: better than `best -+ threshold`.
    Abs,
}

impl FromStr for ThresholdMode {
    type Err = Error;
    /// `"rel"` or `"abs"`; anything else is PyTorch's `threshold mode x is unknown!`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "rel" => Ok(Self::Rel),
            "abs" => Ok(Self::Abs),
            _ => Err(Error::invalid("threshold_mode", format!("threshold mode {s} is unknown!"))),
        }
    }
}

/// Arguments of [`ReduceLrOnPlateau`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReduceLrOnPlateauConfig {
    /// Default [`PlateauMode::Min`].
    pub mode: PlateauMode,
    /// The lr is multiplied by this on a plateau; in `[0, 1)`. Default 0.1.
    pub factor: f64,
    /// Bad observations tolerated before the cut. Default 10.
    pub patience: u64,
    /// Least improvement that counts. Default 1e-4.
    pub threshold: f64,
    /// Default [`ThresholdMode::Rel`].
    pub threshold_mode: ThresholdMode,
    /// Observations ignored after a cut. Default 0.
    pub cooldown: u64,
    /// The lr never goes below this; finite and at least 0. Default 0.0.
    pub min_lr: f64,
    /// A cut smaller than this is skipped. Default 1e-8.
    pub eps: f64,
}

impl Default for ReduceLrOnPlateauConfig {
    fn default() -> Self {
        Self {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

/// What [`ReduceLrOnPlateau`] must checkpoint. `best` is written as a number, or as `"inf"`,
/// `"-inf"` or `"nan"`, which JSON cannot hold as numbers (before the first observation it is
/// the worst value, `inf` in min mode).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlateauState {
    /// The current lr.
    pub lr: f64,
    /// The best metric so far.
    #[serde(with = "float_or_name")]
    pub best: f64,
    /// Bad observations since the last improvement or cut.
    pub num_bad_epochs: u64,
    /// Observations left in the cooldown.
    pub cooldown_counter: u64,
    /// Observations so far.
    pub last_epoch: u64,
}

/// The most observations a restored state may count, as for an optimizer's steps: far beyond any
/// run, and far from where counting on could overflow.
const MAX_EPOCHS: u64 = 1 << 53;

/// PyTorch's `ReduceLROnPlateau`: cut the lr when the metric stops improving.
///
/// ```text
/// on observe(metric):
///   better = metric < best * (1 - threshold)   (min, rel)    metric < best - threshold  (min, abs)
///            metric > best * (1 + threshold)   (max, rel)    metric > best + threshold  (max, abs)
///   if better: best = metric, num_bad = 0  else num_bad += 1
///   if cooldown_counter > 0: cooldown_counter -= 1, num_bad = 0
///   if num_bad > patience:
///       new = max(lr * factor, min_lr); if lr - new > eps: lr = new
///       cooldown_counter = cooldown, num_bad = 0
/// ```
///
/// ```
/// use wgpu_optim::schedule::{ReduceLrOnPlateau, ReduceLrOnPlateauConfig};
/// # fn main() -> wgpu_optim::Result<()> {
/// let mut plateau = ReduceLrOnPlateau::new(0.1, ReduceLrOnPlateauConfig { patience: 1, factor: 0.5, ..Default::default() })?;
/// for loss in [1.0, 1.0, 1.0] {
///     plateau.observe(loss);
/// }
/// assert_eq!(plateau.lr(), 0.05);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ReduceLrOnPlateau {
    config: ReduceLrOnPlateauConfig,
    state: PlateauState,
}

impl ReduceLrOnPlateau {
    /// Checks the arguments and starts at `base_lr`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`]: PyTorch's `Factor should be < 1.0.`, or
    /// `Invalid learning rate: -1.0`. The JSON form also gives PyTorch's `mode x is unknown!` and
    /// `threshold mode x is unknown!`. Then what PyTorch takes only to produce a negative lr:
    /// `Invalid factor value: -0.5 (must be finite and non-negative)`, `Invalid min_lr value:
    /// -0.5 (must be finite and non-negative)`.
    pub fn new(base_lr: f64, config: ReduceLrOnPlateauConfig) -> Result<Self> {
        check_factor_below_one(config.factor)?;
        check_base_lr(base_lr)?;
        check_finite_non_negative("factor", config.factor)?;
        check_finite_non_negative("min_lr", config.min_lr)?;
        let best = worst(config.mode);
        let state = PlateauState { lr: base_lr, best, num_bad_epochs: 0, cooldown_counter: 0, last_epoch: 0 };
        Ok(Self { config, state })
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.state.lr
    }

    /// Sets the current lr: what another scheduler stepping the same group did to it.
    pub(crate) fn set_lr(&mut self, lr: f64) {
        self.state.lr = lr;
    }

    /// The arguments it was built with.
    pub fn config(&self) -> &ReduceLrOnPlateauConfig {
        &self.config
    }

    /// Reports the metric after a step (PyTorch's `scheduler.step(metric)`). The counters
    /// saturate: past 2^64 observations nothing wraps or panics.
    pub fn observe(&mut self, metric: f64) {
        let s = &mut self.state;
        s.last_epoch = s.last_epoch.saturating_add(1);
        if self.config.is_better(metric, s.best) {
            s.best = metric;
            s.num_bad_epochs = 0;
        } else {
            s.num_bad_epochs = s.num_bad_epochs.saturating_add(1);
        }
        if s.cooldown_counter > 0 {
            s.cooldown_counter -= 1;
            s.num_bad_epochs = 0;
        }
        if s.num_bad_epochs > self.config.patience {
            let new_lr = (s.lr * self.config.factor).max(self.config.min_lr);
            if s.lr - new_lr > self.config.eps {
                s.lr = new_lr;
            }
            s.cooldown_counter = self.config.cooldown;
            s.num_bad_epochs = 0;
        }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> PlateauState {
        self.state
    }

    /// Restores a state taken by [`ReduceLrOnPlateau::state`] of a scheduler built with the same
    /// arguments. Only a state such a scheduler can reach is taken: the checks below are what
    /// [`ReduceLrOnPlateau::observe`] keeps true, so a damaged or hand-edited state is refused
    /// rather than run.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the value if the lr is negative or not finite, `best` is
    /// NaN, `last_epoch` is past 2^53 (as an optimizer's step count may not be), or
    /// `num_bad_epochs` is over `patience` or `last_epoch`, `cooldown_counter` over `cooldown`,
    /// or `num_bad_epochs` not 0 during a cooldown.
    pub fn restore(&mut self, state: &PlateauState) -> Result<()> {
        let refuse = |message: String| Err(config_error(format!("ReduceLROnPlateau state: {message}")));
        let PlateauState { lr, best, num_bad_epochs, cooldown_counter, last_epoch } = *state;
        let (patience, cooldown) = (self.config.patience, self.config.cooldown);
        if !(lr.is_finite() && lr >= 0.0) {
            return refuse(format!("invalid lr {}", py_float(lr)));
        }
        // A NaN metric is never better than the best, so the best is never NaN.
        if best.is_nan() {
            return refuse("best is nan, which no metric makes it".into());
        }
        if last_epoch > MAX_EPOCHS {
            return refuse(format!("last_epoch is {last_epoch}, past 2^53"));
        }
        if num_bad_epochs > patience || num_bad_epochs > last_epoch {
            return refuse(format!(
                "num_bad_epochs is {num_bad_epochs}, over patience ({patience}) or last_epoch ({last_epoch}): not a \
                 state of this scheduler"
            ));
        }
        if cooldown_counter > cooldown {
            return refuse(format!(
                "cooldown_counter is {cooldown_counter}, over cooldown ({cooldown}): not a state of this scheduler"
            ));
        }
        if cooldown_counter > 0 && num_bad_epochs > 0 {
            return refuse(format!("num_bad_epochs is {num_bad_epochs} during a cooldown, where it is always 0"));
        }
        self.state = *state;
        Ok(())
    }
}

/// PyTorch's first check (NaN too, which PyTorch lets through).
pub(crate) fn check_factor_below_one(factor: f64) -> Result<()> {
    if factor.is_nan() || factor >= 1.0 {
        return Err(Error::invalid("factor", "Factor should be < 1.0.".into()));
    }
    Ok(())
}

impl ReduceLrOnPlateauConfig {
    fn is_better(&self, a: f64, best: f64) -> bool {
        match (self.mode, self.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < best * (1.0 - self.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => a < best - self.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => a > best * (self.threshold + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => a > best + self.threshold,
        }
    }
}

fn worst(mode: PlateauMode) -> f64 {
    match mode {
        PlateauMode::Min => f64::INFINITY,
        PlateauMode::Max => f64::NEG_INFINITY,
    }
}

/// Serde for an f64 that may be infinite or NaN: JSON numbers cannot be.
mod float_or_name {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        match *x {
            x if x.is_finite() => s.serialize_f64(x),
            x if x.is_nan() => s.serialize_str("nan"),
            x if x > 0.0 => s.serialize_str("inf"),
            _ => s.serialize_str("-inf"),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Name(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Number(x) => Ok(x),
            Repr::Name(name) => match name.as_str() {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "nan" => Ok(f64::NAN),
                _ => Err(de::Error::custom(format!("expected a number, \"inf\", \"-inf\" or \"nan\", got \"{name}\""))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `restore` refuses counters this high, but `observe` must not wrap or panic even on a
    /// state it never checked (overflow checks are on in debug builds).
    #[test]
    fn observe_saturates_its_counters() {
        let config = ReduceLrOnPlateauConfig { patience: u64::MAX, ..Default::default() };
        let mut plateau = ReduceLrOnPlateau::new(0.1, config).unwrap();
        plateau.state.num_bad_epochs = u64::MAX;
        plateau.state.last_epoch = u64::MAX;
        plateau.state.best = 0.5;
        plateau.observe(1.0);
        plateau.observe(f64::NAN);
        assert_eq!((plateau.state.num_bad_epochs, plateau.state.last_epoch), (u64::MAX, u64::MAX));
    }

    #[test]
    fn restore_takes_only_states_this_scheduler_can_reach() {
        let config = ReduceLrOnPlateauConfig { patience: 3, cooldown: 2, ..Default::default() };
        let mut plateau = ReduceLrOnPlateau::new(0.1, config).unwrap();
        for _ in 0..10 {
            plateau.observe(1.0);
        }
        let reached = plateau.state();
        let ok = PlateauState { lr: 0.01, best: 0.5, num_bad_epochs: 3, cooldown_counter: 0, last_epoch: 9 };
        plateau.restore(&ok).unwrap();
        for (state, message) in [
            (PlateauState { num_bad_epochs: 4, ..ok }, "num_bad_epochs is 4, over patience (3) or last_epoch (9)"),
            (
                PlateauState { num_bad_epochs: 2, last_epoch: 1, ..ok },
                "num_bad_epochs is 2, over patience (3) or last_epoch (1)",
            ),
            (PlateauState { num_bad_epochs: 0, cooldown_counter: 3, ..ok }, "cooldown_counter is 3, over cooldown (2)"),
            (PlateauState { cooldown_counter: 1, ..ok }, "num_bad_epochs is 3 during a cooldown"),
            (PlateauState { last_epoch: (1 << 53) + 1, ..ok }, "last_epoch is 9007199254740993, past 2^53"),
            (PlateauState { best: f64::NAN, ..ok }, "best is nan"),
            (PlateauState { lr: -1.0, ..ok }, "invalid lr -1"),
        ] {
            let error = plateau.restore(&state).unwrap_err().to_string();
            assert!(error.contains(message), "expected \"{message}\" in: {error}");
            assert_eq!(plateau.state(), ok, "a refused state was taken");
        }
        plateau.restore(&reached).unwrap();
    }
}
