//! The plan of a step: pieces merged into runs (one binding window each, with its bind group),
//! built once after registration; and, per step, each run cut into dispatches (four elements per
//! invocation where every slice allows it) over the tensors that have a gradient, one dispatch
//! range per stretch of tensors that take the same scalars.

use std::num::NonZeroU64;

use crate::kernel::{workgroups, StepUniform, Storage, SCAN_ITEMS, SPAN_BLOCK, WORKGROUP_SIZE};

use super::registration::{Piece, StepKey, Tensors};
use super::store::StateStore;
use super::F32;

/// Elements merged into one binding window: contiguous pieces of one group.
#[derive(Debug)]
pub(super) struct Run {
    /// The group of its tensors.
    pub group: usize,
    /// Its pieces as (tensor, first element within the run, elements), in order.
    pub pieces: Vec<(usize, u64, u64)>,
    /// Elements.
    pub n: u64,
    /// Where the run's slices start within their bindings, in elements (of each role's format).
    pub param_off: u32,
    pub grad_off: u32,
    pub state_off: u32,
    /// Whether its group keeps state (its state offset then matters for four-wide access).
    keeps_state: bool,
    /// Its region of the plan's `spans` buffer (byte offset), for a run that can take `SPANS`
    /// dispatches ([`Run::takes_spans`]): where a step that leaves tensors out lists the spans it
    /// updates.
    pub span_region: Option<u64>,
}

/// One dispatch of a step: part of a run, the scalars it takes, and how it runs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dispatch {
    /// Index of its run in the plan.
    pub run: usize,
    /// What picks its scalars besides the group: its tensors' own step count and carry.
    pub key: StepKey,
    /// Its first element within the run.
    pub first: u64,
    /// Elements.
    pub n: u64,
    /// Four elements per invocation (`main4`), or one (`main`).
    pub wide: bool,
    /// For a `SPANS` dispatch, where its span pairs start in its run's region (in u32s, after
    /// the block table) and how many there are.
    pub spans: Option<(u32, u32)>,
}

impl Dispatch {
    /// Where its slices lie in their bindings (the scalars are filled in per step).
    pub fn header(&self, run: &Run) -> StepUniform {
        let first = self.first as u32;
        let (span_first, span_count) = self.spans.unwrap_or_default();
        StepUniform {
            n: self.n as u32,
            param_off: run.param_off + first,
            grad_off: run.grad_off + first,
            state_off: run.state_off + first,
            span_first,
            span_count,
            first,
            ..Default::default()
        }
    }

    /// Invocations along a 2-D grid of at most `max_per_dim` workgroups a side.
    pub fn workgroups(&self, max_per_dim: u32) -> (u32, u32) {
        workgroups(self.items(), max_per_dim)
    }

    /// The gradient scan's grid (loss scaling or clipping): an invocation per [`SCAN_ITEMS`] of
    /// the update's, each writing one partial norm; `workgroups * 256` partials in all.
    pub fn scan_workgroups(&self, max_per_dim: u32) -> (u32, u32) {
        workgroups(self.items().div_ceil(u64::from(SCAN_ITEMS)), max_per_dim)
    }

    /// Partial norms the gradient scan of this dispatch writes: one per invocation of its grid.
    pub fn scan_partials(&self, max_per_dim: u32) -> u64 {
        let (x, y) = self.scan_workgroups(max_per_dim);
        u64::from(x) * u64::from(y) * u64::from(WORKGROUP_SIZE)
    }

    /// Invocations of the update: four elements each where wide.
    fn items(&self) -> u64 {
        if self.wide {
            self.n / 4
        } else {
            self.n
        }
    }
}

/// The runs of every step, their bind groups, and the uniform buffer that holds each dispatch's
/// scalars, one slot each (bound at a dynamic offset).
#[derive(Debug)]
pub(super) struct Plan {
    /// `None` when there is nothing to update (only empty tensors).
    pub uniform: Option<wgpu::Buffer>,
    /// Bytes from one dispatch's uniform slot to the next.
    pub slot_size: u64,
    /// Slots the uniform buffer holds: the most dispatches a step can record without a new plan.
    pub slots: usize,
    /// In the order of the state.
    pub runs: Vec<Run>,
    /// One per run.
    pub bind_groups: Vec<wgpu::BindGroup>,
    /// The runs' span regions (and a small one bound where a run has none).
    pub spans: wgpu::Buffer,
}

/// The dispatches of one step and the spans its `SPANS` dispatches read, per run.
#[derive(Debug, Default)]
pub(super) struct StepDispatches {
    pub dispatches: Vec<Dispatch>,
    /// (run, what its region holds this step: the block table, then the span pairs).
    pub spans: Vec<(usize, Vec<u32>)>,
}

/// A run cut into more stretches than this (of one key) runs as one `SPANS` dispatch instead:
/// past it, a dispatch per stretch costs more than skipping elements in the kernel (on lavapipe a
/// dispatch costs some 40-60 us; see docs/PERFORMANCE.md, "Steps without gradients").
const SPAN_STRETCHES: usize = 16;

/// Block table marks, or'ed into the block's first candidate: the block lies wholly inside one
/// span, or outside them all (stretch indices stay below 2^30: a run has fewer pieces).
const SPAN_INSIDE: u32 = 1 << 31;
const SPAN_OUTSIDE: u32 = 1 << 30;

/// A run of this many pieces or more gets a span region.
const SPAN_PIECES: usize = SPAN_STRETCHES + 1;

impl Run {
    /// Whether a step may run it as `SPANS` dispatches: it has enough pieces to be cut into more
    /// than `SPAN_STRETCHES` stretches. [`Plan::build`] gives exactly these runs a span region.
    fn takes_spans(&self) -> bool {
        self.pieces.len() >= SPAN_PIECES
    }
}

/// The u32s of a run's span region: a block table entry per `SPAN_BLOCK` elements, and a pair per
/// piece (the most stretches a step can have).
fn span_words(run: &Run) -> u64 {
    run.n.div_ceil(SPAN_BLOCK) + 2 * run.pieces.len() as u64
}

/// Below this many elements, a range that cannot run four-wide from its first element to its
/// last is one `main` dispatch instead of up to three (a head, four-wide, a tail).
const SMALL_RUN: u64 = 4096;

/// The pieces merged into runs, each one binding: adjacent pieces of one group whose state,
/// parameter and gradient elements all follow on.
fn runs<'a>(tensors: &'a Tensors, store: &StateStore, storages: &[Storage], align: u64) -> Vec<(Run, Piece<'a>)> {
    // In the order of the state, so that pieces laid out together meet whatever order they were
    // registered in.
    let mut pieces: Vec<Piece<'a>> = tensors.pieces().collect();
    pieces.sort_by_key(|p| (p.slot.block, p.slot.offset));
    let mut runs: Vec<(Run, Piece<'a>)> = Vec::new();
    for p in pieces {
        if let Some((run, merged)) = runs.last_mut() {
            let state_follows =
                merged.slot.block == p.slot.block && merged.slot.offset + merged.span.len == p.slot.offset;
            if state_follows && p.span.continues(&merged.span) && merged.span.len + p.span.len <= tensors.max_chunk() {
                run.pieces.push((p.param, merged.span.len, p.span.len));
                merged.span.len += p.span.len;
                run.n += p.span.len;
                continue;
            }
        }
        // Where each slice starts within its binding, in elements of its format (see `window`).
        let within = |start: u64, bytes: u64| (start * bytes % align / bytes) as u32;
        let storage = storages[p.span.group];
        let run = Run {
            group: p.span.group,
            pieces: vec![(p.param, 0, p.span.len)],
            n: p.span.len,
            param_off: within(p.span.param_start, storage.param.element_bytes()),
            grad_off: within(p.span.grad_start, storage.grad.element_bytes()),
            state_off: if store.keeps_state(p.slot.block) { within(p.slot.offset, F32) } else { 0 },
            keeps_state: store.keeps_state(p.slot.block),
            span_region: None,
        };
        runs.push((run, p));
    }
    runs
}

/// Elements `first..first + n` of `run` cut into dispatches: four elements per invocation where
/// the parameter, gradient and state slices all reach a multiple of four together, one element
/// per invocation before and after that; a small range that cannot run four-wide throughout is
/// one `main` dispatch (what a dispatch costs beyond its elements, tens of microseconds on a CPU
/// adapter, outweighs four-wide access there).
fn cut(run: &Run, first: u64, n: u64, key: StepKey, out: &mut Vec<Dispatch>, index: usize) {
    let residue = |off: u32| (off as u64 + first) % 4;
    let (rp, rg) = (residue(run.param_off), residue(run.grad_off));
    let rs = if run.keeps_state { residue(run.state_off) } else { rp };
    let main = |first, n| Dispatch { run: index, key, first, n, wide: false, spans: None };
    if n == 0 {
        return;
    }
    if rp != rg || rp != rs {
        out.push(main(first, n));
        return;
    }
    let head = ((4 - rp) % 4).min(n);
    let body = (n - head) / 4 * 4;
    let tail = n - head - body;
    if body == 0 || ((head > 0 || tail > 0) && n < SMALL_RUN) {
        out.push(main(first, n));
        return;
    }
    if head > 0 {
        out.push(main(first, head));
    }
    out.push(Dispatch { run: index, key, first: first + head, n: body, wide: true, spans: None });
    if tail > 0 {
        out.push(main(first + head + body, tail));
    }
}

/// The dispatches of one step over `runs`: in each run, the stretches of pieces whose tensors
/// have a gradient (`key` is `None` for those without: they sit the step out) and the same key.
/// A run of a few stretches (`SPAN_STRETCHES`), or of several keys, is cut into dispatches over
/// each stretch; a run of more stretches of one key (tensors without gradients scattered through
/// it), where that would cost a dispatch per stretch, runs over the whole range of its stretches
/// with `SPANS`, the kernel skipping what lies outside them. Four-wide dispatches first.
pub(super) fn dispatches(runs: &[Run], key: impl Fn(usize) -> Option<StepKey>) -> StepDispatches {
    let mut step = StepDispatches { dispatches: Vec::with_capacity(runs.len() + 1), spans: Vec::new() };
    let out = &mut step.dispatches;
    let mut stretches: Vec<(StepKey, u64, u64)> = Vec::new(); // (key, first, n)
    for (index, run) in runs.iter().enumerate() {
        stretches.clear();
        for &(tensor, first, n) in &run.pieces {
            match (stretches.last_mut(), key(tensor)) {
                (Some((same, start, len)), Some(k)) if *same == k && *start + *len == first => *len += n,
                (_, Some(k)) => stretches.push((k, first, n)),
                (_, None) => {}
            }
        }
        let one_key = stretches.iter().all(|s| s.0 == stretches[0].0);
        if stretches.len() <= SPAN_STRETCHES || !one_key || !run.takes_spans() {
            for &(k, start, len) in &stretches {
                cut(run, start, len, k, out, index);
            }
            continue;
        }
        // The block table: for each block of the run, the first stretch that ends past its start,
        // or that the block lies wholly inside one (`INSIDE`) or outside them all (`OUTSIDE`).
        let blocks = run.n.div_ceil(SPAN_BLOCK);
        let mut words: Vec<u32> = Vec::with_capacity(blocks as usize + 2 * stretches.len());
        let mut j = 0;
        for b in 0..blocks {
            let (start, end) = (b * SPAN_BLOCK, ((b + 1) * SPAN_BLOCK).min(run.n));
            while j < stretches.len() && stretches[j].1 + stretches[j].2 <= start {
                j += 1;
            }
            // The marks keep the candidate too, for lanes that straddle into the next block.
            let word = match stretches.get(j) {
                Some(&(_, first, n)) if first <= start && end <= first + n => SPAN_INSIDE | j as u32,
                Some(&(_, first, _)) if end <= first => SPAN_OUTSIDE | j as u32,
                None => SPAN_OUTSIDE | j as u32,
                Some(_) => j as u32,
            };
            words.push(word);
        }
        for &(_, first, n) in &stretches {
            words.extend([first as u32, (first + n) as u32]);
        }
        let (k, lo) = (stretches[0].0, stretches[0].1);
        let (last_first, last_n) = (stretches[stretches.len() - 1].1, stretches[stretches.len() - 1].2);
        let before = out.len();
        cut(run, lo, last_first + last_n - lo, k, out, index);
        for d in &mut out[before..] {
            d.spans = Some((blocks as u32, stretches.len() as u32));
        }
        step.spans.push((index, words));
    }
    // Fewer pipeline switches: the four-wide dispatches first (they touch disjoint elements).
    out.sort_by_key(|d| !d.wide);
    step
}

/// Dispatches one step records now, without building anything.
pub(super) fn dispatch_count(
    device: &wgpu::Device,
    tensors: &Tensors,
    store: &StateStore,
    storages: &[Storage],
) -> usize {
    step_shape(device, tensors, store, storages).0
}

/// Dispatches one step records now and the partial norms their gradient scans write (with loss
/// scaling or clipping; [`Dispatch::scan_partials`]), without building anything.
pub(super) fn step_shape(
    device: &wgpu::Device,
    tensors: &Tensors,
    store: &StateStore,
    storages: &[Storage],
) -> (usize, u64) {
    let limits = device.limits();
    let align = limits.min_storage_buffer_offset_alignment as u64;
    let runs: Vec<Run> = runs(tensors, store, storages, align).into_iter().map(|(run, _)| run).collect();
    let step = dispatches(&runs, |t| tensors.step_key(t));
    let partials = (step.dispatches.iter()).map(|d| d.scan_partials(limits.max_compute_workgroups_per_dimension)).sum();
    (step.dispatches.len(), partials)
}

impl Plan {
    /// Merges the pieces into runs and creates their bind groups (`layouts[group]`, with
    /// `unused[k]` bound where a group does not keep state array `k`, and the master copy after
    /// the spans where `storages[group]` keeps one) and a uniform buffer of at least `min_slots`
    /// slots. wgpu reports what goes wrong (a destroyed buffer, say) to the caller's error scopes.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        device: &wgpu::Device,
        layouts: &[&wgpu::BindGroupLayout],
        storages: &[Storage],
        unused: &[wgpu::Buffer],
        tensors: &Tensors,
        store: &StateStore,
        min_slots: usize,
        amp: Option<&wgpu::Buffer>,
    ) -> Plan {
        let limits = device.limits();
        let align = limits.min_storage_buffer_offset_alignment as u64;
        let slot_size = crate::kernel::slot_size(&limits);
        let mut runs = runs(tensors, store, storages, align);
        // A span region for each run that can take `SPANS` dispatches: a block table and room
        // for a span per piece, each region at an aligned offset after a first, small one bound
        // where a run has none.
        let mut span_bytes = align.max(16);
        for (run, _) in runs.iter_mut().filter(|(run, _)| run.takes_spans()) {
            run.span_region = Some(span_bytes);
            span_bytes += (span_words(run) * 4).next_multiple_of(align);
        }
        let spans = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgpu-optim step spans"),
            size: span_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // Room for a step in which every tensor has its gradient, or for `min_slots`.
        let full = runs.iter().map(|(run, _)| run).fold(0, |acc, run| {
            let mut d = Vec::new();
            cut(run, 0, run.n, StepKey { origin: 0, carry: None, amp_class: 0 }, &mut d, 0);
            acc + d.len()
        });
        let slots = full.max(min_slots);
        let uniform = (slots > 0).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-optim step scalars"),
                size: slot_size * slots as u64,
                // Storage too: read so, and rewritten by the `correct` pass, under loss scaling.
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let bind_groups = runs
            .iter()
            .map(|(run, merged)| {
                let n = run.n;
                let storage = storages[run.group];
                let (param_bytes, grad_bytes) = (storage.param.element_bytes(), storage.grad.element_bytes());
                let (param, _) = window(merged.span.param, merged.span.param_start, n, align, param_bytes);
                let (grad, _) = window(merged.span.grad, merged.span.grad_start, n, align, grad_bytes);
                let mut entries = vec![
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: uniform.as_ref().expect("a run has elements, so there are slots"),
                            offset: 0,
                            size: NonZeroU64::new(size_of::<StepUniform>() as u64),
                        }),
                    },
                    wgpu::BindGroupEntry { binding: 1, resource: param },
                    wgpu::BindGroupEntry { binding: 2, resource: grad },
                ];
                for (k, unused) in unused.iter().enumerate() {
                    let resource = match store.buffer(merged.slot.block, k) {
                        Some(buffer) => window(buffer, merged.slot.offset, n, align, F32).0,
                        None => unused.as_entire_binding(),
                    };
                    entries.push(wgpu::BindGroupEntry { binding: 3 + k as u32, resource });
                }
                let (offset, size) = match run.span_region {
                    Some(offset) => (offset, span_words(run) * 4),
                    None => (0, 16),
                };
                entries.push(wgpu::BindGroupEntry {
                    binding: 3 + unused.len() as u32,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &spans,
                        offset,
                        size: NonZeroU64::new(size),
                    }),
                });
                if storage.master {
                    let buffer = store.buffer(merged.slot.block, unused.len()).expect("a master copy is kept");
                    let resource = window(buffer, merged.slot.offset, n, align, F32).0;
                    // After the spans (`kernel::master_binding`): one binding per state array is
                    // in `unused`.
                    entries.push(wgpu::BindGroupEntry { binding: 4 + unused.len() as u32, resource });
                }
                if storage.ema {
                    // After the master copy, if any (`kernel::ema_binding`): the store's last array.
                    let buffer = store.buffer(merged.slot.block, unused.len() + 1).expect("an EMA is kept");
                    let resource = window(buffer, merged.slot.offset, n, align, F32).0;
                    let binding = 4 + unused.len() as u32 + u32::from(storage.master);
                    entries.push(wgpu::BindGroupEntry { binding, resource });
                }
                if let Some(amp) = amp {
                    // After the master copy and the EMA, if any (`kernel::amp_binding`).
                    entries.push(wgpu::BindGroupEntry {
                        binding: 4 + unused.len() as u32 + u32::from(storage.master) + u32::from(storage.ema),
                        resource: amp.as_entire_binding(),
                    });
                }
                device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("wgpu-optim step"),
                    layout: layouts[run.group],
                    entries: &entries,
                })
            })
            .collect();
        let runs = runs.into_iter().map(|(run, _)| run).collect();
        Plan { uniform, slot_size, slots, runs, bind_groups, spans }
    }
}

/// Binds `n` elements of `element_bytes` each from element `start`, beginning at the `align`ed
/// byte offset at or before it and ending at a multiple of four bytes (within the buffer);
/// returns the binding and the slice's first element within it.
pub(super) fn window(
    buffer: &wgpu::Buffer,
    start: u64,
    n: u64,
    align: u64,
    element_bytes: u64,
) -> (wgpu::BindingResource<'_>, u32) {
    let bytes = start * element_bytes;
    let offset = bytes / align * align;
    let size = (bytes - offset + n * element_bytes).next_multiple_of(4).min(buffer.size() - offset);
    let resource = wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer, offset, size: NonZeroU64::new(size) });
    (resource, ((bytes - offset) / element_bytes) as u32)
}
