//! AdamW (Loshchilov & Hutter, 2017): Adam with decoupled weight decay.

use serde::{Deserialize, Serialize};

use super::{AdamConfig, Algorithm, StepInput};
use crate::error::Result;
use crate::kernel::{Kernel, Scalars};

/// `torch.optim.AdamW`: Adam whose weight decay shrinks the parameter instead of adding to the
/// gradient. It runs Adam's kernel (`shaders/adam.wgsl`).
///
/// ```text
/// p = p * (1 - lr * weight_decay)
/// ... then Adam's update without the L2 term (see AdamConfig)
/// ```
/// Defaults: as [`AdamConfig`], except `weight_decay` 0.01.
///
/// # Errors
/// As [`AdamConfig`].
///
/// # Example
/// ```
/// use wgpu_optim::AdamWConfig;
/// assert_eq!(AdamWConfig::default().weight_decay, 0.01);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment.
    pub betas: (f64, f64),
    /// Added to the denominator, after bias correction.
    pub eps: f64,
    /// Decoupled weight decay: the parameter is multiplied by `1 - lr * weight_decay`.
    pub weight_decay: f64,
    /// Keep the running maximum of the second moment.
    pub amsgrad: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        let adam = AdamConfig::default();
        Self {
            lr: adam.lr,
            betas: adam.betas,
            eps: adam.eps,
            weight_decay: 1e-2,
            amsgrad: adam.amsgrad,
            maximize: adam.maximize,
        }
    }
}

impl AdamWConfig {
    /// The same update as an [`AdamConfig`] with `decoupled_weight_decay`.
    pub fn as_adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.lr,
            betas: self.betas,
            eps: self.eps,
            weight_decay: self.weight_decay,
            amsgrad: self.amsgrad,
            maximize: self.maximize,
            decoupled_weight_decay: true,
        }
    }
}

impl Algorithm for AdamWConfig {
    fn cases() -> Vec<(&'static str, Self)> {
        // Last of the adam kernel (AdamW follows Adam in the registry), so `validate` takes
        // "adamw amsgrad" at the large sizes.
        vec![
            ("adamw", AdamWConfig::default()),
            ("adamw amsgrad", AdamWConfig { amsgrad: true, lr: 1e-2, ..Default::default() }),
        ]
    }
    fn name(&self) -> &'static str {
        "AdamW"
    }
    fn kernel(&self) -> &'static Kernel {
        self.as_adam().kernel()
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.betas.0)
    }
    fn validate(&self) -> Result<()> {
        self.as_adam().validate()
    }
    fn scalars(&self, input: &StepInput) -> Scalars {
        self.as_adam().scalars(input)
    }
}
