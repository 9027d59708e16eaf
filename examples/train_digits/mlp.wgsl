// A 64 -> 128 -> 10 MLP (ReLU, softmax cross-entropy) on 8x8 digits: the forward and backward
// passes of examples/train_digits, one mini-batch per set of dispatches, so that a whole epoch
// (every batch's forward, backward and optimizer update) is one submission.
//
// The grids put the sample (or the output row) in the workgroup id, so that what depends only on
// it is the same for every invocation of the workgroup (one load for all), and the hidden unit
// or feature in the invocation, so that neighbours read neighbouring memory.
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

// One mini-batch (a slot of a dynamic-offset uniform: one per batch of the epoch).
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

@group(0) @binding(0) var<storage, read> batch: Batch;
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

@compute @workgroup_size(64)
fn hidden_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let s = wg.y;
    let j = wg.x * 64u + lid;
    hidden[s * HIDDEN + j] = hidden_row(j, sample(s) * F4, false);
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

// Softmax, the loss and d loss / d logits: one invocation per sample.
@compute @workgroup_size(64)
fn output_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if (s >= batch.size) {
        return;
    }
    let z = logits(s, false);
    var top = z[0];
    for (var k = 1u; k < CLASSES; k++) {
        top = max(top, z[k]);
    }
    // Shifted by the largest logit, so that exp cannot overflow.
    var sum = 0.0;
    for (var k = 0u; k < CLASSES; k++) {
        sum += exp(z[k] - top);
    }
    let label = labels[sample(s)];
    let scale = 1.0 / f32(batch.size);
    for (var k = 0u; k < CLASSES; k++) {
        let p = exp(z[k] - top) / sum;
        delta[s * CLASSES + k] = (p - select(0.0, 1.0, k == label)) * scale;
    }
    record[batch.start + s] = log(sum) + top - z[label];
}

// dh = (W2^T delta) * (h > 0): hidden unit j = lane, sample = workgroup y.
@compute @workgroup_size(64)
fn hidden_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let s = wg.y;
    let j = wg.x * 64u + lid;
    var acc = 0.0;
    for (var k = 0u; k < CLASSES; k++) {
        acc += param(batch.w2 + k * HIDDEN + j) * delta[s * CLASSES + k];
    }
    dhidden[s * HIDDEN + j] = select(0.0, acc, hidden[s * HIDDEN + j] > 0.0);
}

// dW2[k][j] = sum over the batch of delta[s][k] h[s][j]: j = lane, k = workgroup y.
@compute @workgroup_size(64)
fn output_grads(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k = wg.y;
    let j = wg.x * 64u + lid;
    var acc = 0.0;
    for (var s = 0u; s < batch.size; s++) {
        acc += delta[s * CLASSES + k] * hidden[s * HIDDEN + j];
    }
    grads[batch.w2 + k * HIDDEN + j] = acc;
}

// dW1[j][4f..4f+4] = sum over the batch of dh[s][j] x[s][4f..]: 16 lanes per hidden unit, four
// hidden units per workgroup.
@compute @workgroup_size(64)
fn hidden_grads(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = wg.x * 4u + lid / F4;
    let f = lid % F4;
    var acc = vec4(0.0);
    for (var s = 0u; s < batch.size; s++) {
        acc += dhidden[s * HIDDEN + j] * x4[sample(s) * F4 + f];
    }
    grads4[batch.w1 / 4u + j * F4 + f] = acc;
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
