// NAdam (Adam with Nesterov momentum, Dozat 2016): torch.optim.NAdam, single-tensor path.
//
// The update at step t (from 1), as PyTorch computes it, with beta1 this step's (cycled or not):
//   g      = -grad if maximize else grad
//   p      = p * (1 - lr * weight_decay)     if decoupled_weight_decay
//   g      = g + weight_decay * p            otherwise
//   mu     = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))
//   mu'    = beta1 * (1 - 0.5 * 0.96^((t + 1) * momentum_decay))
//   prod_t = prod_t-1 * mu                   (prod_0 = 1; carried on the host: PyTorch's mu_product)
//   m      = m + (1 - beta1) * (g - m)
//   v      = beta2 * v + (1 - beta2) * g^2
//   d      = sqrt(v / (1 - beta2^t)) + eps
//   p      = p - lr * (1 - mu) / (1 - prod_t) * g / d
//              - lr * mu' / (1 - prod_t * mu') * m / d
//
// `update` takes four elements of the gradient and of `x` (the parameter and each state array,
// `struct Values`) and returns their new values; `u` holds the per-step scalars. The crate
// composes the rest from the declaration in src/algorithm/nadam.rs (`wgpu-optim shader nadam`
// prints the whole module). Mirrored line by line by src/cpu/nadam.rs.

fn update(grad: vec4<f32>, x: Values) -> Values {
    var g = grad;
    if (MAXIMIZE) {
        g = -g;
    }
    var p = x.param;
    if (DECOUPLED) {
        p = p * u.weight_decay;
    } else if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    let m = x.exp_avg + u.one_minus_beta1 * (g - x.exp_avg);
    let v = u.beta2 * x.exp_avg_sq + u.one_minus_beta2 * g * g;
    let denom = sqrt(v / u.bias_correction2) + u.eps;
    return Values(p - u.grad_coef * (g / denom) - u.avg_coef * (m / denom), m, v);
}
