//! RMSProp (Hinton, 2012), plain, centered (Graves, 2013) and with momentum.

use serde::{Deserialize, Serialize};

use super::{check_momentum_at_most_one, check_non_negative, check_within, Algorithm, OptimizerConfig, StepInput};
use crate::error::Result;
use crate::kernel::{DeviceStep, Kernel, Scalars, StateArray};

pub(crate) static KERNEL: Kernel = Kernel {
    name: "rmsprop",
    source: include_str!("../../shaders/rmsprop.wgsl"),
    states: &[
        StateArray::always("square_avg").non_negative(),
        StateArray::when("grad_avg", "CENTERED"),
        StateArray::when("momentum_buffer", "MOMENTUM"),
    ],
    flags: RmsPropScalars::FLAGS,
    scalars: RmsPropScalars::NAMES,
    scalar_docs: RmsPropScalars::DOCS,
    device_step: DeviceStep::Independent,
};

/// `torch.optim.RMSprop`: its arguments, names and defaults.
///
/// The update, as PyTorch computes it:
/// ```text
/// g    = -grad if maximize else grad
/// g    = g + weight_decay * p
/// sq   = alpha * sq + (1 - alpha) * g^2
/// ga   = ga + (1 - alpha) * (g - ga)           if centered
/// avg  = sqrt(sq - ga^2) if centered else sqrt(sq)
/// avg  = avg + eps
/// buf  = momentum * buf + g / avg;  p = p - lr * buf      if momentum > 0
/// p    = p - lr * g / avg                                  otherwise
/// ```
/// `momentum` is this step's (a `cycle_momentum` schedule's, or the config's): a step whose
/// momentum is 0 is a plain step and leaves the buffer untouched, as PyTorch's. The buffer exists
/// (from zeros) if the config's momentum is above 0; a schedule that cycles the momentum of a
/// config with momentum 0 sets it first, as PyTorch's do
/// ([`crate::OptimizerConfig::for_cycled_momentum`]). Defaults: `lr` 0.01, `alpha` 0.99, `eps` 1e-8, `weight_decay` 0, `momentum` 0, `centered` and
/// `maximize` false.
///
/// # Errors
/// [`crate::Error::InvalidHyperparameter`] with PyTorch's message: `Invalid learning rate: {lr}`,
/// `Invalid epsilon value: {eps}`, `Invalid momentum value: {momentum}`,
/// `Invalid weight_decay value: {weight_decay}`, `Invalid alpha value: {alpha}`, in PyTorch's
/// order; then, beyond PyTorch (which accepts them), a momentum or an alpha above 1. NaN and
/// infinite values are refused everywhere.
///
/// # Example
/// ```
/// use wgpu_optim::RmsPropConfig;
/// let config = RmsPropConfig { centered: true, momentum: 0.9, ..Default::default() };
/// assert_eq!(config.alpha, 0.99);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmsPropConfig {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the running averages.
    pub alpha: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Momentum factor; 0 keeps no momentum buffer.
    pub momentum: f64,
    /// Normalize by the estimated variance instead of the second moment.
    pub centered: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        Self { lr: 1e-2, alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false, maximize: false }
    }
}

crate::scalars! {
    /// RMSProp's per-step scalars, in f64, as the kernel and the CPU mirror use them.
    pub struct RmsPropScalars {
        /// Learning rate.
        lr,
        /// Smoothing constant.
        alpha,
        /// `1 - alpha`.
        one_minus_alpha,
        /// Added to the denominator.
        eps,
        /// L2 coefficient.
        weight_decay,
        /// Momentum factor.
        momentum,
    }
    switches {
        /// Negate the gradient.
        maximize,
        /// Centered variant.
        centered,
        /// Keep a momentum buffer.
        has_momentum,
    }
    flags {
        MAXIMIZE = |u| u.maximize,
        CENTERED = |u| u.centered,
        MOMENTUM = |u| u.has_momentum,
        WEIGHT_DECAY = |u| u.weight_decay != 0.0,
    }
}

impl RmsPropScalars {
    /// The scalars of step `input.step` for `config`.
    pub fn new(config: &RmsPropConfig, input: &StepInput) -> Self {
        let momentum = input.momentum.unwrap_or(config.momentum);
        Self {
            lr: input.lr,
            alpha: config.alpha,
            one_minus_alpha: 1.0 - config.alpha,
            eps: config.eps,
            weight_decay: config.weight_decay,
            momentum,
            maximize: config.maximize,
            centered: config.centered,
            // The buffer exists if the config has momentum; a step whose (cycled) momentum is 0
            // leaves it alone (PyTorch's `if momentum > 0`, per step).
            has_momentum: config.momentum > 0.0 && momentum > 0.0,
        }
    }
}

impl Algorithm for RmsPropConfig {
    fn cases() -> Vec<(&'static str, Self)> {
        let rms = RmsPropConfig::default();
        vec![
            ("rmsprop", rms.clone()),
            ("rmsprop centered", RmsPropConfig { centered: true, ..rms.clone() }),
            ("rmsprop momentum", RmsPropConfig { momentum: 0.9, ..rms.clone() }),
            ("rmsprop centered momentum", RmsPropConfig { centered: true, momentum: 0.5, ..rms.clone() }),
            ("rmsprop weight_decay maximize", RmsPropConfig { weight_decay: 0.01, maximize: true, ..rms }),
        ]
    }
    fn name(&self) -> &'static str {
        "RMSprop"
    }
    fn kernel(&self) -> &'static Kernel {
        &KERNEL
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.momentum)
    }
    fn with_momentum(&self, momentum: f64) -> Option<OptimizerConfig> {
        Some(RmsPropConfig { momentum, ..self.clone() }.into())
    }
    fn validate(&self) -> Result<()> {
        check_non_negative("lr", "Invalid learning rate", self.lr)?;
        check_non_negative("eps", "Invalid epsilon value", self.eps)?;
        check_non_negative("momentum", "Invalid momentum value", self.momentum)?;
        check_non_negative("weight_decay", "Invalid weight_decay value", self.weight_decay)?;
        check_non_negative("alpha", "Invalid alpha value", self.alpha)?;
        // Beyond PyTorch, which accepts these and runs to nonsense.
        check_momentum_at_most_one(self.momentum)?;
        check_within(
            "alpha",
            "Invalid alpha value",
            self.alpha,
            (0.0, 1.0),
            "alpha must be at most 1: above it the square average takes a negative share of grad^2 and its \
             square root is NaN",
        )
    }
    fn scalars(&self, input: &StepInput) -> Scalars {
        RmsPropScalars::new(self, input).pack()
    }
}
