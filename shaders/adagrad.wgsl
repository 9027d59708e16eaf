// AdaGrad: torch.optim.Adagrad, single-tensor path.
//
// The update at step t (from 1), as PyTorch computes it:
//   g   = -grad if maximize else grad
//   g   = g + weight_decay * p
//   clr = lr / (1 + (t - 1) * lr_decay)
//   sum = sum + g^2                     (sum starts at initial_accumulator_value)
//   p   = p - clr * g / (sqrt(sum) + eps)
//
// `update` takes four elements of the gradient and of `x` (the parameter and each state array,
// `struct Values`) and returns their new values; `u` holds the per-step scalars. The crate
// composes the rest from the declaration in src/algorithm/adagrad.rs (`wgpu-optim shader adagrad`
// prints the whole module). Mirrored line by line by src/cpu/adagrad.rs.

fn update(grad: vec4<f32>, x: Values) -> Values {
    var g = grad;
    if (MAXIMIZE) {
        g = -g;
    }
    let p = x.param;
    if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    let s = x.sum + g * g;
    let denom = sqrt(s) + u.eps;
    return Values(p - u.clr * (g / denom), s);
}
