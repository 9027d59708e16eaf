// SGD with momentum, dampening and Nesterov: torch.optim.SGD, single-tensor path.
//
// The update at step t (from 1), as PyTorch computes it:
//   g   = -grad if maximize else grad
//   g   = g + weight_decay * p
//   buf = g                                        at t = 1 (no dampening)
//   buf = momentum * buf + (1 - dampening) * g     at t > 1     } only if momentum != 0
//   g   = g + momentum * buf if nesterov else buf               }
//   p   = p - lr * g
//
// `update` takes four elements of the gradient and of `x` (the parameter and each state array,
// `struct Values`) and returns their new values; `u` holds the per-step scalars. The crate
// composes the rest from the declaration in src/algorithm/sgd.rs (`wgpu-optim shader sgd`
// prints the whole module). Mirrored line by line by src/cpu/sgd.rs.

fn update(grad: vec4<f32>, x: Values) -> Values {
    var g = grad;
    if (MAXIMIZE) {
        g = -g;
    }
    let p = x.param;
    if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    var buf = x.momentum_buffer;
    if (MOMENTUM) {
        // The first step takes the gradient itself, without dampening (PyTorch).
        if (FIRST_STEP) {
            buf = g;
        } else {
            buf = u.momentum * buf + u.one_minus_dampening * g;
        }
        if (NESTEROV) {
            g = g + u.momentum * buf;
        } else {
            g = buf;
        }
    }
    return Values(p - u.lr * g, buf);
}
