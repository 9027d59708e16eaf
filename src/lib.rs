//! # wgpu-optim
//!
//! GPU optimizer kernels for training engines built on [`wgpu`]: SGD (momentum, Nesterov), AdaGrad,
//! RMSProp (centered, momentum), Adam and AdamW (AMSGrad), with PyTorch's names, defaults,
//! formulas and argument checks.
//!
//! The engine keeps its device, queue, parameter and gradient buffers; the [`Optimizer`] owns the
//! optimizer state on the device and updates the parameters in place, in one compute pass per
//! step, without reading anything back. Per-step scalars (learning rate, bias corrections) are
//! computed on the host in f64 and uploaded in one uniform.
//!
//! ```no_run
//! use wgpu_optim::{AdamConfig, GpuContext, Optimizer, ParamBinding};
//! # fn buffers(ctx: &GpuContext) -> (wgpu::Buffer, wgpu::Buffer) { unimplemented!() }
//! let ctx = GpuContext::new()?;                  // or GpuContext::from_device(device, queue)
//! let (weights, grads) = buffers(&ctx);          // the engine's STORAGE buffers of f32
//! let mut opt = Optimizer::new(&ctx, AdamConfig { lr: 1e-3, ..Default::default() })?;
//! opt.add_params(opt.default_group(), &[ParamBinding::whole(&weights, &grads, 1024)])?;
//! for _ in 0..100 {
//!     // ... the engine's forward and backward passes write `grads` ...
//!     opt.step()?;                               // or opt.record(&mut encoder)?
//! }
//! # Ok::<(), wgpu_optim::Error>(())
//! ```
//!
//! Parameters and gradients may be f32, bf16 (two per `u32`, on every adapter) or f16 (with
//! `SHADER_F16`), per group, with an f32 master copy or stochastic rounding: see [`Storage`] and
//! [`Optimizer::with_storage`]. The update is computed in f32 whatever the formats.
//!
//! [`cpu`] mirrors every kernel in f64; [`replay`] runs PyTorch's golden cases against both.
//! `tools` holds what the `wgpu-optim` command runs: `adapters`, `validate` and `bench`.
//!
//! ## Features
//!
//! `cli` (default) builds the tools: the `wgpu-optim` command, the `tools` module and
//! `schedule::plot_schedule`, with their dependencies (clap, plotters, indicatif). An engine
//! depends with `default-features = false` and links only wgpu, bytemuck, thiserror, serde,
//! serde_json, safetensors and pollster.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod algorithm;
mod arena;
mod context;
pub mod cpu;
mod error;
pub mod kernel;
pub mod optim;
pub mod pyjson;
pub mod readback;
pub mod replay;
pub mod schedule;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod tools;

pub use algorithm::{
    AdaGradConfig, AdadeltaConfig, AdamConfig, AdamWConfig, AdamaxConfig, AsgdConfig, LionConfig, NAdamConfig,
    OptimizerConfig, RAdamConfig, RmsPropConfig, RpropConfig, SgdConfig,
};
pub use arena::ParamArena;
pub use context::{enumerate_adapters, ContextOptions, GpuContext};
pub use error::{py_float, Error, Result};
pub use kernel::{Format, Rounding, Storage};
pub use optim::{AmpStatus, ClipGradNorm, GradScalerConfig, GroupId, NormType, Optimizer, ParamBinding};
