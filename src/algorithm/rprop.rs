//! Rprop: resilient backpropagation (Riedmiller & Braun, 1993).

use serde::{Deserialize, Serialize};

use super::{check_non_negative, Algorithm, StepInput};
use crate::error::{py_float, Error, Result};
use crate::kernel::{DeviceStep, Kernel, Scalars, StateArray};

pub(crate) static KERNEL: Kernel = Kernel {
    name: "rprop",
    source: include_str!("../../shaders/rprop.wgsl"),
    states: &[StateArray::always("prev"), StateArray::always("step_size").non_negative()],
    flags: RpropScalars::FLAGS,
    scalars: RpropScalars::NAMES,
    scalar_docs: RpropScalars::DOCS,
    device_step: DeviceStep::Unsupported,
};

/// `torch.optim.Rprop`: its arguments, names and defaults.
///
/// The update at step `t` (from 1), as PyTorch computes it, per element:
/// ```text
/// size = lr_1                                                     at t = 1 (prev = 0)
/// g    = -grad if maximize else grad
/// f    = etaplus if g * prev > 0, etaminus if g * prev < 0, else 1
/// size = clamp(size * f, step_size_min, step_size_max)
/// g    = 0 where f == etaminus                                    (the sign flipped: rest)
/// p    = p - sign(g) * size
/// prev = g
/// ```
/// The learning rate only sets the step sizes, at the tensor's first step (`lr_1`, that step's
/// rate: a schedule's, or one set before it); later changes have no effect, as in PyTorch.
/// Defaults: `lr` 0.01, `etas` (0.5, 1.2), `step_sizes` (1e-6, 50), `maximize`
/// false.
///
/// # Errors
/// [`crate::Error::InvalidHyperparameter`] with PyTorch's message: `Invalid learning rate: {lr}`,
/// `Invalid eta values: {etaminus}, {etaplus}` (unless `0 < etaminus < 1 < etaplus`), in PyTorch's
/// order; and, beyond PyTorch, step sizes that are not `0 <= min <= max`. NaN and infinite values
/// are refused everywhere.
///
/// # Example
/// ```
/// use wgpu_optim::RpropConfig;
/// assert_eq!(RpropConfig::default().etas, (0.5, 1.2));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpropConfig {
    /// The initial step size.
    pub lr: f64,
    /// Multiplicative decrease and increase factors `(etaminus, etaplus)`.
    pub etas: (f64, f64),
    /// Smallest and largest step size.
    pub step_sizes: (f64, f64),
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for RpropConfig {
    fn default() -> Self {
        Self { lr: 1e-2, etas: (0.5, 1.2), step_sizes: (1e-6, 50.0), maximize: false }
    }
}

crate::scalars! {
    /// Rprop's per-step scalars, in f64, as the kernel and the CPU mirror use them.
    pub struct RpropScalars {
        /// Learning rate: every step size starts at it, at the tensor's first step.
        lr,
        /// Decrease factor.
        etaminus,
        /// Increase factor.
        etaplus,
        /// Smallest step size.
        step_size_min,
        /// Largest step size.
        step_size_max,
    }
    switches {
        /// Negate the gradient.
        maximize,
        /// The tensor's first step, which fills the step sizes with `lr`.
        first_step,
    }
    flags {
        MAXIMIZE = |u| u.maximize,
        FIRST_STEP = |u| u.first_step,
    }
}

impl RpropScalars {
    /// The scalars of step `input.step` for `config`.
    pub fn new(config: &RpropConfig, input: &StepInput) -> Self {
        Self {
            lr: input.lr,
            etaminus: config.etas.0,
            etaplus: config.etas.1,
            step_size_min: config.step_sizes.0,
            step_size_max: config.step_sizes.1,
            maximize: config.maximize,
            first_step: input.step == 1,
        }
    }
}

impl Algorithm for RpropConfig {
    fn cases() -> Vec<(&'static str, Self)> {
        vec![
            ("rprop", RpropConfig::default()),
            ("rprop maximize", RpropConfig { maximize: true, etas: (0.3, 1.5), ..Default::default() }),
        ]
    }
    fn name(&self) -> &'static str {
        "Rprop"
    }
    fn kernel(&self) -> &'static Kernel {
        &KERNEL
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn validate(&self) -> Result<()> {
        check_non_negative("lr", "Invalid learning rate", self.lr)?;
        let (minus, plus) = self.etas;
        if !(0.0 < minus && minus < 1.0 && 1.0 < plus && plus.is_finite()) {
            return Err(Error::invalid("etas", format!("Invalid eta values: {}, {}", py_float(minus), py_float(plus))));
        }
        // Beyond PyTorch, which does not check the step sizes (a clamp to min > max, or to a
        // negative size, steps against the gradient).
        let (low, high) = self.step_sizes;
        if !(0.0 <= low && low <= high && high.is_finite()) {
            return Err(Error::invalid(
                "step_sizes",
                format!(
                    "Invalid step_sizes values: {}, {} (step_sizes must be (min, max) with 0 <= min <= max, both finite)",
                    py_float(low),
                    py_float(high)
                ),
            ));
        }
        Ok(())
    }
    fn scalars(&self, input: &StepInput) -> Scalars {
        RpropScalars::new(self, input).pack()
    }
}
