//! The unfused baseline of `bench`: the same update as one dispatch per elementwise operation,
//! with temporaries, as PyTorch's single-tensor `for` loop runs it without fusion. For Adam:
//! ```text
//! exp_avg.lerp_(grad, 1 - beta1)
//! exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//! denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)     # two temporaries
//! param.addcdiv_(exp_avg, denom, value=-step_size)
//! ```
//! Weight decay, `maximize`, Nesterov and SGD's first step are left out: each would add one more
//! operation, and the bench's configurations do not use them (AdamW's decoupled decay is in).

use super::program::{layout, storage, Access, Program};
use crate::algorithm::{AdamConfig, OptimizerConfig};
use crate::error::Result;
use crate::kernel::compute_pipeline;

/// The WGSL of the elementwise operations.
pub const SOURCE: &str = include_str!("shaders/unfused.wgsl");

/// An array of the update: the parameter, the gradient, state `k`, temporary `k`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Array {
    P,
    G,
    S(usize),
    T(usize),
}
use Array::{G, P, S, T};

/// One elementwise operation: an entry point of `unfused.wgsl`, its output, inputs and scalar.
struct Op(&'static str, Array, Option<Array>, Option<Array>, f64);

/// The operations of one step of `config`, in PyTorch's order.
fn ops(config: &OptimizerConfig) -> Vec<Op> {
    match config {
        OptimizerConfig::Sgd(c) => {
            let mut ops = Vec::new();
            let mut update = G;
            if c.momentum != 0.0 {
                ops.push(Op("mul", S(0), None, None, c.momentum));
                ops.push(Op("add", S(0), Some(G), None, 1.0 - c.dampening));
                update = S(0);
            }
            ops.push(Op("add", P, Some(update), None, -c.lr));
            ops
        }
        OptimizerConfig::AdaGrad(c) => vec![
            Op("addcmul", S(0), Some(G), Some(G), 1.0),
            Op("sqrt_of", T(0), Some(S(0)), None, 0.0),
            Op("add_scalar", T(0), None, None, c.eps),
            Op("addcdiv", P, Some(G), Some(T(0)), -c.lr),
        ],
        OptimizerConfig::RmsProp(c) => {
            let mut ops =
                vec![Op("mul", S(0), None, None, c.alpha), Op("addcmul", S(0), Some(G), Some(G), 1.0 - c.alpha)];
            if c.centered {
                ops.push(Op("lerp", S(1), Some(G), None, 1.0 - c.alpha));
                ops.push(Op("addcmul_of", T(0), Some(S(0)), Some(S(1)), -1.0));
                ops.push(Op("sqrt_", T(0), None, None, 0.0));
            } else {
                ops.push(Op("sqrt_of", T(0), Some(S(0)), None, 0.0));
            }
            ops.push(Op("add_scalar", T(0), None, None, c.eps));
            if c.momentum > 0.0 {
                ops.push(Op("mul", S(2), None, None, c.momentum));
                ops.push(Op("addcdiv", S(2), Some(G), Some(T(0)), 1.0));
                ops.push(Op("add", P, Some(S(2)), None, -c.lr));
            } else {
                ops.push(Op("addcdiv", P, Some(G), Some(T(0)), -c.lr));
            }
            ops
        }
        OptimizerConfig::Adam(c) => adam(c),
        OptimizerConfig::AdamW(c) => adam(&c.as_adam()),
        OptimizerConfig::Adamax(c) => {
            let clr = c.lr / (1.0 - c.betas.0.powi(10));
            vec![
                Op("lerp", S(0), Some(G), None, 1.0 - c.betas.0),
                Op("mul", S(1), None, None, c.betas.1),
                Op("abs_of", T(0), Some(G), None, 0.0),
                Op("add_scalar", T(0), None, None, c.eps),
                Op("maximum", S(1), Some(T(0)), None, 0.0),
                Op("addcdiv", P, Some(S(0)), Some(S(1)), -clr),
            ]
        }
        OptimizerConfig::NAdam(c) => {
            // The coefficients of step 10: any step moves the same bytes.
            let s = crate::algorithm::NAdamScalars::new(
                c,
                &crate::algorithm::StepInput { step: 10, lr: c.lr, momentum: None, carry: Default::default() },
            );
            vec![
                Op("lerp", S(0), Some(G), None, 1.0 - c.betas.0),
                Op("mul", S(1), None, None, c.betas.1),
                Op("addcmul", S(1), Some(G), Some(G), 1.0 - c.betas.1),
                Op("div_of", T(0), Some(S(1)), None, s.bias_correction2),
                Op("sqrt_", T(0), None, None, 0.0),
                Op("add_scalar", T(0), None, None, c.eps),
                Op("addcdiv", P, Some(G), Some(T(0)), -s.grad_coef),
                Op("addcdiv", P, Some(S(0)), Some(T(0)), -s.avg_coef),
            ]
        }
        OptimizerConfig::RAdam(c) => {
            // Step 10, past the rectification threshold: the adaptive branch, as most steps take.
            let s = crate::algorithm::RAdamScalars::new(
                c,
                &crate::algorithm::StepInput { step: 10, lr: c.lr, momentum: None, carry: Default::default() },
            );
            vec![
                Op("lerp", S(0), Some(G), None, 1.0 - c.betas.0),
                Op("mul", S(1), None, None, c.betas.1),
                Op("addcmul", S(1), Some(G), Some(G), 1.0 - c.betas.1),
                Op("sqrt_of", T(0), Some(S(1)), None, 0.0),
                Op("add_scalar", T(0), None, None, c.eps),
                Op("addcdiv", P, Some(S(0)), Some(T(0)), -s.step_size * s.bias_correction2_sqrt),
            ]
        }
        // Every other algorithm of the registry has no baseline yet (Adadelta, ASGD, Rprop and
        // Lion need operations such as sign and comparisons that `unfused.wgsl` lacks): bench
        // reports its unfused column as n/a.
        _ => Vec::new(),
    }
}

fn adam(c: &AdamConfig) -> Vec<Op> {
    // The bias corrections of step 10: any step moves the same bytes.
    let (beta1, beta2) = c.betas;
    let step_size = c.lr / (1.0 - beta1.powi(10));
    let bias_correction2_sqrt = (1.0 - beta2.powi(10)).sqrt();
    let mut ops = Vec::new();
    if c.decoupled_weight_decay && c.weight_decay != 0.0 {
        ops.push(Op("mul", P, None, None, 1.0 - c.lr * c.weight_decay));
    }
    ops.push(Op("lerp", S(0), Some(G), None, 1.0 - beta1));
    ops.push(Op("mul", S(1), None, None, beta2));
    ops.push(Op("addcmul", S(1), Some(G), Some(G), 1.0 - beta2));
    let second = if c.amsgrad {
        ops.push(Op("maximum", S(2), Some(S(1)), None, 0.0));
        S(2)
    } else {
        S(1)
    };
    ops.push(Op("sqrt_of", T(0), Some(second), None, 0.0));
    ops.push(Op("div_of", T(1), Some(T(0)), None, bias_correction2_sqrt));
    ops.push(Op("add_scalar", T(1), None, None, c.eps));
    ops.push(Op("addcdiv", P, Some(S(0)), Some(T(1)), -step_size));
    ops
}

/// The unfused step of `config` over `n` elements, on buffers of its own (param and grad from
/// `param` and `grad`, state and temporaries zero; AdaGrad's sum starts at one, so that its
/// square root is not zero). Empty, with no buffers, for an algorithm without a baseline.
///
/// # Errors
/// As [`storage`].
pub(crate) fn program(
    device: &wgpu::Device,
    config: &OptimizerConfig,
    n: u64,
    param: &[f32],
    grad: &[f32],
) -> Result<Program> {
    let ops = ops(config);
    if ops.is_empty() {
        return Ok(Program::default());
    }
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("wgpu-optim unfused"),
        source: wgpu::ShaderSource::Wgsl(SOURCE.into()),
    });
    let layout = layout(device, &[Access::ReadWrite, Access::Read, Access::Read]);
    let placeholder = storage(device, "unfused placeholder", 1, None)?;
    let p = storage(device, "unfused param", n, Some(param))?;
    let g = storage(device, "unfused grad", n, Some(grad))?;
    let ones = matches!(config, OptimizerConfig::AdaGrad(_)).then(|| vec![1.0f32; n as usize]);
    let states: Vec<wgpu::Buffer> =
        (0..3).map(|_| storage(device, "unfused state", n, ones.as_deref())).collect::<Result<_>>()?;
    let temps: Vec<wgpu::Buffer> =
        (0..2).map(|_| storage(device, "unfused temporary", n, None)).collect::<Result<_>>()?;
    let buffer = |a: Option<Array>| match a {
        Some(P) => &p,
        Some(G) => &g,
        Some(S(k)) => &states[k],
        Some(T(k)) => &temps[k],
        None => &placeholder,
    };
    let mut program = Program::default();
    let mut entries: Vec<(&'static str, usize)> = Vec::new();
    for Op(entry, out, a, b, c) in ops {
        let index = match entries.iter().find(|(e, _)| *e == entry) {
            Some(&(_, index)) => index,
            None => {
                let index = program.add_pipeline(compute_pipeline(device, &layout, &module, entry, &[]));
                entries.push((entry, index));
                index
            }
        };
        let buffers = [buffer(Some(out)), buffer(a), buffer(b)];
        program.dispatch(device, index, &layout, &buffers, n, [c as f32, 0.0, 0.0, 0.0])?;
    }
    Ok(program)
}
