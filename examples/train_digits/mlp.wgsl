// A 64 -> 128 -> 10 MLP (ReLU, softmax cross-entropy) on 8x8 digits: the forward and backward
// passes of examples/train_digits, one mini-batch per set of dispatches, so that a whole epoch
// (every batch's forward, backward and optimizer update) is one submission.
//
// On a CPU adapter (lavapipe) every load in a loop costs about the same, whatever its width and
// whether the lanes share its address, and arithmetic is nearly free: the kernels load vec4s and
// let each load serve several products (four samples per W1 row in `hidden_forward`, a 4x4
// block of dW1 in `hidden_grads`). Neighbouring invocations read neighbouring memory, which a
// GPU wants too.
//
// Shapes (row-major, as torch.nn.Linear stores them; every tensor starts at a multiple of 4):
//   W1: HIDDEN x FEATURES, b1: HIDDEN, W2: CLASSES x HIDDEN, b2: CLASSES
//   h      = relu(W1 x + b1)                    per sample of the batch
//   logits = W2 h + b2,  p = softmax(logits)
//   loss   = logsumexp(logits) - logits[label]  (the batch's loss is the mean)
//   delta  = (p - onehot(label)) / batch        d mean loss / d logits
//   dh     = (W2^T delta) * (h > 0)
//   dW2 = sum_s delta h^T, db2 = sum_s delta, dW1 = sum_s dh x^T, db1 = sum_s dh

const FEATURES: u32 = 64u;
const HIDDEN: u32 = 128u;
const CLASSES: u32 = 10u;

// One mini-batch: a slot of a uniform buffer bound at a dynamic offset, one per batch of the epoch
// and one for `evaluate`.
struct Batch {
    start: u32,     // its first position in this epoch's order (`order`)
    size: u32,      // samples in it (the last batch may be short)
    n_test: u32,    // test samples (`evaluate`)
    _pad: u32,
    w1: u32,        // where each tensor starts in `params` and `grads` (elements)
    b1: u32,
    w2: u32,
    b2: u32,
}

@group(0) @binding(0) var<uniform> batch: Batch;
@group(0) @binding(2) var<storage, read> labels: array<u32>;     // train labels
@group(0) @binding(3) var<storage, read> order: array<u32>;      // this epoch's shuffled sample indices
@group(0) @binding(5) var<storage, read_write> grads: array<f32>;
@group(0) @binding(6) var<storage, read_write> hidden: array<f32>; // batch x HIDDEN: h
@group(0) @binding(7) var<storage, read_write> dhidden: array<f32>; // batch x HIDDEN: dh
@group(0) @binding(8) var<storage, read_write> delta: array<f32>;  // batch x CLASSES
// The epoch's record, read back once per epoch: each train position's loss, then per test
// sample 1.0 where the prediction is right.
@group(0) @binding(9) var<storage, read_write> record: array<f32>;
@group(0) @binding(10) var<storage, read> test_x: array<f32>;
@group(0) @binding(11) var<storage, read> test_labels: array<u32>;
@group(0) @binding(12) var<storage, read_write> test_hidden: array<f32>; // test samples x HIDDEN
// Four-wide views (of the buffers above, or the only view): on a CPU adapter each load costs
// about the same whatever its width, so the kernels load vec4s where the data lies four in a row.
// An entry point uses one view of a binding, never both.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;      // train samples x FEATURES
@group(0) @binding(4) var<storage, read> params4: array<vec4<f32>>; // W1, b1, W2, b2 back to back
@group(0) @binding(5) var<storage, read_write> grads4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> hidden4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dhidden4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> test_x4: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read_write> test_hidden4: array<vec4<f32>>;

const F4: u32 = FEATURES / 4u;
const H4: u32 = HIDDEN / 4u;

fn param(i: u32) -> f32 {
    return params4[i / 4u][i % 4u];
}

fn sample(s: u32) -> u32 {
    return order[batch.start + s];
}

// h = relu(W1 x + b1) of one sample's row: hidden unit j = lane, sample = workgroup y.
fn hidden_row(j: u32, row4: u32, test: bool) -> f32 {
    var acc = param(batch.b1 + j);
    for (var i = 0u; i < F4; i++) {
        var xv: vec4<f32>;
        if (test) {
            xv = test_x4[row4 + i];
        } else {
            xv = x4[row4 + i];
        }
        acc += dot(params4[batch.w1 / 4u + j * F4 + i], xv);
    }
    return max(acc, 0.0);
}

// Four samples per invocation (workgroup y), so that each W1 row read serves four: a sample past
// the batch's end repeats its last one, computed and not stored.
@compute @workgroup_size(64)
fn hidden_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = wg.x * 64u + lid;
    let s0 = wg.y * 4u;
    let last = batch.size - 1u;
    let r0 = sample(s0) * F4;
    let r1 = sample(min(s0 + 1u, last)) * F4;
    let r2 = sample(min(s0 + 2u, last)) * F4;
    let r3 = sample(min(s0 + 3u, last)) * F4;
    var acc = vec4(param(batch.b1 + j));
    for (var i = 0u; i < F4; i++) {
        let w = params4[batch.w1 / 4u + j * F4 + i];
        acc += vec4(dot(w, x4[r0 + i]), dot(w, x4[r1 + i]), dot(w, x4[r2 + i]), dot(w, x4[r3 + i]));
    }
    let h = max(acc, vec4(0.0));
    for (var q = 0u; q < 4u; q++) {
        if (s0 + q < batch.size) {
            hidden[(s0 + q) * HIDDEN + j] = h[q];
        }
    }
}

// z[s][k] = W2[k] . h[s] + b2[k], written into `delta` (which `output_forward` turns into
// d loss / d logits): one invocation per (sample, class).
@compute @workgroup_size(64)
fn logits_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x / CLASSES;
    let k = gid.x % CLASSES;
    if (s >= batch.size) {
        return;
    }
    var acc = vec4(0.0);
    for (var j = 0u; j < H4; j++) {
        acc += params4[batch.w2 / 4u + k * H4 + j] * hidden4[s * H4 + j];
    }
    delta[s * CLASSES + k] = param(batch.b2 + k) + (acc.x + acc.y) + (acc.z + acc.w);
}

// The logits of sample `s` from its hidden row (of the batch, or of the test set), W2 read alike
// by every lane.
fn logits(s: u32, test: bool) -> array<f32, CLASSES> {
    var z: array<f32, CLASSES>;
    for (var k = 0u; k < CLASSES; k++) {
        var acc = vec4(0.0);
        for (var j = 0u; j < H4; j++) {
            var h: vec4<f32>;
            if (test) {
                h = test_hidden4[s * H4 + j];
            } else {
                h = hidden4[s * H4 + j];
            }
            acc += params4[batch.w2 / 4u + k * H4 + j] * h;
        }
        z[k] = param(batch.b2 + k) + (acc.x + acc.y) + (acc.z + acc.w);
    }
    return z;
}

// Softmax, the loss and d loss / d logits from the logits in `delta`: one invocation per sample.
@compute @workgroup_size(64)
fn output_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if (s >= batch.size) {
        return;
    }
    let at = s * CLASSES;
    var top = delta[at];
    for (var k = 1u; k < CLASSES; k++) {
        top = max(top, delta[at + k]);
    }
    // Shifted by the largest logit, so that exp cannot overflow.
    var sum = 0.0;
    for (var k = 0u; k < CLASSES; k++) {
        sum += exp(delta[at + k] - top);
    }
    let label = labels[sample(s)];
    let z_label = delta[at + label];
    let scale = 1.0 / f32(batch.size);
    for (var k = 0u; k < CLASSES; k++) {
        let p = exp(delta[at + k] - top) / sum;
        delta[at + k] = (p - select(0.0, 1.0, k == label)) * scale;
    }
    record[batch.start + s] = log(sum) + top - z_label;
}

// dh = (W2^T delta) * (h > 0): four hidden units per invocation, two samples per workgroup.
@compute @workgroup_size(64)
fn hidden_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let s = wg.x * 2u + lid / H4;
    let j = lid % H4;
    if (s >= batch.size) {
        return;
    }
    var acc = vec4(0.0);
    for (var k = 0u; k < CLASSES; k++) {
        acc += params4[batch.w2 / 4u + k * H4 + j] * delta[s * CLASSES + k];
    }
    dhidden4[s * H4 + j] = select(vec4(0.0), acc, hidden4[s * H4 + j] > vec4(0.0));
}

// dW2[k][4j..4j+4] = sum over the batch of delta[s][k] h[s][4j..]: one invocation per (k, j).
@compute @workgroup_size(64)
fn output_grads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x / H4;
    let j = gid.x % H4;
    if (k >= CLASSES) {
        return;
    }
    var acc = vec4(0.0);
    for (var s = 0u; s < batch.size; s++) {
        acc += delta[s * CLASSES + k] * hidden4[s * H4 + j];
    }
    grads4[batch.w2 / 4u + k * H4 + j] = acc;
}

// dW1[4j..4j+4][4f..4f+4] = sum over the batch of dh[s][4j..] x[s][4f..]^T: a 4x4 block per
// invocation, so that each load serves four products.
@compute @workgroup_size(64)
fn hidden_grads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x / F4;
    let f = gid.x % F4;
    if (j >= H4) {
        return;
    }
    var a0 = vec4(0.0);
    var a1 = vec4(0.0);
    var a2 = vec4(0.0);
    var a3 = vec4(0.0);
    for (var s = 0u; s < batch.size; s++) {
        let d = dhidden4[s * H4 + j];
        let xv = x4[sample(s) * F4 + f];
        a0 += d.x * xv;
        a1 += d.y * xv;
        a2 += d.z * xv;
        a3 += d.w * xv;
    }
    let at = batch.w1 / 4u + 4u * j * F4 + f;
    grads4[at] = a0;
    grads4[at + F4] = a1;
    grads4[at + 2u * F4] = a2;
    grads4[at + 3u * F4] = a3;
}

// db1 (the first HIDDEN invocations) and db2 (the next CLASSES): sums over the batch.
@compute @workgroup_size(64)
fn bias_grads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    var acc = 0.0;
    if (i < HIDDEN) {
        for (var s = 0u; s < batch.size; s++) {
            acc += dhidden[s * HIDDEN + i];
        }
        grads[batch.b1 + i] = acc;
    } else if (i < HIDDEN + CLASSES) {
        let k = i - HIDDEN;
        for (var s = 0u; s < batch.size; s++) {
            acc += delta[s * CLASSES + k];
        }
        grads[batch.b2 + k] = acc;
    }
}

// The test set with the current weights: its hidden rows (as `hidden_forward`), then per
// sample 1.0 in `record` (after the train losses) where the first largest logit (torch.argmax)
// is its label's.
@compute @workgroup_size(64)
fn test_hidden_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let s = wg.y;
    let j = wg.x * 64u + lid;
    test_hidden[s * HIDDEN + j] = hidden_row(j, s * F4, true);
}

@compute @workgroup_size(64)
fn evaluate(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if (s >= batch.n_test) {
        return;
    }
    let z = logits(s, true);
    var best = 0u;
    for (var k = 1u; k < CLASSES; k++) {
        if (z[k] > z[best]) {
            best = k;
        }
    }
    record[batch.start + s] = select(0.0, 1.0, best == test_labels[s]);
}
