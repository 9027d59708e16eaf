// The unfused baseline of `bench`: one small kernel per elementwise operation, as a tensor library
// without fusion runs an optimizer (PyTorch's single-tensor `for` loop: `exp_avg.lerp_(grad, w)`,
// `exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)`, ...). Each entry point is one
// such operation; src/tools/unfused.rs strings them together. `out` is written, `a` and `b` read.
// Keep `struct Args` in sync with `Args` in src/tools/program.rs.

struct Args {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    c: vec4<f32>,
}

@group(0) @binding(0) var<uniform> u: Args;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// out.mul_(c)
@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < u.n) {
        out[i] = out[i] * u.c.x;
    }
}

// out.add_(c)
@compute @workgroup_size(256)
fn add_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < u.n) {
        out[i] = out[i] + u.c.x;
    }
}

// out.add_(a, alpha=c)
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < u.n) {
        out[i] = out[i] + u.c.x * a[i];
    }
}

// out.lerp_(a, c)
@compute @workgroup_size(256)
fn lerp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < u.n) {
        out[i] = out[i] + u.c.x * (a[i] - out[i]);
    }
}

// out.addcmul_(a, b, value=c)
@compute @workgroup_size(256)
fn addcmul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < u.n) {
        out[i] = out[i] + u.c.x * a[i] * b[i];
    }
}

// out.addcdiv_(a, b, value=c)
@compute @workgroup_size(256)
fn addcdiv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < u.n) {
        out[i] = out[i] + u.c.x * a[i] / b[i];
    }
}

// out = torch.maximum(out, a)
@compute @workgroup_size(256)
fn maximum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < u.n) {
        out[i] = max(out[i], a[i]);
    }
}

// out = a.sqrt() (a new tensor)
@compute @workgroup_size(256)
fn sqrt_of(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < u.n) {
        out[i] = sqrt(a[i]);
    }
}

// out = a / c (a new tensor)
@compute @workgroup_size(256)
fn div_of(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < u.n) {
        out[i] = a[i] / u.c.x;
    }
}

// out = a.addcmul(b, b, value=c) (a new tensor)
@compute @workgroup_size(256)
fn addcmul_of(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < u.n) {
        out[i] = a[i] + u.c.x * b[i] * b[i];
    }
}

// out.sqrt_()
@compute @workgroup_size(256)
fn sqrt_(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < u.n) {
        out[i] = sqrt(out[i]);
    }
}

// out = a.abs() (a new tensor)
@compute @workgroup_size(256)
fn abs_of(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < u.n) {
        out[i] = abs(a[i]);
    }
}
