//! Recording a step: the kernel's pipelines, the plan (built when the tensors change), the
//! upload of the step's scalars and the compute pass.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::num::NonZeroU64;

use crate::context::GpuContext;
use crate::error::Result;
use crate::kernel::{Entry as Stage, Kernel, KernelPipeline, Scalars, StepUniform, Storage};

use super::amp::{Amp, ClassOps};
use super::plan::{self, Plan};
use super::registration::{GradLocations, StepKey, Tensors};
use super::store::StateStore;
use super::Scopes;

/// What records steps of one kernel: its pipelines, the buffers bound where a group keeps no
/// state, the plan, and the staging belt that uploads each step's scalars.
#[derive(Debug)]
pub(super) struct Recorder {
    kernel: &'static Kernel,
    /// The kernel's layout and pipelines per storage its groups use (keyed without the seed).
    pipelines: HashMap<Storage, KernelPipeline>,
    /// Whether its pipelines are the loss-scaling variants (with the `amp` binding).
    amp: bool,
    /// Bound where a group leaves a state array unused (16 bytes, one per state slot: WebGPU
    /// forbids one writable buffer at two bindings of a dispatch).
    unused: Vec<wgpu::Buffer>,
    plan: Option<Plan>,
    /// The gradient locations the plan's bind groups hold (see `Tensors::grad_locations`).
    plan_grads: GradLocations,
    /// Plans of the last few other gradient locations, most recent first (with their locations
    /// and `amp` generation): an engine whose gradients alternate between places reuses them.
    spare: Vec<(GradLocations, Option<u64>, Plan)>,
    /// Plans built so far (`Optimizer::plans_built`).
    plans_built: u64,
    /// The `amp` buffer generation the plan's bind groups hold (`None`: built without one).
    plan_generation: Option<u64>,
    /// Under loss scaling or clipping: the pass that completes each dispatch's uniform with what
    /// `finish` decided, and corrects step-dependent scalars (`kernel::compose_correct`).
    correct: Option<Correct>,
    belt: wgpu::util::StagingBelt,
}

/// What a step under loss scaling or clipping adds to the recording.
pub(super) struct AmpStep<'a> {
    pub amp: &'a mut Amp,
    /// Per group: whether its gradients are clipped.
    pub clipped: &'a [bool],
    /// This step's class operations.
    pub ops: &'a ClassOps,
}

/// Plans kept for gradient locations other than the current ones (see `Recorder::take_plan`):
/// each holds bind groups, and so the buffers they bind, alive.
const SPARE_PLANS: usize = 4;

/// The `correct` pass's layout (the step's slots, the `amp` buffer) and pipeline.
#[derive(Debug)]
struct Correct {
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
}

impl Correct {
    fn new(device: &wgpu::Device, kernel: &'static Kernel) -> Self {
        let source = crate::kernel::compose_correct(kernel, crate::kernel::slot_size(&device.limits()));
        let entry = |binding| crate::kernel::storage_layout_entry(binding, false);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("wgpu-optim correct"),
            entries: &[entry(0), entry(1)],
        });
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("wgpu-optim correct"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = crate::kernel::compute_pipeline(device, &layout, &module, "correct", &[]);
        Self { layout, pipeline }
    }
}

/// One dispatch, ready to record: its uniform and pipelines.
struct Prepared {
    uniform: StepUniform,
    pipeline: wgpu::ComputePipeline,
    /// With loss scaling or clipping: the gradient scan over the same elements.
    scan: Option<wgpu::ComputePipeline>,
}

impl Recorder {
    /// The kernel's bind-group layout and first pipelines, compiled now so that shader errors
    /// surface at construction.
    ///
    /// # Errors
    /// [`crate::Error::Wgpu`] if wgpu refuses the kernel.
    pub fn new(ctx: &GpuContext, kernel: &'static Kernel, storage: Storage, amp: bool) -> Result<Self> {
        let device = &ctx.device;
        let scopes = Scopes::push(device);
        let pipeline = KernelPipeline::with_storage(device, kernel, storage, amp);
        // Pop the scopes before returning an error from the pipeline, whichever came first.
        let popped = scopes.pop(&format!("kernel {}", kernel.name));
        let pipeline = pipeline?;
        popped?;
        let pipelines = HashMap::from([(storage.variant(), pipeline)]);
        let scopes = Scopes::push(device);
        let unused = (0..kernel.states.len())
            .map(|_| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgpu-optim unused state"),
                    size: 16,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let correct = amp.then(|| Correct::new(device, kernel));
        scopes.pop(&format!("kernel {} (correct)", kernel.name))?;
        let belt = wgpu::util::StagingBelt::new(device.clone(), 4096);
        Ok(Self {
            kernel,
            pipelines,
            amp,
            unused,
            plan: None,
            plan_grads: Vec::new(),
            spare: Vec::new(),
            plans_built: 0,
            plan_generation: None,
            correct,
            belt,
        })
    }

    /// Compiles the kernel for `storage` too (a group's own), unless it is already.
    ///
    /// # Errors
    /// As [`Recorder::new`].
    pub fn add_storage(&mut self, ctx: &GpuContext, storage: Storage) -> Result<()> {
        if let MapEntry::Vacant(entry) = self.pipelines.entry(storage.variant()) {
            let scopes = Scopes::push(&ctx.device);
            let pipeline = KernelPipeline::with_storage(&ctx.device, self.kernel, storage, self.amp);
            let popped = scopes.pop(&format!("kernel {}", self.kernel.name));
            entry.insert(pipeline?);
            popped?;
        }
        Ok(())
    }

    /// Each group's pipelines, by its storage.
    fn pipelines_of<'a>(
        pipelines: &'a HashMap<Storage, KernelPipeline>,
        storages: &[Storage],
    ) -> Vec<&'a KernelPipeline> {
        storages.iter().map(|s| &pipelines[&s.variant()]).collect()
    }

    /// Forgets the plans: the tensors changed.
    pub fn invalidate(&mut self) {
        self.plan = None;
        self.spare.clear();
    }

    /// Plans built so far.
    pub fn plans_built(&self) -> u64 {
        self.plans_built
    }

    /// The plan for the tensors' gradient locations now and the `amp` generation: the current
    /// one if it was built for them, else a spare one that was, else `None` (build one). The
    /// current plan, when it does not fit, becomes the first spare.
    fn take_plan(&mut self, grads: &[(wgpu::Buffer, u64)], generation: Option<u64>) -> Option<Plan> {
        let current = self.plan.take();
        if let Some(plan) = current {
            if self.plan_generation == generation && self.plan_grads == grads {
                return Some(plan);
            }
            if self.plan_generation == generation {
                let located = std::mem::take(&mut self.plan_grads);
                self.spare.insert(0, (located, self.plan_generation, plan));
                self.spare.truncate(SPARE_PLANS);
            }
        }
        let at = self.spare.iter().position(|(g, gen, _)| g == grads && *gen == generation)?;
        Some(self.spare.remove(at).2)
    }

    /// Whether the next step must build a plan first.
    pub fn needs_plan(&self) -> bool {
        self.plan.is_none()
    }

    /// Records one step into `encoder` (`storages[group]`: each group's storage): the upload of
    /// each dispatch's scalars (`scalars(group, key)`, once per pair; `step` is the optimizer's
    /// count, from which each dispatch's own count follows), then one compute pass, with
    /// `timestamp_writes` if given, over the tensors that have a gradient. With `amp` (loss
    /// scaling or clipping) the pass first scans the gradients and decides the step on the device
    /// (see `amp.rs`). Everything that can fail (building the plan, compiling a pipeline,
    /// allocating the upload) runs in error scopes before the encoder is touched.
    ///
    /// # Errors
    /// [`crate::Error::Wgpu`] if wgpu refuses the plan (a buffer destroyed since it was registered, say)
    /// or a pipeline, or cannot allocate the upload.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        ctx: &GpuContext,
        tensors: &Tensors,
        store: &StateStore,
        storages: &[Storage],
        encoder: &mut wgpu::CommandEncoder,
        step: u64,
        scalars: impl Fn(usize, StepKey) -> Scalars,
        mut amp: Option<AmpStep<'_>>,
        timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) -> Result<()> {
        let device = &ctx.device;
        if amp.is_some() && self.correct.is_none() {
            // The optimizer builds its recorder with the loss-scaling variants exactly when it
            // scales or clips (`configure_amp`); anything else is a bug, said rather than run.
            return Err(crate::Error::Wgpu("a loss-scaled step on a recorder built without loss scaling".into()));
        }
        let scopes = Scopes::push(device);
        let generation = amp.as_ref().map(|a| a.amp.generation);
        let grads = tensors.grad_locations();
        let taken = self.take_plan(&grads, generation);
        let pipelines = Self::pipelines_of(&self.pipelines, storages);
        let layouts: Vec<&wgpu::BindGroupLayout> = pipelines.iter().map(|p| &p.layout).collect();
        let built = std::cell::Cell::new(0u64);
        let unused = &self.unused;
        let build = |min_slots: usize, amp: Option<&Amp>| {
            built.set(built.get() + 1);
            Plan::build(device, &layouts, storages, unused, tensors, store, min_slots, amp.map(Amp::buffer_ref))
        };
        let mut plan = match taken {
            Some(plan) => plan,
            None => build(0, amp.as_ref().map(|a| &*a.amp)),
        };
        let step_dispatches = plan::dispatches(&plan.runs, |t| tensors.step_key(t));
        let dispatches = step_dispatches.dispatches;
        if dispatches.len() > plan.slots {
            // Tensors without gradients cut runs into more dispatches than the uniform buffer has
            // slots for: a larger one (twice what this step needs, so that this happens rarely).
            plan = build(2 * dispatches.len(), amp.as_ref().map(|a| &*a.amp));
        }
        // Each group's flags, and whether a dispatch's slices start inside their bindings, pick a
        // pipeline specialized for them (compiled the first time a step needs it). The scalars
        // are computed once per (group, key). With loss scaling or clipping, each dispatch's
        // gradient scan writes a partial norm per invocation of its grid, one after the other.
        let max_per_dim = device.limits().max_compute_workgroups_per_dimension;
        let mut cache: HashMap<(usize, StepKey), Scalars> = HashMap::new();
        let mut partials = 0u64;
        let per_dispatch: Result<Vec<Prepared>> = dispatches
            .iter()
            .map(|d| {
                let run = &plan.runs[d.run];
                let s = *cache.entry((run.group, d.key)).or_insert_with(|| scalars(run.group, d.key));
                let h = d.header(run);
                let offsets = h.param_off != 0 || h.grad_off != 0 || h.state_off != 0;
                let spans = d.spans.is_some();
                let pipeline = pipelines[run.group].variant(device, s.flags, offsets, d.wide, spans, Stage::Update)?;
                let mut uniform = StepUniform {
                    flags: s.flags,
                    seed: s.seed,
                    ema_weight: s.ema_weight,
                    scalars: s.values,
                    t: (step - d.key.origin) as u32,
                    ..h
                };
                let scan = match &amp {
                    Some(a) => {
                        uniform.amp_class = d.key.amp_class;
                        uniform.clipped = u32::from(a.clipped[run.group]);
                        uniform.partial_first = partials as u32;
                        partials += d.scan_partials(max_per_dim);
                        Some(pipelines[run.group].variant(device, s.flags, offsets, d.wide, spans, Stage::Scan)?)
                    }
                    None => None,
                };
                Ok(Prepared { uniform, pipeline, scan })
            })
            .collect();
        // A plan wgpu refused is dropped: the next step builds it again and says why again.
        scopes.pop("preparing the step")?;
        let per_dispatch = per_dispatch?;
        if let Some(a) = amp.as_mut() {
            // Room for this step's partial norms and classes: a larger buffer, bound anew.
            if a.amp.reserve(ctx, encoder, partials)? {
                let scopes = Scopes::push(device);
                plan = build(plan.slots, Some(&*a.amp));
                scopes.pop("preparing the step")?;
            }
        }
        self.plan_generation = amp.as_ref().map(|a| a.amp.generation);
        self.plan_grads = grads;
        self.plans_built += built.get();
        let plan = self.plan.insert(plan);

        let Some(uniform) = plan.uniform.as_ref().filter(|_| !dispatches.is_empty()) else {
            return Ok(()); // Only empty tensors, or none with a gradient: nothing to update.
        };
        let slot = plan.slot_size as usize;
        let mut bytes = vec![0u8; slot * dispatches.len()];
        for (chunk, p) in bytes.chunks_exact_mut(slot).zip(&per_dispatch) {
            chunk[..size_of::<StepUniform>()].copy_from_slice(bytemuck::bytes_of(&p.uniform));
        }
        // The belt panics where it cannot map its buffers, as on a lost device (which fails
        // everything else quietly): ask the device first, before the encoder is touched.
        ctx.check_alive()?;
        let scopes = Scopes::push(device);
        let size = NonZeroU64::new(bytes.len() as u64).expect("a step with dispatches uploads something");
        self.belt.write_buffer(encoder, uniform, 0, size).copy_from_slice(&bytes);
        for (run, spans) in &step_dispatches.spans {
            let offset = plan.runs[*run].span_region.expect("spans are listed for runs with a region");
            let bytes: &[u8] = bytemuck::cast_slice(spans);
            let size = NonZeroU64::new(bytes.len() as u64).expect("a run cut into spans has some");
            self.belt.write_buffer(encoder, &plan.spans, offset, size).copy_from_slice(bytes);
        }
        if let Some(a) = &amp {
            let clipping = a.clipped.iter().any(|&c| c);
            let words = a.amp.step_words(partials as u32, dispatches.len() as u32, a.ops, clipping);
            self.belt
                .write_buffer(encoder, a.amp.buffer_ref(), Amp::HOST_OFFSET, Amp::host_size())
                .copy_from_slice(&words);
            let (offset, ops) = a.amp.ops_bytes(a.ops);
            if let Some(size) = NonZeroU64::new(ops.len() as u64) {
                self.belt.write_buffer(encoder, a.amp.buffer_ref(), offset, size).copy_from_slice(&ops);
            }
        }
        // Under loss scaling or clipping, the correct pass's bind group: this plan's slots and the
        // `amp` buffer (the recorder has the pass exactly then, checked above).
        let correct = match (&self.correct, &amp) {
            (Some(c), Some(a)) => {
                let slots = plan.uniform.as_ref().expect("a step with dispatches has slots");
                let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("wgpu-optim correct"),
                    layout: &c.layout,
                    entries: &[
                        wgpu::BindGroupEntry { binding: 0, resource: slots.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 1, resource: a.amp.buffer_ref().as_entire_binding() },
                    ],
                });
                Some((&c.pipeline, group))
            }
            _ => None,
        };
        self.belt.finish_and_recall_on_submit(encoder);
        let max = max_per_dim;
        let run_all = |pass: &mut wgpu::ComputePass<'_>, scan: bool| {
            let mut current: Option<&wgpu::ComputePipeline> = None;
            for (i, (d, p)) in dispatches.iter().zip(&per_dispatch).enumerate() {
                let pipeline = if scan { p.scan.as_ref().expect("scan pipelines with amp") } else { &p.pipeline };
                if current != Some(pipeline) {
                    pass.set_pipeline(pipeline);
                    current = Some(pipeline);
                }
                let offset = (i as u64 * plan.slot_size) as u32;
                pass.set_bind_group(0, &plan.bind_groups[d.run], &[offset]);
                let (x, y) = if scan { d.scan_workgroups(max) } else { d.workgroups(max) };
                pass.dispatch_workgroups(x, y, 1);
            }
        };
        let label = Some(self.kernel.name);
        match (&amp, &correct, timestamp_writes) {
            // The scan, the decision, the correction of the scalars (the slots as storage), then,
            // in a pass of its own, the update reading them as its uniform: a uniform is what the
            // update reads fastest, and a buffer may be storage in one pass and uniform in the next.
            (Some(a), Some((pipeline, group)), timestamps) => {
                let (begin, end) = match timestamps {
                    Some(t) => (
                        Some(wgpu::ComputePassTimestampWrites {
                            query_set: t.query_set,
                            beginning_of_pass_write_index: t.beginning_of_pass_write_index,
                            end_of_pass_write_index: None,
                        }),
                        Some(wgpu::ComputePassTimestampWrites {
                            query_set: t.query_set,
                            beginning_of_pass_write_index: None,
                            end_of_pass_write_index: t.end_of_pass_write_index,
                        }),
                    ),
                    None => (None, None),
                };
                {
                    let mut pass =
                        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label, timestamp_writes: begin });
                    run_all(&mut pass, true);
                    a.amp.record_finish(&mut pass);
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, group, &[]);
                    pass.dispatch_workgroups((dispatches.len() as u32).div_ceil(64), 1, 1);
                }
                let mut pass =
                    encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label, timestamp_writes: end });
                run_all(&mut pass, false);
            }
            // Without loss scaling or clipping: the update alone.
            (_, _, timestamp_writes) => {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label, timestamp_writes });
                run_all(&mut pass, false);
            }
        }
        scopes.pop("recording the step")
    }

    /// Records the exchange of every tensor's EMA with its weights (`swap`/`swap4`) into
    /// `encoder`: one pass over every run, every tensor, whatever has a gradient. Built and
    /// compiled in error scopes before the encoder is touched, as a step.
    ///
    /// # Errors
    /// [`crate::Error::Wgpu`] if wgpu refuses the plan or a pipeline.
    pub fn record_swap(
        &mut self,
        ctx: &GpuContext,
        tensors: &Tensors,
        store: &StateStore,
        storages: &[Storage],
        encoder: &mut wgpu::CommandEncoder,
        amp: Option<&Amp>,
    ) -> Result<()> {
        let device = &ctx.device;
        let scopes = Scopes::push(device);
        let generation = amp.map(|a| a.generation);
        let grads = tensors.grad_locations();
        let taken = self.take_plan(&grads, generation);
        let pipelines = Self::pipelines_of(&self.pipelines, storages);
        let layouts: Vec<&wgpu::BindGroupLayout> = pipelines.iter().map(|p| &p.layout).collect();
        let buffer = amp.map(Amp::buffer_ref);
        let built = std::cell::Cell::new(0u64);
        let unused = &self.unused;
        let build = |slots| {
            built.set(built.get() + 1);
            Plan::build(device, &layouts, storages, unused, tensors, store, slots, buffer)
        };
        let mut plan = match taken {
            Some(plan) => plan,
            None => build(0),
        };
        // Every tensor, one stretch per run (no key tells them apart here).
        let every = StepKey { origin: 0, carry: None, amp_class: 0 };
        let dispatches = plan::dispatches(&plan.runs, |_| Some(every)).dispatches;
        if dispatches.len() > plan.slots {
            plan = build(dispatches.len());
        }
        let prepared: Result<Vec<(StepUniform, wgpu::ComputePipeline)>> = dispatches
            .iter()
            .map(|d| {
                let run = &plan.runs[d.run];
                let h = d.header(run);
                let offsets = h.param_off != 0 || h.grad_off != 0 || h.state_off != 0;
                Ok((h, pipelines[run.group].variant(device, 0, offsets, d.wide, false, Stage::Swap)?))
            })
            .collect();
        scopes.pop("preparing the EMA swap")?;
        let prepared = prepared?;
        self.plan_generation = generation;
        self.plan_grads = grads;
        self.plans_built += built.get();
        let plan = self.plan.insert(plan);
        let Some(uniform) = plan.uniform.as_ref().filter(|_| !dispatches.is_empty()) else {
            return Ok(());
        };
        let slot = plan.slot_size as usize;
        let mut bytes = vec![0u8; slot * dispatches.len()];
        for (chunk, (u, _)) in bytes.chunks_exact_mut(slot).zip(&prepared) {
            chunk[..size_of::<StepUniform>()].copy_from_slice(bytemuck::bytes_of(u));
        }
        ctx.check_alive()?;
        let scopes = Scopes::push(device);
        let size = NonZeroU64::new(bytes.len() as u64).expect("dispatches upload something");
        self.belt.write_buffer(encoder, uniform, 0, size).copy_from_slice(&bytes);
        self.belt.finish_and_recall_on_submit(encoder);
        {
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("ema swap"), timestamp_writes: None });
            let max_per_dim = device.limits().max_compute_workgroups_per_dimension;
            for (i, (d, (_, pipeline))) in dispatches.iter().zip(&prepared).enumerate() {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &plan.bind_groups[d.run], &[(i as u64 * plan.slot_size) as u32]);
                let (x, y) = d.workgroups(max_per_dim);
                pass.dispatch_workgroups(x, y, 1);
            }
        }
        scopes.pop("recording the EMA swap")
    }
}
