//! f64 mirror of `update` in `shaders/adamax.wgsl`, line by line (one element where the shader has four).

use crate::algorithm::{AdamaxConfig, AdamaxScalars, CpuReference, StepInput};

/// One Adamax step over every element.
pub fn step(u: &AdamaxScalars, param: &mut [f64], grad: &[f64], exp_avg: &mut [f64], exp_inf: &mut [f64]) {
    for i in 0..param.len() {
        let mut g = grad[i];
        if u.maximize {
            g = -g;
        }
        let p = param[i];
        if u.weight_decay != 0.0 {
            g += u.weight_decay * p;
        }
        let m = exp_avg[i] + u.one_minus_beta1 * (g - exp_avg[i]);
        exp_avg[i] = m;
        let norm = (u.beta2 * exp_inf[i]).max(g.abs() + u.eps);
        exp_inf[i] = norm;
        param[i] = p - u.clr * (m / norm);
    }
}

impl CpuReference for AdamaxConfig {
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        let [exp_avg, exp_inf] = state else { unreachable!("adamax has two state arrays") };
        step(&AdamaxScalars::new(self, input), param, grad, exp_avg, exp_inf);
    }
}
