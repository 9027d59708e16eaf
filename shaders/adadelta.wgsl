// Adadelta (Zeiler, 2012): torch.optim.Adadelta, single-tensor path.
// Mirrored line by line by src/cpu/adadelta.rs. The per-step scalars come from `AdadeltaScalars` in
// src/optim/adadelta.rs; the layout is `StepUniform` in src/kernel.rs: keep the three in sync.

const WG: u32 = 256u;
const MAXIMIZE: u32 = 1u;

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
    rho: f32,
    one_minus_rho: f32,
    eps: f32,
    weight_decay: f32,
    _pad3: f32,
    _pad4: f32,
    _pad5: f32,
}

@group(0) @binding(0) var<uniform> u: Step;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> square_avg: array<f32>;
@group(0) @binding(4) var<storage, read_write> acc_delta: array<f32>;

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
    let sq = u.rho * square_avg[is] + u.one_minus_rho * g * g;
    square_avg[is] = sq;
    let rms = sqrt(sq + u.eps);
    let delta = sqrt(acc_delta[is] + u.eps) / rms * g;
    acc_delta[is] = u.rho * acc_delta[is] + u.one_minus_rho * delta * delta;
    param[ip] = p - u.lr * delta;
}
