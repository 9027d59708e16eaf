// Rprop (resilient backpropagation, Riedmiller and Braun 1993): torch.optim.Rprop, single-tensor path.
// Mirrored line by line by src/cpu/rprop.rs. The per-step scalars come from `RpropScalars` in
// src/optim/rprop.rs; the layout is `StepUniform` in src/kernel.rs: keep the three in sync.

const WG: u32 = 256u;
// Specialization constants: src/kernel.rs compiles a pipeline per combination a step uses,
// so the flags cost no branch. OFFSETS is false when every binding starts at its slice.
override MAXIMIZE: bool = false;
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
    etaminus: f32,
    etaplus: f32,
    step_size_min: f32,
    step_size_max: f32,
    _pad3: f32,
    _pad4: f32,
    _pad5: f32,
    _pad6: f32,
}

@group(0) @binding(0) var<uniform> u: Step;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> prev: array<f32>;
@group(0) @binding(4) var<storage, read_write> step_size: array<f32>;

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
    let product = g * prev[is];
    var factor = 1.0;
    if (product > 0.0) {
        factor = u.etaplus;
    } else if (product < 0.0) {
        factor = u.etaminus;
    }
    let size = clamp(step_size[is] * factor, u.step_size_min, u.step_size_max);
    step_size[is] = size;
    // Where the sign flipped, the element rests this step and forgets its gradient.
    if (factor == u.etaminus) {
        g = 0.0;
    }
    param[ip] = param[ip] - sign(g) * size;
    prev[is] = g;
}
