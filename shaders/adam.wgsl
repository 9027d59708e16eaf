// Adam and AdamW: torch.optim.Adam / AdamW, single-tensor path.
//
// `update` is the step on four elements at once. `main` runs it on one element per invocation, at
// any offset; `main4` on four, where every slice starts at a multiple of four elements (the host
// gives the remainder to `main`). Mirrored line by line by src/cpu/adam.rs. The per-step scalars
// come from `AdamScalars` in src/optim/adam.rs; the layout is `StepUniform` in src/kernel.rs: keep
// the three in sync.

const WG: u32 = 256u;
// Specialization constants: src/kernel.rs compiles a pipeline per combination a step uses, so
// the flags cost no branch. OFFSETS is false when every binding starts at its slice.
override MAXIMIZE: bool = false;
override AMSGRAD: bool = false;
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
    weight_decay: f32, // L2 coefficient added to the gradient when not decoupled, else 0
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    step_size: f32, // lr / (1 - beta1^t)
    bias_correction2_sqrt: f32, // sqrt(1 - beta2^t)
    eps: f32,
}

@group(0) @binding(0) var<uniform> u: Step;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(4) var<storage, read_write> exp_avg_sq: array<f32>;
@group(0) @binding(5) var<storage, read_write> max_exp_avg_sq: array<f32>;
// The same bindings, four elements at a time, for `main4`.
@group(0) @binding(1) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> exp_avg4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> exp_avg_sq4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> max_exp_avg_sq4: array<vec4<f32>>;

// A parameter and its state, four elements of each.
struct Values {
    param: vec4<f32>,
    exp_avg: vec4<f32>,
    exp_avg_sq: vec4<f32>,
    max_exp_avg_sq: vec4<f32>,
}

fn update(grad: vec4<f32>, x: Values) -> Values {
    var g = grad;
    if (MAXIMIZE) {
        g = -g;
    }
    let p = x.param * u.decay;
    // PyTorch skips the term when weight_decay is 0, which matters for non-finite parameters.
    if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    let m = x.exp_avg + u.one_minus_beta1 * (g - x.exp_avg);
    let v = u.beta2 * x.exp_avg_sq + u.one_minus_beta2 * g * g;
    var v_max = x.max_exp_avg_sq;
    var v_hat = v;
    if (AMSGRAD) {
        // The running max is of the raw second moment; bias correction comes after (PyTorch).
        v_max = max(v_max, v);
        v_hat = v_max;
    }
    let denom = sqrt(v_hat) / u.bias_correction2_sqrt + u.eps;
    return Values(p - u.step_size * (m / denom), m, v, v_max);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // A 2-D grid reaches past 65,535 workgroups in one dimension.
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= u.n) {
        return;
    }
    let ip = select(i, u.param_off + i, OFFSETS);
    let ig = select(i, u.grad_off + i, OFFSETS);
    let is = select(i, u.state_off + i, OFFSETS);
    var x = Values(vec4(param[ip]), vec4(exp_avg[is]), vec4(exp_avg_sq[is]), vec4(0.0));
    if (AMSGRAD) {
        x.max_exp_avg_sq = vec4(max_exp_avg_sq[is]);
    }
    let y = update(vec4(grad[ig]), x);
    param[ip] = y.param.x;
    exp_avg[is] = y.exp_avg.x;
    exp_avg_sq[is] = y.exp_avg_sq.x;
    if (AMSGRAD) {
        max_exp_avg_sq[is] = y.max_exp_avg_sq.x;
    }
}

@compute @workgroup_size(256)
fn main4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // A 2-D grid reaches past 65,535 workgroups in one dimension.
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= u.n / 4u) {
        return;
    }
    let ip = select(i, u.param_off / 4u + i, OFFSETS);
    let ig = select(i, u.grad_off / 4u + i, OFFSETS);
    let is = select(i, u.state_off / 4u + i, OFFSETS);
    var x = Values(param4[ip], exp_avg4[is], exp_avg_sq4[is], vec4(0.0));
    if (AMSGRAD) {
        x.max_exp_avg_sq = max_exp_avg_sq4[is];
    }
    let y = update(grad4[ig], x);
    param4[ip] = y.param;
    exp_avg4[is] = y.exp_avg;
    exp_avg_sq4[is] = y.exp_avg_sq;
    if (AMSGRAD) {
        max_exp_avg_sq4[is] = y.max_exp_avg_sq;
    }
}
