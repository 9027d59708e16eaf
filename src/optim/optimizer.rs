//! The GPU optimizer: parameters in groups, device-resident state, one compute pass per step.

use std::num::NonZeroU64;
use std::ops::Range;

use crate::algorithm::{check_non_negative, OptimizerConfig, StepInput};
use crate::context::GpuContext;
use crate::error::{Error, Result};
use crate::kernel::{workgroups, Kernel, KernelPipeline, Scalars, StepUniform, WORKGROUP_SIZE};
use crate::schedule::LrScheduler;

const F32: u64 = 4;

/// A parameter group: its index in the optimizer. Groups have their own hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupId(usize);

impl GroupId {
    /// The group's index, in creation order (the default group is 0).
    pub fn index(self) -> usize {
        self.0
    }
}

/// Where one parameter tensor and its gradient live: ranges of f32 elements in the engine's
/// buffers. Both buffers need `BufferUsages::STORAGE` and must be distinct.
#[derive(Clone, Debug)]
pub struct ParamBinding {
    /// The parameter's buffer, updated in place.
    pub param: wgpu::Buffer,
    /// The parameter's first element in `param`.
    pub param_offset: u64,
    /// The gradient's buffer, only read.
    pub grad: wgpu::Buffer,
    /// The gradient's first element in `grad`.
    pub grad_offset: u64,
    /// Elements in the tensor.
    pub len: u64,
}

impl ParamBinding {
    /// A tensor that fills `param` and `grad` from their first element.
    pub fn whole(param: &wgpu::Buffer, grad: &wgpu::Buffer, len: u64) -> Self {
        Self { param: param.clone(), param_offset: 0, grad: grad.clone(), grad_offset: 0, len }
    }
}

#[derive(Debug)]
pub(super) struct Group {
    pub(super) config: OptimizerConfig,
    pub(super) lr: f64,
    pub(super) momentum: Option<f64>,
    pub(super) schedule: Option<LrScheduler>,
}

impl Group {
    fn new(config: OptimizerConfig) -> Self {
        Self { lr: config.algorithm().lr(), momentum: None, schedule: None, config }
    }

    /// The learning rate and momentum of the step after `steps` steps: the schedule's, or the
    /// group's own.
    pub(super) fn hyper(&self, steps: u64) -> (f64, Option<f64>) {
        match &self.schedule {
            Some(s) => (s.lr(steps), s.momentum(steps).or(self.momentum)),
            None => (self.lr, self.momentum),
        }
    }
}

#[derive(Debug)]
pub(super) struct Param {
    pub(super) binding: ParamBinding,
    pub(super) group: usize,
    pub(super) chunks: Range<usize>,
    /// See [`StateBuffers::added_at`] (kept here too for tensors without elements, hence state).
    pub(super) added_at: u64,
}

/// A piece of a parameter small enough for one binding, and where its state lives.
#[derive(Clone, Copy, Debug)]
pub(super) struct Chunk {
    pub(super) param: usize,
    /// First element within the tensor.
    pub(super) start: u64,
    pub(super) len: u64,
    /// Index into `Optimizer::state`, and the first element there.
    pub(super) state: usize,
    pub(super) state_offset: u64,
}

/// One buffer per kernel state array (`None` where the group does not use that array).
#[derive(Debug)]
pub(super) struct StateBuffers {
    pub(super) buffers: Vec<Option<wgpu::Buffer>>,
    /// The optimizer's step count when these tensors were registered: their own step count is
    /// the optimizer's less this, as PyTorch keeps `state["step"]` per tensor.
    pub(super) added_at: u64,
}

#[derive(Debug)]
struct Dispatch {
    group: usize,
    /// The step count at which its tensors were registered.
    added_at: u64,
    header: StepUniform,
    /// Four elements per invocation (`main4`), or one (`main`).
    wide: bool,
    workgroups: (u32, u32),
    bind_group: wgpu::BindGroup,
}

#[derive(Debug)]
pub(super) struct Plan {
    uniform: Option<wgpu::Buffer>,
    slot_size: u64,
    dispatches: Vec<Dispatch>,
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
/// buffer (as an arena's are) share one dispatch; tensors larger than the device's
/// `max_storage_buffer_binding_size` are split over several.
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
    pub(super) ctx: GpuContext,
    pub(super) kernel: &'static Kernel,
    pipeline: KernelPipeline,
    pub(super) groups: Vec<Group>,
    pub(super) params: Vec<Param>,
    pub(super) chunks: Vec<Chunk>,
    pub(super) state: Vec<StateBuffers>,
    /// Bound where a group leaves a state array unused (16 bytes, one per state slot).
    dummies: Vec<wgpu::Buffer>,
    pub(super) plan: Option<Plan>,
    belt: wgpu::util::StagingBelt,
    pub(super) steps: u64,
    max_chunk: u64,
    /// The gradient scan of `found_nonfinite`, built on first use.
    pub(super) nonfinite: std::sync::OnceLock<super::nonfinite::NonfinitePipeline>,
}

impl Optimizer {
    /// An optimizer whose default group has `config`.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] if the config is invalid.
    pub fn new(ctx: &GpuContext, config: impl Into<OptimizerConfig>) -> Result<Self> {
        let config = config.into();
        let algorithm = config.algorithm();
        algorithm.validate()?;
        let kernel = algorithm.kernel();
        let device = &ctx.device;
        let limits = device.limits();
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
        // One per state slot: WebGPU forbids one writable buffer at two bindings of a dispatch.
        let dummies = (0..kernel.states.len())
            .map(|_| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgpu-optim unused state"),
                    size: 16,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = KernelPipeline::new(device, kernel);
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::Wgpu(format!("kernel {}: {error}", kernel.name)));
        }
        Ok(Self {
            ctx: ctx.clone(),
            kernel,
            pipeline,
            groups: vec![Group::new(config)],
            params: Vec::new(),
            chunks: Vec::new(),
            state: Vec::new(),
            dummies,
            plan: None,
            belt: wgpu::util::StagingBelt::new(device.clone(), 4096),
            steps: 0,
            max_chunk,
            nonfinite: std::sync::OnceLock::new(),
        })
    }

    /// The group the constructor's config made.
    pub fn default_group(&self) -> GroupId {
        GroupId(0)
    }

    /// A new parameter group with its own hyperparameters, of the same algorithm.
    ///
    /// # Errors
    /// [`Error::GroupAlgorithm`] for a config of another algorithm, [`Error::InvalidHyperparameter`]
    /// for an invalid one.
    pub fn add_group(&mut self, config: impl Into<OptimizerConfig>) -> Result<GroupId> {
        let config = config.into();
        let (expected, got) = (self.groups[0].config.name(), config.name());
        if expected != got {
            return Err(Error::GroupAlgorithm { expected, got });
        }
        config.algorithm().validate()?;
        self.groups.push(Group::new(config));
        Ok(GroupId(self.groups.len() - 1))
    }

    /// Registers tensors in `group` and allocates their state on the device (zeros, or the
    /// algorithm's initial value). Returns their parameter indices. Tensors may be added between
    /// steps; they start with fresh state and a step count of their own, as in PyTorch (Adam's
    /// bias correction of a tensor added at step 1000 starts from its own first step).
    ///
    /// # Errors
    /// Checked before anything changes: [`Error::UnknownGroup`], [`Error::BufferUsage`] (no
    /// `STORAGE` usage), [`Error::ParamIsGrad`], [`Error::OutOfBounds`] and [`Error::Overlap`] (with
    /// each other or with tensors already registered); [`Error::Wgpu`] if the device cannot
    /// allocate the state, in which case nothing is registered either.
    pub fn add_params(&mut self, group: GroupId, bindings: &[ParamBinding]) -> Result<Range<usize>> {
        let group_index = group.0;
        let config = &self.groups.get(group_index).ok_or(Error::UnknownGroup(group_index))?.config;
        let first = self.params.len();
        for (i, b) in bindings.iter().enumerate() {
            check_binding(first + i, b)?;
            // Buffer identity is only meaningful on one device, so that is checked first.
            self.check_device(first + i, b)?;
            if b.param == b.grad {
                return Err(Error::ParamIsGrad { index: first + i });
            }
        }
        self.check_overlaps(bindings)?;

        let algorithm = config.algorithm();
        let used = algorithm.states_used();
        let lr = self.groups[group_index].hyper(self.steps).0;
        let initial: Vec<f64> = (0..used.len()).map(|k| algorithm.initial_state(k, lr)).collect();
        let max_buffer = self.ctx.device.limits().max_buffer_size / F32;
        // Lay out the batch's state back to back, so that adjacent tensors can share a dispatch,
        // starting a new set of buffers only where one would exceed the device's limit.
        let mut chunks = Vec::new();
        let mut sizes = vec![0u64];
        for (i, b) in bindings.iter().enumerate() {
            let mut start = 0;
            while start < b.len {
                let len = (b.len - start).min(self.max_chunk);
                if sizes.last().copied().unwrap_or(0) + len > max_buffer {
                    sizes.push(0);
                }
                let state = self.state.len() + sizes.len() - 1;
                let fill = sizes.last_mut().expect("sizes is never empty");
                chunks.push(Chunk { param: first + i, start, len, state, state_offset: *fill });
                *fill += len;
                start += len;
            }
        }
        // Allocate everything before registering anything: a device out of memory refuses here.
        let device = self.ctx.device.clone();
        let out_of_memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let allocated: Result<Vec<StateBuffers>> = sizes
            .iter()
            .map(|&size| {
                let buffers = used
                    .iter()
                    .zip(&initial)
                    .enumerate()
                    .map(|(k, (&used, &init))| used.then(|| self.state_buffer(k, size, init as f32)).transpose())
                    .collect::<Result<_>>()?;
                Ok(StateBuffers { buffers, added_at: self.steps })
            })
            .collect();
        let scopes = [pollster::block_on(invalid.pop()), pollster::block_on(out_of_memory.pop())];
        if let Some(error) = scopes.into_iter().flatten().next() {
            return Err(Error::Wgpu(format!("allocating optimizer state: {error}")));
        }
        self.state.extend(allocated?);
        let mut chunk_index = self.chunks.len();
        for (i, b) in bindings.iter().enumerate() {
            let n = chunks.iter().filter(|c| c.param == first + i).count();
            self.params.push(Param {
                binding: b.clone(),
                group: group_index,
                chunks: chunk_index..chunk_index + n,
                added_at: self.steps,
            });
            chunk_index += n;
        }
        self.chunks.extend(chunks);
        self.plan = None;
        Ok(first..self.params.len())
    }

    fn state_buffer(&self, k: usize, elements: u64, init: f32) -> Result<wgpu::Buffer> {
        let buffer = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(self.kernel.states[k].name),
            // wgpu rejects empty bindings; a lone zero-length tensor still gets a buffer.
            size: (elements * F32).max(F32),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: init != 0.0,
        });
        if init != 0.0 {
            // wgpu zero-fills new buffers; any other start value is written while mapped.
            // Mapped memory may be write-combined: write it in blocks, never read it.
            let block: Vec<u8> = bytemuck::cast_slice(&[init; 16384]).to_vec();
            let mut view = buffer
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| Error::Wgpu(format!("allocating optimizer state: {e}")))?;
            let mut start = 0;
            while start < view.len() {
                let end = (start + block.len()).min(view.len());
                view.slice(start..end).copy_from_slice(&block[..end - start]);
                start = end;
            }
            drop(view);
            buffer.unmap();
        }
        Ok(buffer)
    }

    /// Binds the tensor's buffers once, inside an error scope: a buffer of another device (or one
    /// already destroyed) is refused here, by name, rather than when a step first binds it.
    fn check_device(&self, index: usize, b: &ParamBinding) -> Result<()> {
        let device = &self.ctx.device;
        for (role, buffer, read_only) in [("param", &b.param, false), ("grad", &b.grad, true)] {
            if buffer.size() < F32 {
                continue; // Never bound: only a zero-length tensor fits in it.
            }
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: None,
                entries: &[wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                }],
            });
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let _ = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &layout,
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer,
                        offset: 0,
                        size: NonZeroU64::new(F32),
                    }),
                }],
            });
            if let Some(error) = pollster::block_on(scope.pop()) {
                return Err(Error::ForeignBuffer { label: format!("{role} {index}"), message: error.to_string() });
            }
        }
        Ok(())
    }

    fn check_overlaps(&self, new: &[ParamBinding]) -> Result<()> {
        let mut ranges: Vec<(&wgpu::Buffer, u64, u64, usize)> = self
            .params
            .iter()
            .map(|p| &p.binding)
            .chain(new)
            .enumerate()
            .filter(|(_, b)| b.len > 0)
            .map(|(i, b)| (&b.param, b.param_offset, b.param_offset + b.len, i))
            .collect();
        ranges.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for w in ranges.windows(2) {
            let ((buf_a, _, end_a, a), (buf_b, start_b, _, b)) = (w[0], w[1]);
            if buf_a == buf_b && start_b < end_a {
                return Err(Error::Overlap { what: "param", a: a.min(b), b: a.max(b) });
            }
        }
        Ok(())
    }

    /// Sets a group's learning rate for the next steps, replacing its schedule if it had one.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`], or [`Error::InvalidHyperparameter`] for a negative or non-finite
    /// rate.
    pub fn set_lr(&mut self, group: GroupId, lr: f64) -> Result<()> {
        check_non_negative("lr", "Invalid learning rate", lr)?;
        let g = self.group_mut(group)?;
        g.lr = lr;
        g.schedule = None;
        Ok(())
    }

    /// The learning rate the group's next step will use (its schedule's value, if it has one).
    ///
    /// # Errors
    /// [`Error::UnknownGroup`].
    pub fn lr(&self, group: GroupId) -> Result<f64> {
        Ok(self.groups.get(group.0).ok_or(Error::UnknownGroup(group.0))?.hyper(self.steps).0)
    }

    /// The momentum (or beta1) the group's next step will use, when a schedule or
    /// [`Optimizer::set_momentum`] replaced the config's; `None` means the config's own.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`].
    pub fn momentum(&self, group: GroupId) -> Result<Option<f64>> {
        Ok(self.groups.get(group.0).ok_or(Error::UnknownGroup(group.0))?.hyper(self.steps).1)
    }

    /// Drives a group's learning rate (and momentum or beta1, for `cycle_momentum` schedules) by a
    /// schedule, evaluated at the optimizer's step count before each step, so a schedule takes
    /// the place of PyTorch's `scheduler.step()` after each `optimizer.step()`.
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
    /// # Errors
    /// [`Error::UnknownGroup`]; [`Error::InvalidHyperparameter`] when a schedule cycles momentum on
    /// an algorithm without one (PyTorch's message), or on SGD or RMSprop configured without
    /// momentum (the momentum buffer exists only if the config asks for it).
    pub fn set_schedule(&mut self, group: GroupId, schedule: LrScheduler) -> Result<()> {
        let g = self.group_mut(group)?;
        if schedule.momentum(0).is_some() {
            check_cyclable(&g.config)?;
        }
        g.schedule = Some(schedule);
        Ok(())
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
                s.observe(metric);
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
        }
        g.momentum = momentum;
        Ok(())
    }

    fn group_mut(&mut self, group: GroupId) -> Result<&mut Group> {
        self.groups.get_mut(group.0).ok_or(Error::UnknownGroup(group.0))
    }

    /// A group's config.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`].
    pub fn group_config(&self, group: GroupId) -> Result<&OptimizerConfig> {
        Ok(&self.groups.get(group.0).ok_or(Error::UnknownGroup(group.0))?.config)
    }

    /// Steps taken (PyTorch's `state["step"]`).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Registered tensors.
    pub fn param_count(&self) -> usize {
        self.params.len()
    }

    /// Dispatches one step records (a measure of how well tensors were batched).
    pub fn dispatch_count(&mut self) -> usize {
        self.plan().dispatches.len()
    }

    /// The kernel's state arrays, by PyTorch's names (`exp_avg`, ...).
    pub fn state_names(&self) -> Vec<&'static str> {
        self.kernel.state_names().collect()
    }

    /// Records one step into the engine's encoder: the upload of this step's scalars, then one
    /// compute pass. Steps recorded before one submit each see their own scalars.
    ///
    /// The encoder must be submitted (wgpu reclaims the upload buffers when it is); errors wgpu
    /// finds in it surface at the engine's submit. Prefer [`Optimizer::step`] when the optimizer may
    /// submit by itself.
    ///
    /// # Errors
    /// [`Error::NoParameters`] if no tensor is registered; [`Error::InvalidHyperparameter`] if a
    /// schedule's closure gave a negative or non-finite rate. Nothing is recorded then.
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
        self.ctx.check_alive()?;
        if self.params.is_empty() {
            return Err(Error::NoParameters);
        }
        let step = self.steps + 1;
        let mut hyper = Vec::with_capacity(self.groups.len());
        for g in &self.groups {
            let (lr, momentum) = g.hyper(self.steps);
            // A schedule is checked at construction, but a closure (LambdaLR) can return anything.
            check_non_negative("lr", "Invalid learning rate", lr)?;
            hyper.push((lr, momentum));
        }
        self.plan();
        let plan = self.plan.as_ref().expect("built above");
        // The scalars of each (group, step count) in the plan: tensors added after the first step
        // count their own steps.
        let mut scalars: Vec<((usize, u64), Scalars)> = Vec::new();
        for d in &plan.dispatches {
            if !scalars.iter().any(|(key, _)| *key == (d.group, d.added_at)) {
                let (lr, momentum) = hyper[d.group];
                let input = StepInput { step: step - d.added_at, lr, momentum };
                scalars.push(((d.group, d.added_at), self.groups[d.group].config.algorithm().scalars(&input)));
            }
        }
        let scalars_of = |d: &Dispatch| {
            scalars.iter().find(|(key, _)| *key == (d.group, d.added_at)).map(|(_, s)| *s).unwrap_or_default()
        };
        if let Some(uniform) = &plan.uniform {
            let size = NonZeroU64::new(uniform.size()).expect("a uniform buffer is never empty");
            let mut bytes = vec![0u8; size.get() as usize];
            for (slot, d) in bytes.chunks_exact_mut(plan.slot_size as usize).zip(&plan.dispatches) {
                let s = scalars_of(d);
                let u = StepUniform { flags: s.flags, scalars: s.values, ..d.header };
                slot[..size_of::<StepUniform>()].copy_from_slice(bytemuck::bytes_of(&u));
            }
            self.belt.write_buffer(encoder, uniform, 0, size).copy_from_slice(&bytes);
            // Each group's flags, and whether a dispatch's slices start inside their bindings,
            // pick a pipeline specialized for them (compiled the first time it is needed).
            let pipelines: Vec<_> = plan
                .dispatches
                .iter()
                .map(|d| {
                    let h = &d.header;
                    let offsets = h.param_off != 0 || h.grad_off != 0 || h.state_off != 0;
                    self.pipeline.variant(&self.ctx.device, scalars_of(d).flags, offsets, d.wide)
                })
                .collect();
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(self.kernel.name), timestamp_writes });
            let mut current: Option<&wgpu::ComputePipeline> = None;
            for (d, pipeline) in plan.dispatches.iter().zip(&pipelines) {
                if current != Some(pipeline) {
                    pass.set_pipeline(pipeline);
                    current = Some(pipeline);
                }
                pass.set_bind_group(0, &d.bind_group, &[]);
                pass.dispatch_workgroups(d.workgroups.0, d.workgroups.1, 1);
            }
        }
        self.belt.finish_and_recall_on_submit(encoder);
        self.steps = step;
        Ok(())
    }

    /// Takes one step: records it and submits it. Does not wait for the GPU.
    ///
    /// # Errors
    /// [`Error::NoParameters`]; [`Error::Wgpu`] if wgpu rejects the work (a buffer destroyed
    /// since it was registered, say): the step is then not counted and nothing was changed.
    pub fn step(&mut self) -> Result<()> {
        let device = self.ctx.device.clone();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder =
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim step") });
        let before = self.steps;
        let recorded = self.record(&mut encoder);
        if recorded.is_ok() {
            self.ctx.queue.submit([encoder.finish()]);
        }
        if let Some(error) = pollster::block_on(scope.pop()) {
            self.steps = before;
            return Err(Error::Wgpu(error.to_string()));
        }
        recorded
    }

    /// Reads one tensor's state array back to the host (for checkpoints and tests; a step never
    /// reads anything back). `None` if the tensor's group does not keep that array, or if the
    /// kernel has no array of that name.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] for a parameter index never registered; [`Error::DeviceLost`] if the
    /// device fails.
    pub fn read_state(&self, param: usize, name: &str) -> Result<Option<Vec<f32>>> {
        let p = self.params.get(param).ok_or_else(|| Error::OutOfBounds {
            what: "parameter index".into(),
            offset: param as u64,
            end: param as u64 + 1,
            buffer_len: self.params.len() as u64,
        })?;
        let Some(k) = self.kernel.state_index(name) else {
            return Ok(None);
        };
        if !self.groups[p.group].config.algorithm().states_used()[k] {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(p.binding.len as usize);
        for c in &self.chunks[p.chunks.clone()] {
            let buffer = self.state[c.state].buffers[k].as_ref().expect("used state is allocated");
            out.extend(crate::readback::read_f32(&self.ctx, buffer, c.state_offset, c.len)?);
        }
        Ok(Some(out))
    }

    fn plan(&mut self) -> &Plan {
        if self.plan.is_none() {
            self.plan = Some(self.build_plan());
        }
        self.plan.as_ref().expect("built above")
    }

    /// Merges chunks into dispatches and creates their bind groups and the uniform buffer.
    fn build_plan(&self) -> Plan {
        struct Run {
            group: usize,
            param: wgpu::Buffer,
            param_start: u64,
            grad: wgpu::Buffer,
            grad_start: u64,
            state: usize,
            state_start: u64,
            n: u64,
        }
        let mut runs: Vec<Run> = Vec::new();
        for c in &self.chunks {
            let p = &self.params[c.param];
            let (param_start, grad_start) = (p.binding.param_offset + c.start, p.binding.grad_offset + c.start);
            if let Some(r) = runs.last_mut() {
                let contiguous = r.group == p.group
                    && r.param == p.binding.param
                    && r.param_start + r.n == param_start
                    && r.grad == p.binding.grad
                    && r.grad_start + r.n == grad_start
                    && r.state == c.state
                    && r.state_start + r.n == c.state_offset;
                if contiguous && r.n + c.len <= self.max_chunk {
                    r.n += c.len;
                    continue;
                }
            }
            runs.push(Run {
                group: p.group,
                param: p.binding.param.clone(),
                param_start,
                grad: p.binding.grad.clone(),
                grad_start,
                state: c.state,
                state_start: c.state_offset,
                n: c.len,
            });
        }

        let device = &self.ctx.device;
        let limits = device.limits();
        let slot_size =
            (size_of::<StepUniform>() as u64).next_multiple_of(limits.min_uniform_buffer_offset_alignment as u64);
        let align = limits.min_storage_buffer_offset_alignment as u64;
        // Each run binds its slices once; it is dispatched four elements per invocation where every
        // slice starts at a multiple of four within its binding, with any remainder (and every
        // other run) one element per invocation. A piece is one dispatch: (run, wide, first, n).
        let mut pieces = Vec::new();
        for (r, run) in runs.iter().enumerate() {
            // Where each slice starts within its binding, in elements.
            let within = |start: u64| start * F32 % align / F32;
            let has_state = self.state[run.state].buffers.iter().any(Option::is_some);
            let aligned = within(run.param_start) % 4 == 0
                && within(run.grad_start) % 4 == 0
                && (!has_state || within(run.state_start) % 4 == 0);
            let wide = if aligned { run.n / 4 * 4 } else { 0 };
            if wide > 0 {
                pieces.push((r, true, 0, wide));
            }
            if run.n > wide {
                pieces.push((r, false, wide, run.n - wide));
            }
        }
        let uniform = (!pieces.is_empty()).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-optim step scalars"),
                size: slot_size * pieces.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let dispatches = pieces
            .iter()
            .enumerate()
            .map(|(i, &(r, wide, first, n))| {
                let run = &runs[r];
                let (param, param_off) = window(&run.param, run.param_start, run.n, align);
                let (grad, grad_off) = window(&run.grad, run.grad_start, run.n, align);
                let mut state_off = 0;
                let mut entries = vec![
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: uniform.as_ref().expect("pieces exist"),
                            offset: i as u64 * slot_size,
                            size: NonZeroU64::new(size_of::<StepUniform>() as u64),
                        }),
                    },
                    wgpu::BindGroupEntry { binding: 1, resource: param },
                    wgpu::BindGroupEntry { binding: 2, resource: grad },
                ];
                for (k, buffer) in self.state[run.state].buffers.iter().enumerate() {
                    let resource = match buffer {
                        Some(buffer) => {
                            let (resource, off) = window(buffer, run.state_start, run.n, align);
                            state_off = off;
                            resource
                        }
                        None => self.dummies[k].as_entire_binding(),
                    };
                    entries.push(wgpu::BindGroupEntry { binding: 3 + k as u32, resource });
                }
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(self.kernel.name),
                    layout: &self.pipeline.layout,
                    entries: &entries,
                });
                let first = first as u32;
                let invocations = if wide { n / 4 } else { n };
                Dispatch {
                    group: run.group,
                    added_at: self.state[run.state].added_at,
                    header: StepUniform {
                        n: n as u32,
                        param_off: param_off + first,
                        grad_off: grad_off + first,
                        state_off: state_off + first,
                        ..Default::default()
                    },
                    wide,
                    workgroups: workgroups(invocations, limits.max_compute_workgroups_per_dimension),
                    bind_group,
                }
            })
            .collect();
        Plan { uniform, slot_size, dispatches }
    }
}

/// A momentum (or beta1) replacement must be in `[0, 1)`.
pub(super) fn check_momentum(m: f64) -> Result<()> {
    if (0.0..1.0).contains(&m) {
        Ok(())
    } else {
        Err(Error::invalid("momentum", format!("Invalid momentum value: {}", crate::error::py_float(m))))
    }
}

/// Whether a group's momentum (or beta1) can be replaced step by step, as `cycle_momentum` does.
fn check_cyclable(config: &OptimizerConfig) -> Result<()> {
    match config.algorithm().momentum() {
        None => Err(Error::invalid(
            "cycle_momentum",
            "optimizer must support momentum or beta1 with `cycle_momentum` option enabled".into(),
        )),
        Some(0.0) => Err(Error::invalid(
            "cycle_momentum",
            format!(
                "{} must be configured with momentum > 0 for `cycle_momentum`: its momentum buffer is allocated \
                 only then",
                config.name()
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Binds `n` f32 elements from element `start`, beginning at the `align`ed byte offset at or
/// before it; returns the binding and the slice's first element within it.
pub(super) fn window(buffer: &wgpu::Buffer, start: u64, n: u64, align: u64) -> (wgpu::BindingResource<'_>, u32) {
    let bytes = start * F32;
    let offset = bytes / align * align;
    let resource = wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset,
        size: NonZeroU64::new(bytes - offset + n * F32),
    });
    (resource, ((bytes - offset) / F32) as u32)
}

fn check_binding(index: usize, b: &ParamBinding) -> Result<()> {
    for (role, buffer) in [("param", &b.param), ("grad", &b.grad)] {
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::BufferUsage { label: format!("{role} {index}"), missing: "STORAGE" });
        }
    }
    for (role, buffer, offset) in [("param", &b.param, b.param_offset), ("grad", &b.grad, b.grad_offset)] {
        let buffer_len = buffer.size() / F32;
        let end = offset.saturating_add(b.len);
        if end > buffer_len {
            return Err(Error::OutOfBounds { what: format!("{role} {index}"), offset, end, buffer_len });
        }
    }
    Ok(())
}
