//! The optimizer's public face: the struct, its groups and their hyperparameters, the step count,
//! and the entry points that hand the work to the modules beside this one (registration, the
//! state store, the plan, the recorder, the state readback, the gradient scan).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use crate::algorithm::{check_non_negative, Algorithm, Carry, OptimizerConfig, StepInput};
use crate::context::GpuContext;
use crate::error::{Error, Result};
use crate::kernel::{DeviceStep, Kernel, Storage, WORKGROUP_SIZE};
use crate::schedule::{LrScheduler, SchedulerState};

use super::amp::{Amp, AmpStatus, ClassOps, ClipGradNorm, GradScalerConfig};
use super::nonfinite::NonfiniteScan;
use super::plan;
use super::record::{AmpStep, Recorder};
use super::registration::{ParamBinding, StepKey, TensorInfo, Tensors};
use super::state::{self, TensorState};
use super::store::{StateStore, EMA, MASTER};
use super::{Scopes, F32};

/// A parameter group: its index in the optimizer. Groups have their own hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupId(usize);

impl GroupId {
    /// The group's index, in creation order (the default group is 0).
    pub fn index(self) -> usize {
        self.0
    }
}

#[derive(Debug)]
struct Group {
    config: OptimizerConfig,
    /// The formats of its parameters and gradients, its master copies and rounding.
    storage: Storage,
    lr: f64,
    momentum: Option<f64>,
    schedule: Option<LrScheduler>,
    /// The optimizer's step count when the schedule was set: the schedule's own step 0, as a
    /// PyTorch scheduler built mid-run starts counting from its construction.
    schedule_at: u64,
}

impl Group {
    fn new(config: OptimizerConfig, storage: Storage) -> Self {
        Self { lr: config.algorithm().lr(), momentum: None, schedule: None, schedule_at: 0, config, storage }
    }

    /// The learning rate and momentum of the step after `steps` steps of the optimizer: the
    /// schedule's (at its own step count), or the group's own.
    ///
    /// # Errors
    /// A schedule's refusal of the step (OneCycleLR past its total steps).
    fn hyper(&self, steps: u64) -> Result<(f64, Option<f64>)> {
        match &self.schedule {
            Some(s) => {
                let own = steps.saturating_sub(self.schedule_at);
                Ok((s.lr(own)?, s.momentum(own)?.or(self.momentum)))
            }
            None => Ok((self.lr, self.momentum)),
        }
    }
}

/// A group's hyperparameters as a checkpoint holds them.
#[derive(Clone, Debug)]
pub(super) struct GroupSnapshot {
    /// The group's config.
    pub config: OptimizerConfig,
    /// Its learning rate when no schedule drives it (see [`Optimizer::set_lr`]).
    pub lr: f64,
    /// Its momentum override (see [`Optimizer::set_momentum`]).
    pub momentum: Option<f64>,
    /// Its schedule's name and state.
    pub schedule: Option<(String, SchedulerState)>,
    /// The optimizer's step count when the schedule was set (its own step 0).
    pub schedule_at: u64,
}

/// What [`Optimizer::restore`] puts in place: everything a checkpoint holds, already checked
/// against this optimizer.
#[derive(Debug)]
pub(super) struct Restore<'a> {
    /// The step count.
    pub steps: u64,
    /// One per group, in order.
    pub groups: Vec<GroupSnapshot>,
    /// Each tensor's registration step and the steps it sat out since, in order.
    pub counts: Vec<(u64, u64)>,
    /// Each tensor's carry, in order.
    pub carries: Vec<Option<Carry>>,
    /// Every state array of every tensor that its group keeps.
    pub states: Vec<TensorState<&'a [u8]>>,
    /// The loss scaler's state, with loss scaling or clipping set (checked to match).
    pub amp: Option<AmpRestore>,
}

/// The loss scaler's state as a checkpoint holds it.
#[derive(Debug)]
pub(super) struct AmpRestore {
    pub scale: f32,
    pub growth_tracker: u32,
    pub skipped_steps: u32,
    /// With loss scaling: each tensor's steps skipped on the device.
    pub tensor_skips: Option<Vec<u32>>,
}

/// Loss scaling and clipping as a save reads them: the settings and the device's state.
#[derive(Debug)]
pub(super) struct AmpSnapshot {
    pub scaler: Option<GradScalerConfig>,
    pub clip: Option<ClipGradNorm>,
    pub status: AmpStatus,
    /// With loss scaling: each tensor's steps skipped on the device.
    pub tensor_skips: Option<Vec<u32>>,
}

/// Updates parameters that live in the engine's GPU buffers, with PyTorch's semantics.
///
/// Register tensors with [`Optimizer::add_params`] (engine buffers, by range) or through a
/// [`crate::ParamArena`]; give groups their own hyperparameters with [`Optimizer::add_group`].
/// Each [`Optimizer::step`] (or [`Optimizer::record`] into the engine's encoder) is one compute
/// pass over every tensor, with per-step scalars computed on the host in f64 and uploaded once.
/// Nothing is read back to the host.
///
/// Adjacent tensors of one group that are contiguous in both the parameter and the gradient
/// buffer (as an arena's are) share one dispatch, however many `add_params` calls registered
/// them; tensors larger than the device's `max_storage_buffer_binding_size` are split over
/// several. Any other tensor's state starts at a multiple of four elements, so a tensor whose
/// buffers are its own runs four elements per invocation but for its last `len % 4`.
///
/// # Example
/// ```no_run
/// use wgpu_optim::{AdamWConfig, GpuContext, Optimizer, ParamArena};
/// let ctx = GpuContext::new()?;
/// let arena = ParamArena::new(&ctx, &[4096, 64])?;          // a weight and a bias
/// let mut opt = Optimizer::new(&ctx, AdamWConfig { lr: 1e-3, ..Default::default() })?;
/// let no_decay = opt.add_group(AdamWConfig { weight_decay: 0.0, ..Default::default() })?;
/// opt.add_params(opt.default_group(), &arena.bindings()[..1])?;
/// opt.add_params(no_decay, &arena.bindings()[1..])?;
/// // ... the engine writes gradients into arena.grads() ...
/// opt.step()?;
/// # Ok::<(), wgpu_optim::Error>(())
/// ```
#[derive(Debug)]
pub struct Optimizer {
    ctx: GpuContext,
    kernel: &'static Kernel,
    groups: Vec<Group>,
    tensors: Tensors,
    store: StateStore,
    recorder: Recorder,
    nonfinite: NonfiniteScan,
    steps: u64,
    /// What the last recorded steps changed that rewinding them takes back (the latest last; at
    /// most [`REWINDABLE`]).
    recent: VecDeque<LastStep>,
    /// Loss scaling and clipping, when either is set.
    amp: Option<Amp>,
    /// The decay of the EMA of the weights, when one is kept ([`Optimizer::set_ema`]).
    ema_decay: Option<f64>,
    /// The loss-scaling class of the tensors registered last, and the step count then: tensors
    /// registered at the same count share it.
    registration_class: Option<(u64, u32)>,
}

impl Optimizer {
    /// An optimizer whose default group has `config`.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] if the config is invalid; [`Error::UnsupportedDevice`] for
    /// a device whose bindings cannot hold one workgroup's elements; [`Error::Wgpu`] if wgpu
    /// refuses the kernel.
    pub fn new(ctx: &GpuContext, config: impl Into<OptimizerConfig>) -> Result<Self> {
        Self::with_storage(ctx, config, Storage::F32)
    }

    /// An optimizer whose default group stores its parameters and gradients as `storage` says
    /// (f32 everywhere in [`Optimizer::new`]): f32, f16 (on a device with
    /// `wgpu::Features::SHADER_F16`) or bf16 (two per `u32`, on every adapter), with an f32 master
    /// copy of each parameter in the state or stochastic rounding; see [`Storage`]. `update()`
    /// computes in f32 whatever the formats. Groups added with [`Optimizer::add_group`] take the
    /// same storage; [`Optimizer::add_group_with_storage`] gives a group its own.
    ///
    /// ```no_run
    /// use wgpu_optim::kernel::{Format, Storage};
    /// use wgpu_optim::{AdamWConfig, GpuContext, Optimizer};
    /// let ctx = GpuContext::new()?;
    /// // bf16 parameters and gradients; the optimizer keeps an f32 master copy of each parameter.
    /// let bf16 = Storage { param: Format::BF16, grad: Format::BF16, master: true, ..Storage::F32 };
    /// let opt = Optimizer::with_storage(&ctx, AdamWConfig::default(), bf16)?;
    /// # Ok::<(), wgpu_optim::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Optimizer::new`]; [`Error::UnsupportedStorage`] for a combination the optimizer does
    /// not run ([`Storage::check`]), [`Error::ShaderF16Unsupported`] for f16 on a device without
    /// `SHADER_F16`.
    pub fn with_storage(ctx: &GpuContext, config: impl Into<OptimizerConfig>, storage: Storage) -> Result<Self> {
        // The EMA comes with its decay, through `set_ema`, never through the storage alone.
        let storage = Storage { ema: false, ..storage };
        let config = config.into();
        let algorithm = config.algorithm();
        algorithm.validate()?;
        storage.check_features(ctx.device.features())?;
        // Pipelines and buffers created on a lost device are quietly invalid: refuse it here.
        ctx.check_alive()?;
        let kernel = algorithm.kernel();
        let limits = ctx.device.limits();
        let align = limits.min_storage_buffer_offset_alignment as u64;
        // A binding may start up to `align` bytes before its first element.
        let binding = limits.max_storage_buffer_binding_size.saturating_sub(align) / F32;
        if binding < WORKGROUP_SIZE as u64 {
            return Err(Error::UnsupportedDevice(format!(
                "max_storage_buffer_binding_size is {} bytes; the optimizer needs at least {}",
                limits.max_storage_buffer_binding_size,
                align + WORKGROUP_SIZE as u64 * F32
            )));
        }
        // A 2-D grid holds at most max^2 workgroups (saturating: some drivers report u32::MAX),
        // and the kernels' u32 element index must not wrap: 2^31 elements keeps both safe.
        let grid = (limits.max_compute_workgroups_per_dimension as u64)
            .saturating_pow(2)
            .saturating_mul(WORKGROUP_SIZE as u64);
        let max_chunk = binding.min(limits.max_buffer_size / F32).min(grid).min(1 << 31) / WORKGROUP_SIZE as u64
            * WORKGROUP_SIZE as u64;
        Ok(Self {
            ctx: ctx.clone(),
            kernel,
            groups: vec![Group::new(config, storage)],
            tensors: Tensors::new(max_chunk),
            store: StateStore::new(kernel, limits.max_buffer_size),
            recorder: Recorder::new(ctx, kernel, storage, false)?,
            nonfinite: NonfiniteScan::default(),
            steps: 0,
            recent: VecDeque::new(),
            amp: None,
            ema_decay: None,
            registration_class: None,
        })
    }

    /// The group the constructor's config made.
    pub fn default_group(&self) -> GroupId {
        GroupId(0)
    }

    /// A new parameter group with its own hyperparameters, of the same algorithm, and the
    /// default group's storage formats.
    ///
    /// # Errors
    /// [`Error::GroupAlgorithm`] for a config of another algorithm, [`Error::InvalidHyperparameter`]
    /// for an invalid one.
    pub fn add_group(&mut self, config: impl Into<OptimizerConfig>) -> Result<GroupId> {
        let storage = self.groups[0].storage;
        self.add_group_with_storage(config, storage)
    }

    /// A new parameter group with its own hyperparameters and its own storage formats (see
    /// [`Optimizer::with_storage`]): f32 layers beside bf16 ones, say. Its kernel is compiled now.
    ///
    /// ```no_run
    /// use wgpu_optim::kernel::{Format, Rounding, Storage};
    /// use wgpu_optim::{AdamWConfig, GpuContext, Optimizer};
    /// let ctx = GpuContext::new()?;
    /// let mut opt = Optimizer::new(&ctx, AdamWConfig::default())?;
    /// let sr = Storage { param: Format::BF16, grad: Format::BF16, rounding: Rounding::Stochastic { seed: 1 }, ..Storage::F32 };
    /// let bf16 = opt.add_group_with_storage(AdamWConfig::default(), sr)?;
    /// # Ok::<(), wgpu_optim::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Optimizer::add_group`]; [`Error::UnsupportedStorage`], [`Error::ShaderF16Unsupported`]
    /// as [`Optimizer::with_storage`]; [`Error::Wgpu`] if wgpu refuses the kernel.
    pub fn add_group_with_storage(&mut self, config: impl Into<OptimizerConfig>, storage: Storage) -> Result<GroupId> {
        let config = config.into();
        let (expected, got) = (self.groups[0].config.name(), config.name());
        if expected != got {
            return Err(Error::GroupAlgorithm { expected, got });
        }
        config.algorithm().validate()?;
        storage.check_features(self.ctx.device.features())?;
        // Every group keeps the EMA once it is set.
        let storage = Storage { ema: self.ema_decay.is_some(), ..storage };
        self.recorder.add_storage(&self.ctx, storage)?;
        self.groups.push(Group::new(config, storage));
        Ok(GroupId(self.groups.len() - 1))
    }

    /// A group's storage formats.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`].
    pub fn storage(&self, group: GroupId) -> Result<Storage> {
        Ok(self.groups.get(group.0).ok_or(Error::UnknownGroup(group.0))?.storage)
    }

    /// Each group's storage, in group order.
    fn storages(&self) -> Vec<Storage> {
        self.groups.iter().map(|g| g.storage).collect()
    }

    /// Registers tensors in `group` and allocates their state on the device (zeros, or the
    /// algorithm's initial value). Returns their parameter indices. Tensors may be added between
    /// steps; they start with fresh state and a step count of their own, as in PyTorch (Adam's
    /// bias correction of a tensor added at step 1000 starts from its own first step).
    ///
    /// Registering tensors one call at a time gives the same layout, and so the same dispatches,
    /// as registering them in one call. The state grows in place: a registration may copy the
    /// state registered before into larger buffers, on the device, at once; submit any encoder
    /// that holds a recorded step before registering more tensors (or loading a checkpoint, whose
    /// state lands at the start of the next submit).
    ///
    /// # Errors
    /// Checked before anything changes: [`Error::UnknownGroup`], [`Error::BufferUsage`] (no
    /// `STORAGE` usage), [`Error::GradOverlapsParam`], [`Error::OutOfBounds`], [`Error::ForeignBuffer`]
    /// and [`Error::Overlap`] (with each other or with tensors already registered);
    /// [`Error::Wgpu`] if the device cannot allocate the state, in which case nothing is
    /// registered either.
    pub fn add_params(&mut self, group: GroupId, bindings: &[ParamBinding]) -> Result<Range<usize>> {
        let g = self.groups.get(group.0).ok_or(Error::UnknownGroup(group.0))?;
        self.ctx.check_alive()?;
        let algorithm = g.config.algorithm();
        let lr = g.hyper(self.steps)?.0;
        let storage = g.storage;
        let mut init: Vec<Option<f32>> = (algorithm.states_used().iter().enumerate())
            // Written by the host, so stored in the state's format.
            .map(|(k, &used)| used.then(|| storage.state.encode(algorithm.initial_state(k, lr) as f32)))
            .collect();
        // The master copy (filled from the parameters), then the EMA: the store's last arrays.
        init.push(storage.master.then_some(0.0));
        init.push(storage.ema.then_some(0.0));
        let added = self.tensors.add(&self.ctx, &mut self.store, group.0, storage, self.steps, &init, bindings)?;
        if let Some(amp) = self.amp.as_mut().filter(|a| a.scaler.is_some()) {
            // A class of their own (from no skipped steps), shared with tensors registered at
            // the same step count.
            let class = match self.registration_class {
                Some((at, class)) if at == self.steps => class,
                _ => amp.new_class(),
            };
            self.registration_class = Some((self.steps, class));
            for i in added.clone() {
                self.tensors.set_amp_class(i, class);
            }
        }
        self.recorder.invalidate();
        Ok(added)
    }

    /// Sets a group's learning rate for the next steps, replacing its schedule if it had one.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`], or [`Error::InvalidHyperparameter`] for a negative or non-finite
    /// rate.
    pub fn set_lr(&mut self, group: GroupId, lr: f64) -> Result<()> {
        check_non_negative("lr", "Invalid learning rate", lr)?;
        let g = self.group_mut(group)?;
        // The config says the rate too (`group_config`, checkpoints, `set_hyperparameter`).
        g.config = with_lr(&g.config, lr)?;
        g.lr = lr;
        g.schedule = None;
        Ok(())
    }

    /// The learning rate the group's next step will use (its schedule's value, if it has one).
    ///
    /// # Errors
    /// [`Error::UnknownGroup`].
    pub fn lr(&self, group: GroupId) -> Result<f64> {
        Ok(self.groups.get(group.0).ok_or(Error::UnknownGroup(group.0))?.hyper(self.steps)?.0)
    }

    /// The momentum (or beta1) the group's next step will use, when a schedule or
    /// [`Optimizer::set_momentum`] replaced the config's; `None` means the config's own.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`].
    pub fn momentum(&self, group: GroupId) -> Result<Option<f64>> {
        Ok(self.groups.get(group.0).ok_or(Error::UnknownGroup(group.0))?.hyper(self.steps)?.1)
    }

    /// Drives a group's learning rate (and momentum or beta1, for `cycle_momentum` schedules) by a
    /// schedule, evaluated before each step at its own step count, so a schedule takes the place
    /// of PyTorch's `scheduler.step()` after each `optimizer.step()`. The schedule's step 0 is the
    /// next step, as a PyTorch scheduler built mid-run starts from its construction (a warmup
    /// attached at step 1000 warms up from step 1000).
    ///
    /// ```no_run
    /// use wgpu_optim::schedule::{CosineAnnealingLr, CosineAnnealingLrConfig, LrScheduler};
    /// use wgpu_optim::{AdamConfig, GpuContext, Optimizer};
    /// let ctx = GpuContext::new()?;
    /// let mut opt = Optimizer::new(&ctx, AdamConfig { lr: 1e-3, ..Default::default() })?;
    /// let cosine = CosineAnnealingLr::new(1e-3, CosineAnnealingLrConfig::new(1000))?;
    /// opt.set_schedule(opt.default_group(), LrScheduler::new(cosine))?;
    /// # Ok::<(), wgpu_optim::Error>(())
    /// ```
    ///
    /// A schedule that cycles the momentum of SGD or RMSprop configured with momentum 0 sets the
    /// group's momentum to its first value, as PyTorch's OneCycleLR and CyclicLR do when built
    /// ([`OptimizerConfig::for_cycled_momentum`]), so that the momentum buffer exists from the
    /// first step; set such a schedule before registering the group's tensors.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`]; [`Error::InvalidHyperparameter`] when a schedule cycles momentum on
    /// an algorithm without one (PyTorch's message), or on SGD or RMSprop configured with momentum
    /// 0 once the group has tensors (their state was laid out without a momentum buffer).
    pub fn set_schedule(&mut self, group: GroupId, schedule: LrScheduler) -> Result<()> {
        let steps = self.steps;
        // issue 11 (schedules drive state): the group's config takes the cycle's first momentum.
        let registered = self.group_has_tensors(group.0);
        let g = self.group_mut(group)?;
        let mut config = None;
        if let Some(first) = schedule.momentum(0)? {
            check_cyclable(&g.config)?;
            let cycled = g.config.for_cycled_momentum(first);
            if cycled != g.config {
                if registered {
                    return Err(Error::invalid(
                        "cycle_momentum",
                        format!(
                            "{} is configured with momentum 0, and its momentum buffer is allocated when tensors are \
                             registered: set a schedule that cycles the momentum before registering group {}'s tensors \
                             (or configure a momentum above 0)",
                            g.config.name(),
                            group.0
                        ),
                    ));
                }
                config = Some(cycled);
            }
        }
        if let Some(config) = config {
            g.config = config;
        }
        g.schedule = Some(schedule);
        g.schedule_at = steps;
        Ok(())
    }

    /// Whether any tensor is registered in group `group`.
    fn group_has_tensors(&self, group: usize) -> bool {
        (0..self.tensors.len()).any(|i| self.tensors.info(i).is_some_and(|t| t.group == group))
    }

    /// A group's schedule, if it has one.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`].
    pub fn schedule(&self, group: GroupId) -> Result<Option<&LrScheduler>> {
        Ok(self.groups.get(group.0).ok_or(Error::UnknownGroup(group.0))?.schedule.as_ref())
    }

    /// Reports the metric after a step (the loss, say) to every group's schedule, as PyTorch's
    /// `ReduceLROnPlateau.step(metric)`; pure schedules ignore it.
    pub fn observe(&mut self, metric: f64) {
        for g in &mut self.groups {
            if let Some(s) = &mut g.schedule {
                // At the schedule's own step count (it starts when it is set).
                s.observe_at(self.steps.saturating_sub(g.schedule_at), metric);
            }
        }
    }

    /// Replaces a group's momentum (SGD and RMSprop `momentum`, Adam's `betas[0]`) for the next
    /// steps, as PyTorch's `cycle_momentum` schedules do; `None` restores the config's.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`], or [`Error::InvalidHyperparameter`] for a value outside `[0, 1)`.
    pub fn set_momentum(&mut self, group: GroupId, momentum: Option<f64>) -> Result<()> {
        let g = self.group_mut(group)?;
        if let Some(m) = momentum {
            check_momentum(m)?;
            check_cyclable(&g.config)?;
            if g.config.for_cycled_momentum(m) != g.config {
                return Err(Error::invalid(
                    "momentum",
                    format!(
                        "{} must be configured with momentum > 0 to replace it: its momentum buffer is allocated \
                         only then",
                        g.config.name()
                    ),
                ));
            }
        }
        g.momentum = momentum;
        Ok(())
    }

    fn group_mut(&mut self, group: GroupId) -> Result<&mut Group> {
        self.groups.get_mut(group.0).ok_or(Error::UnknownGroup(group.0))
    }

    /// Replaces a group's hyperparameters between steps, as PyTorch users assign
    /// `optimizer.param_groups[i]["weight_decay"] = ...` (weight-decay schedules, beta2 warmup):
    /// checked as the constructor checks them, effective from the next step, and saved in
    /// checkpoints with the rest of the group. The group's learning rate becomes the config's
    /// `lr` (a schedule, if the group has one, still sets each step's rate), and a momentum set by
    /// [`Optimizer::set_momentum`] stays.
    ///
    /// The state arrays a group keeps are fixed when its tensors are registered: a config that
    /// would keep others (`amsgrad`, `centered`, or a momentum from or to 0) is refused, as
    /// PyTorch's step fails on state it never made.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`]; [`Error::GroupAlgorithm`] for another algorithm;
    /// [`Error::InvalidHyperparameter`] for an invalid value or a change of the state arrays kept.
    /// The group is then unchanged.
    pub fn set_group_config(&mut self, group: GroupId, config: impl Into<OptimizerConfig>) -> Result<()> {
        let config = config.into();
        let names = self.state_names();
        let g = self.group_mut(group)?;
        let (expected, got) = (g.config.name(), config.name());
        if expected != got {
            return Err(Error::GroupAlgorithm { expected, got });
        }
        let algorithm = config.algorithm();
        algorithm.validate()?;
        let (before, after) = (g.config.algorithm().states_used(), algorithm.states_used());
        if before != after {
            let kept = |used: &[bool]| {
                let kept: Vec<&str> = names.iter().zip(used).filter(|(_, &u)| u).map(|(n, _)| *n).collect();
                if kept.is_empty() {
                    "none".to_string()
                } else {
                    kept.join(", ")
                }
            };
            return Err(Error::invalid(
                "config",
                format!(
                    "group {} keeps the state arrays {{{}}}; the new config would keep {{{}}}: the arrays a group keeps \
                     are fixed when its tensors are registered (amsgrad, centered, or a momentum from or to 0)",
                    group.0,
                    kept(&before),
                    kept(&after)
                ),
            ));
        }
        g.lr = algorithm.lr();
        g.config = config;
        Ok(())
    }

    /// Sets one hyperparameter of a group by its PyTorch name, as
    /// `optimizer.param_groups[i][name] = value` does: `value` in the form the config's JSON takes
    /// (`0.01`, `[0.9, 0.95]` for `betas`, `true`); see [`Optimizer::set_group_config`].
    ///
    /// ```no_run
    /// # use wgpu_optim::{AdamWConfig, GpuContext, Optimizer};
    /// # let ctx = GpuContext::new()?;
    /// let mut opt = Optimizer::new(&ctx, AdamWConfig::default())?;
    /// let g = opt.default_group();
    /// opt.set_hyperparameter(g, "weight_decay", 0.05.into())?;
    /// opt.set_hyperparameter(g, "betas", serde_json::json!([0.9, 0.95]))?;
    /// # Ok::<(), wgpu_optim::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownGroup`]; [`Error::Config`] for a name the algorithm does not have or a value
    /// of the wrong type; otherwise as [`Optimizer::set_group_config`].
    pub fn set_hyperparameter(&mut self, group: GroupId, name: &str, value: serde_json::Value) -> Result<()> {
        let current = self.group_config(group)?;
        // From the group's rate as it is now (a `set_lr` or a restored checkpoint's), which only
        // a change of `lr` itself replaces, as PyTorch's `param_groups[i][name] = value` leaves
        // every other key alone.
        let mut json = with_lr(current, self.groups[group.0].lr)?.to_json();
        let fields = json.as_object_mut().expect("a config is a JSON object");
        let config_error = |message: String| Error::Config { what: "optimizer", message };
        if name == "name" || !fields.contains_key(name) {
            let keys: Vec<&str> = fields.keys().map(String::as_str).filter(|k| *k != "name").collect();
            return Err(config_error(format!(
                "{} has no hyperparameter \"{name}\" (it has {})",
                current.name(),
                keys.join(", ")
            )));
        }
        // serde_json turns a NaN or an infinity into null: say so rather than "invalid type".
        if value.is_null() && !fields[name].is_null() {
            return Err(Error::invalid(
                name,
                format!("{name} must be a number, got null (a NaN or an infinity converted to JSON is null)"),
            ));
        }
        fields.insert(name.to_string(), value);
        let config = OptimizerConfig::from_json(&json)?;
        self.set_group_config(group, config)
    }

    /// A group's config.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`].
    pub fn group_config(&self, group: GroupId) -> Result<&OptimizerConfig> {
        Ok(&self.groups.get(group.0).ok_or(Error::UnknownGroup(group.0))?.config)
    }

    /// Steps recorded: the clock schedules read. Each tensor's own count (PyTorch's
    /// `state["step"]`) is [`Optimizer::param_steps`]: this less its registration step and the
    /// steps it sat out without a gradient.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Sets the step count, which bias corrections and schedules read: for an engine that aborts
    /// a step it recorded (dropped the encoder, say), since a recorded step counts whether or not
    /// it is submitted. `set_step_count(opt.steps() - 1)` rewinds one such step. A tensor's own
    /// step count is this less the count at which it was registered and the steps it sat out
    /// without a gradient; rewinding the last recorded steps (up to 64) also takes back what they
    /// counted as sat out and the values they carried on (ASGD's eta, NAdam's mu_product).
    /// Rewinding further keeps earlier sat-out counts and rebuilds the carried values from the
    /// schedule. The state arrays are not touched, nor is a `ReduceLROnPlateau` schedule's record
    /// of the metrics it observed.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] for a count below a tensor's registration step (it would
    /// have taken fewer than no steps) or past 2^53; the count is then unchanged.
    pub fn set_step_count(&mut self, steps: u64) -> Result<()> {
        if steps < self.steps && self.amp.as_ref().is_some_and(|a| a.scaler.is_some()) {
            return Err(Error::Unsupported(format!(
                "rewinding the step count ({} -> {steps}) under loss scaling: the device has already \
                 counted the steps it skipped and moved the scale",
                self.steps
            )));
        }
        // Far beyond any training run; what matters is that counting on from it cannot overflow.
        if steps > 1 << 53 {
            return Err(Error::invalid("steps", format!("step count {steps} is past 2^53")));
        }
        // Rewinding recorded steps takes back what each counted as sat out and the carries it
        // handed on, latest first, before the check below, so that it sees the counts as they
        // will be; a refusal puts them back.
        let mut undone: Vec<(LastStep, LastStep)> = Vec::new();
        while let Some(last) = self.recent.pop_back() {
            if last.at <= steps {
                self.recent.push_back(last);
                break;
            }
            let redo = last.undo(&mut self.tensors);
            undone.push((last, redo));
        }
        let latest = (0..self.tensors.len())
            .filter_map(|i| self.tensors.info(i).map(|t| (i, t)))
            .max_by_key(|(_, t)| t.origin());
        if let Some((param, t)) = latest.filter(|(_, t)| steps < t.origin()) {
            for (last, redo) in undone.into_iter().rev() {
                redo.apply(&mut self.tensors);
                self.recent.push_back(last);
            }
            let why = match t.skipped {
                0 => format!("the step at which parameter {param} was registered"),
                1 => format!("parameter {param}'s registration step, {}, and the step it sat out", t.added_at),
                n => format!("parameter {param}'s registration step, {}, and the {n} steps it sat out", t.added_at),
            };
            return Err(Error::invalid("steps", format!("step count {steps} is below {}, {why}", t.origin())));
        }
        // Steps older than those kept to rewind: their carries cannot be taken back one by one,
        // so they are rebuilt from the schedule at the next step (`first_carry`).
        let kept = undone.len() as u64;
        if steps < self.steps.saturating_sub(kept) {
            for i in 0..self.tensors.len() {
                self.tensors.set_carry(i, None);
            }
        }
        self.steps = steps;
        Ok(())
    }

    /// Says whether tensor `param` has a gradient in the next steps (PyTorch's `p.grad is not
    /// None`); every tensor has one until told otherwise, and the mark stays until changed.
    ///
    /// A step leaves a tensor without a gradient exactly as it was: its parameter, its state and
    /// its own step count (so its bias corrections carry on as if the step had not happened), as
    /// PyTorch's optimizers skip `p.grad is None`. The optimizer's step count, which schedules
    /// read, still advances. Nothing is rebuilt: the step dispatches over the tensors that have
    /// gradients (runs of tensors that share a dispatch are cut around the others).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] for a parameter index never registered.
    pub fn set_has_grad(&mut self, param: usize, present: bool) -> Result<()> {
        if self.tensors.set_has_grad(param, present) {
            Ok(())
        } else {
            Err(self.unknown_param(param))
        }
    }

    /// Moves tensor `param`'s gradient to element `offset` of `grad` for the next steps: for an
    /// engine whose gradients are new tensors at new places every step (burn's `GradientsParams`),
    /// handed over without registering again and without a copy. `offset` counts elements of
    /// the group's gradient format. The gradient may lie in a parameter's buffer (its own
    /// parameter's too, as pooled allocators place them), never on a parameter's elements.
    ///
    /// Nothing is built here. The next step binds the gradients where they are: when the
    /// locations are those of one of the last few steps it reuses that step's bind groups,
    /// otherwise it builds new ones (one per run of tensors that lie together; see
    /// [`Optimizer::plans_built`]). Setting the location a tensor has already costs nothing.
    /// Whether the tensor has a gradient at all is [`Optimizer::set_has_grad`]'s.
    ///
    /// # Errors
    /// Nothing changes on an error: [`Error::OutOfBounds`] for an index never registered or a
    /// range past the buffer's end, [`Error::BufferUsage`] without `STORAGE` usage,
    /// [`Error::GradOverlapsParam`] on a parameter's elements. A buffer of another device, or
    /// one destroyed, is refused by the next step ([`Error::Wgpu`], nothing recorded).
    pub fn set_grad(&mut self, param: usize, grad: &wgpu::Buffer, offset: u64) -> Result<()> {
        let info = self.tensors.info(param).ok_or_else(|| self.unknown_param(param))?;
        let storage = self.groups[info.group].storage;
        self.tensors.set_grad(param, grad, offset, storage)?;
        Ok(())
    }

    /// How many times a step built its bind groups (at the first step, after registering
    /// tensors or changing loss scaling, and for gradient locations not seen in the last few
    /// steps): an engine can check that gradients which move between the same places reuse them.
    pub fn plans_built(&self) -> u64 {
        self.recorder.plans_built()
    }

    /// Whether tensor `param` has a gradient in the next step (see [`Optimizer::set_has_grad`]).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] for a parameter index never registered.
    pub fn has_grad(&self, param: usize) -> Result<bool> {
        self.tensors.has_grad(param).ok_or_else(|| self.unknown_param(param))
    }

    /// Tensor `param`'s own step count (PyTorch's `state["step"]`): the steps it took since it
    /// was registered, those it sat out without a gradient not counted. Under loss scaling, steps
    /// the device skipped still count here (the host does not know them; the kernels do, and a
    /// checkpoint records them).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] for a parameter index never registered.
    pub fn param_steps(&self, param: usize) -> Result<u64> {
        let t = self.tensors.info(param).ok_or_else(|| self.unknown_param(param))?;
        Ok(self.steps.saturating_sub(t.origin()))
    }

    fn unknown_param(&self, param: usize) -> Error {
        Error::OutOfBounds {
            what: "parameter index".into(),
            offset: param as u64,
            end: param as u64 + 1,
            buffer_len: self.tensors.len() as u64,
        }
    }

    /// Registered tensors.
    pub fn param_count(&self) -> usize {
        self.tensors.len()
    }

    /// Dispatches the next step records (a measure of how well tensors were batched): with every
    /// gradient present, one per run of tensors that share a dispatch, and one more for a run's
    /// last `len % 4` elements where it runs four elements per invocation; tensors without a
    /// gradient ([`Optimizer::set_has_grad`]) cut runs into stretches, each up to three (a
    /// one-wide head, four-wide, a one-wide tail). Nothing is built or changed.
    pub fn dispatch_count(&self) -> usize {
        plan::dispatch_count(&self.ctx.device, &self.tensors, &self.store, &self.storages())
    }

    /// Partial norms the next step's gradient scan writes, one per invocation of its grid (an
    /// invocation per 64 of the update's, whole workgroups of 256), each 8 bytes that `finish`
    /// reads back; 0
    /// without loss scaling or clipping. With them a step records `2 * dispatch_count() + 1`
    /// dispatches: the scan over the same dispatches, one `finish` workgroup, the update.
    /// Nothing is built or changed.
    pub fn scan_partials(&self) -> u64 {
        if self.amp.is_none() {
            return 0;
        }
        plan::step_shape(&self.ctx.device, &self.tensors, &self.store, &self.storages()).1
    }

    /// The kernel's state arrays, by PyTorch's names (`exp_avg`, ...).
    pub fn state_names(&self) -> Vec<&'static str> {
        self.kernel.state_names().collect()
    }

    /// Records one step into the engine's encoder: the upload of this step's scalars, then one
    /// compute pass. Steps recorded before one submit each see their own scalars.
    ///
    /// A recorded step counts ([`Optimizer::steps`] advances) whether or not the engine submits
    /// the encoder; an engine that drops it rewinds the count with
    /// [`Optimizer::set_step_count`]. The encoder should be submitted (wgpu reclaims the upload
    /// buffers when it is). Prefer [`Optimizer::step`] when the optimizer may submit by itself.
    ///
    /// Everything `record` asks of the device (bind groups, pipelines, the upload buffer) runs in
    /// error scopes, so a refusal there is an error here even on a device whose uncaptured errors
    /// panic. What wgpu checks only in the encoder itself is reported by wgpu at the engine's
    /// `finish()` or submit, after this step was counted: a buffer destroyed after a step has
    /// bound it, timestamp writes out of the query set's range, an encoder that was already
    /// invalid. An engine that sees such an error rewinds with [`Optimizer::set_step_count`].
    ///
    /// # Errors
    /// [`Error::NoParameters`] if no tensor is registered; [`Error::InvalidHyperparameter`] if a
    /// schedule's closure gave a negative or non-finite rate; [`Error::DeviceLost`]; [`Error::Wgpu`]
    /// if wgpu refuses the step (a buffer destroyed since it was registered, say). The step is
    /// then not counted; a refusal while building the step (as for that buffer) leaves the
    /// encoder untouched.
    pub fn record(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        self.record_timed(encoder, None)
    }

    /// [`Optimizer::record`], with timestamps written at the beginning and end of the step's
    /// compute pass (the device needs `Features::TIMESTAMP_QUERY`). `bench` uses it to report GPU
    /// time. A step with no elements to update records no pass, and so writes no timestamps.
    ///
    /// # Errors
    /// As [`Optimizer::record`].
    pub fn record_timed(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) -> Result<()> {
        // The step's upload asks the device whether it is alive (record.rs); a known loss is
        // said before anything else.
        self.ctx.check_known_lost()?;
        if self.tensors.is_empty() {
            return Err(Error::NoParameters);
        }
        let step = self.steps + 1;
        let mut hyper = Vec::with_capacity(self.groups.len());
        for g in &self.groups {
            let (lr, momentum) = g.hyper(self.steps)?;
            // A schedule is checked at construction, but a closure (LambdaLR) can return anything.
            check_non_negative("lr", "Invalid learning rate", lr)?;
            hyper.push((lr, momentum));
        }
        if self.recorder.needs_plan() {
            // Registration is over for now: give back what growing the state left unused (on a
            // live device only: a copy on a lost one would quietly drop the state).
            self.ctx.check_alive()?;
            self.store.compact(&self.ctx);
        }
        let groups = &self.groups;
        // Each tensor counts its own steps: from its registration, less those it sat out without
        // a gradient (its origin); tensors without a gradient are not dispatched at all. What a
        // tensor's last step carried (ASGD's eta, NAdam's mu_product) goes in with it; the
        // carries this step hands on are found once per key and kept if the step is recorded.
        let next: RefCell<HashMap<(usize, StepKey), Carry>> = RefCell::default();
        // The step's input for tensors of `group` with `key`, with their carry (if any), and the
        // carry it hands on, kept in `next`.
        let input = |group: usize, key: StepKey| {
            let (lr, momentum) = hyper[group];
            let algorithm = groups[group].config.algorithm();
            let mut input = StepInput { step: step - key.origin, lr, momentum, carry: Carry::default() };
            if let Some(carry) = key.carry().or_else(|| first_carry(algorithm, &groups[group], key.origin, &input)) {
                input.carry = carry;
                next.borrow_mut().insert((group, key), algorithm.carry_next(&input));
            }
            input
        };
        let ema_weight = self.ema_decay.map_or(0.0, |d| (1.0 - d) as f32);
        let scalars = |group: usize, key: StepKey| {
            let mut s = groups[group].config.algorithm().scalars(&input(group, key));
            s.seed = groups[group].storage.rounding.step_seed(step - key.origin);
            s.ema_weight = ema_weight;
            s
        };
        let storages = self.storages();
        // Loss scaling: classes that part this step split (see amp.rs); applied once recorded.
        let (ops, moves) = match self.amp.as_mut() {
            Some(amp) if amp.scaler.is_some() => class_ops(&self.tensors, amp),
            _ => (ClassOps::default(), Vec::new()),
        };
        let clipped: Vec<bool> = (0..groups.len())
            .map(|g| self.amp.as_ref().and_then(|a| a.clip.as_ref()).is_some_and(|c| c.clips(g)))
            .collect();
        let amp = self.amp.as_mut().map(|amp| AmpStep { amp, clipped: &clipped, ops: &ops });
        self.recorder.record(
            &self.ctx,
            &self.tensors,
            &self.store,
            &storages,
            encoder,
            step,
            scalars,
            amp,
            timestamp_writes,
        )?;
        let classes: Vec<(usize, u32)> = moves
            .into_iter()
            .map(|(i, class)| {
                let before = self.tensors.amp_class(i);
                self.tensors.set_amp_class(i, class);
                (i, before)
            })
            .collect();
        // Every tensor with a gradient takes its step's carry, dispatched or not (an empty tensor
        // has nothing to dispatch but counts its steps all the same).
        let mut carries = Vec::new();
        // Only where some group's algorithm carries anything: no work per tensor otherwise.
        let carrying: Vec<bool> = (0..self.groups.len()).map(|g| self.group_carries(g)).collect();
        for i in 0..self.tensors.len() {
            let (Some(key), Some(info)) = (self.tensors.step_key(i), self.tensors.info(i)) else { continue };
            if !carrying[info.group] {
                continue;
            }
            if !next.borrow().contains_key(&(info.group, key)) {
                input(info.group, key);
            }
            if let Some(&carry) = next.borrow().get(&(info.group, key)) {
                carries.push((i, self.tensors.carry(i)));
                self.tensors.set_carry(i, Some(carry));
            }
        }
        self.steps = step;
        let last = LastStep { at: step, skipped: self.tensors.count_skipped(), carries, classes };
        self.recent.push_back(last);
        if self.recent.len() > REWINDABLE {
            self.recent.pop_front();
        }
        Ok(())
    }

    /// Takes one step: records it and submits it. Does not wait for the GPU.
    ///
    /// # Errors
    /// As [`Optimizer::record`]; [`Error::Wgpu`] also if wgpu refuses the submit (a buffer
    /// destroyed since a step bound it): the step is then not counted and nothing was changed.
    pub fn step(&mut self) -> Result<()> {
        let device = self.ctx.device.clone();
        let scopes = Scopes::push(&device);
        let mut encoder =
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim step") });
        let before = self.steps;
        let recorded = self.record(&mut encoder);
        if recorded.is_ok() {
            self.ctx.queue.submit([encoder.finish()]);
        }
        if let Err(error) = scopes.pop("submitting the step") {
            if self.steps != before {
                self.steps = before;
                if let Some(last) = self.recent.pop_back() {
                    last.undo(&mut self.tensors);
                }
            }
            return Err(error);
        }
        recorded
    }

    /// Reads one tensor's state array back to the host (for checkpoints and tests; a step never
    /// reads anything back). `None` if the tensor's group does not keep that array, or if the
    /// kernel has no array of that name. `"master"` is the f32 master copy of a low-precision
    /// parameter whose group keeps one ([`Storage::master`]).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] for a parameter index never registered; [`Error::DeviceLost`] if the
    /// device fails.
    pub fn read_state(&self, param: usize, name: &str) -> Result<Option<Vec<f32>>> {
        let tensor = self.tensors.info(param).ok_or_else(|| self.unknown_param(param))?;
        if name == MASTER {
            return match self.groups[tensor.group].storage.master {
                true => state::read(&self.ctx, &self.tensors, &self.store, param, self.kernel.states.len()).map(Some),
                false => Ok(None),
            };
        }
        if name == EMA {
            return match self.groups[tensor.group].storage.ema {
                true => {
                    state::read(&self.ctx, &self.tensors, &self.store, param, self.kernel.states.len() + 1).map(Some)
                }
                false => Ok(None),
            };
        }
        let Some(k) = self.kernel.state_index(name) else {
            return Ok(None);
        };
        if !self.groups[tensor.group].config.algorithm().states_used()[k] {
            return Ok(None);
        }
        state::read(&self.ctx, &self.tensors, &self.store, param, k).map(Some)
    }

    /// Scales and checks the gradients as `torch.amp.GradScaler` does with a fused optimizer, on
    /// the device: each step unscales every gradient as the kernel loads it (`g / scale`), skips
    /// the whole step if any gradient of any tensor holds an infinity or a NaN (parameters, state
    /// and the step counts bias corrections use stay as they were), and then updates the scale
    /// ([`GradScalerConfig`]). The engine multiplies its loss by the scale, the first f32 of
    /// [`Optimizer::loss_scale_buffer`], on the device; [`Optimizer::amp_status`] reads it back
    /// for logging. Nothing is read back during training. `None` turns loss scaling off. Setting
    /// it starts from `init_scale` again.
    ///
    /// A skipped step still counts for schedules ([`Optimizer::steps`] advances, as PyTorch's
    /// schedulers step regardless). Tensors registered later start their own counts as usual.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] for an invalid config; [`Error::Unsupported`] for an
    /// algorithm whose scalars depend on the step count without a device-side correction
    /// (Adagrad, Adamax, ASGD, NAdam, RAdam, Rprop; Adam, AdamW, SGD, RMSprop, Adadelta and Lion
    /// take it); [`Error::DeviceLost`] or [`Error::Wgpu`] if the device fails. Nothing changes
    /// then.
    pub fn set_loss_scaling(&mut self, scaler: Option<GradScalerConfig>) -> Result<()> {
        if let Some(s) = &scaler {
            s.validate()?;
            if self.kernel.device_step == DeviceStep::Unsupported {
                return Err(Error::Unsupported(format!(
                    "loss scaling with {}: its scalars depend on each tensor's step count, and skipped \
                     steps would need a device-side correction that is not written yet (Adam, AdamW, \
                     SGD, RMSprop, Adadelta and Lion have one); gradient clipping works with every optimizer",
                    self.groups[0].config.name()
                )));
            }
        }
        let clip = self.amp.as_ref().and_then(|a| a.clip.clone());
        self.configure_amp(scaler, clip)
    }

    /// Clips the gradients' global norm before every step as `torch.nn.utils.clip_grad_norm_`
    /// does ([`ClipGradNorm`]), on the device: the norm over the chosen groups' gradients (unscaled
    /// first under loss scaling), and the update multiplies each of their gradients by
    /// `min(1, max_norm / (total_norm + 1e-6))` as it loads it. `None` turns clipping off; the
    /// loss scale, if any, is kept.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] for an invalid `max_norm`, [`Error::UnknownGroup`] for a
    /// group that does not exist; [`Error::DeviceLost`] or [`Error::Wgpu`] if the device fails.
    pub fn set_grad_clipping(&mut self, clip: Option<ClipGradNorm>) -> Result<()> {
        if let Some(c) = &clip {
            c.validate()?;
            if let Some(&g) = c.groups.iter().flatten().find(|&&g| g >= self.groups.len()) {
                return Err(Error::UnknownGroup(g));
            }
        }
        match self.amp.as_mut() {
            // The loss scale and the counters stay: only the settings change.
            Some(amp) if clip.is_some() => {
                amp.clip = clip;
                Ok(())
            }
            _ => {
                let scaler = self.amp.as_ref().and_then(|a| a.scaler.clone());
                self.configure_amp(scaler, clip)
            }
        }
    }

    /// Builds (or drops) the loss-scaling state and the recorder that goes with it. Steps the
    /// device skipped so far are folded into each tensor's count of steps sat out first (one read
    /// back), since the new state starts its counters from zero.
    fn configure_amp(&mut self, scaler: Option<GradScalerConfig>, clip: Option<ClipGradNorm>) -> Result<()> {
        self.ctx.check_alive()?;
        let fold = match self.amp.as_ref().filter(|a| a.scaler.is_some()) {
            Some(amp) => Some(amp.class_skips(&self.ctx)?),
            None => None,
        };
        let on = scaler.is_some() || clip.is_some();
        let scaling = scaler.is_some();
        let amp = if on { Some(Amp::new(&self.ctx, scaler, clip)?) } else { None };
        let recorder = match (on, self.amp.is_some()) {
            (true, true) | (false, false) => None,
            _ => {
                // Every group's storage compiled again, as the variant with or without `amp`.
                let storages = self.storages();
                let mut recorder = Recorder::new(&self.ctx, self.kernel, storages[0], on)?;
                for &storage in &storages[1..] {
                    recorder.add_storage(&self.ctx, storage)?;
                }
                Some(recorder)
            }
        };
        if let Some(skips) = fold {
            let counts: Vec<(u64, u64)> = (0..self.tensors.len())
                .filter_map(|i| self.tensors.info(i).map(|t| (i, t)))
                .map(|(i, t)| {
                    let class = self.tensors.amp_class(i) as usize;
                    (t.added_at, t.skipped + u64::from(skips.get(class).copied().unwrap_or(0)))
                })
                .collect();
            self.tensors.set_counts(&counts);
            // Those steps are now history: a rewind past them would not know the classes.
            self.recent.clear();
        }
        self.tensors.set_amp_keys(scaling);
        self.registration_class = scaling.then_some((self.steps, 0));
        if let Some(recorder) = recorder {
            self.recorder = recorder;
        }
        self.recorder.invalidate();
        self.amp = amp;
        Ok(())
    }

    /// Keeps an exponential moving average of the weights, as `torch.optim.swa_utils.AveragedModel`
    /// with `get_ema_multi_avg_fn(decay)` updated after every step (a skipped one too, as a loop
    /// that calls `update_parameters` every iteration does):
    ///
    /// ```text
    /// ema = w                                 at a tensor's first step (the average starts as a copy)
    /// ema = ema + (1 - decay) * (w - ema)     after every later step
    /// ```
    /// where `w` is the weights after the step: the f32 master copy where the group keeps one,
    /// else the parameter before it is stored in its format. The average is an f32 state array
    /// (`read_state(i, "ema")`, saved in checkpoints), updated in the same pass as the step;
    /// [`Optimizer::swap_ema`] exchanges it with the live weights on the device. A tensor sits the
    /// average out where it sits the step out (no gradient), as its own step count does.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] for a decay outside `[0, 1]`; [`Error::Unsupported`] once
    /// tensors are registered (the average is laid out with their state; set it first) or to turn
    /// it off after; [`Error::Wgpu`] if wgpu refuses the kernel.
    pub fn set_ema(&mut self, decay: Option<f64>) -> Result<()> {
        if let Some(d) = decay {
            if !(0.0..=1.0).contains(&d) {
                return Err(Error::invalid("decay", format!("Invalid ema decay: {}", crate::error::py_float(d))));
            }
        }
        if !self.tensors.is_empty() && decay.is_some() != self.ema_decay.is_some() {
            return Err(Error::Unsupported(
                "setting or dropping the EMA of the weights after tensors are registered: it is laid out \
                 with their state, so set it before add_params"
                    .into(),
            ));
        }
        for i in 0..self.groups.len() {
            let storage = Storage { ema: decay.is_some(), ..self.groups[i].storage };
            self.recorder.add_storage(&self.ctx, storage)?;
            self.groups[i].storage = storage;
        }
        self.ema_decay = decay;
        self.recorder.invalidate();
        Ok(())
    }

    /// Exchanges every tensor's EMA with its weights, on the device, for evaluation: the
    /// parameters then hold the average (rounded to their format; the master copy holds it
    /// exactly), and the EMA the live weights. Calling it again swaps back exactly. Records into
    /// `encoder` (see [`Optimizer::swap_ema`] to submit at once); steps between two swaps would
    /// train the average, so swap back before stepping.
    ///
    /// # Errors
    /// [`Error::Unsupported`] without an EMA ([`Optimizer::set_ema`]) or for a group of bf16
    /// parameters rounded stochastically without a master copy (the swap would not give the
    /// weights back); [`Error::NoParameters`]; [`Error::DeviceLost`]; [`Error::Wgpu`].
    pub fn record_swap_ema(&mut self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        self.ctx.check_known_lost()?;
        if self.ema_decay.is_none() {
            return Err(Error::Unsupported("swapping the EMA of the weights: none is kept (set_ema)".into()));
        }
        if let Some(g) = self.groups.iter().position(|g| g.storage.stochastic()) {
            return Err(Error::Unsupported(format!(
                "swapping the EMA of group {g}: its bf16 parameters are rounded stochastically without a master \
                 copy, so a swap would not give the weights back (keep a master copy)"
            )));
        }
        if self.tensors.is_empty() {
            return Err(Error::NoParameters);
        }
        if self.recorder.needs_plan() {
            self.ctx.check_alive()?;
            self.store.compact(&self.ctx);
        }
        let storages = self.storages();
        self.recorder.record_swap(&self.ctx, &self.tensors, &self.store, &storages, encoder, self.amp.as_ref())
    }

    /// [`Optimizer::record_swap_ema`], submitted at once.
    ///
    /// # Errors
    /// As [`Optimizer::record_swap_ema`].
    pub fn swap_ema(&mut self) -> Result<()> {
        let device = self.ctx.device.clone();
        let scopes = Scopes::push(&device);
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ema swap") });
        let recorded = self.record_swap_ema(&mut encoder);
        if recorded.is_ok() {
            self.ctx.queue.submit([encoder.finish()]);
        }
        scopes.pop("submitting the EMA swap")?;
        recorded
    }

    /// The buffer whose first f32 is the loss scale the next step's gradients must carry: bind it
    /// to multiply the loss on the device. `None` without loss scaling. Registering tensors may
    /// replace it (a step makes room for their partial norms): take it again after registering.
    pub fn loss_scale_buffer(&self) -> Option<&wgpu::Buffer> {
        self.amp.as_ref().filter(|a| a.scaler.is_some()).map(Amp::buffer_ref)
    }

    /// What the device decided at the last step (the scale, whether the step was skipped, the
    /// total norm and clip coefficient), read back now: for logging, never needed to train.
    /// `None` without loss scaling or clipping.
    ///
    /// # Errors
    /// [`Error::DeviceLost`] or [`Error::Wgpu`] if the device fails.
    pub fn amp_status(&self) -> Result<Option<AmpStatus>> {
        self.amp.as_ref().map(|a| a.status(&self.ctx)).transpose()
    }

    /// Whether any registered gradient holds a NaN or an infinity, now (tensors marked without a
    /// gradient, [`Optimizer::set_has_grad`], are not read).
    ///
    /// A step behaves as PyTorch's does: non-finite gradients propagate into the parameters and
    /// state. To skip such steps without a host round trip (as mixed-precision training does),
    /// use [`Optimizer::set_loss_scaling`], which decides on the device. This call scans every
    /// gradient on the GPU and reads back one word: for diagnostics, when the answer is needed
    /// now; `step` itself never reads anything back.
    ///
    /// # Errors
    /// [`Error::DeviceLost`] or [`Error::Wgpu`] if the device fails.
    pub fn found_nonfinite(&self) -> Result<bool> {
        // Only the gradients a step would read: PyTorch's GradScaler checks only `p.grad`s that exist.
        let (tensors, groups) = (&self.tensors, &self.groups);
        let gradients = (tensors.pieces())
            .filter(|p| tensors.has_grad(p.param) == Some(true))
            .map(|p| (p.span.grad, p.span.grad_start, p.span.len, groups[p.span.group].storage.grad));
        self.nonfinite.scan(&self.ctx, gradients)
    }

    // What checkpoints read and put back.

    /// [`Error::DeviceLost`] if the device is gone.
    pub(super) fn check_alive(&self) -> Result<()> {
        self.ctx.check_alive()
    }

    /// The algorithm's name (PyTorch's class name).
    pub(super) fn algorithm_name(&self) -> &'static str {
        self.groups[0].config.name()
    }

    /// Every group's hyperparameters.
    pub(super) fn group_snapshots(&self) -> Vec<GroupSnapshot> {
        (self.groups.iter())
            .map(|g| GroupSnapshot {
                config: g.config.clone(),
                lr: g.lr,
                momentum: g.momentum,
                schedule: g.schedule.as_ref().map(|s| (s.name().to_string(), s.state())),
                schedule_at: g.schedule_at,
            })
            .collect()
    }

    /// Tensor `i`'s carry (see [`Carry`]) for its next step: the one kept, or, for a tensor that
    /// stepped without one kept (after a version-2 checkpoint or a long rewind), rebuilt as its
    /// next step would rebuild it, so that a checkpoint always holds it.
    pub(super) fn tensor_carry(&self, i: usize) -> Option<Carry> {
        if let Some(carry) = self.tensors.carry(i) {
            return Some(carry);
        }
        let info = self.tensors.info(i)?;
        let own = self.steps.checked_sub(info.origin()).filter(|&own| own > 0)?;
        let group = &self.groups[info.group];
        let (lr, momentum) = group.hyper(self.steps).unwrap_or((group.lr, group.momentum));
        let input = StepInput { step: own + 1, lr, momentum, carry: Carry::default() };
        first_carry(group.config.algorithm(), group, info.origin(), &input)
    }

    /// Whether `carry` is one group `g`'s algorithm can hand on.
    pub(super) fn check_carry(&self, g: usize, carry: &Carry) -> std::result::Result<(), String> {
        self.groups[g].config.algorithm().check_carry(carry)
    }

    /// Whether group `g` keeps an EMA of its weights (the store's last state array).
    pub(super) fn keeps_ema(&self, g: usize) -> bool {
        self.groups[g].storage.ema
    }

    /// The decay of the EMA of the weights, if one is kept.
    pub(super) fn ema_decay(&self) -> Option<f64> {
        self.ema_decay
    }

    /// Whether group `g` keeps an f32 master copy of its parameters (the state array after the
    /// kernel's own).
    pub(super) fn keeps_master(&self, g: usize) -> bool {
        self.groups[g].storage.master
    }

    /// Whether group `g`'s algorithm carries anything from step to step.
    pub(super) fn group_carries(&self, g: usize) -> bool {
        let algorithm = self.groups[g].config.algorithm();
        algorithm
            .carry_start(&StepInput { step: 1, lr: algorithm.lr(), momentum: None, carry: Carry::default() })
            .is_some()
    }

    /// Every tensor's group, length and registration step, in order.
    pub(super) fn amp_settings(&self) -> (Option<&GradScalerConfig>, Option<&ClipGradNorm>) {
        match &self.amp {
            Some(a) => (a.scaler.as_ref(), a.clip.as_ref()),
            None => (None, None),
        }
    }

    /// The loss scaler's settings and device state, read back (for a save).
    pub(super) fn amp_snapshot(&self) -> Result<Option<AmpSnapshot>> {
        let Some(amp) = &self.amp else { return Ok(None) };
        let tensor_skips = match amp.scaler {
            Some(_) => {
                let counters = amp.class_skips(&self.ctx)?;
                Some((0..self.tensors.len()).map(|i| counters[self.tensors.amp_class(i) as usize]).collect())
            }
            None => None,
        };
        Ok(Some(AmpSnapshot {
            scaler: amp.scaler.clone(),
            clip: amp.clip.clone(),
            status: amp.status(&self.ctx)?,
            tensor_skips,
        }))
    }

    pub(super) fn tensor_infos(&self) -> Vec<TensorInfo> {
        (0..self.tensors.len()).filter_map(|i| self.tensors.info(i)).collect()
    }

    /// Every state array of every tensor that its group keeps, read back.
    ///
    /// # Errors
    /// [`Error::DeviceLost`] or [`Error::Wgpu`] if the device fails.
    pub(super) fn export_state(&self) -> Result<Vec<TensorState<Vec<f32>>>> {
        let groups = &self.groups;
        let kept = |g: usize| {
            let mut kept = groups[g].config.algorithm().states_used();
            kept.push(groups[g].storage.master);
            kept.push(groups[g].storage.ema);
            kept
        };
        state::export(&self.ctx, &self.tensors, &self.store, kept)
    }

    /// Puts a checkpoint in place: the schedules' states first (a schedule can still refuse its
    /// state; those already restored are then put back), then the state arrays, the groups'
    /// hyperparameters, the tensors' registration steps and the step count.
    ///
    /// # Errors
    /// The schedule's or the state's refusal, naming the group; the optimizer is then unchanged.
    pub(super) fn restore(&mut self, checkpoint: Restore<'_>) -> std::result::Result<(), String> {
        let mut previous: Vec<(usize, SchedulerState)> = Vec::with_capacity(self.groups.len());
        let mut refused = None;
        for (g, saved) in checkpoint.groups.iter().enumerate() {
            let (Some((_, state)), Some(schedule)) = (&saved.schedule, self.groups[g].schedule.as_mut()) else {
                continue;
            };
            let before = schedule.state();
            if let Err(e) = schedule.restore(state) {
                refused = Some(format!("group {g}: {e}"));
                break;
            }
            previous.push((g, before));
        }
        let refused = match refused {
            Some(message) => Some(message),
            None => state::import(&self.ctx.queue, &self.tensors, &self.store, &checkpoint.states)
                .err()
                .map(|e| e.to_string()),
        };
        if let Some(message) = refused {
            for (g, before) in previous {
                if let Some(s) = self.groups[g].schedule.as_mut() {
                    let _ = s.restore(&before);
                }
            }
            return Err(message);
        }
        for (group, saved) in self.groups.iter_mut().zip(checkpoint.groups) {
            group.config = saved.config;
            group.lr = saved.lr;
            group.momentum = saved.momentum;
            group.schedule_at = saved.schedule_at;
        }
        self.tensors.set_counts(&checkpoint.counts);
        for (i, carry) in checkpoint.carries.into_iter().enumerate() {
            self.tensors.set_carry(i, carry);
        }
        if let (Some(amp), Some(saved)) = (self.amp.as_mut(), checkpoint.amp) {
            // Tensors that skipped the same number of steps on the device step alike from here:
            // a class per count, its counter holding it.
            let skips = saved.tensor_skips.unwrap_or_default();
            let mut counters: Vec<u32> = skips.clone();
            counters.sort_unstable();
            counters.dedup();
            if counters.is_empty() {
                counters.push(0);
            }
            for (i, n) in skips.iter().enumerate() {
                let class = counters.binary_search(n).unwrap_or_default() as u32;
                self.tensors.set_amp_class(i, class);
            }
            amp.restore(&self.ctx, saved.scale, saved.growth_tracker, saved.skipped_steps, &counters);
            self.registration_class = None;
        }
        self.recent.clear();
        self.recorder.invalidate();
        self.steps = checkpoint.steps;
        Ok(())
    }
}

/// `config` with its `lr` replaced (checked as the constructor checks it).
fn with_lr(config: &OptimizerConfig, lr: f64) -> Result<OptimizerConfig> {
    let mut json = config.to_json();
    json["lr"] = serde_json::Value::from(lr);
    OptimizerConfig::from_json(&json)
}

/// Recorded steps whose host-side changes a rewind can take back one by one.
const REWINDABLE: usize = 64;

/// What a recorded step changed besides the device: the tensors it counted as sitting it out and
/// the carries it replaced. Rewinding the step ([`Optimizer::set_step_count`], or a submit wgpu
/// refused) takes them back.
#[derive(Debug)]
struct LastStep {
    /// The optimizer's step count after it.
    at: u64,
    skipped: Vec<usize>,
    /// Each tensor whose carry the step replaced, with the carry before.
    carries: Vec<(usize, Option<Carry>)>,
    /// Each tensor the step moved to another loss-scaling class, with its class before.
    classes: Vec<(usize, u32)>,
}

impl LastStep {
    /// Takes the step's changes back; returns what puts them back again.
    fn undo(&self, tensors: &mut Tensors) -> LastStep {
        tensors.uncount_skipped(&self.skipped);
        let carries = (self.carries.iter())
            .map(|&(i, before)| {
                let after = tensors.carry(i);
                tensors.set_carry(i, before);
                (i, after)
            })
            .collect();
        let classes = (self.classes.iter())
            .map(|&(i, before)| {
                let after = tensors.amp_class(i);
                tensors.set_amp_class(i, before);
                (i, after)
            })
            .collect();
        LastStep { at: self.at, skipped: self.skipped.clone(), carries, classes }
    }

    /// Puts back what [`LastStep::undo`] took (called on what it returned).
    fn apply(&self, tensors: &mut Tensors) {
        tensors.recount_skipped(&self.skipped);
        for &(i, carry) in &self.carries {
            tensors.set_carry(i, carry);
        }
        for &(i, class) in &self.classes {
            tensors.set_amp_class(i, class);
        }
    }
}

/// A step's loss-scaling class operations: every class with a tensor that has a gradient counts
/// the step if the device skips it; a class with tensors on both sides is split, those without a
/// gradient moving to a new class that starts from the old one's count. Returns the operations
/// and the moves (tensor, new class), to apply once the step is recorded.
fn class_ops(tensors: &Tensors, amp: &mut Amp) -> (ClassOps, Vec<(usize, u32)>) {
    let mut sides: HashMap<u32, (bool, bool)> = HashMap::new();
    for i in 0..tensors.len() {
        let side = sides.entry(tensors.amp_class(i)).or_default();
        match tensors.has_grad(i) {
            Some(true) => side.0 = true,
            _ => side.1 = true,
        }
    }
    let mut ops = ClassOps::default();
    let mut split: HashMap<u32, u32> = HashMap::new();
    let mut classes: Vec<(u32, (bool, bool))> = sides.into_iter().collect();
    classes.sort_unstable_by_key(|&(c, _)| c);
    for (class, (with, without)) in classes {
        if with {
            ops.increments.push(class);
        }
        if with && without {
            let new = amp.new_class();
            ops.copies.push((class, new));
            split.insert(class, new);
        }
    }
    let moves = (0..tensors.len())
        .filter(|&i| tensors.has_grad(i) == Some(false))
        .filter_map(|i| split.get(&tensors.amp_class(i)).map(|&new| (i, new)))
        .collect();
    (ops, moves)
}

/// The carry of a tensor's step `input.step` when it has none kept: its first step's (the
/// algorithm's start), or, past its first step (a checkpoint written before carries were saved),
/// rebuilt by replaying the group's hyperparameters over the tensor's steps: exact for a constant
/// rate or a schedule that is a function of the step; with ReduceLROnPlateau or `set_lr` mid-run
/// it replays today's values. `None` for an algorithm that carries nothing.
fn first_carry(algorithm: &dyn Algorithm, group: &Group, origin: u64, input: &StepInput) -> Option<Carry> {
    let mut carry = algorithm.carry_start(&StepInput { carry: Carry::default(), ..*input })?;
    if input.step > 1 {
        let at_step = |t: u64| {
            // Steps the tensor took were steps the schedule allowed: a refusal cannot happen here,
            // and the group's own values are the sensible stand-in if it did.
            let (lr, momentum) = group.hyper(origin + t - 1).unwrap_or((group.lr, group.momentum));
            StepInput { step: t, lr, momentum, carry: Carry::default() }
        };
        carry = algorithm.carry_start(&at_step(1))?;
        for t in 1..input.step {
            carry = algorithm.carry_next(&StepInput { carry, ..at_step(t) });
        }
    }
    Some(carry)
}

/// A momentum (or beta1) replacement must be in `[0, 1)`.
pub(super) fn check_momentum(m: f64) -> Result<()> {
    if (0.0..1.0).contains(&m) {
        Ok(())
    } else {
        Err(Error::invalid("momentum", format!("Invalid momentum value: {}", crate::error::py_float(m))))
    }
}

/// Whether a group's momentum (or beta1) can be replaced step by step, as `cycle_momentum` does
/// (PyTorch's check). A config with momentum 0 is the caller's to judge: see
/// [`OptimizerConfig::for_cycled_momentum`].
fn check_cyclable(config: &OptimizerConfig) -> Result<()> {
    match config.algorithm().momentum() {
        None => Err(Error::invalid(
            "cycle_momentum",
            "optimizer must support momentum or beta1 with `cycle_momentum` option enabled".into(),
        )),
        Some(_) => Ok(()),
    }
}
