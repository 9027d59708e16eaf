//! f64 mirror of `update` in `shaders/adam.wgsl`, line by line (one element where the shader has four).

use crate::optim::AdamScalars;

/// One Adam step over every element. `max_exp_avg_sq` is empty unless `u.amsgrad`.
pub fn step(
    u: &AdamScalars,
    param: &mut [f64],
    grad: &[f64],
    exp_avg: &mut [f64],
    exp_avg_sq: &mut [f64],
    max_exp_avg_sq: &mut [f64],
) {
    for i in 0..param.len() {
        let mut g = grad[i];
        if u.maximize {
            g = -g;
        }
        let p = param[i] * u.decay;
        if u.weight_decay != 0.0 {
            g += u.weight_decay * p;
        }
        let m0 = exp_avg[i];
        let m = m0 + u.one_minus_beta1 * (g - m0);
        let v = u.beta2 * exp_avg_sq[i] + u.one_minus_beta2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        let mut v_hat = v;
        if u.amsgrad {
            v_hat = max_exp_avg_sq[i].max(v);
            max_exp_avg_sq[i] = v_hat;
        }
        let denom = v_hat.sqrt() / u.bias_correction2_sqrt + u.eps;
        param[i] = p - u.step_size * (m / denom);
    }
}
