//! f64 mirror of `update` in `shaders/adagrad.wgsl`, line by line (one element where the shader has four).

use crate::algorithm::{AdaGradConfig, AdaGradScalars, CpuReference, StepInput};

/// One AdaGrad step over every element.
pub fn step(u: &AdaGradScalars, param: &mut [f64], grad: &[f64], sum: &mut [f64]) {
    for i in 0..param.len() {
        let mut g = grad[i];
        if u.maximize {
            g = -g;
        }
        let p = param[i];
        if u.weight_decay != 0.0 {
            g += u.weight_decay * p;
        }
        let s = sum[i] + g * g;
        sum[i] = s;
        let denom = s.sqrt() + u.eps;
        param[i] = p - u.clr * (g / denom);
    }
}

impl CpuReference for AdaGradConfig {
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        let [sum] = state else { unreachable!("adagrad has one state array") };
        step(&AdaGradScalars::new(self, input), param, grad, sum);
    }
}
