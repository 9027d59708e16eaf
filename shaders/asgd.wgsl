// ASGD (averaged SGD, Polyak and Juditsky 1992): torch.optim.ASGD, single-tensor path.
//
// `update` is the step on four elements at once. `main` runs it on one element per invocation, at
// any offset; `main4` on four, where every slice starts at a multiple of four elements (the host
// gives the remainder to `main`). Mirrored line by line by src/cpu/asgd.rs. The per-step scalars
// come from `AsgdScalars` in src/optim/asgd.rs; the layout is `StepUniform` in src/kernel.rs: keep
// the three in sync.

const WG: u32 = 256u;
// Specialization constants: src/kernel.rs compiles a pipeline per combination a step uses, so
// the flags cost no branch. OFFSETS is false when every binding starts at its slice.
override MAXIMIZE: bool = false;
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
    eta: f32, // the step size of step t
    decay: f32, // 1 - lambd * eta
    mu: f32, // averaging weight of step t
    weight_decay: f32,
    _pad3: f32,
    _pad4: f32,
    _pad5: f32,
    _pad6: f32,
}

@group(0) @binding(0) var<uniform> u: Step;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> ax: array<f32>;
// The same bindings, four elements at a time, for `main4`.
@group(0) @binding(1) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> ax4: array<vec4<f32>>;

// A parameter and its state, four elements of each.
struct Values {
    param: vec4<f32>,
    ax: vec4<f32>,
}

fn update(grad: vec4<f32>, x: Values) -> Values {
    var g = grad;
    if (MAXIMIZE) {
        g = -g;
    }
    var p = x.param;
    if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    p = p * u.decay;
    p = p - u.eta * g;
    var ax = p;
    if (u.mu != 1.0) {
        ax = x.ax + (p - x.ax) * u.mu;
    }
    return Values(p, ax);
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
    let x = Values(vec4(param[ip]), vec4(ax[is]));
    let y = update(vec4(grad[ig]), x);
    param[ip] = y.param.x;
    ax[is] = y.ax.x;
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
    let x = Values(param4[ip], ax4[is]);
    let y = update(grad4[ig], x);
    param4[ip] = y.param;
    ax4[is] = y.ax;
}
