// Adam's scalars at the device's own step count t, from the host's at its count t_host: with loss
// scaling, steps skipped for non-finite gradients do not count (PyTorch's fused Adam takes its
// step count back), and only the device knows how many there were.
//   step_size             = lr / (1 - beta1^t)  = s.step_size * (1 - beta1^t_host) / (1 - beta1^t)
//   bias_correction2_sqrt = sqrt(1 - beta2^t)
fn at_step(s: Step, t: f32, t_host: f32) -> Step {
    var r = s;
    let beta1_host = one_minus_pow(s.one_minus_beta1, t_host);
    r.step_size = s.step_size * (beta1_host / one_minus_pow(s.one_minus_beta1, t));
    r.bias_correction2_sqrt = sqrt(one_minus_pow(s.one_minus_beta2, t));
    return r;
}
