//! The table of optimizer and flag combinations that `validate` and `tests/gpu_vs_cpu.rs` run:
//! each algorithm declares its own rows ([`crate::algorithm::Algorithm::cases`]); the registry
//! gathers them.

use crate::algorithm::OptimizerConfig;

/// Every algorithm with each flag on its own and in combination, in registry order.
pub fn cases() -> Vec<(&'static str, OptimizerConfig)> {
    OptimizerConfig::cases()
}
