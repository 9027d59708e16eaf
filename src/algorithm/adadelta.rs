//! Adadelta (Zeiler, 2012).

use serde::{Deserialize, Serialize};

use super::{check_non_negative, Algorithm, StepInput};
use crate::error::{py_float, Error, Result};
use crate::kernel::{DeviceStep, Kernel, Scalars, StateArray};

pub(crate) static KERNEL: Kernel = Kernel {
    name: "adadelta",
    source: include_str!("../../shaders/adadelta.wgsl"),
    states: &[StateArray::always("square_avg").non_negative(), StateArray::always("acc_delta").non_negative()],
    flags: AdadeltaScalars::FLAGS,
    scalars: AdadeltaScalars::NAMES,
    scalar_docs: AdadeltaScalars::DOCS,
    device_step: DeviceStep::Independent,
};

/// `torch.optim.Adadelta`: its arguments, names and defaults.
///
/// The update, as PyTorch computes it:
/// ```text
/// g     = -grad if maximize else grad
/// g     = g + weight_decay * p
/// v     = rho * v + (1 - rho) * g^2
/// delta = sqrt(acc + eps) / sqrt(v + eps) * g
/// acc   = rho * acc + (1 - rho) * delta^2
/// p     = p - lr * delta
/// ```
/// Defaults: `lr` 1.0, `rho` 0.9, `eps` 1e-6, `weight_decay` 0, `maximize` false.
///
/// # Errors
/// [`crate::Error::InvalidHyperparameter`] with PyTorch's message: `Invalid learning rate: {lr}`,
/// `Invalid rho value: {rho}`, `Invalid epsilon value: {eps}`,
/// `Invalid weight_decay value: {weight_decay}`.
///
/// # Example
/// ```
/// use wgpu_optim::AdadeltaConfig;
/// assert_eq!(AdadeltaConfig::default().rho, 0.9);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdadeltaConfig {
    /// Learning rate (a scale on the step; Adadelta needs none in theory).
    pub lr: f64,
    /// Decay rate of both running averages.
    pub rho: f64,
    /// Added inside both square roots.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for AdadeltaConfig {
    fn default() -> Self {
        Self { lr: 1.0, rho: 0.9, eps: 1e-6, weight_decay: 0.0, maximize: false }
    }
}

crate::scalars! {
    /// Adadelta's per-step scalars, in f64, as the kernel and the CPU mirror use them.
    pub struct AdadeltaScalars {
        /// Learning rate.
        lr,
        /// `rho`.
        rho,
        /// `1 - rho`.
        one_minus_rho,
        /// `eps`.
        eps,
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

impl AdadeltaScalars {
    /// The scalars of a step for `config`.
    pub fn new(config: &AdadeltaConfig, input: &StepInput) -> Self {
        Self {
            lr: input.lr,
            rho: config.rho,
            one_minus_rho: 1.0 - config.rho,
            eps: config.eps,
            weight_decay: config.weight_decay,
            maximize: config.maximize,
        }
    }
}

impl Algorithm for AdadeltaConfig {
    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("adadelta", AdadeltaConfig::default()),
            (
                "adadelta weight_decay maximize",
                AdadeltaConfig { weight_decay: 0.05, maximize: true, ..Default::default() },
            ),
        ]
    }
    fn name(&self) -> &'static str {
        "Adadelta"
    }
    fn kernel(&self) -> &'static Kernel {
        &KERNEL
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn validate(&self) -> Result<()> {
        check_non_negative("lr", "Invalid learning rate", self.lr)?;
        if !(0.0..=1.0).contains(&self.rho) {
            return Err(Error::invalid("rho", format!("Invalid rho value: {}", py_float(self.rho))));
        }
        check_non_negative("eps", "Invalid epsilon value", self.eps)?;
        check_non_negative("weight_decay", "Invalid weight_decay value", self.weight_decay)
    }
    fn scalars(&self, input: &StepInput) -> Scalars {
        AdadeltaScalars::new(self, input).pack()
    }
}
