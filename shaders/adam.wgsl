// Adam and AdamW: torch.optim.Adam / AdamW, single-tensor path.
//
// The update at step t (from 1), as PyTorch computes it:
//   g      = -grad if maximize else grad
//   p      = p * (1 - lr * weight_decay)          if decoupled_weight_decay
//   g      = g + weight_decay * p                 otherwise
//   m      = m + (1 - beta1) * (g - m)
//   v      = beta2 * v + (1 - beta2) * g^2
//   v_max  = max(v_max, v)                        if amsgrad (of the raw v), and v_hat = v_max
//   p      = p - lr / (1 - beta1^t) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
//
// `update` takes four elements of the gradient and of `x` (the parameter and each state array,
// `struct Values`) and returns their new values; `u` holds the per-step scalars. The crate
// composes the rest from the declaration in src/algorithm/adam.rs (`wgpu-optim shader adam`
// prints the whole module). Mirrored line by line by src/cpu/adam.rs.

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
