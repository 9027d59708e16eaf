// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), as lion-pytorch 0.2.5
// computes it (optax's `lion` agrees).
//
// The update at step t:
//   p = p * (1 - lr * weight_decay)                 (this step's lr)
//   c = beta1 * m + (1 - beta1) * g
//   p = p - lr * sign(c)                            (sign(0) = 0)
//   m = beta2 * m + (1 - beta2) * g
//
// `update` takes four elements of the gradient and of `x` (the parameter and each state array,
// `struct Values`) and returns their new values; `u` holds the per-step scalars. The crate
// composes the rest from the declaration in src/algorithm/lion.rs (`wgpu-optim shader lion`
// prints the whole module). Mirrored line by line by src/cpu/lion.rs.

fn update(grad: vec4<f32>, x: Values) -> Values {
    let p = x.param * u.decay;
    // The interpolation the sign is taken of, in lion-pytorch's order: m * beta1, then + g * (1 - beta1).
    let c = x.exp_avg * u.beta1 + grad * u.one_minus_beta1;
    // WGSL's sign(0) is 0, as torch.sign's.
    let next = p - u.lr * sign(c);
    let m = x.exp_avg * u.beta2 + grad * u.one_minus_beta2;
    return Values(next, m);
}
