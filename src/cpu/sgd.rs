//! f64 mirror of `update` in `shaders/sgd.wgsl`, line by line (one element where the shader has four).

use crate::algorithm::{CpuReference, SgdConfig, SgdScalars, StepInput};

/// One SGD step over every element. `momentum_buffer` is empty unless `u.has_momentum`.
pub fn step(u: &SgdScalars, param: &mut [f64], grad: &[f64], momentum_buffer: &mut [f64]) {
    for i in 0..param.len() {
        let mut g = grad[i];
        if u.maximize {
            g = -g;
        }
        let p = param[i];
        if u.weight_decay != 0.0 {
            g += u.weight_decay * p;
        }
        if u.has_momentum {
            let mut buf = g;
            if !u.first_step {
                buf = u.momentum * momentum_buffer[i] + u.one_minus_dampening * g;
            }
            momentum_buffer[i] = buf;
            if u.nesterov {
                g += u.momentum * buf;
            } else {
                g = buf;
            }
        }
        param[i] = p - u.lr * g;
    }
}

impl CpuReference for SgdConfig {
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        let [momentum_buffer] = state else { unreachable!("sgd has one state array") };
        step(&SgdScalars::new(self, input), param, grad, momentum_buffer);
    }
}
