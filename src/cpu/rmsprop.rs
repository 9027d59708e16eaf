//! f64 mirror of `update` in `shaders/rmsprop.wgsl`, line by line (one element where the shader has four).

use crate::algorithm::{CpuReference, RmsPropConfig, RmsPropScalars, StepInput};

/// One RMSProp step over every element. `grad_avg` is empty unless `u.centered`, and
/// `momentum_buffer` unless `u.has_momentum`.
pub fn step(
    u: &RmsPropScalars,
    param: &mut [f64],
    grad: &[f64],
    square_avg: &mut [f64],
    grad_avg: &mut [f64],
    momentum_buffer: &mut [f64],
) {
    for i in 0..param.len() {
        let mut g = grad[i];
        if u.maximize {
            g = -g;
        }
        let p = param[i];
        if u.weight_decay != 0.0 {
            g += u.weight_decay * p;
        }
        let sq = u.alpha * square_avg[i] + u.one_minus_alpha * g * g;
        square_avg[i] = sq;
        let mut avg = if u.centered {
            let ga = grad_avg[i] + u.one_minus_alpha * (g - grad_avg[i]);
            grad_avg[i] = ga;
            (sq - ga * ga).sqrt()
        } else {
            sq.sqrt()
        };
        avg += u.eps;
        if u.has_momentum {
            let buf = u.momentum * momentum_buffer[i] + g / avg;
            momentum_buffer[i] = buf;
            param[i] = p - u.lr * buf;
        } else {
            param[i] = p - u.lr * (g / avg);
        }
    }
}

impl CpuReference for RmsPropConfig {
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        let [square_avg, grad_avg, momentum_buffer] = state else { unreachable!("rmsprop has three state arrays") };
        step(&RmsPropScalars::new(self, input), param, grad, square_avg, grad_avg, momentum_buffer);
    }
}
