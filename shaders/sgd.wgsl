// SGD with momentum, dampening and Nesterov: torch.optim.SGD, single-tensor path.
//
// `update` is the step on four elements at once. `main` runs it on one element per invocation, at
// any offset; `main4` on four, where every slice starts at a multiple of four elements (the host
// gives the remainder to `main`). Mirrored line by line by src/cpu/sgd.rs. The per-step scalars
// come from `SgdScalars` in src/optim/sgd.rs; the layout is `StepUniform` in src/kernel.rs: keep
// the three in sync.

const WG: u32 = 256u;
// Specialization constants: src/kernel.rs compiles a pipeline per combination a step uses, so
// the flags cost no branch. OFFSETS is false when every binding starts at its slice.
override MAXIMIZE: bool = false;
override MOMENTUM: bool = false;
override NESTEROV: bool = false;
override FIRST_STEP: bool = false;
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
// The same bindings, four elements at a time, for `main4`.
@group(0) @binding(1) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> momentum_buffer4: array<vec4<f32>>;

// A parameter and its state, four elements of each.
struct Values {
    param: vec4<f32>,
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
    var buf = x.momentum_buffer;
    if (MOMENTUM) {
        // The first step takes the gradient itself, without dampening (PyTorch).
        if (FIRST_STEP) {
            buf = g;
        } else {
            buf = u.momentum * buf + u.one_minus_dampening * g;
        }
        if (NESTEROV) {
            g = g + u.momentum * buf;
        } else {
            g = buf;
        }
    }
    return Values(p - u.lr * g, buf);
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
    var x = Values(vec4(param[ip]), vec4(0.0));
    if (MOMENTUM) {
        x.momentum_buffer = vec4(momentum_buffer[is]);
    }
    let y = update(vec4(grad[ig]), x);
    param[ip] = y.param.x;
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
    var x = Values(param4[ip], vec4(0.0));
    if (MOMENTUM) {
        x.momentum_buffer = momentum_buffer4[is];
    }
    let y = update(grad4[ig], x);
    param4[ip] = y.param;
    if (MOMENTUM) {
        momentum_buffer4[is] = y.momentum_buffer;
    }
}
