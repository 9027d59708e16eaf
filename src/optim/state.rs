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
    let mut out = Vec::new();
    for piece in tensors.pieces_of(param) {
        let buffer = store.buffer(piece.slot.block, k).expect("a kept state array is allocated");
        out.extend(crate::readback::read_f32(ctx, buffer, piece.slot.offset, piece.span.len)?);
    }
    Ok(out)
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
    let mut out = Vec::new();
    for param in 0..tensors.len() {
        let group = tensors.info(param).expect("param < len").group;
        for (state, _) in kept(group).iter().enumerate().filter(|(_, &kept)| kept) {
            out.push(TensorState { param, state, values: read(ctx, tensors, store, param, state)? });
        }
    }
    Ok(out)
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
    for s in states {
        for piece in tensors.pieces_of(s.param) {
            let Some(buffer) = store.buffer(piece.slot.block, s.state) else { continue };
            let bytes = &s.values[(piece.start * F32) as usize..((piece.start + piece.span.len) * F32) as usize];
            queue.write_buffer(buffer, piece.slot.offset * F32, bytes);
        }
    }
    Ok(())
}
