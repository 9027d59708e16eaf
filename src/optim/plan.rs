//! The plan of a step: pieces merged into runs (one binding window each, with its bind group),
//! built once after registration; and, per step, each run cut into dispatches (four elements per
//! invocation where every slice allows it) over the tensors that have a gradient, one dispatch
//! range per stretch of tensors that take the same scalars.

use std::num::NonZeroU64;

use crate::kernel::{workgroups, StepUniform};

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
    /// Where the run's slices start within their bindings, in elements.
    pub param_off: u32,
    pub grad_off: u32,
    pub state_off: u32,
    /// Whether its group keeps state (its state offset then matters for four-wide access).
    keeps_state: bool,
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
}

impl Dispatch {
    /// Where its slices lie in their bindings (the scalars are filled in per step).
    pub fn header(&self, run: &Run) -> StepUniform {
        let first = self.first as u32;
        StepUniform {
            n: self.n as u32,
            param_off: run.param_off + first,
            grad_off: run.grad_off + first,
            state_off: run.state_off + first,
            ..Default::default()
        }
    }

    /// Invocations along a 2-D grid of at most `max_per_dim` workgroups a side.
    pub fn workgroups(&self, max_per_dim: u32) -> (u32, u32) {
        workgroups(if self.wide { self.n / 4 } else { self.n }, max_per_dim)
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
}

/// Below this many elements, a range that cannot run four-wide from its first element to its
/// last is one `main` dispatch instead of up to three (a head, four-wide, a tail).
const SMALL_RUN: u64 = 4096;

/// The pieces merged into runs, each one binding: adjacent pieces of one group whose state,
/// parameter and gradient elements all follow on.
fn runs<'a>(tensors: &'a Tensors, store: &StateStore, align: u64) -> Vec<(Run, Piece<'a>)> {
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
        // Where each slice starts within its binding, in elements (see `window`).
        let within = |start: u64| (start * F32 % align / F32) as u32;
        let run = Run {
            group: p.span.group,
            pieces: vec![(p.param, 0, p.span.len)],
            n: p.span.len,
            param_off: within(p.span.param_start),
            grad_off: within(p.span.grad_start),
            state_off: if store.keeps_state(p.slot.block) { within(p.slot.offset) } else { 0 },
            keeps_state: store.keeps_state(p.slot.block),
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
    let main = |first, n| Dispatch { run: index, key, first, n, wide: false };
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
    out.push(Dispatch { run: index, key, first: first + head, n: body, wide: true });
    if tail > 0 {
        out.push(main(first + head + body, tail));
    }
}

/// The dispatches of one step over `runs`: in each run, each stretch of pieces whose tensors have
/// a gradient and the same `key` (`None`: no gradient, skipped), four-wide dispatches first.
pub(super) fn dispatches(runs: &[Run], key: impl Fn(usize) -> Option<StepKey>) -> Vec<Dispatch> {
    let mut out = Vec::with_capacity(runs.len() + 1);
    for (index, run) in runs.iter().enumerate() {
        let mut stretch: Option<(StepKey, u64, u64)> = None; // (key, first, n)
        for &(tensor, first, n) in &run.pieces {
            let k = key(tensor);
            match (&mut stretch, k) {
                (Some((same, start, len)), Some(k)) if *same == k && *start + *len == first => *len += n,
                _ => {
                    if let Some((k, start, len)) = stretch.take() {
                        cut(run, start, len, k, &mut out, index);
                    }
                    stretch = k.map(|k| (k, first, n));
                }
            }
        }
        if let Some((k, start, len)) = stretch {
            cut(run, start, len, k, &mut out, index);
        }
    }
    // Fewer pipeline switches: the four-wide dispatches first (they touch disjoint elements).
    out.sort_by_key(|d| !d.wide);
    out
}

/// Dispatches one step records now, without building anything.
pub(super) fn dispatch_count(device: &wgpu::Device, tensors: &Tensors, store: &StateStore) -> usize {
    let align = device.limits().min_storage_buffer_offset_alignment as u64;
    let runs: Vec<Run> = runs(tensors, store, align).into_iter().map(|(run, _)| run).collect();
    dispatches(&runs, |t| tensors.step_key(t)).len()
}

impl Plan {
    /// Merges the pieces into runs and creates their bind groups (`layout`, with `unused[k]`
    /// bound where a group does not keep state array `k`) and a uniform buffer of at least
    /// `min_slots` slots. wgpu reports what goes wrong (a destroyed buffer, say) to the caller's
    /// error scopes.
    pub fn build(
        device: &wgpu::Device,
        layout: &wgpu::BindGroupLayout,
        unused: &[wgpu::Buffer],
        tensors: &Tensors,
        store: &StateStore,
        min_slots: usize,
    ) -> Plan {
        let limits = device.limits();
        let align = limits.min_storage_buffer_offset_alignment as u64;
        let slot_size =
            (size_of::<StepUniform>() as u64).next_multiple_of(limits.min_uniform_buffer_offset_alignment as u64);
        let runs = runs(tensors, store, align);
        // Room for a step in which every tensor has its gradient, or for `min_slots`.
        let full = runs.iter().map(|(run, _)| run).fold(0, |acc, run| {
            let mut d = Vec::new();
            cut(run, 0, run.n, StepKey { origin: 0, carry: None }, &mut d, 0);
            acc + d.len()
        });
        let slots = full.max(min_slots);
        let uniform = (slots > 0).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-optim step scalars"),
                size: slot_size * slots as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let bind_groups = runs
            .iter()
            .map(|(run, merged)| {
                let n = run.n;
                let (param, _) = window(merged.span.param, merged.span.param_start, n, align);
                let (grad, _) = window(merged.span.grad, merged.span.grad_start, n, align);
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
                        Some(buffer) => window(buffer, merged.slot.offset, n, align).0,
                        None => unused.as_entire_binding(),
                    };
                    entries.push(wgpu::BindGroupEntry { binding: 3 + k as u32, resource });
                }
                device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("wgpu-optim step"),
                    layout,
                    entries: &entries,
                })
            })
            .collect();
        let runs = runs.into_iter().map(|(run, _)| run).collect();
        Plan { uniform, slot_size, slots, runs, bind_groups }
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
