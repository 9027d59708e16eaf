// Adamax (Adam with the infinity norm): torch.optim.Adamax, single-tensor path.
//
// The update at step t (from 1), as PyTorch computes it:
//   g   = -grad if maximize else grad
//   g   = g + weight_decay * p
//   m   = m + (1 - beta1) * (g - m)
//   u   = max(beta2 * u, |g| + eps)
//   p   = p - lr / (1 - beta1^t) * m / u
//
// `update` takes four elements of the gradient and of `x` (the parameter and each state array,
// `struct Values`) and returns their new values; `u` holds the per-step scalars. The crate
// composes the rest from the declaration in src/algorithm/adamax.rs (`wgpu-optim shader adamax`
// prints the whole module). Mirrored line by line by src/cpu/adamax.rs.

fn update(grad: vec4<f32>, x: Values) -> Values {
    var g = grad;
    if (MAXIMIZE) {
        g = -g;
    }
    let p = x.param;
    if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    let m = x.exp_avg + u.one_minus_beta1 * (g - x.exp_avg);
    // eps goes inside the max, as PyTorch's `amax(cat([beta2 * u, |g| + eps]))`.
    let norm = max(u.beta2 * x.exp_inf, abs(g) + u.eps);
    return Values(p - u.clr * (m / norm), m, norm);
}
