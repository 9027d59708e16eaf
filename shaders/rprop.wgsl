// Rprop (resilient backpropagation, Riedmiller and Braun 1993): torch.optim.Rprop, single-tensor path.
//
// The update at step t (from 1), as PyTorch computes it:
//   size = lr_1                                                     at t = 1 (prev = 0)
//   g    = -grad if maximize else grad
//   f    = etaplus if g * prev > 0, etaminus if g * prev < 0, else 1
//   size = clamp(size * f, step_size_min, step_size_max)
//   g    = 0 where f == etaminus                                    (the sign flipped: rest)
//   p    = p - sign(g) * size
//   prev = g
//
// `update` takes four elements of the gradient and of `x` (the parameter and each state array,
// `struct Values`) and returns their new values; `u` holds the per-step scalars. The crate
// composes the rest from the declaration in src/algorithm/rprop.rs (`wgpu-optim shader rprop`
// prints the whole module). Mirrored line by line by src/cpu/rprop.rs.

fn update(grad: vec4<f32>, x: Values) -> Values {
    var g = grad;
    if (MAXIMIZE) {
        g = -g;
    }
    // The first step fills the step sizes with that step's lr (PyTorch's state initialisation).
    var size = x.step_size;
    if (FIRST_STEP) {
        size = vec4(u.lr);
    }
    let product = g * x.prev;
    // etaplus where the sign held, etaminus where it flipped, 1 where either is zero.
    let factor = select(select(vec4(1.0), vec4(u.etaminus), product < vec4(0.0)), vec4(u.etaplus), product > vec4(0.0));
    size = clamp(size * factor, vec4(u.step_size_min), vec4(u.step_size_max));
    // Where the sign flipped, the element rests this step and forgets its gradient.
    g = select(g, vec4(0.0), factor == vec4(u.etaminus));
    return Values(x.param - sign(g) * size, g, size);
}
