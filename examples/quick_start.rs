//! The smallest use: one tensor, Adam, a few steps. The gradient of `0.5 * |p - target|^2` is
//! `p - target`; here the host computes it (an engine's backward pass would, on the GPU).
//!
//! ```sh
//! cargo run --release --example quick_start
//! ```

use wgpu_optim::readback::read_f32;
use wgpu_optim::{AdamConfig, GpuContext, Optimizer, ParamArena};

fn main() -> wgpu_optim::Result<()> {
    let ctx = GpuContext::new()?;
    let target = [1.0f32, -2.0, 3.0, 0.5];
    let arena = ParamArena::new(&ctx, &[target.len() as u64])?;

    let mut opt = Optimizer::new(&ctx, AdamConfig { lr: 0.1, ..Default::default() })?;
    opt.add_params(opt.default_group(), &arena.bindings())?;

    for step in 1..=200 {
        let p = read_f32(&ctx, arena.params(), 0, target.len() as u64)?;
        let grad: Vec<f32> = p.iter().zip(&target).map(|(p, t)| p - t).collect();
        arena.write_grads(&ctx, 0, &grad)?;
        opt.step()?;
        if step % 50 == 0 {
            println!("step {step}: p = {p:?}");
        }
    }
    Ok(())
}
