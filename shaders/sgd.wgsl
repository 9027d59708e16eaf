// SGD with momentum, dampening and Nesterov: torch.optim.SGD, single-tensor path.
// Mirrored line by line by src/cpu/sgd.rs. The per-step scalars come from `SgdScalars` in
// src/optim/sgd.rs; the layout is `StepUniform` in src/optim/kernel.rs: keep the three in sync.

const WG: u32 = 256u;
const MAXIMIZE: u32 = 1u;
const MOMENTUM: u32 = 2u;
const NESTEROV: u32 = 4u;
const FIRST_STEP: u32 = 8u;

struct Step {
    n: u32,
    param_off: u32,
    grad_off: u32,
    state_off: u32,
    flags: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    lr: f32,
    momentum: f32,
    one_minus_dampening: f32,
    weight_decay: f32,
    _pad3: f32,
    _pad4: f32,
    _pad5: f32,
    _pad6: f32,
}

@group(0) @binding(0) var<uniform> u: Step;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> momentum_buffer: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= u.n) {
        return;
    }
    let ip = u.param_off + i;
    let is = u.state_off + i;

    var g = grad[u.grad_off + i];
    if ((u.flags & MAXIMIZE) != 0u) {
        g = -g;
    }
    let p = param[ip];
    if (u.weight_decay != 0.0) {
        g = g + u.weight_decay * p;
    }
    if ((u.flags & MOMENTUM) != 0u) {
        var buf = g;
        // The first step takes the gradient itself, without dampening (PyTorch).
        if ((u.flags & FIRST_STEP) == 0u) {
            buf = u.momentum * momentum_buffer[is] + u.one_minus_dampening * g;
        }
        momentum_buffer[is] = buf;
        if ((u.flags & NESTEROV) != 0u) {
            g = g + u.momentum * buf;
        } else {
            g = buf;
        }
    }
    param[ip] = p - u.lr * g;
}
