//! f64 mirror of `update` in `shaders/lion.wgsl`, line by line (one element where the shader has four).

use crate::algorithm::{CpuReference, LionConfig, LionScalars, StepInput};

/// WGSL's and torch's `sign`: 0 at 0 (`f64::signum` gives 1 there).
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x // 0, -0 or NaN
    }
}

/// One Lion step over every element.
pub fn step(u: &LionScalars, param: &mut [f64], grad: &[f64], exp_avg: &mut [f64]) {
    for i in 0..param.len() {
        let p = param[i] * u.decay;
        let c = exp_avg[i] * u.beta1 + grad[i] * u.one_minus_beta1;
        param[i] = p - u.lr * sign(c);
        exp_avg[i] = exp_avg[i] * u.beta2 + grad[i] * u.one_minus_beta2;
    }
}

impl CpuReference for LionConfig {
    fn cpu_step(&self, input: &StepInput, param: &mut [f64], grad: &[f64], state: &mut [Vec<f64>]) {
        let [exp_avg] = state else { unreachable!("lion has one state array") };
        step(&LionScalars::new(self, input), param, grad, exp_avg);
    }
}
