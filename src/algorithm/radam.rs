//! RAdam (Liu et al., 2019): Adam with the variance of its adaptive rate rectified.

use serde::{Deserialize, Serialize};

use super::{check_adam_like, Algorithm, StepInput};
use crate::error::Result;
use crate::kernel::{DeviceStep, Kernel, Scalars, StateArray};

pub(crate) static KERNEL: Kernel = Kernel {
    name: "radam",
    source: include_str!("../../shaders/radam.wgsl"),
    states: &[StateArray::always("exp_avg"), StateArray::always("exp_avg_sq").non_negative()],
    flags: RAdamScalars::FLAGS,
    scalars: RAdamScalars::NAMES,
    scalar_docs: RAdamScalars::DOCS,
    device_step: DeviceStep::Unsupported,
};

/// `torch.optim.RAdam`: its arguments, names and defaults.
///
/// The update at step `t` (from 1), as PyTorch computes it:
/// ```text
/// g       = -grad if maximize else grad
/// p       = p * (1 - lr * weight_decay)     if decoupled_weight_decay
/// g       = g + weight_decay * p            otherwise
/// m       = m + (1 - beta1) * (g - m)
/// v       = beta2 * v + (1 - beta2) * g^2
/// rho_inf = 2 / (1 - beta2) - 1
/// rho_t   = rho_inf - 2 t beta2^t / (1 - beta2^t)
/// r       = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
/// p       = p - lr * m / (1 - beta1^t) * r * sqrt(1 - beta2^t) / (sqrt(v) + eps)   if rho_t > 5
/// p       = p - lr * m / (1 - beta1^t)                                               otherwise
/// ```
/// Note where `eps` goes: before the bias correction, unlike Adam.
/// Defaults: `lr` 1e-3, `betas` (0.9, 0.999), `eps` 1e-8, `weight_decay` 0,
/// `decoupled_weight_decay` and `maximize` false.
///
/// # Errors
/// [`crate::Error::InvalidHyperparameter`] with PyTorch's message: `Invalid learning rate: {lr}`,
/// `Invalid epsilon value: {eps}`, `Invalid beta parameter at index {i}: {beta}`,
/// `Invalid weight_decay value: {weight_decay}`.
///
/// # Example
/// ```
/// use wgpu_optim::RAdamConfig;
/// let config = RAdamConfig { weight_decay: 0.01, decoupled_weight_decay: true, ..Default::default() };
/// assert_eq!(config.lr, 1e-3);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RAdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment.
    pub betas: (f64, f64),
    /// Added to `sqrt(v)`, before bias correction.
    pub eps: f64,
    /// L2 penalty added to the gradient (or decoupled, see below).
    pub weight_decay: f64,
    /// Decay the parameter directly, as AdamW, instead of adding to the gradient.
    pub decoupled_weight_decay: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for RAdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
            maximize: false,
        }
    }
}

crate::scalars! {
    /// RAdam's per-step scalars, in f64, as the kernel and the CPU mirror use them.
    pub struct RAdamScalars {
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
        /// `lr / (1 - beta1^t)`, times the rectification `r` when rectified.
        step_size,
        /// `sqrt(1 - beta2^t)`.
        bias_correction2_sqrt,
        /// `eps`.
        eps,
    }
    switches {
        /// Negate the gradient.
        maximize,
        /// `rho_t > 5`: the adaptive rate is used.
        rectified,
    }
    flags {
        MAXIMIZE = |u| u.maximize,
        RECTIFIED = |u| u.rectified,
        WEIGHT_DECAY = |u| u.weight_decay != 0.0,
    }
}

impl RAdamScalars {
    /// The scalars of step `input.step` for `config`; a cycled momentum replaces `betas[0]`.
    pub fn new(config: &RAdamConfig, input: &StepInput) -> Self {
        let (beta1, beta2) = (input.momentum.unwrap_or(config.betas.0), config.betas.1);
        let t = input.step as f64;
        let (decay, weight_decay) = if config.decoupled_weight_decay {
            (1.0 - input.lr * config.weight_decay, 0.0)
        } else {
            (1.0, config.weight_decay)
        };
        let bias_correction1 = 1.0 - beta1.powf(t);
        let bias_correction2 = 1.0 - beta2.powf(t);
        let rho_inf = 2.0 / (1.0 - beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * t * beta2.powf(t) / bias_correction2;
        let rectified = rho_t > 5.0;
        let rect = if rectified {
            ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)).sqrt()
        } else {
            1.0
        };
        Self {
            decay,
            weight_decay,
            one_minus_beta1: 1.0 - beta1,
            beta2,
            one_minus_beta2: 1.0 - beta2,
            step_size: input.lr / bias_correction1 * rect,
            bias_correction2_sqrt: bias_correction2.sqrt(),
            eps: config.eps,
            maximize: config.maximize,
            rectified,
        }
    }
}

impl Algorithm for RAdamConfig {
    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("radam", RAdamConfig::default()),
            (
                "radam decoupled maximize",
                RAdamConfig { weight_decay: 0.1, decoupled_weight_decay: true, maximize: true, ..Default::default() },
            ),
        ]
    }
    fn name(&self) -> &'static str {
        "RAdam"
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
        RAdamScalars::new(self, input).pack()
    }
}
