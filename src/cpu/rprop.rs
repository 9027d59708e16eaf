//! f64 mirror of `update` in `shaders/rprop.wgsl`, line by line (one element where the shader has four).

use crate::algorithm::{CpuReference, RpropConfig, RpropScalars, StepInput};

/// One Rprop step over every element.
pub fn step(u: &RpropScalars, param: &mut [f64], grad: &[f64], prev: &mut [f64], step_size: &mut [f64]) {
    for i in 0..param.len() {
        let mut g = grad[i];
        if u.maximize {
            g = -g;
        }
        let mut size = step_size[i];
        if u.first_step {
            size = u.lr;
        }
        let product = g * prev[i];
        let mut factor = 1.0;
        if product > 0.0 {
            factor = u.etaplus;
        } else if product < 0.0 {
            factor = u.etaminus;
        }
        size = (size * factor).clamp(u.step_size_min, u.step_size_max);
        step_size[i] = size;
        if factor == u.etaminus {
            g = 0.0;
        }
        param[i] -= sign(g) * size;
        prev[i] = g;
    }
}

/// WGSL's `sign`: 0 at 0 (Rust's `signum` gives 1 there).
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

impl CpuReference for RpropConfig {
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        let [prev, step_size] = state else { unreachable!("rprop has two state arrays") };
        step(&RpropScalars::new(self, input), param, grad, prev, step_size);
    }
}
