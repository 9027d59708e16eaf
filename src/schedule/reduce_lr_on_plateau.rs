//! `ReduceLROnPlateau`: the one stateful schedule, driven by a reported metric.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{check_base_lr, config_error};
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
    /// The lr is multiplied by this on a plateau; below 1. Default 0.1.
    pub factor: f64,
    /// Bad observations tolerated before the cut. Default 10.
    pub patience: u64,
    /// Least improvement that counts. Default 1e-4.
    pub threshold: f64,
    /// Default [`ThresholdMode::Rel`].
    pub threshold_mode: ThresholdMode,
    /// Observations ignored after a cut. Default 0.
    pub cooldown: u64,
    /// The lr never goes below this. Default 0.0.
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
    /// `Invalid learning rate: -1`. The JSON form also gives PyTorch's `mode x is unknown!` and
    /// `threshold mode x is unknown!`.
    pub fn new(base_lr: f64, config: ReduceLrOnPlateauConfig) -> Result<Self> {
        if config.factor.is_nan() || config.factor >= 1.0 {
            return Err(Error::invalid("factor", "Factor should be < 1.0.".into()));
        }
        check_base_lr(base_lr)?;
        let best = worst(config.mode);
        let state = PlateauState { lr: base_lr, best, num_bad_epochs: 0, cooldown_counter: 0, last_epoch: 0 };
        Ok(Self { config, state })
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.state.lr
    }

    /// The arguments it was built with.
    pub fn config(&self) -> &ReduceLrOnPlateauConfig {
        &self.config
    }

    /// Reports the metric after a step (PyTorch's `scheduler.step(metric)`).
    pub fn observe(&mut self, metric: f64) {
        let s = &mut self.state;
        s.last_epoch += 1;
        if self.config.is_better(metric, s.best) {
            s.best = metric;
            s.num_bad_epochs = 0;
        } else {
            s.num_bad_epochs += 1;
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

    /// Restores a state taken by [`ReduceLrOnPlateau::state`].
    ///
    /// # Errors
    /// [`crate::Error::Config`] if the state's lr is negative or not finite.
    pub fn restore(&mut self, state: &PlateauState) -> Result<()> {
        if !(state.lr.is_finite() && state.lr >= 0.0) {
            return Err(config_error(format!("ReduceLROnPlateau state: invalid lr {}", py_float(state.lr))));
        }
        self.state = *state;
        Ok(())
    }
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
