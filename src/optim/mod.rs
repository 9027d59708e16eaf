//! The GPU optimizer: parameters in groups, device-resident state, one compute pass per step;
//! checkpoints and the non-finite gradient scan. It runs any algorithm of [`crate::algorithm`].

mod checkpoint;
mod nonfinite;
mod optimizer;

pub use checkpoint::{CHECKPOINT_FORMAT, CHECKPOINT_VERSION};
pub use optimizer::{GroupId, Optimizer, ParamBinding};
