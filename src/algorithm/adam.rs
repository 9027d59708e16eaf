//! Adam (Kingma & Ba, 2014) with PyTorch's options: L2 or decoupled weight decay, AMSGrad,
//! maximize.

use serde::{Deserialize, Serialize};

use super::{check_adam_like, Algorithm, StepInput};
use crate::error::Result;
use crate::kernel::{DeviceStep, Kernel, Scalars, StateArray};

pub(crate) static KERNEL: Kernel = Kernel {
    name: "adam",
    source: include_str!("../../shaders/adam.wgsl"),
    states: &[
        StateArray::always("exp_avg"),
        StateArray::always("exp_avg_sq").non_negative(),
        StateArray::when("max_exp_avg_sq", "AMSGRAD").non_negative(),
    ],
    flags: AdamScalars::FLAGS,
    scalars: AdamScalars::NAMES,
    scalar_docs: AdamScalars::DOCS,
    device_step: DeviceStep::Corrected(include_str!("../../shaders/adam_step.wgsl")),
};

/// `torch.optim.Adam`: its arguments, names and defaults.
///
/// The update at step `t` (from 1), as PyTorch computes it:
/// ```text
/// g      = -grad if maximize else grad
/// p      = p * (1 - lr * weight_decay)          if decoupled_weight_decay
/// g      = g + weight_decay * p                 otherwise
/// m      = m + (1 - beta1) * (g - m)
/// v      = beta2 * v + (1 - beta2) * g^2
/// v_max  = max(v_max, v)                        if amsgrad (of the raw v), and v_hat = v_max
/// p      = p - lr / (1 - beta1^t) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
/// ```
/// Defaults: `lr` 1e-3, `betas` (0.9, 0.999), `eps` 1e-8, `weight_decay` 0, `amsgrad`,
/// `maximize` and `decoupled_weight_decay` false. (burn's default `eps` is 1e-5; ours is PyTorch's.)
///
/// # Errors
/// [`crate::Error::InvalidHyperparameter`] with PyTorch's message: `Invalid learning rate: {lr}`,
/// `Invalid epsilon value: {eps}`, `Invalid beta parameter at index {i}: {beta}`,
/// `Invalid weight_decay value: {weight_decay}`.
///
/// # Example
/// ```
/// use wgpu_optim::AdamConfig;
/// let config = AdamConfig { lr: 3e-4, amsgrad: true, ..Default::default() };
/// assert_eq!(config.betas, (0.9, 0.999));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment.
    pub betas: (f64, f64),
    /// Added to the denominator, after bias correction.
    pub eps: f64,
    /// L2 penalty added to the gradient (or decoupled, see below).
    pub weight_decay: f64,
    /// Keep the running maximum of the second moment.
    pub amsgrad: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// Decay the parameter directly, as AdamW, instead of adding to the gradient.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
            decoupled_weight_decay: false,
        }
    }
}

crate::scalars! {
    /// Adam's per-step scalars, in f64, as the kernel and the CPU mirror use them.
    pub struct AdamScalars {
        /// `1 - lr * weight_decay` when decoupled, else 1.
        decay,
        /// The L2 coefficient when not decoupled, else 0.
        weight_decay,
        /// `1 - beta1`.
        one_minus_beta1,
        /// `beta2`.
        beta2,
        /// `1 - beta2`.
        one_minus_beta2,
        /// `lr / (1 - beta1^t)`.
        step_size,
        /// `sqrt(1 - beta2^t)`.
        bias_correction2_sqrt,
        /// `eps`.
        eps,
    }
    switches {
        /// Negate the gradient.
        maximize,
        /// Keep the running maximum of `v`.
        amsgrad,
    }
    flags {
        MAXIMIZE = |u| u.maximize,
        AMSGRAD = |u| u.amsgrad,
        WEIGHT_DECAY = |u| u.weight_decay != 0.0,
    }
}

impl AdamScalars {
    /// The scalars of step `input.step` for `config`. A cycled momentum replaces `betas[0]`, in the
    /// moment update and in the bias correction alike, as PyTorch does.
    pub fn new(config: &AdamConfig, input: &StepInput) -> Self {
        let (beta1, beta2) = (input.momentum.unwrap_or(config.betas.0), config.betas.1);
        let t = input.step as f64;
        let (decay, weight_decay) = if config.decoupled_weight_decay {
            (1.0 - input.lr * config.weight_decay, 0.0)
        } else {
            (1.0, config.weight_decay)
        };
        Self {
            decay,
            weight_decay,
            one_minus_beta1: 1.0 - beta1,
            beta2,
            one_minus_beta2: 1.0 - beta2,
            step_size: input.lr / (1.0 - beta1.powf(t)),
            bias_correction2_sqrt: (1.0 - beta2.powf(t)).sqrt(),
            eps: config.eps,
            maximize: config.maximize,
            amsgrad: config.amsgrad,
        }
    }
}

impl Algorithm for AdamConfig {
    fn cases() -> Vec<(&'static str, Self)> {
        let adam = AdamConfig::default();
        vec![
            ("adam", adam.clone()),
            ("adam amsgrad", AdamConfig { amsgrad: true, ..adam.clone() }),
            ("adam weight_decay", AdamConfig { weight_decay: 0.05, ..adam.clone() }),
            ("adam maximize", AdamConfig { maximize: true, ..adam.clone() }),
            ("adam decoupled", AdamConfig { weight_decay: 0.1, decoupled_weight_decay: true, ..adam.clone() }),
            (
                "adam amsgrad decoupled maximize",
                AdamConfig { amsgrad: true, weight_decay: 0.1, decoupled_weight_decay: true, maximize: true, ..adam },
            ),
        ]
    }
    fn name(&self) -> &'static str {
        "Adam"
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
        AdamScalars::new(self, input).pack()
    }
}
