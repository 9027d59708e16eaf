//! The CPU reference: each file mirrors `update` in `shaders/<name>.wgsl` line by line, in f64, with the same
//! per-step scalars. It is the oracle for tests, `replay --cpu` and `validate`, not a fallback.

pub mod adadelta;
pub mod adagrad;
pub mod adam;
pub mod adamax;
mod amp;
pub mod asgd;
pub mod lion;
pub mod nadam;
pub mod radam;
pub mod rmsprop;
pub mod rprop;
pub mod sgd;

pub use amp::CpuAmp;

use crate::algorithm::{Carry, OptimizerConfig, StepInput};
use crate::error::{Error, Result};
use crate::kernel::{sr_bits, Format, Rounding, Storage};

/// One parameter tensor and its optimizer state on the CPU, stepped as the GPU steps it.
///
/// ```
/// use wgpu_optim::{cpu::CpuOptimizer, SgdConfig};
/// let mut opt = CpuOptimizer::new(SgdConfig { lr: 0.5, ..Default::default() }.into(), vec![1.0, 2.0])?;
/// opt.step(&[1.0, -1.0])?;
/// assert_eq!(opt.param(), &[0.5, 2.5]);
/// # Ok::<(), wgpu_optim::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CpuOptimizer {
    config: OptimizerConfig,
    lr: f64,
    momentum: Option<f64>,
    steps: u64,
    /// What the last step handed to the next ([`Carry`]); `None` before the first step, or for
    /// an algorithm that carries nothing.
    carry: Option<Carry>,
    /// The values `update()` reads: the parameter as stored, or its master copy.
    param: Vec<f64>,
    state: Vec<Vec<f64>>,
    /// The storage formats the GPU reads and writes, mirrored: gradients rounded to theirs, the
    /// parameter to its own after each step (from the master copy, or stochastically).
    storage: Storage,
}

impl CpuOptimizer {
    /// A parameter starting at `param`, with fresh state.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] if the config is invalid.
    pub fn new(config: OptimizerConfig, param: Vec<f64>) -> Result<Self> {
        let algorithm = config.algorithm();
        algorithm.validate()?;
        let n = param.len();
        let state = algorithm
            .states_used()
            .iter()
            .enumerate()
            .map(|(i, &used)| if used { vec![algorithm.initial_state(i, algorithm.lr()); n] } else { Vec::new() })
            .collect();
        Ok(Self {
            lr: algorithm.lr(),
            config,
            momentum: None,
            steps: 0,
            carry: None,
            param,
            state,
            storage: Storage::F32,
        })
    }

    /// The same optimizer mirroring `storage` (see [`Storage`]): each gradient is rounded to its
    /// format (to nearest even) before the step; a low-precision parameter is rounded to its
    /// format at the start and after each step, to nearest even, or stochastically with the bits
    /// the GPU uses for element `i` of a tensor registered on its own (its run's element `i`);
    /// with a master copy, the f64 values are the master and [`CpuOptimizer::stored_param`] the
    /// parameter rounded from it.
    ///
    /// # Errors
    /// [`Error::UnsupportedStorage`] for a storage the optimizer does not run.
    pub fn with_storage(mut self, storage: Storage) -> Result<Self> {
        storage.check().map_err(|reason| Error::UnsupportedStorage { storage: storage.name(), reason })?;
        self.storage = storage;
        // The parameter as its buffer holds it (a master copy starts from that too).
        for p in &mut self.param {
            *p = f64::from(storage.param.round(*p as f32));
        }
        Ok(self)
    }

    /// Replaces the config for the next steps (the hyperparameters a live change sets); the state
    /// is kept as it is.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] if the config is invalid.
    pub fn set_config(&mut self, config: OptimizerConfig) -> Result<()> {
        config.algorithm().validate()?;
        self.config = config;
        Ok(())
    }

    /// Sets the learning rate of the next steps.
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Replaces the momentum (or beta1) of the next steps.
    pub fn set_momentum(&mut self, momentum: Option<f64>) {
        self.momentum = momentum;
    }

    /// One step with `grad`.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] if `grad` has another length than the parameter.
    pub fn step(&mut self, grad: &[f64]) -> Result<()> {
        if grad.len() != self.param.len() {
            return Err(Error::LengthMismatch { what: "gradient".into(), expected: self.param.len(), got: grad.len() });
        }
        self.steps += 1;
        let algorithm = self.config.algorithm();
        let mut input = StepInput { step: self.steps, lr: self.lr, momentum: self.momentum, carry: Carry::default() };
        // The carry of the last step, or of the first (as the GPU optimizer keeps it).
        let carry = self.carry.or_else(|| algorithm.carry_start(&input));
        input.carry = carry.unwrap_or_default();
        let grad: Vec<f64> = match self.storage.grad {
            Format::F32 => grad.to_vec(),
            format => grad.iter().map(|&g| f64::from(format.round(g as f32))).collect(),
        };
        algorithm.cpu_step(&input, &mut self.param, &grad, &mut self.state);
        // Without a master copy, the parameter is what its format keeps: f32 (the GPU's values,
        // which the f64 mirror stands for), or rounded to the low-precision format.
        if self.storage.param.is_low_precision() && !self.storage.master {
            let seed = self.storage.rounding.step_seed(self.steps);
            for (i, p) in self.param.iter_mut().enumerate() {
                *p = f64::from(match self.storage.rounding {
                    Rounding::Nearest => self.storage.param.round(*p as f32),
                    Rounding::Stochastic { .. } => Format::bf16_stochastic(*p as f32, sr_bits(seed, i as u32)),
                });
            }
        }
        self.carry = carry.map(|_| algorithm.carry_next(&input));
        Ok(())
    }

    /// The parameter, or its master copy where the storage keeps one.
    pub fn param(&self) -> &[f64] {
        &self.param
    }

    /// The parameter as its buffer holds it: with a master copy, the master rounded to the
    /// parameter's format (through f32, as the GPU rounds its f32 master); otherwise
    /// [`CpuOptimizer::param`].
    pub fn stored_param(&self) -> Vec<f64> {
        match self.storage.master {
            true => self.param.iter().map(|&p| f64::from(self.storage.param.round(p as f32))).collect(),
            false => self.param.clone(),
        }
    }

    /// A state array by its PyTorch name (`"exp_avg"`), if this config keeps it.
    pub fn state(&self, name: &str) -> Option<&[f64]> {
        if name == "master" {
            return self.storage.master.then_some(self.param.as_slice());
        }
        let algorithm = self.config.algorithm();
        let i = algorithm.kernel().state_index(name)?;
        algorithm.states_used()[i].then_some(self.state[i].as_slice())
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// What the last step handed to the next ([`Carry`]: ASGD's `[eta, mu]`, NAdam's
    /// `[mu_product, _]`); `None` before the first step or for an algorithm that carries nothing.
    pub fn carry(&self) -> Option<Carry> {
        self.carry
    }
}
