//! The algorithm contract: each optimizer's config (PyTorch's names, defaults and argument
//! checks), its kernel declaration and its per-step scalars, and the registry of them all.
//!
//! [`OptimizerConfig`] is the crate's one registry of algorithms: adding one is a line in
//! `registry!` below, a file beside this one, a shader (`update()` only) and a CPU mirror. The GPU
//! optimizer (`crate::optim`) and the CPU mirrors (`crate::cpu`) both depend on this module; it
//! depends on neither.

mod adadelta;
mod adagrad;
mod adam;
mod adamax;
mod adamw;
mod asgd;
mod lion;
mod nadam;
mod radam;
mod rmsprop;
mod rprop;
mod sgd;

pub use adadelta::{AdadeltaConfig, AdadeltaScalars};
pub use adagrad::{AdaGradConfig, AdaGradScalars};
pub use adam::{AdamConfig, AdamScalars};
pub use adamax::{AdamaxConfig, AdamaxScalars};
pub use adamw::AdamWConfig;
pub use asgd::{AsgdConfig, AsgdScalars};
pub use lion::{LionConfig, LionScalars};
pub use nadam::{NAdamConfig, NAdamScalars};
pub use radam::{RAdamConfig, RAdamScalars};
pub use rmsprop::{RmsPropConfig, RmsPropScalars};
pub use rprop::{RpropConfig, RpropScalars};
pub use sgd::{SgdConfig, SgdScalars};

use crate::error::{py_float, Error, Result};
use crate::kernel::{Kernel, Scalars};

/// What one step of one parameter group needs besides the config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInput {
    /// The step being taken, counting from 1 (PyTorch's `state["step"]` after its increment).
    pub step: u64,
    /// The learning rate for this step (the group's `lr`, or its schedule's value).
    pub lr: f64,
    /// A momentum that replaces the config's (SGD and RMSprop `momentum`, Adam's `betas[0]`) when a
    /// schedule cycles it; `None` keeps the config's.
    pub momentum: Option<f64>,
    /// What the tensor's previous step handed to this one ([`Algorithm::carry_start`] at its first
    /// step); the default for algorithms that carry nothing.
    pub carry: Carry,
}

/// Host-side values that one step of a tensor hands to its next, where PyTorch keeps 0-d tensors
/// in the tensor's state that depend on the history of the hyperparameters, not on the step
/// count alone: ASGD's `[eta, mu]`, NAdam's `[mu_product, _]`. What each value means is the
/// algorithm's; the optimizer only keeps them, per tensor, from one step to the next, and a
/// checkpoint must save them.
///
/// An algorithm that carries something returns `Some` from [`Algorithm::carry_start`] (the carry
/// of a tensor's first step) and computes the next one in [`Algorithm::carry_next`]:
/// ```text
/// carry_1     = carry_start(input_1)
/// scalars_t   = scalars(input_t with carry_t)
/// carry_t+1   = carry_next(input_t with carry_t)
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Carry(pub [f64; Carry::LEN]);

impl Carry {
    /// Values a carry holds (widen it when an algorithm needs more).
    pub const LEN: usize = 2;
}

/// The contract between an algorithm's config and the generic [`crate::Optimizer`]. Implemented by every
/// config type; users pick an algorithm by its config, never through this trait.
pub trait Algorithm: CpuReference + std::fmt::Debug {
    /// The configurations `validate` and the GPU-vs-CPU tests run: each flag on its own and in
    /// combination, names lower-case with the flags after the algorithm (optax's "one table of
    /// optimizers drives every optimizer test"). `validate` runs the last one of each kernel at
    /// its large sizes.
    fn cases() -> Vec<(&'static str, Self)>
    where
        Self: Sized;
    /// PyTorch's class name (`"Adam"`).
    fn name(&self) -> &'static str;
    /// The kernel that runs the step.
    fn kernel(&self) -> &'static Kernel;
    /// The configured learning rate.
    fn lr(&self) -> f64;
    /// The configured momentum (or beta1) that a schedule may cycle, if the algorithm has one.
    fn momentum(&self) -> Option<f64> {
        None
    }
    /// Checks every hyperparameter: PyTorch's constructor checks first, in its order and with its
    /// messages, then the checks beyond PyTorch's (values PyTorch accepts only to compute
    /// nonsense), each naming the parameter and its value. No hyperparameter may be NaN or
    /// infinite.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] naming the first bad value.
    fn validate(&self) -> Result<()>;
    /// Which of the kernel's state arrays this config uses (the others are not allocated): those
    /// whose flag (in the kernel's declaration) the config sets.
    fn states_used(&self) -> Vec<bool> {
        let mut first = StepInput { step: 1, lr: self.lr(), momentum: None, carry: Carry::default() };
        first.carry = self.carry_start(&first).unwrap_or_default();
        self.kernel().states_used(self.scalars(&first).flags)
    }
    /// The value a state array starts at when the tensor is registered (AdaGrad's
    /// `initial_accumulator_value`; otherwise 0). `lr` is the group's rate then. (Rprop's step
    /// sizes are filled by its first step, with that step's lr, as PyTorch fills them.)
    fn initial_state(&self, _state: usize, _lr: f64) -> f64 {
        0.0
    }
    /// The carry of a tensor's first step, taken with `first` (whose `carry` is the default);
    /// `None` for an algorithm that carries nothing (the default). See [`Carry`].
    fn carry_start(&self, _first: &StepInput) -> Option<Carry> {
        None
    }
    /// The carry the step `input` hands to the tensor's next step. See [`Carry`].
    fn carry_next(&self, input: &StepInput) -> Carry {
        input.carry
    }
    /// Whether `carry` is one this algorithm's steps can hand on (a checkpoint's is checked
    /// before it is used): the message says what is wrong.
    ///
    /// # Errors
    /// A description of the impossible value.
    fn check_carry(&self, _carry: &Carry) -> std::result::Result<(), String> {
        Ok(())
    }
    /// This config with its momentum set to `momentum`, for an algorithm whose momentum buffer
    /// exists only when the config's momentum is not 0 (SGD, RMSprop); `None` for the others (the
    /// default). See [`OptimizerConfig::for_cycled_momentum`].
    fn with_momentum(&self, _momentum: f64) -> Option<OptimizerConfig> {
        None
    }
    /// The per-step scalars as uploaded to the kernel (computed in f64, rounded once to f32).
    fn scalars(&self, input: &StepInput) -> Scalars;
}

/// The CPU reference of an algorithm: the same step in f64, with the same per-step scalars.
/// Implemented beside each mirror, in `src/cpu/<name>.rs`, so that the mirrors depend on this
/// contract and nothing here depends on them.
pub trait CpuReference {
    /// One step of every element. `state` holds one array per kernel state (empty where unused).
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]);
}

/// Declares the registry: the [`OptimizerConfig`] enum, [`OPTIMIZER_NAMES`], and the dispatch
/// from a variant to its algorithm, from PyTorch's class name to a config, and back.
macro_rules! registry {
    ($($(#[$doc:meta])* $variant:ident($config:ty) = $name:literal,)*) => {
        /// Any optimizer of the crate, as a config. Deserializes from PyTorch-style JSON (see
        /// [`OptimizerConfig::from_json`]).
        #[derive(Clone, Debug, PartialEq)]
        pub enum OptimizerConfig {
            $($(#[$doc])* $variant($config),)*
        }

        /// PyTorch's class names, in the order of [`OptimizerConfig`]'s variants.
        pub const OPTIMIZER_NAMES: &[&str] = &[$($name),*];

        impl OptimizerConfig {
            /// Every algorithm of the registry with its reference's defaults, in registry order.
            pub fn defaults() -> Vec<OptimizerConfig> {
                vec![$(Self::$variant(<$config>::default()),)*]
            }

            /// Every algorithm's [`Algorithm::cases`], in registry order: the one table that
            /// `validate` and `tests/gpu_vs_cpu.rs` run.
            pub fn cases() -> Vec<(&'static str, OptimizerConfig)> {
                let mut cases = Vec::new();
                $(cases.extend(<$config as Algorithm>::cases().into_iter().map(|(name, c)| (name, Self::$variant(c))));)*
                cases
            }

            /// The algorithm behind the config.
            pub fn algorithm(&self) -> &dyn Algorithm {
                match self {
                    $(Self::$variant(c) => c,)*
                }
            }

            fn parse(name: &str, fields: serde_json::Value) -> Result<Self> {
                match name {
                    $($name => Ok(Self::$variant(parse_fields(fields)?)),)*
                    other => Err(Error::UnknownOptimizer { name: other.to_string(), known: OPTIMIZER_NAMES.join(", ") }),
                }
            }

            fn fields(&self) -> serde_json::Result<serde_json::Value> {
                match self {
                    $(Self::$variant(c) => serde_json::to_value(c),)*
                }
            }
        }

        $(impl From<$config> for OptimizerConfig {
            fn from(config: $config) -> Self {
                Self::$variant(config)
            }
        })*
    };
}

// The registry: one line per algorithm.
registry! {
    /// `torch.optim.SGD`.
    Sgd(SgdConfig) = "SGD",
    /// `torch.optim.Adagrad`.
    AdaGrad(AdaGradConfig) = "Adagrad",
    /// `torch.optim.RMSprop`.
    RmsProp(RmsPropConfig) = "RMSprop",
    /// `torch.optim.Adam`.
    Adam(AdamConfig) = "Adam",
    /// `torch.optim.AdamW`.
    AdamW(AdamWConfig) = "AdamW",
    /// `torch.optim.Adamax`.
    Adamax(AdamaxConfig) = "Adamax",
    /// `torch.optim.NAdam`.
    NAdam(NAdamConfig) = "NAdam",
    /// `torch.optim.RAdam`.
    RAdam(RAdamConfig) = "RAdam",
    /// `torch.optim.Adadelta`.
    Adadelta(AdadeltaConfig) = "Adadelta",
    /// `torch.optim.ASGD`.
    Asgd(AsgdConfig) = "ASGD",
    /// `torch.optim.Rprop`.
    Rprop(RpropConfig) = "Rprop",
    /// Lion (`lion_pytorch.Lion`, lion-pytorch 0.2.5).
    Lion(LionConfig) = "Lion",
}

/// Every kernel of the registry, once each (AdamW runs Adam's kernel), in registry order.
pub fn kernels() -> Vec<&'static Kernel> {
    let mut kernels: Vec<&'static Kernel> = Vec::new();
    for config in OptimizerConfig::defaults() {
        let kernel = config.algorithm().kernel();
        if !kernels.iter().any(|k| k.name == kernel.name) {
            kernels.push(kernel);
        }
    }
    kernels
}

fn parse_fields<T: serde::de::DeserializeOwned>(fields: serde_json::Value) -> Result<T> {
    crate::pyjson::from_value(fields).map_err(|e| Error::Config { what: "optimizer", message: e.to_string() })
}

impl OptimizerConfig {
    /// PyTorch's class name.
    pub fn name(&self) -> &'static str {
        self.algorithm().name()
    }

    /// Parses `{"name": "Adam", "lr": 0.001, ...}`, PyTorch's class name and constructor arguments
    /// (the `optimizer` object of the golden cases). Missing keys take PyTorch's defaults.
    ///
    /// Python's `json.dump` writes a float that is not finite as `NaN`, `Infinity` or `-Infinity`,
    /// which strict JSON lacks: text parsed with [`crate::pyjson::parse`] (as `wgpu-optim replay`
    /// parses case files) keeps them, and they are read here wherever a float is expected, then
    /// refused by the check that names the parameter (`"lr": NaN` gives
    /// `Invalid learning rate: nan`; no hyperparameter may be NaN or infinite).
    ///
    /// # Errors
    /// [`Error::UnknownOptimizer`] for a name we lack, [`Error::Config`] for an unknown key or a
    /// wrong type (naming the key), [`Error::InvalidHyperparameter`] for a value out of its domain.
    ///
    /// # Example
    /// ```
    /// use wgpu_optim::{pyjson, OptimizerConfig};
    /// let value = pyjson::parse(r#"{"name": "Adam", "lr": NaN}"#)?;
    /// let error = OptimizerConfig::from_json(&value).unwrap_err();
    /// assert_eq!(error.to_string(), "Invalid learning rate: nan");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let config_error = |message: String| Error::Config { what: "optimizer", message };
        let object = value
            .as_object()
            .ok_or_else(|| config_error(format!("expected a JSON object, got {}", crate::pyjson::show(value))))?;
        let name = match object.get("name") {
            Some(v @ serde_json::Value::String(name)) if crate::pyjson::as_f64(v).is_none() => name.as_str(),
            Some(other) => {
                return Err(config_error(format!("\"name\" must be a string, got {}", crate::pyjson::show(other))))
            }
            None => return Err(config_error("missing key \"name\"".into())),
        };
        let mut fields = object.clone();
        fields.remove("name");
        let config = Self::parse(name, serde_json::Value::Object(fields))?;
        config.algorithm().validate()?;
        Ok(config)
    }

    /// The config a group has once a schedule that cycles its momentum (or beta1), starting at
    /// `first`, drives it: PyTorch's OneCycleLR and CyclicLR write their first momentum
    /// (`max_momentum`) into the group when they are built, so that SGD's and RMSprop's momentum
    /// buffer exists from the first step. A config with momentum 0 whose buffer depends on it
    /// ([`Algorithm::with_momentum`]) takes `first`; any other is returned unchanged, since the
    /// schedule replaces its momentum at every step anyway.
    pub fn for_cycled_momentum(&self, first: f64) -> OptimizerConfig {
        let algorithm = self.algorithm();
        match algorithm.momentum() {
            Some(0.0) => algorithm.with_momentum(first).unwrap_or_else(|| self.clone()),
            _ => self.clone(),
        }
    }

    /// The config as JSON, in the form [`OptimizerConfig::from_json`] reads, every key present.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("name".into(), self.name().into());
        if let Ok(serde_json::Value::Object(fields)) = self.fields() {
            object.extend(fields);
        }
        serde_json::Value::Object(object)
    }
}

/// `value` must be finite and `>= 0`, else PyTorch's `"{what}: {value}"`. (PyTorch accepts an
/// infinite value, and SGD a NaN; a step with it only writes NaN, so we refuse it here.)
pub(crate) fn check_non_negative(name: &str, what: &str, value: f64) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(name, format!("{what}: {}", py_float(value))))
    }
}

/// A check beyond PyTorch's, for a value PyTorch accepts only to compute nonsense: `value` must
/// be finite and in `[low, high]`, else `"{what}: {value} ({why})"`, `why` saying the range and
/// what goes wrong outside it.
pub(crate) fn check_within(name: &str, what: &str, value: f64, (low, high): (f64, f64), why: &str) -> Result<()> {
    if (low..=high).contains(&value) && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(name, format!("{what}: {} ({why})", py_float(value))))
    }
}

/// Beyond PyTorch (SGD, RMSprop): a momentum above 1 makes the momentum buffer grow without bound.
pub(crate) fn check_momentum_at_most_one(momentum: f64) -> Result<()> {
    check_within(
        "momentum",
        "Invalid momentum value",
        momentum,
        (0.0, 1.0),
        "momentum must be at most 1: above it the momentum buffer grows without bound",
    )
}

/// The checks every Adam-like constructor of PyTorch makes, in its order: `lr`, `eps`, `betas`,
/// `weight_decay`.
pub(crate) fn check_adam_like(lr: f64, eps: f64, betas: (f64, f64), weight_decay: f64) -> Result<()> {
    check_non_negative("lr", "Invalid learning rate", lr)?;
    check_non_negative("eps", "Invalid epsilon value", eps)?;
    check_beta(0, betas.0)?;
    check_beta(1, betas.1)?;
    check_non_negative("weight_decay", "Invalid weight_decay value", weight_decay)
}

/// Adam's `0 <= beta < 1` check, with PyTorch's message (NaN is refused too).
pub(crate) fn check_beta(index: usize, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid("betas", format!("Invalid beta parameter at index {index}: {}", py_float(value))))
    }
}
