//! The GPU optimizer: parameters in groups, device-resident state, one compute pass per step;
//! checkpoints and the non-finite gradient scan. It runs any algorithm of [`crate::algorithm`].
//!
//! [`Optimizer`] (`optimizer.rs`) is the public face: it owns the groups and the step count and
//! hands the rest to one module per job, none of which knows the optimizer:
//! - `registration.rs`: the tensors, their checks, and their pieces;
//! - `store.rs`: the state buffers, in blocks that grow as tensors are registered;
//! - `plan.rs`: pieces merged into dispatches, with their bind groups;
//! - `record.rs`: a step recorded into an encoder, inside error scopes;
//! - `state.rs`: the state read back, exported and imported;
//! - `nonfinite.rs`: the gradient scan.
//!
//! `checkpoint/` saves and loads through the optimizer's snapshot, export and restore.

mod amp;
mod checkpoint;
mod nonfinite;
mod optimizer;
mod plan;
mod record;
mod registration;
mod state;
mod store;

pub use amp::{AmpStatus, ClipGradNorm, GradScalerConfig, NormType};
pub use checkpoint::{CHECKPOINT_FORMAT, CHECKPOINT_VERSION};
pub use optimizer::{GroupId, Optimizer};
pub use registration::ParamBinding;

/// Bytes in one f32 element.
const F32: u64 = 4;

/// The error scopes around device work whose errors must come back as [`crate::Error::Wgpu`]
/// rather than reach wgpu's uncaptured-error handler (which panics by default): validation and
/// out-of-memory.
pub(crate) struct Scopes(wgpu::ErrorScopeGuard, wgpu::ErrorScopeGuard);

impl Scopes {
    pub(crate) fn push(device: &wgpu::Device) -> Self {
        let out_of_memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        Self(out_of_memory, device.push_error_scope(wgpu::ErrorFilter::Validation))
    }

    /// The first error either scope caught, as [`crate::Error::Wgpu`] after `what: `.
    pub(crate) fn pop(self, what: &str) -> crate::Result<()> {
        let Scopes(out_of_memory, invalid) = self;
        let errors = [pollster::block_on(invalid.pop()), pollster::block_on(out_of_memory.pop())];
        match errors.into_iter().flatten().next() {
            Some(error) => Err(crate::Error::Wgpu(format!("{what}: {error}"))),
            None => Ok(()),
        }
    }
}
