//! Stochastic gradient descent with momentum, dampening and Nesterov momentum.

use serde::{Deserialize, Serialize};

use super::{check_momentum_at_most_one, check_non_negative, check_within, Algorithm, OptimizerConfig, StepInput};
use crate::error::{Error, Result};
use crate::kernel::{DeviceStep, Kernel, Scalars, StateArray};

pub(crate) static KERNEL: Kernel = Kernel {
    name: "sgd",
    source: include_str!("../../shaders/sgd.wgsl"),
    states: &[StateArray::when("momentum_buffer", "MOMENTUM")],
    flags: SgdScalars::FLAGS,
    scalars: SgdScalars::NAMES,
    scalar_docs: SgdScalars::DOCS,
    device_step: DeviceStep::Independent,
};

/// `torch.optim.SGD`: its arguments, names and defaults.
///
/// The update at step `t` (from 1), as PyTorch computes it:
/// ```text
/// g   = -grad if maximize else grad
/// g   = g + weight_decay * p
/// buf = g                                        at t = 1 (no dampening)
/// buf = momentum * buf + (1 - dampening) * g     at t > 1     } only if momentum != 0
/// g   = g + momentum * buf if nesterov else buf               }
/// p   = p - lr * g
/// ```
/// `momentum` is this step's (a `cycle_momentum` schedule's, or the config's): a step whose
/// momentum is exactly 0 is a plain step and leaves the buffer untouched, as PyTorch's. The
/// buffer exists if the config's momentum is not 0; a schedule that cycles the momentum of a
/// config with momentum 0 sets it first, as PyTorch's do
/// ([`crate::OptimizerConfig::for_cycled_momentum`]). Defaults: `lr` 1e-3, `momentum` 0, `dampening` 0, `weight_decay` 0, `nesterov` and `maximize`
/// false.
///
/// # Errors
/// [`crate::Error::InvalidHyperparameter`] with PyTorch's message: `Invalid learning rate: {lr}`,
/// `Invalid momentum value: {momentum}`, `Invalid weight_decay value: {weight_decay}`,
/// `Nesterov momentum requires a momentum and zero dampening`, in PyTorch's order; then, beyond
/// PyTorch (which accepts them), a momentum above 1 and a dampening outside `[0, 1]`. NaN and
/// infinite values are refused everywhere.
///
/// # Example
/// ```
/// use wgpu_optim::SgdConfig;
/// let config = SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, ..Default::default() };
/// # use wgpu_optim::algorithm::Algorithm;
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor; 0 keeps no momentum buffer.
    pub momentum: f64,
    /// Dampening of the gradient's share in the momentum buffer.
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self { lr: 1e-3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false, maximize: false }
    }
}

crate::scalars! {
    /// SGD's per-step scalars, in f64, as the kernel and the CPU mirror use them.
    pub struct SgdScalars {
        /// Learning rate.
        lr,
        /// Momentum factor.
        momentum,
        /// `1 - dampening`.
        one_minus_dampening,
        /// L2 coefficient.
        weight_decay,
    }
    switches {
        /// Negate the gradient.
        maximize,
        /// Keep a momentum buffer.
        has_momentum,
        /// Nesterov momentum.
        nesterov,
        /// The first step, which sets the buffer to the gradient itself.
        first_step,
    }
    flags {
        MAXIMIZE = |u| u.maximize,
        MOMENTUM = |u| u.has_momentum,
        NESTEROV = |u| u.nesterov,
        FIRST_STEP = |u| u.first_step,
        WEIGHT_DECAY = |u| u.weight_decay != 0.0,
    }
}

impl SgdScalars {
    /// The scalars of step `input.step` for `config`.
    pub fn new(config: &SgdConfig, input: &StepInput) -> Self {
        let momentum = input.momentum.unwrap_or(config.momentum);
        Self {
            lr: input.lr,
            momentum,
            one_minus_dampening: 1.0 - config.dampening,
            weight_decay: config.weight_decay,
            maximize: config.maximize,
            // The buffer exists if the config has momentum; a step whose (cycled) momentum is
            // exactly 0 leaves it alone (PyTorch's `if momentum != 0`, per step).
            has_momentum: config.momentum != 0.0 && momentum != 0.0,
            nesterov: config.nesterov,
            first_step: input.step == 1,
        }
    }
}

impl Algorithm for SgdConfig {
    fn cases() -> Vec<(&'static str, Self)> {
        let sgd = SgdConfig { lr: 0.01, ..Default::default() };
        vec![
            ("sgd", sgd.clone()),
            ("sgd momentum", SgdConfig { momentum: 0.9, ..sgd.clone() }),
            ("sgd momentum dampening", SgdConfig { momentum: 0.9, dampening: 0.3, ..sgd.clone() }),
            ("sgd nesterov", SgdConfig { momentum: 0.9, nesterov: true, ..sgd.clone() }),
            ("sgd weight_decay", SgdConfig { weight_decay: 0.05, ..sgd.clone() }),
            ("sgd maximize", SgdConfig { maximize: true, ..sgd.clone() }),
            (
                "sgd nesterov weight_decay maximize",
                SgdConfig { momentum: 0.8, nesterov: true, weight_decay: 0.01, maximize: true, ..sgd },
            ),
        ]
    }
    fn name(&self) -> &'static str {
        "SGD"
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
        Some(SgdConfig { momentum, ..self.clone() }.into())
    }
    fn validate(&self) -> Result<()> {
        check_non_negative("lr", "Invalid learning rate", self.lr)?;
        check_non_negative("momentum", "Invalid momentum value", self.momentum)?;
        check_non_negative("weight_decay", "Invalid weight_decay value", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid("nesterov", "Nesterov momentum requires a momentum and zero dampening".into()));
        }
        // Beyond PyTorch, which accepts these and runs to nonsense.
        check_momentum_at_most_one(self.momentum)?;
        check_within(
            "dampening",
            "Invalid dampening value",
            self.dampening,
            (0.0, 1.0),
            "dampening must be in [0, 1]: the gradient enters the momentum buffer scaled by 1 - dampening",
        )
    }
    fn scalars(&self, input: &StepInput) -> Scalars {
        SgdScalars::new(self, input).pack()
    }
}
