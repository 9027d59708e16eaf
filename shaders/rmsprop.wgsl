// RMSProp, plain, centered and with momentum: torch.optim.RMSprop, single-tensor path.
// Mirrored line by line by src/cpu/rmsprop.rs. The per-step scalars come from `RmsPropScalars` in
// src/optim/rmsprop.rs; the layout is `StepUniform` in src/kernel.rs: keep the three in sync.

const WG: u32 = 256u;
// Specialization constants: src/kernel.rs compiles a pipeline per combination a step uses,
// so the flags cost no branch. OFFSETS is false when every binding starts at its slice.
override MAXIMIZE: bool = false;
override CENTERED: bool = false;
override MOMENTUM: bool = false;
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
    lr: f32,
    alpha: f32,
    one_minus_alpha: f32,
    eps: f32,
    weight_decay: f32,
    momentum: f32,
    _pad3: f32,
    _pad4: f32,
}

@group(0) @binding(0) var<uniform> u: Step;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> square_avg: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_avg: array<f32>;
@group(0) @binding(5) var<storage, read_write> momentum_buffer: array<f32>;

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
    let p = param[ip];
    if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    let sq = u.alpha * square_avg[is] + u.one_minus_alpha * g * g;
    square_avg[is] = sq;
    var avg: f32;
    if (CENTERED) {
        let ga = grad_avg[is] + u.one_minus_alpha * (g - grad_avg[is]);
        grad_avg[is] = ga;
        avg = sqrt(sq - ga * ga);
    } else {
        avg = sqrt(sq);
    }
    avg = avg + u.eps;
    if (MOMENTUM) {
        let buf = u.momentum * momentum_buffer[is] + g / avg;
        momentum_buffer[is] = buf;
        param[ip] = p - u.lr * buf;
    } else {
        param[ip] = p - u.lr * (g / avg);
    }
}
