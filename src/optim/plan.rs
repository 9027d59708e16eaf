//! The plan of a step: pieces merged into runs, runs cut into dispatches (four elements per
//! invocation where every slice allows it), and their bind groups. Built once after registration,
//! reused by every step.

use std::num::NonZeroU64;

use crate::kernel::{workgroups, StepUniform};

use super::registration::{Piece, Tensors};
use super::store::StateStore;
use super::F32;

/// One dispatch of a step: which tensors it updates, and how.
#[derive(Debug)]
pub(super) struct Dispatch {
    /// The group of its tensors.
    pub group: usize,
    /// The step count at which its tensors were registered.
    pub added_at: u64,
    /// Where its slices lie in their bindings (the scalars are filled in per step).
    pub header: StepUniform,
    /// Four elements per invocation (`main4`), or one (`main`).
    pub wide: bool,
    /// The grid.
    pub workgroups: (u32, u32),
    /// Its buffers, with the uniform slot of this dispatch.
    pub bind_group: wgpu::BindGroup,
}

/// Every dispatch of a step and the uniform buffer that holds their scalars, one slot each.
#[derive(Debug)]
pub(super) struct Plan {
    /// `None` when there is nothing to update (only empty tensors).
    pub uniform: Option<wgpu::Buffer>,
    /// Bytes from one dispatch's uniform slot to the next.
    pub slot_size: u64,
    /// In the order they run.
    pub dispatches: Vec<Dispatch>,
}

/// Below this many elements, a run whose length is no multiple of four is one `main` dispatch
/// instead of two (four-wide, then its tail).
const SMALL_RUN: u64 = 4096;

/// One dispatch before its bind group exists: a run (pieces merged), and which part of it runs how.
struct Part<'a> {
    run: Piece<'a>,
    wide: bool,
    /// The first element of the run this dispatch updates.
    first: u64,
    n: u64,
}

/// The pieces merged into runs (each one binding) and cut into dispatches: four elements per
/// invocation where every slice starts at a multiple of four within its binding, with any
/// remainder (and every other run) one element per invocation.
fn parts<'a>(tensors: &'a Tensors, store: &StateStore, align: u64) -> Vec<Part<'a>> {
    // In the order of the state, so that pieces laid out together meet whatever order they were
    // registered in.
    let mut pieces: Vec<Piece<'_>> = tensors.pieces().collect();
    pieces.sort_by_key(|p| (p.slot.block, p.slot.offset));
    let mut runs: Vec<Piece<'_>> = Vec::new();
    for p in pieces {
        if let Some(run) = runs.last_mut() {
            let state_follows = run.slot.block == p.slot.block && run.slot.offset + run.span.len == p.slot.offset;
            if state_follows && p.span.continues(&run.span) && run.span.len + p.span.len <= tensors.max_chunk() {
                run.span.len += p.span.len;
                continue;
            }
        }
        runs.push(p);
    }
    // Where each slice starts within its binding, in elements.
    let within = |start: u64| start * F32 % align / F32;
    let mut parts = Vec::new();
    for run in runs {
        let aligned = within(run.span.param_start) % 4 == 0
            && within(run.span.grad_start) % 4 == 0
            && (!store.keeps_state(run.slot.block) || within(run.slot.offset) % 4 == 0);
        // A small run whose length is no multiple of four takes one dispatch of `main` rather
        // than a four-wide one and another for its tail: what a dispatch costs beyond its
        // elements (tens of microseconds on a CPU adapter) outweighs four-wide access there.
        let ragged_and_small = run.span.len % 4 != 0 && run.span.len < SMALL_RUN;
        let wide = if aligned && !ragged_and_small { run.span.len / 4 * 4 } else { 0 };
        if wide > 0 {
            parts.push(Part { run, wide: true, first: 0, n: wide });
        }
        if run.span.len > wide {
            parts.push(Part { run, wide: false, first: wide, n: run.span.len - wide });
        }
    }
    parts
}

/// Dispatches one step records, without building anything.
pub(super) fn dispatch_count(device: &wgpu::Device, tensors: &Tensors, store: &StateStore) -> usize {
    parts(tensors, store, device.limits().min_storage_buffer_offset_alignment as u64).len()
}

impl Plan {
    /// Merges the pieces into dispatches and creates their bind groups (`layout`, with `unused[k]`
    /// bound where a group does not keep state array `k`) and the uniform buffer. wgpu reports
    /// what goes wrong (a destroyed buffer, say) to the caller's error scopes.
    pub fn build(
        device: &wgpu::Device,
        layout: &wgpu::BindGroupLayout,
        unused: &[wgpu::Buffer],
        tensors: &Tensors,
        store: &StateStore,
    ) -> Plan {
        let limits = device.limits();
        let align = limits.min_storage_buffer_offset_alignment as u64;
        let slot_size =
            (size_of::<StepUniform>() as u64).next_multiple_of(limits.min_uniform_buffer_offset_alignment as u64);
        let mut parts = parts(tensors, store, align);
        parts.sort_by_key(|p| !p.wide);
        let uniform = (!parts.is_empty()).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-optim step scalars"),
                size: slot_size * parts.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let dispatches = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let run = &part.run;
                let n = run.span.len;
                let (param, param_off) = window(run.span.param, run.span.param_start, n, align);
                let (grad, grad_off) = window(run.span.grad, run.span.grad_start, n, align);
                let mut state_off = 0;
                let mut entries = vec![
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: uniform.as_ref().expect("parts exist"),
                            offset: i as u64 * slot_size,
                            size: NonZeroU64::new(size_of::<StepUniform>() as u64),
                        }),
                    },
                    wgpu::BindGroupEntry { binding: 1, resource: param },
                    wgpu::BindGroupEntry { binding: 2, resource: grad },
                ];
                for (k, unused) in unused.iter().enumerate() {
                    let resource = match store.buffer(run.slot.block, k) {
                        Some(buffer) => {
                            let (resource, off) = window(buffer, run.slot.offset, n, align);
                            state_off = off;
                            resource
                        }
                        None => unused.as_entire_binding(),
                    };
                    entries.push(wgpu::BindGroupEntry { binding: 3 + k as u32, resource });
                }
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("wgpu-optim step"),
                    layout,
                    entries: &entries,
                });
                let first = part.first as u32;
                let invocations = if part.wide { part.n / 4 } else { part.n };
                Dispatch {
                    group: run.span.group,
                    added_at: run.span.added_at,
                    header: StepUniform {
                        n: part.n as u32,
                        param_off: param_off + first,
                        grad_off: grad_off + first,
                        state_off: state_off + first,
                        ..Default::default()
                    },
                    wide: part.wide,
                    workgroups: workgroups(invocations, limits.max_compute_workgroups_per_dimension),
                    bind_group,
                }
            })
            .collect();
        Plan { uniform, slot_size, dispatches }
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
