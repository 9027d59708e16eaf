//! f64 mirror of `update` in `shaders/radam.wgsl`, line by line (one element where the shader has four).

use crate::algorithm::{CpuReference, RAdamConfig, RAdamScalars, StepInput};

/// One RAdam step over every element.
pub fn step(u: &RAdamScalars, param: &mut [f64], grad: &[f64], exp_avg: &mut [f64], exp_avg_sq: &mut [f64]) {
    for i in 0..param.len() {
        let mut g = grad[i];
        if u.maximize {
            g = -g;
        }
        let p = param[i] * u.decay;
        if u.weight_decay != 0.0 {
            g += u.weight_decay * p;
        }
        let m = exp_avg[i] + u.one_minus_beta1 * (g - exp_avg[i]);
        let v = u.beta2 * exp_avg_sq[i] + u.one_minus_beta2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        if u.rectified {
            let adaptive = u.bias_correction2_sqrt / (v.sqrt() + u.eps);
            param[i] = p - u.step_size * m * adaptive;
        } else {
            param[i] = p - u.step_size * m;
        }
    }
}

impl CpuReference for RAdamConfig {
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        let [exp_avg, exp_avg_sq] = state else { unreachable!("radam has two state arrays") };
        step(&RAdamScalars::new(self, input), param, grad, exp_avg, exp_avg_sq);
    }
}
