//! The state as the host sees it: one tensor's array read back, every tensor's state exported
//! for a checkpoint, and imported back after its shapes are checked.

use crate::context::GpuContext;
use crate::error::{Error, Result};

use super::registration::Tensors;
use super::store::StateStore;
use super::F32;

/// One state array of one tensor, on the host.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct TensorState<T> {
    /// The tensor's index.
    pub param: usize,
    /// The state array's index in the kernel.
    pub state: usize,
    /// Its values (f32, or their little-endian bytes).
    pub values: T,
}

/// Tensor `param`'s state array `k`, read back (the tensor's group must keep that array).
///
/// # Errors
/// [`Error::DeviceLost`] or [`Error::Wgpu`] if the device fails.
pub(super) fn read(
    ctx: &GpuContext,
    tensors: &Tensors,
    store: &StateStore,
    param: usize,
    k: usize,
) -> Result<Vec<f32>> {
    Ok(export_arrays(ctx, tensors, store, &[(param, k)])?.pop().unwrap_or_default())
}

/// Every state array of every tensor that its group keeps (`kept(group)[k]`), in tensor order
/// and then array order.
///
/// # Errors
/// As [`read`].
pub(super) fn export(
    ctx: &GpuContext,
    tensors: &Tensors,
    store: &StateStore,
    kept: impl Fn(usize) -> Vec<bool>,
) -> Result<Vec<TensorState<Vec<f32>>>> {
    let mut arrays = Vec::new();
    for param in 0..tensors.len() {
        let group = tensors.info(param).expect("param < len").group;
        arrays.extend(kept(group).iter().enumerate().filter(|(_, &kept)| kept).map(|(state, _)| (param, state)));
    }
    let values = export_arrays(ctx, tensors, store, &arrays)?;
    Ok(arrays.into_iter().zip(values).map(|((param, state), values)| TensorState { param, state, values }).collect())
}

/// The state arrays `(param, k)`, each read back whole. The copies are made per state buffer,
/// not per tensor: each buffer's elements from its first piece asked for to its last, in one
/// readback for all, then cut into the tensors on the host. That keeps a checkpoint of 10^5
/// tensors to a few large copies and one wait.
fn export_arrays(
    ctx: &GpuContext,
    tensors: &Tensors,
    store: &StateStore,
    arrays: &[(usize, usize)],
) -> Result<Vec<Vec<f32>>> {
    use std::collections::BTreeMap;
    // (block, k) -> the element range of that buffer the pieces need.
    let mut spans: BTreeMap<(usize, usize), (u64, u64)> = BTreeMap::new();
    for &(param, k) in arrays {
        for piece in tensors.pieces_of(param) {
            let (start, end) = (piece.slot.offset, piece.slot.offset + piece.span.len);
            let span = spans.entry((piece.slot.block, k)).or_insert((start, end));
            *span = (span.0.min(start), span.1.max(end));
        }
    }
    let keys: Vec<(usize, usize)> = spans.keys().copied().collect();
    let ranges = (keys.iter().zip(spans.values()))
        .map(|(&(block, k), &(start, end))| {
            let buffer = store.buffer(block, k).expect("a kept state array is allocated");
            (buffer, start, end - start)
        })
        .collect::<Vec<_>>();
    let copies = crate::readback::read_ranges(ctx, &ranges)?;
    let copied: BTreeMap<(usize, usize), (u64, Vec<f32>)> =
        keys.into_iter().zip(ranges.iter().map(|r| r.1).zip(copies)).collect();
    Ok(arrays
        .iter()
        .map(|&(param, k)| {
            let mut out = Vec::with_capacity(tensors.info(param).map_or(0, |t| t.len as usize));
            for piece in tensors.pieces_of(param) {
                let (first, values) = &copied[&(piece.slot.block, k)];
                let at = (piece.slot.offset - first) as usize;
                out.extend_from_slice(&values[at..at + piece.span.len as usize]);
            }
            out
        })
        .collect())
}

/// Writes each array of `states` (bytes of f32) into its tensor's state. Every length is checked
/// before anything is written.
///
/// # Errors
/// [`Error::LengthMismatch`] for an array whose length is not its tensor's, [`Error::OutOfBounds`]
/// for a tensor never registered, and nothing is written then.
pub(super) fn import(
    queue: &wgpu::Queue,
    tensors: &Tensors,
    store: &StateStore,
    states: &[TensorState<&[u8]>],
) -> Result<()> {
    for s in states {
        let info = tensors.info(s.param).ok_or_else(|| Error::OutOfBounds {
            what: "parameter index".into(),
            offset: s.param as u64,
            end: s.param as u64 + 1,
            buffer_len: tensors.len() as u64,
        })?;
        if s.values.len() as u64 != info.len * F32 {
            return Err(Error::LengthMismatch {
                what: format!("state {} of parameter {} (bytes)", s.state, s.param),
                expected: (info.len * F32) as usize,
                got: s.values.len(),
            });
        }
    }
    // Pieces that lie one after another in a state buffer go up in one write: 10^5 small writes
    // would cost wgpu a staging allocation each. The gaps between them (under four elements,
    // where a tensor starts at a multiple of four) belong to no tensor and are written as zeros.
    let mut runs: Vec<((usize, usize), u64, Vec<u8>)> = Vec::new();
    for s in states {
        for piece in tensors.pieces_of(s.param) {
            let key = (piece.slot.block, s.state);
            let bytes = &s.values[(piece.start * F32) as usize..((piece.start + piece.span.len) * F32) as usize];
            let offset = piece.slot.offset * F32;
            let run = runs.iter_mut().rev().find(|(k, _, _)| *k == key).filter(|(_, start, run)| {
                let end = start + run.len() as u64;
                offset >= end && offset - end < 4 * F32
            });
            match run {
                Some((_, start, run)) => {
                    run.resize((offset - *start) as usize, 0);
                    run.extend_from_slice(bytes);
                }
                None => runs.push((key, offset, bytes.to_vec())),
            }
        }
    }
    for ((block, state), offset, bytes) in runs {
        if let Some(buffer) = store.buffer(block, state) {
            queue.write_buffer(buffer, offset, &bytes);
        }
    }
    Ok(())
}
