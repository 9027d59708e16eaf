//! f64 mirror of `update` in `shaders/adadelta.wgsl`, line by line (one element where the shader has four).

use crate::algorithm::{AdadeltaConfig, AdadeltaScalars, CpuReference, StepInput};

/// One Adadelta step over every element.
pub fn step(u: &AdadeltaScalars, param: &mut [f64], grad: &[f64], square_avg: &mut [f64], acc_delta: &mut [f64]) {
    for i in 0..param.len() {
        let mut g = grad[i];
        if u.maximize {
            g = -g;
        }
        let p = param[i];
        if u.weight_decay != 0.0 {
            g += u.weight_decay * p;
        }
        let sq = u.rho * square_avg[i] + u.one_minus_rho * g * g;
        square_avg[i] = sq;
        let rms = (sq + u.eps).sqrt();
        let delta = (acc_delta[i] + u.eps).sqrt() / rms * g;
        acc_delta[i] = u.rho * acc_delta[i] + u.one_minus_rho * delta * delta;
        param[i] = p - u.lr * delta;
    }
}

impl CpuReference for AdadeltaConfig {
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        let [square_avg, acc_delta] = state else { unreachable!("adadelta has two state arrays") };
        step(&AdadeltaScalars::new(self, input), param, grad, square_avg, acc_delta);
    }
}
