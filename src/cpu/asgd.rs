//! f64 mirror of `update` in `shaders/asgd.wgsl`, line by line (one element where the shader has four).

use crate::algorithm::{AsgdConfig, AsgdScalars, CpuReference, StepInput};

/// One ASGD step over every element.
pub fn step(u: &AsgdScalars, param: &mut [f64], grad: &[f64], ax: &mut [f64]) {
    for i in 0..param.len() {
        let mut g = grad[i];
        if u.maximize {
            g = -g;
        }
        let mut p = param[i];
        if u.weight_decay != 0.0 {
            g += u.weight_decay * p;
        }
        p *= u.decay;
        p -= u.eta * g;
        param[i] = p;
        if u.mu != 1.0 {
            ax[i] += (p - ax[i]) * u.mu;
        } else {
            ax[i] = p;
        }
    }
}

impl CpuReference for AsgdConfig {
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        let [ax] = state else { unreachable!("asgd has one state array") };
        step(&AsgdScalars::new(self, input), param, grad, ax);
    }
}
