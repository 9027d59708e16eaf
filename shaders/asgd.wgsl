// ASGD (averaged SGD, Polyak and Juditsky 1992): torch.optim.ASGD, single-tensor path.
//
// The update at step t (from 1), as PyTorch computes it, with lr_t the lr of step t:
//   eta_1 = lr_1,  mu_1 = 1                              (set at the tensor's first step)
//   g     = -grad if maximize else grad
//   g     = g + weight_decay * p
//   p     = p * (1 - lambd * eta_t) - eta_t * g
//   ax    = p if mu_t == 1 else ax + mu_t * (p - ax)    (the average, kept as state only)
//   eta_t+1 = lr_t / (1 + lambd * lr_t * t)^alpha       (for the next step: eta lags the lr)
//   mu_t+1  = 1 / max(1, t - t0)
// eta and mu are carried from step to step on the host (src/algorithm/asgd.rs), as u.eta and u.mu.
//
// `update` takes four elements of the gradient and of `x` (the parameter and each state array,
// `struct Values`) and returns their new values; `u` holds the per-step scalars. The crate
// composes the rest from the declaration in src/algorithm/asgd.rs (`wgpu-optim shader asgd`
// prints the whole module). Mirrored line by line by src/cpu/asgd.rs.

fn update(grad: vec4<f32>, x: Values) -> Values {
    var g = grad;
    if (MAXIMIZE) {
        g = -g;
    }
    var p = x.param;
    if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    p = p * u.decay;
    p = p - u.eta * g;
    var ax = p;
    if (u.mu != 1.0) {
        ax = x.ax + (p - x.ax) * u.mu;
    }
    return Values(p, ax);
}
