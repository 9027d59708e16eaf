//! Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), with the semantics of
//! lion-pytorch 0.2.5, the implementation people port from.

use serde::{Deserialize, Serialize};

use super::{check_non_negative, Algorithm, StepInput};
use crate::error::{py_float, Error, Result};
use crate::kernel::{DeviceStep, Kernel, Scalars, StateArray};

pub(crate) static KERNEL: Kernel = Kernel {
    name: "lion",
    source: include_str!("../../shaders/lion.wgsl"),
    states: &[StateArray::always("exp_avg")],
    flags: LionScalars::FLAGS,
    scalars: LionScalars::NAMES,
    scalar_docs: LionScalars::DOCS,
    device_step: DeviceStep::Independent,
};

/// Lion (`lion_pytorch.Lion`, lion-pytorch 0.2.5): its arguments, names and defaults.
///
/// The update of each step, as lion-pytorch computes it (`m` starts at 0; no bias correction):
/// ```text
/// p = p * (1 - lr * weight_decay)             with this step's lr, before the update
/// c = beta1 * m + (1 - beta1) * g
/// p = p - lr * sign(c)                        sign(0) = 0
/// m = beta2 * m + (1 - beta2) * g
/// ```
/// With `decoupled_weight_decay`, `weight_decay` is divided by the constructor's `lr` first (so the
/// decay per step is `lr / lr_0 * weight_decay`, independent of the scale of the rate).
///
/// Defaults: `lr` 1e-4, `betas` (0.9, 0.99), `weight_decay` 0, `decoupled_weight_decay` false.
/// Lion's rate is typically 3-10x smaller than AdamW's and its weight decay 3-10x larger. It has
/// no `eps` and no `maximize` (lion-pytorch has neither). `cycle_momentum` schedules cycle
/// `betas[0]`, as PyTorch's schedulers do for any optimizer with `betas`.
///
/// # Errors
/// [`crate::Error::InvalidHyperparameter`]. lion-pytorch asserts `lr > 0` and `0 <= beta <= 1`;
/// we say so with PyTorch's messages: `Invalid learning rate: {lr}`, `Invalid beta parameter at
/// index {i}: {beta}`; and, as every optimizer of the crate, refuse a negative or non-finite
/// `weight_decay` (`Invalid weight_decay value: {weight_decay}`), which lion-pytorch lets through.
///
/// # Example
/// ```
/// use wgpu_optim::LionConfig;
/// let config = LionConfig { lr: 3e-4, weight_decay: 0.1, ..Default::default() };
/// assert_eq!(config.betas, (0.9, 0.99));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LionConfig {
    /// Learning rate.
    pub lr: f64,
    /// `beta1` weighs the momentum in the sign's argument, `beta2` is the momentum's own decay.
    pub betas: (f64, f64),
    /// Decoupled weight decay: the parameter is multiplied by `1 - lr * weight_decay` each step.
    pub weight_decay: f64,
    /// Divide `weight_decay` by the constructor's `lr` (lion-pytorch's flag).
    pub decoupled_weight_decay: bool,
}

impl Default for LionConfig {
    fn default() -> Self {
        Self { lr: 1e-4, betas: (0.9, 0.99), weight_decay: 0.0, decoupled_weight_decay: false }
    }
}

crate::scalars! {
    /// Lion's per-step scalars, in f64, as the kernel and the CPU mirror use them.
    pub struct LionScalars {
        /// `1 - lr * weight_decay` (with `weight_decay / lr_0` when decoupled).
        decay,
        /// This step's learning rate.
        lr,
        /// `beta1`.
        beta1,
        /// `1 - beta1`.
        one_minus_beta1,
        /// `beta2`.
        beta2,
        /// `1 - beta2`.
        one_minus_beta2,
    }
    switches {}
    flags {}
}

impl LionScalars {
    /// The scalars of a step of `config`. A cycled momentum replaces `betas[0]`.
    pub fn new(config: &LionConfig, input: &StepInput) -> Self {
        let beta1 = input.momentum.unwrap_or(config.betas.0);
        let beta2 = config.betas.1;
        let weight_decay =
            if config.decoupled_weight_decay { config.weight_decay / config.lr } else { config.weight_decay };
        Self {
            decay: 1.0 - input.lr * weight_decay,
            lr: input.lr,
            beta1,
            one_minus_beta1: 1.0 - beta1,
            beta2,
            one_minus_beta2: 1.0 - beta2,
        }
    }
}

impl Algorithm for LionConfig {
    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("lion", LionConfig { lr: 1e-3, ..Default::default() }),
            ("lion weight_decay", LionConfig { lr: 3e-4, weight_decay: 0.1, ..Default::default() }),
            (
                "lion decoupled",
                LionConfig { lr: 3e-4, weight_decay: 1e-4, decoupled_weight_decay: true, betas: (0.95, 0.98) },
            ),
        ]
    }
    fn name(&self) -> &'static str {
        "Lion"
    }
    fn kernel(&self) -> &'static Kernel {
        &KERNEL
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.betas.0)
    }
    fn validate(&self) -> Result<()> {
        // lion-pytorch: `assert lr > 0.` and `assert all([0. <= beta <= 1. for beta in betas])`.
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid("lr", format!("Invalid learning rate: {}", py_float(self.lr))));
        }
        for (index, beta) in [self.betas.0, self.betas.1].into_iter().enumerate() {
            if !(0.0..=1.0).contains(&beta) {
                return Err(Error::invalid(
                    "betas",
                    format!("Invalid beta parameter at index {index}: {}", py_float(beta)),
                ));
            }
        }
        check_non_negative("weight_decay", "Invalid weight_decay value", self.weight_decay)
    }
    fn scalars(&self, input: &StepInput) -> Scalars {
        LionScalars::new(self, input).pack()
    }
}
