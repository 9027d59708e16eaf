// RAdam (rectified Adam, Liu et al. 2019): torch.optim.RAdam, single-tensor path.
// Mirrored line by line by src/cpu/radam.rs. The per-step scalars come from `RAdamScalars` in
// src/optim/radam.rs; the layout is `StepUniform` in src/kernel.rs: keep the three in sync.

const WG: u32 = 256u;
// Specialization constants: src/kernel.rs compiles a pipeline per combination a step uses,
// so the flags cost no branch. OFFSETS is false when every binding starts at its slice.
override MAXIMIZE: bool = false;
override RECTIFIED: bool = false;
override WEIGHT_DECAY: bool = false;
override OFFSETS: bool = true;

struct Step {
    n: u32,
    param_off: u32,
    grad_off: u32,
    state_off: u32,
    flags: u32, // unused: the flags are specialization constants
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    decay: f32, // 1 - lr * weight_decay when decoupled, else 1
    weight_decay: f32, // L2 coefficient when not decoupled, else 0
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    step_size: f32, // lr / (1 - beta1^t), times the rectification when RECTIFIED
    bias_correction2_sqrt: f32, // sqrt(1 - beta2^t)
    eps: f32,
}

@group(0) @binding(0) var<uniform> u: Step;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(4) var<storage, read_write> exp_avg_sq: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= u.n) {
        return;
    }
    let ip = select(i, u.param_off + i, OFFSETS);
    let is = select(i, u.state_off + i, OFFSETS);

    var g = grad[select(i, u.grad_off + i, OFFSETS)];
    if (MAXIMIZE) {
        g = -g;
    }
    let p = param[ip] * u.decay;
    if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    let m = exp_avg[is] + u.one_minus_beta1 * (g - exp_avg[is]);
    let v = u.beta2 * exp_avg_sq[is] + u.one_minus_beta2 * g * g;
    exp_avg[is] = m;
    exp_avg_sq[is] = v;
    if (RECTIFIED) {
        // eps before the bias correction, as PyTorch's RAdam (unlike Adam).
        let adaptive = u.bias_correction2_sqrt / (sqrt(v) + u.eps);
        param[ip] = p - u.step_size * m * adaptive;
    } else {
        param[ip] = p - u.step_size * m;
    }
}
