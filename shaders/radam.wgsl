// RAdam (rectified Adam, Liu et al. 2019): torch.optim.RAdam, single-tensor path.
//
// The update at step t (from 1), as PyTorch computes it:
//   g       = -grad if maximize else grad
//   p       = p * (1 - lr * weight_decay)     if decoupled_weight_decay
//   g       = g + weight_decay * p            otherwise
//   m       = m + (1 - beta1) * (g - m)
//   v       = beta2 * v + (1 - beta2) * g^2
//   rho_inf = 2 / (1 - beta2) - 1
//   rho_t   = rho_inf - 2 t beta2^t / (1 - beta2^t)
//   r       = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
//   p       = p - lr * m / (1 - beta1^t) * r * sqrt(1 - beta2^t) / (sqrt(v) + eps)   if rho_t > 5
//   p       = p - lr * m / (1 - beta1^t)                                               otherwise
//
// `update` takes four elements of the gradient and of `x` (the parameter and each state array,
// `struct Values`) and returns their new values; `u` holds the per-step scalars. The crate
// composes the rest from the declaration in src/algorithm/radam.rs (`wgpu-optim shader radam`
// prints the whole module). Mirrored line by line by src/cpu/radam.rs.

fn update(grad: vec4<f32>, x: Values) -> Values {
    var g = grad;
    if (MAXIMIZE) {
        g = -g;
    }
    let p = x.param * u.decay;
    if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    let m = x.exp_avg + u.one_minus_beta1 * (g - x.exp_avg);
    let v = u.beta2 * x.exp_avg_sq + u.one_minus_beta2 * g * g;
    var next = p - u.step_size * m;
    if (RECTIFIED) {
        // eps before the bias correction, as PyTorch's RAdam (unlike Adam).
        let adaptive = u.bias_correction2_sqrt / (sqrt(v) + u.eps);
        next = p - u.step_size * m * adaptive;
    }
    return Values(next, m, v);
}
