//! Adamax (Kingma & Ba, 2014): Adam with the infinity norm.

use serde::{Deserialize, Serialize};

use super::{check_adam_like, Algorithm, StepInput};
use crate::error::Result;
use crate::kernel::{DeviceStep, Kernel, Scalars, StateArray};

pub(crate) static KERNEL: Kernel = Kernel {
    name: "adamax",
    source: include_str!("../../shaders/adamax.wgsl"),
    states: &[StateArray::always("exp_avg"), StateArray::always("exp_inf").non_negative()],
    flags: AdamaxScalars::FLAGS,
    scalars: AdamaxScalars::NAMES,
    scalar_docs: AdamaxScalars::DOCS,
    device_step: DeviceStep::Unsupported,
};

/// `torch.optim.Adamax`: its arguments, names and defaults.
///
/// The update at step `t` (from 1), as PyTorch computes it:
/// ```text
/// g   = -grad if maximize else grad
/// g   = g + weight_decay * p
/// m   = m + (1 - beta1) * (g - m)
/// u   = max(beta2 * u, |g| + eps)
/// p   = p - lr / (1 - beta1^t) * m / u
/// ```
/// Defaults: `lr` 2e-3, `betas` (0.9, 0.999), `eps` 1e-8, `weight_decay` 0, `maximize` false.
///
/// # Errors
/// [`crate::Error::InvalidHyperparameter`] with PyTorch's message: `Invalid learning rate: {lr}`,
/// `Invalid epsilon value: {eps}`, `Invalid beta parameter at index {i}: {beta}`,
/// `Invalid weight_decay value: {weight_decay}`.
///
/// # Example
/// ```
/// use wgpu_optim::AdamaxConfig;
/// assert_eq!(AdamaxConfig::default().lr, 2e-3);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamaxConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first moment and of the infinity norm.
    pub betas: (f64, f64),
    /// Added to `|g|` inside the max.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for AdamaxConfig {
    fn default() -> Self {
        Self { lr: 2e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, maximize: false }
    }
}

crate::scalars! {
    /// Adamax's per-step scalars, in f64, as the kernel and the CPU mirror use them.
    pub struct AdamaxScalars {
        /// L2 coefficient.
        weight_decay,
        /// `1 - beta1`.
        one_minus_beta1,
        /// `beta2`.
        beta2,
        /// `eps`.
        eps,
        /// `lr / (1 - beta1^t)`.
        clr,
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

impl AdamaxScalars {
    /// The scalars of step `input.step` for `config`; a cycled momentum replaces `betas[0]`.
    pub fn new(config: &AdamaxConfig, input: &StepInput) -> Self {
        let beta1 = input.momentum.unwrap_or(config.betas.0);
        Self {
            weight_decay: config.weight_decay,
            one_minus_beta1: 1.0 - beta1,
            beta2: config.betas.1,
            eps: config.eps,
            clr: input.lr / (1.0 - beta1.powf(input.step as f64)),
            maximize: config.maximize,
        }
    }
}

impl Algorithm for AdamaxConfig {
    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("adamax weight_decay", AdamaxConfig { weight_decay: 0.05, ..Default::default() }),
            // Last of its kernel, so the large sizes take it: no L2 term (see NAdam's cases).
            ("adamax maximize", AdamaxConfig { maximize: true, ..Default::default() }),
        ]
    }
    fn name(&self) -> &'static str {
        "Adamax"
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
        check_adam_like(self.lr, self.eps, self.betas, self.weight_decay)
    }
    fn scalars(&self, input: &StepInput) -> Scalars {
        AdamaxScalars::new(self, input).pack()
    }
}
