// RMSProp, plain, centered and with momentum: torch.optim.RMSprop, single-tensor path.
//
// `update` is the step on four elements at once. `main` runs it on one element per invocation, at
// any offset; `main4` on four, where every slice starts at a multiple of four elements (the host
// gives the remainder to `main`). Mirrored line by line by src/cpu/rmsprop.rs. The per-step scalars
// come from `RmsPropScalars` in src/optim/rmsprop.rs; the layout is `StepUniform` in src/kernel.rs: keep
// the three in sync.

const WG: u32 = 256u;
// Specialization constants: src/kernel.rs compiles a pipeline per combination a step uses, so
// the flags cost no branch. OFFSETS is false when every binding starts at its slice.
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
// The same bindings, four elements at a time, for `main4`.
@group(0) @binding(1) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> square_avg4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> grad_avg4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> momentum_buffer4: array<vec4<f32>>;

// A parameter and its state, four elements of each.
struct Values {
    param: vec4<f32>,
    square_avg: vec4<f32>,
    grad_avg: vec4<f32>,
    momentum_buffer: vec4<f32>,
}

fn update(grad: vec4<f32>, x: Values) -> Values {
    var g = grad;
    if (MAXIMIZE) {
        g = -g;
    }
    let p = x.param;
    if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    let sq = u.alpha * x.square_avg + u.one_minus_alpha * g * g;
    var ga = x.grad_avg;
    var avg: vec4<f32>;
    if (CENTERED) {
        ga = ga + u.one_minus_alpha * (g - ga);
        avg = sqrt(sq - ga * ga);
    } else {
        avg = sqrt(sq);
    }
    avg = avg + u.eps;
    var buf = x.momentum_buffer;
    var next: vec4<f32>;
    if (MOMENTUM) {
        buf = u.momentum * buf + g / avg;
        next = p - u.lr * buf;
    } else {
        next = p - u.lr * (g / avg);
    }
    return Values(next, sq, ga, buf);
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
    var x = Values(vec4(param[ip]), vec4(square_avg[is]), vec4(0.0), vec4(0.0));
    if (CENTERED) {
        x.grad_avg = vec4(grad_avg[is]);
    }
    if (MOMENTUM) {
        x.momentum_buffer = vec4(momentum_buffer[is]);
    }
    let y = update(vec4(grad[ig]), x);
    param[ip] = y.param.x;
    square_avg[is] = y.square_avg.x;
    if (CENTERED) {
        grad_avg[is] = y.grad_avg.x;
    }
    if (MOMENTUM) {
        momentum_buffer[is] = y.momentum_buffer.x;
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
    var x = Values(param4[ip], square_avg4[is], vec4(0.0), vec4(0.0));
    if (CENTERED) {
        x.grad_avg = grad_avg4[is];
    }
    if (MOMENTUM) {
        x.momentum_buffer = momentum_buffer4[is];
    }
    let y = update(grad4[ig], x);
    param4[ip] = y.param;
    square_avg4[is] = y.square_avg;
    if (CENTERED) {
        grad_avg4[is] = y.grad_avg;
    }
    if (MOMENTUM) {
        momentum_buffer4[is] = y.momentum_buffer;
    }
}
