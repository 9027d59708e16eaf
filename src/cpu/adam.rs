//! f64 mirror of `update` in `shaders/adam.wgsl`, line by line (one element where the shader has four).

use crate::algorithm::{AdamConfig, AdamScalars, AdamWConfig, CpuReference, StepInput};

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

impl CpuReference for AdamConfig {
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        let [exp_avg, exp_avg_sq, max_exp_avg_sq] = state else { unreachable!("adam has three state arrays") };
        step(&AdamScalars::new(self, input), param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq);
    }
}

impl CpuReference for AdamWConfig {
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        self.as_adam().cpu_step(input, param, grad, state)
    }
}
