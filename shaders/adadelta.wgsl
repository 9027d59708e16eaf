// Adadelta (Zeiler, 2012): torch.optim.Adadelta, single-tensor path.
//
// The update at step t (from 1), as PyTorch computes it:
//   g     = -grad if maximize else grad
//   g     = g + weight_decay * p
//   v     = rho * v + (1 - rho) * g^2
//   delta = sqrt(acc + eps) / sqrt(v + eps) * g
//   acc   = rho * acc + (1 - rho) * delta^2
//   p     = p - lr * delta
//
// `update` takes four elements of the gradient and of `x` (the parameter and each state array,
// `struct Values`) and returns their new values; `u` holds the per-step scalars. The crate
// composes the rest from the declaration in src/algorithm/adadelta.rs (`wgpu-optim shader adadelta`
// prints the whole module). Mirrored line by line by src/cpu/adadelta.rs.

fn update(grad: vec4<f32>, x: Values) -> Values {
    var g = grad;
    if (MAXIMIZE) {
        g = -g;
    }
    let p = x.param;
    if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    let sq = u.rho * x.square_avg + u.one_minus_rho * g * g;
    let rms = sqrt(sq + u.eps);
    let delta = sqrt(x.acc_delta + u.eps) / rms * g;
    let acc = u.rho * x.acc_delta + u.one_minus_rho * delta * delta;
    return Values(p - u.lr * delta, sq, acc);
}
