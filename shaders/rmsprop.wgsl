// RMSProp, plain, centered and with momentum: torch.optim.RMSprop, single-tensor path.
//
// The update at step t (from 1), as PyTorch computes it:
//   g    = -grad if maximize else grad
//   g    = g + weight_decay * p
//   sq   = alpha * sq + (1 - alpha) * g^2
//   ga   = ga + (1 - alpha) * (g - ga)           if centered
//   avg  = sqrt(sq - ga^2) if centered else sqrt(sq)
//   avg  = avg + eps
//   buf  = momentum * buf + g / avg;  p = p - lr * buf      if momentum > 0
//   p    = p - lr * g / avg                                  otherwise
//
// `update` takes four elements of the gradient and of `x` (the parameter and each state array,
// `struct Values`) and returns their new values; `u` holds the per-step scalars. The crate
// composes the rest from the declaration in src/algorithm/rmsprop.rs (`wgpu-optim shader rmsprop`
// prints the whole module). Mirrored line by line by src/cpu/rmsprop.rs.

fn update(grad: vec4<f32>, x: Values) -> Values {
    var g = grad;
    if (MAXIMIZE) {
        g = -g;
    }
    let p = x.param;
    if (WEIGHT_DECAY) {
        g = g + u.weight_decay * p;
    }
    let sq = u.alpha * x.square_avg + u.one_minus_alpha * g * g;
    var ga = x.grad_avg;
    var avg: vec4<f32>;
    if (CENTERED) {
        ga = ga + u.one_minus_alpha * (g - ga);
        avg = sqrt(sq - ga * ga);
    } else {
        avg = sqrt(sq);
    }
    avg = avg + u.eps;
    var buf = x.momentum_buffer;
    var next: vec4<f32>;
    if (MOMENTUM) {
        buf = u.momentum * buf + g / avg;
        next = p - u.lr * buf;
    } else {
        next = p - u.lr * (g / avg);
    }
    return Values(next, sq, ga, buf);
}
