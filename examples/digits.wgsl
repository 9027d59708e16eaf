// Softmax regression on 8x8 digits: the forward and backward passes of examples/digits.rs, so
// that a whole training step (forward, backward, optimizer) runs on the GPU in one submission.

const CLASSES: u32 = 10u;

struct Dims {
    samples: u32,
    features: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;            // samples x features
@group(0) @binding(2) var<storage, read> labels: array<u32>;       // samples
@group(0) @binding(3) var<storage, read> params: array<f32>;       // W (classes x features), then b
@group(0) @binding(4) var<storage, read_write> delta: array<f32>;  // samples x classes: p - onehot
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;   // samples: cross-entropy
@group(0) @binding(6) var<storage, read_write> grads: array<f32>;  // like params

// One sample per invocation: logits, softmax, its share of the gradient, its loss.
@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if (s >= dims.samples) {
        return;
    }
    let f = dims.features;
    let bias = CLASSES * f;
    var z: array<f32, 10>;
    var top = -3.0e38;
    for (var k = 0u; k < CLASSES; k++) {
        var acc = params[bias + k];
        for (var j = 0u; j < f; j++) {
            acc += params[k * f + j] * x[s * f + j];
        }
        z[k] = acc;
        top = max(top, acc);
    }
    var sum = 0.0;
    for (var k = 0u; k < CLASSES; k++) {
        z[k] = exp(z[k] - top); // shifted by the largest logit, so exp cannot overflow
        sum += z[k];
    }
    let label = labels[s];
    for (var k = 0u; k < CLASSES; k++) {
        delta[s * CLASSES + k] = z[k] / sum - select(0.0, 1.0, k == label);
    }
    loss[s] = log(sum) - log(z[label]);
}

// One parameter per invocation: the mean over samples of its gradient (no atomics needed).
@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let f = dims.features;
    let weights = CLASSES * f;
    if (i >= weights + CLASSES) {
        return;
    }
    var g = 0.0;
    if (i < weights) {
        let k = i / f;
        let j = i % f;
        for (var s = 0u; s < dims.samples; s++) {
            g += delta[s * CLASSES + k] * x[s * f + j];
        }
    } else {
        let k = i - weights;
        for (var s = 0u; s < dims.samples; s++) {
            g += delta[s * CLASSES + k];
        }
    }
    grads[i] = g / f32(dims.samples);
}
