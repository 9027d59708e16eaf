//! NAdam (Dozat, 2016): Adam with Nesterov momentum and a momentum schedule.

use serde::{Deserialize, Serialize};

use super::{check_adam_like, check_non_negative, Algorithm, Carry, StepInput};
use crate::error::Result;
use crate::kernel::{DeviceStep, Kernel, Scalars, StateArray};

pub(crate) static KERNEL: Kernel = Kernel {
    name: "nadam",
    source: include_str!("../../shaders/nadam.wgsl"),
    states: &[StateArray::always("exp_avg"), StateArray::always("exp_avg_sq").non_negative()],
    flags: NAdamScalars::FLAGS,
    scalars: NAdamScalars::NAMES,
    scalar_docs: NAdamScalars::DOCS,
    device_step: DeviceStep::Unsupported,
};

/// `torch.optim.NAdam`: its arguments, names and defaults.
///
/// The update at step `t` (from 1), as PyTorch computes it, with `beta1` this step's (a
/// `cycle_momentum` schedule's, or the config's):
/// ```text
/// g      = -grad if maximize else grad
/// p      = p * (1 - lr * weight_decay)     if decoupled_weight_decay
/// g      = g + weight_decay * p            otherwise
/// mu     = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))
/// mu'    = beta1 * (1 - 0.5 * 0.96^((t + 1) * momentum_decay))
/// prod_t = prod_t-1 * mu                   (prod_0 = 1: PyTorch's mu_product)
/// m      = m + (1 - beta1) * (g - m)
/// v      = beta2 * v + (1 - beta2) * g^2
/// d      = sqrt(v / (1 - beta2^t)) + eps
/// p      = p - lr * (1 - mu) / (1 - prod_t) * g / d
///            - lr * mu' / (1 - prod_t * mu') * m / d
/// ```
/// The running product `prod` is kept on the host, in f64, and carried from one step to the next
/// ([`Carry`] `[prod, _]`), as PyTorch keeps `mu_product` in the tensor's state: under a
/// schedule that cycles beta1 it follows each step's beta1.
/// Defaults: `lr` 2e-3, `betas` (0.9, 0.999), `eps` 1e-8, `weight_decay` 0, `momentum_decay` 4e-3,
/// `decoupled_weight_decay` and `maximize` false.
///
/// # Errors
/// [`crate::Error::InvalidHyperparameter`] with PyTorch's message: `Invalid learning rate: {lr}`,
/// `Invalid epsilon value: {eps}`, `Invalid beta parameter at index {i}: {beta}`,
/// `Invalid weight_decay value: {weight_decay}`, `Invalid momentum_decay value: {momentum_decay}`.
///
/// # Example
/// ```
/// use wgpu_optim::NAdamConfig;
/// assert_eq!(NAdamConfig::default().momentum_decay, 4e-3);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NAdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment.
    pub betas: (f64, f64),
    /// Added to the denominator, after bias correction.
    pub eps: f64,
    /// L2 penalty added to the gradient (or decoupled, see below).
    pub weight_decay: f64,
    /// The momentum schedule's decay.
    pub momentum_decay: f64,
    /// Decay the parameter directly, as AdamW, instead of adding to the gradient.
    pub decoupled_weight_decay: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for NAdamConfig {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            momentum_decay: 4e-3,
            decoupled_weight_decay: false,
            maximize: false,
        }
    }
}

crate::scalars! {
    /// NAdam's per-step scalars, in f64, as the kernel and the CPU mirror use them.
    pub struct NAdamScalars {
        /// With `decoupled`, the factor `1 - lr * weight_decay`; else the L2 coefficient.
        weight_decay,
        /// `1 - beta1`.
        one_minus_beta1,
        /// `beta2`.
        beta2,
        /// `1 - beta2`.
        one_minus_beta2,
        /// `1 - beta2^t`.
        bias_correction2,
        /// `lr * (1 - mu) / (1 - prod_t)`.
        grad_coef,
        /// `lr * mu' / (1 - prod_t * mu')`.
        avg_coef,
        /// `eps`.
        eps,
    }
    switches {
        /// Negate the gradient.
        maximize,
        /// Decoupled weight decay.
        decoupled,
    }
    flags {
        MAXIMIZE = |u| u.maximize,
        DECOUPLED = |u| u.decoupled,
        WEIGHT_DECAY = |u| !u.decoupled && u.weight_decay != 0.0,
    }
}

impl NAdamScalars {
    /// The scalars of step `input.step` for `config`.
    pub fn new(config: &NAdamConfig, input: &StepInput) -> Self {
        let (beta1, beta2) = (config.beta1(input), config.betas.1);
        let t = input.step;
        let (mu, mu_next) = (config.mu(input, t), config.mu(input, t + 1));
        let mu_product = input.carry.0[0] * mu;
        let decoupled = config.decoupled_weight_decay && config.weight_decay != 0.0;
        Self {
            weight_decay: if decoupled { 1.0 - input.lr * config.weight_decay } else { config.weight_decay },
            one_minus_beta1: 1.0 - beta1,
            beta2,
            one_minus_beta2: 1.0 - beta2,
            bias_correction2: 1.0 - beta2.powf(t as f64),
            grad_coef: input.lr * (1.0 - mu) / (1.0 - mu_product),
            avg_coef: input.lr * mu_next / (1.0 - mu_product * mu_next),
            eps: config.eps,
            maximize: config.maximize,
            decoupled,
        }
    }
}

impl NAdamConfig {
    /// This step's beta1: a schedule's (`cycle_momentum`), or the config's.
    fn beta1(&self, input: &StepInput) -> f64 {
        input.momentum.unwrap_or(self.betas.0)
    }

    /// PyTorch's momentum cache `beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))`, with this step's beta1.
    fn mu(&self, input: &StepInput, t: u64) -> f64 {
        self.beta1(input) * (1.0 - 0.5 * 0.96f64.powf(t as f64 * self.momentum_decay))
    }
}

impl Algorithm for NAdamConfig {
    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("nadam", NAdamConfig::default()),
            ("nadam weight_decay maximize", NAdamConfig { weight_decay: 0.05, maximize: true, ..Default::default() }),
            // Last of its kernel, so `validate` takes it at the large sizes: with L2 decay, among a
            // million random elements some gradient `-grad + wd * p` cancels to near `eps`, where a
            // term like `g / (|g| + eps)` turns float32's rounding of `g` into a relative error past
            // any tolerance (PyTorch's own float32 does the same). Adam's and Adamax's rows likewise.
            (
                "nadam decoupled maximize",
                NAdamConfig { weight_decay: 0.1, decoupled_weight_decay: true, maximize: true, ..Default::default() },
            ),
        ]
    }
    fn name(&self) -> &'static str {
        "NAdam"
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
    fn carry_start(&self, _first: &StepInput) -> Option<Carry> {
        Some(Carry([1.0, 0.0]))
    }
    fn carry_next(&self, input: &StepInput) -> Carry {
        Carry([input.carry.0[0] * self.mu(input, input.step), 0.0])
    }
    fn check_carry(&self, carry: &Carry) -> std::result::Result<(), String> {
        // A product of factors beta1 * (1 - 0.5 * 0.96^(...)), each in [0, 1).
        match carry.0 {
            [m, 0.0] if (0.0..=1.0).contains(&m) => Ok(()),
            [m, extra] => Err(format!("mu_product {m} must be in [0, 1] and the second value 0 (is {extra})")),
        }
    }
    fn validate(&self) -> Result<()> {
        check_adam_like(self.lr, self.eps, self.betas, self.weight_decay)?;
        check_non_negative("momentum_decay", "Invalid momentum_decay value", self.momentum_decay)
    }
    fn scalars(&self, input: &StepInput) -> Scalars {
        NAdamScalars::new(self, input).pack()
    }
}
