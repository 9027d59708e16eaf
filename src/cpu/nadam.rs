//! f64 mirror of `update` in `shaders/nadam.wgsl`, line by line (one element where the shader has four).

use crate::algorithm::{CpuReference, NAdamConfig, NAdamScalars, StepInput};

/// One NAdam step over every element.
pub fn step(u: &NAdamScalars, param: &mut [f64], grad: &[f64], exp_avg: &mut [f64], exp_avg_sq: &mut [f64]) {
    for i in 0..param.len() {
        let mut g = grad[i];
        if u.maximize {
            g = -g;
        }
        let mut p = param[i];
        if u.decoupled {
            p *= u.weight_decay;
        } else if u.weight_decay != 0.0 {
            g += u.weight_decay * p;
        }
        let m = exp_avg[i] + u.one_minus_beta1 * (g - exp_avg[i]);
        let v = u.beta2 * exp_avg_sq[i] + u.one_minus_beta2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        let denom = (v / u.bias_correction2).sqrt() + u.eps;
        param[i] = p - u.grad_coef * (g / denom) - u.avg_coef * (m / denom);
    }
}

impl CpuReference for NAdamConfig {
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        let [exp_avg, exp_avg_sq] = state else { unreachable!("nadam has two state arrays") };
        step(&NAdamScalars::new(self, input), param, grad, exp_avg, exp_avg_sq);
    }
}
