//! ASGD: averaged stochastic gradient descent (Polyak & Juditsky, 1992).

use serde::{Deserialize, Serialize};

use super::{check_non_negative, Algorithm, Carry, StepInput};
use crate::error::{py_float, Error, Result};
use crate::kernel::{DeviceStep, Kernel, Scalars, StateArray};

pub(crate) static KERNEL: Kernel = Kernel {
    name: "asgd",
    source: include_str!("../../shaders/asgd.wgsl"),
    states: &[StateArray::always("ax")],
    flags: AsgdScalars::FLAGS,
    scalars: AsgdScalars::NAMES,
    scalar_docs: AsgdScalars::DOCS,
    device_step: DeviceStep::Unsupported,
};

/// `torch.optim.ASGD`: its arguments, names and defaults.
///
/// The update at step `t` (from 1), as PyTorch's source computes it (its docs give no formula),
/// with `lr_t` the learning rate of step `t`:
/// ```text
/// eta_1 = lr_1,  mu_1 = 1                              (set at the tensor's first step)
/// g     = -grad if maximize else grad
/// g     = g + weight_decay * p
/// p     = p * (1 - lambd * eta_t) - eta_t * g
/// ax    = p if mu_t == 1 else ax + mu_t * (p - ax)    (the average, kept as state only)
/// eta_t+1 = lr_t / (1 + lambd * lr_t * t)^alpha       (for the next step)
/// mu_t+1  = 1 / max(1, t - t0)
/// ```
/// `eta` and `mu` are host-side values carried from one step to the next ([`Carry`]
/// `[eta, mu]`), in f64: under a schedule `eta` lags the lr by one step, as PyTorch's does.
/// Defaults: `lr` 0.01, `lambd` 1e-4, `alpha` 0.75, `t0` 1e6, `weight_decay` 0, `maximize` false.
///
/// # Errors
/// [`crate::Error::InvalidHyperparameter`] with PyTorch's message: `Invalid learning rate: {lr}`,
/// `Invalid lambd value: {lambd}`, `Invalid alpha value: {alpha}`,
/// `Invalid weight_decay value: {weight_decay}` (each refused when negative, in PyTorch's order);
/// and, beyond PyTorch, a `t0` that is not finite. NaN and infinite values are refused everywhere.
///
/// # Example
/// ```
/// use wgpu_optim::AsgdConfig;
/// assert_eq!(AsgdConfig::default().t0, 1e6);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay term.
    pub lambd: f64,
    /// Power of the eta update.
    pub alpha: f64,
    /// The step at which averaging starts.
    pub t0: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for AsgdConfig {
    fn default() -> Self {
        Self { lr: 1e-2, lambd: 1e-4, alpha: 0.75, t0: 1e6, weight_decay: 0.0, maximize: false }
    }
}

crate::scalars! {
    /// ASGD's per-step scalars, in f64, as the kernel and the CPU mirror use them.
    pub struct AsgdScalars {
        /// The step size of this step.
        eta,
        /// `1 - lambd * eta`.
        decay,
        /// The averaging weight of this step.
        mu,
        /// L2 coefficient.
        weight_decay,
    }
    switches {
        /// Negate the gradient.
        maximize,
    }
    flags {
        MAXIMIZE = |u| u.maximize,
        WEIGHT_DECAY = |u| u.weight_decay != 0.0,
    }
}

impl AsgdScalars {
    /// The scalars of step `input.step` for `config`: `eta` and `mu` from `input.carry`.
    pub fn new(config: &AsgdConfig, input: &StepInput) -> Self {
        let Carry([eta, mu]) = input.carry;
        Self { eta, decay: 1.0 - config.lambd * eta, mu, weight_decay: config.weight_decay, maximize: config.maximize }
    }
}

impl Algorithm for AsgdConfig {
    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            // t0 small, so that averaging starts within the run.
            ("asgd averaging", AsgdConfig { t0: 5.0, lambd: 1e-2, ..Default::default() }),
            ("asgd weight_decay maximize", AsgdConfig { weight_decay: 0.05, maximize: true, ..Default::default() }),
        ]
    }
    fn name(&self) -> &'static str {
        "ASGD"
    }
    fn kernel(&self) -> &'static Kernel {
        &KERNEL
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn validate(&self) -> Result<()> {
        check_non_negative("lr", "Invalid learning rate", self.lr)?;
        check_non_negative("lambd", "Invalid lambd value", self.lambd)?;
        check_non_negative("alpha", "Invalid alpha value", self.alpha)?;
        check_non_negative("weight_decay", "Invalid weight_decay value", self.weight_decay)?;
        // Beyond PyTorch, which does not check t0.
        if !self.t0.is_finite() {
            return Err(Error::invalid("t0", format!("Invalid t0 value: {} (t0 must be finite)", py_float(self.t0))));
        }
        Ok(())
    }
    fn carry_start(&self, first: &StepInput) -> Option<Carry> {
        // PyTorch's state initialisation: `eta` is the group's lr at the first step, `mu` is 1.
        Some(Carry([first.lr, 1.0]))
    }
    fn carry_next(&self, input: &StepInput) -> Carry {
        // PyTorch's update after the step, with this step's lr and count.
        let (lr, step) = (input.lr, input.step as f64);
        Carry([lr / (1.0 + self.lambd * lr * step).powf(self.alpha), 1.0 / (step - self.t0).max(1.0)])
    }
    fn check_carry(&self, carry: &Carry) -> std::result::Result<(), String> {
        // eta = lr / (1 + lambd * lr * t)^alpha >= 0; mu = 1 / max(1, t - t0) in (0, 1].
        let [eta, mu] = carry.0;
        if eta >= 0.0 && eta.is_finite() && mu > 0.0 && mu <= 1.0 {
            Ok(())
        } else {
            Err(format!("eta {eta} must be finite and >= 0, mu {mu} in (0, 1]"))
        }
    }
    fn scalars(&self, input: &StepInput) -> Scalars {
        AsgdScalars::new(self, input).pack()
    }
}
