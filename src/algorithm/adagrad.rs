//! AdaGrad (Duchi et al., 2011).

use serde::{Deserialize, Serialize};

use super::{check_non_negative, Algorithm, StepInput};
use crate::error::Result;
use crate::kernel::{DeviceStep, Kernel, Scalars, StateArray};

pub(crate) static KERNEL: Kernel = Kernel {
    name: "adagrad",
    source: include_str!("../../shaders/adagrad.wgsl"),
    states: &[StateArray::always("sum").non_negative()],
    flags: AdaGradScalars::FLAGS,
    scalars: AdaGradScalars::NAMES,
    scalar_docs: AdaGradScalars::DOCS,
    device_step: DeviceStep::Unsupported,
};

/// `torch.optim.Adagrad`: its arguments, names and defaults.
///
/// The update at step `t` (from 1), as PyTorch computes it:
/// ```text
/// g   = -grad if maximize else grad
/// g   = g + weight_decay * p
/// clr = lr / (1 + (t - 1) * lr_decay)
/// sum = sum + g^2                     (sum starts at initial_accumulator_value)
/// p   = p - clr * g / (sqrt(sum) + eps)
/// ```
/// Defaults: `lr` 0.01, `lr_decay` 0, `weight_decay` 0, `initial_accumulator_value` 0, `eps` 1e-10,
/// `maximize` false.
///
/// # Errors
/// [`crate::Error::InvalidHyperparameter`] with PyTorch's message: `Invalid learning rate: {lr}`,
/// `Invalid lr_decay value: {lr_decay}`, `Invalid weight_decay value: {weight_decay}`,
/// `Invalid initial_accumulator_value value: {value}`, `Invalid epsilon value: {eps}`.
///
/// # Example
/// ```
/// use wgpu_optim::AdaGradConfig;
/// let config = AdaGradConfig { initial_accumulator_value: 0.1, ..Default::default() };
/// assert_eq!(config.eps, 1e-10);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaGradConfig {
    /// Learning rate.
    pub lr: f64,
    /// Learning-rate decay per step.
    pub lr_decay: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Where the sum of squares starts.
    pub initial_accumulator_value: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for AdaGradConfig {
    fn default() -> Self {
        Self { lr: 1e-2, lr_decay: 0.0, weight_decay: 0.0, initial_accumulator_value: 0.0, eps: 1e-10, maximize: false }
    }
}

crate::scalars! {
    /// AdaGrad's per-step scalars, in f64, as the kernel and the CPU mirror use them.
    pub struct AdaGradScalars {
        /// `lr / (1 + (t - 1) * lr_decay)`.
        clr,
        /// L2 coefficient.
        weight_decay,
        /// Added to the denominator.
        eps,
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

impl AdaGradScalars {
    /// The scalars of step `input.step` for `config`.
    pub fn new(config: &AdaGradConfig, input: &StepInput) -> Self {
        Self {
            clr: input.lr / (1.0 + (input.step as f64 - 1.0) * config.lr_decay),
            weight_decay: config.weight_decay,
            eps: config.eps,
            maximize: config.maximize,
        }
    }
}

impl Algorithm for AdaGradConfig {
    fn cases() -> Vec<(&'static str, Self)> {
        let adagrad = AdaGradConfig::default();
        vec![
            ("adagrad", adagrad.clone()),
            ("adagrad lr_decay", AdaGradConfig { lr_decay: 0.1, ..adagrad.clone() }),
            ("adagrad weight_decay", AdaGradConfig { weight_decay: 0.05, ..adagrad.clone() }),
            ("adagrad initial_accumulator", AdaGradConfig { initial_accumulator_value: 0.5, ..adagrad.clone() }),
            (
                "adagrad all",
                AdaGradConfig {
                    lr_decay: 0.01,
                    weight_decay: 0.01,
                    initial_accumulator_value: 0.1,
                    maximize: true,
                    ..adagrad
                },
            ),
        ]
    }
    fn name(&self) -> &'static str {
        "Adagrad"
    }
    fn kernel(&self) -> &'static Kernel {
        &KERNEL
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn validate(&self) -> Result<()> {
        check_non_negative("lr", "Invalid learning rate", self.lr)?;
        check_non_negative("lr_decay", "Invalid lr_decay value", self.lr_decay)?;
        check_non_negative("weight_decay", "Invalid weight_decay value", self.weight_decay)?;
        check_non_negative(
            "initial_accumulator_value",
            "Invalid initial_accumulator_value value",
            self.initial_accumulator_value,
        )?;
        check_non_negative("eps", "Invalid epsilon value", self.eps)
    }
    fn initial_state(&self, _state: usize, _lr: f64) -> f64 {
        self.initial_accumulator_value
    }
    fn scalars(&self, input: &StepInput) -> Scalars {
        AdaGradScalars::new(self, input).pack()
    }
}
