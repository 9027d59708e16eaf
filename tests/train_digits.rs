//! The MLP of `examples/train_digits` trained on the adapter: a short run learns (its loss falls,
//! its test accuracy ends far above chance), and the GPU's steps (forward, backward and AdamW)
//! follow the same steps computed on the host in f64 with the CPU reference optimizer.

#[path = "../examples/train_digits/data.rs"]
mod data;
#[path = "../examples/train_digits/model.rs"]
mod model;
#[path = "../examples/train_digits/train.rs"]
mod train;

mod common;

use data::{Digits, CLASSES, FEATURES};
use model::{Mlp, HIDDEN};
use wgpu_optim::cpu::CpuOptimizer;
use wgpu_optim::{Optimizer, OptimizerConfig};

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_short_run_learns_the_digits() {
    let ctx = common::gpu();
    let digits = Digits::load().unwrap();
    let model = Mlp::new(&ctx, &digits, 32).unwrap();
    let epochs = 4;
    let total = (epochs * model.batches()) as u64;
    let spec = train::RunSpec {
        optimizer: train::optimizer_preset("AdamW", None).unwrap(),
        schedule: train::schedule_preset("warmup-cosine", 3e-3, total, model.batches() as u64).unwrap(),
        epochs,
        seed: 1,
    };
    let record = train::train(&ctx, &model, &spec, |_, _| {}).unwrap();
    assert_eq!(record.len(), epochs);
    let (first, last) = (record[0], record[epochs - 1]);
    assert!(
        last.train_loss < 0.5 * first.train_loss,
        "the loss fell from {} to only {}",
        first.train_loss,
        last.train_loss
    );
    // Chance is 10%; a few epochs of AdamW reach well above 90% here.
    assert!(last.test_accuracy > 90.0, "test accuracy {}% after {epochs} epochs", last.test_accuracy);
    // The schedule drove the rate: past its warm-up near the peak, at the end near zero.
    assert!(first.lr > 2e-3 && last.lr < 1e-4, "lr {} after the first epoch, {} at the end", first.lr, last.lr);
}

/// The host's f64 forward and backward of one mini-batch (the samples `rows`): the gradients of
/// the mean cross-entropy, in the arena's four tensors, as `mlp.wgsl` defines them.
fn cpu_grads(params: &[Vec<f64>; 4], digits: &Digits, rows: &[usize]) -> [Vec<f64>; 4] {
    let [w1, b1, w2, b2] = params;
    let mut g: [Vec<f64>; 4] = [0, 1, 2, 3].map(|t| vec![0.0; model::LENS[t]]);
    let n = rows.len() as f64;
    for &row in rows {
        let x: Vec<f64> = digits.train_x[row * FEATURES..][..FEATURES].iter().map(|&v| f64::from(v)).collect();
        let h: Vec<f64> = (0..HIDDEN)
            .map(|j| (b1[j] + (0..FEATURES).map(|i| w1[j * FEATURES + i] * x[i]).sum::<f64>()).max(0.0))
            .collect();
        let z: Vec<f64> =
            (0..CLASSES).map(|k| b2[k] + (0..HIDDEN).map(|j| w2[k * HIDDEN + j] * h[j]).sum::<f64>()).collect();
        let top = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|v| (v - top).exp()).sum();
        let label = digits.train_y[row] as usize;
        let delta: Vec<f64> =
            (0..CLASSES).map(|k| ((z[k] - top).exp() / sum - if k == label { 1.0 } else { 0.0 }) / n).collect();
        for k in 0..CLASSES {
            g[3][k] += delta[k];
            for j in 0..HIDDEN {
                g[2][k * HIDDEN + j] += delta[k] * h[j];
            }
        }
        for j in 0..HIDDEN {
            if h[j] <= 0.0 {
                continue;
            }
            let dh: f64 = (0..CLASSES).map(|k| w2[k * HIDDEN + j] * delta[k]).sum();
            g[1][j] += dh;
            for i in 0..FEATURES {
                g[0][j * FEATURES + i] += dh * x[i];
            }
        }
    }
    g
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn gpu_training_steps_match_the_cpu_reference() {
    let ctx = common::gpu();
    let digits = Digits::load().unwrap();
    let batch = 32;
    let model = Mlp::new(&ctx, &digits, batch).unwrap();
    let init = Mlp::initial_params(5);
    model.write_params(&ctx, &init).unwrap();
    // The samples in file order, so that batch b is rows b*32.. on both sides.
    let order: Vec<u32> = (0..data::TRAIN as u32).collect();
    model.set_order(&ctx, &order).unwrap();

    let config = OptimizerConfig::from_json(&train::optimizer_preset("AdamW", Some(3e-3)).unwrap()).unwrap();
    let mut opt = Optimizer::new(&ctx, config.clone()).unwrap();
    opt.add_params(opt.default_group(), &model.arena().bindings()).unwrap();
    let mut cpu: Vec<CpuOptimizer> = init
        .iter()
        .map(|p| CpuOptimizer::new(config.clone(), p.iter().map(|&v| f64::from(v)).collect()).unwrap())
        .collect();

    let steps = 12;
    let mut worst_grad = 0.0f64;
    for b in 0..steps {
        let rows: Vec<usize> = (b * batch..(b + 1) * batch).collect();
        let params: [Vec<f64>; 4] = [0, 1, 2, 3].map(|t| cpu[t].param().to_vec());
        let expected = cpu_grads(&params, &digits, &rows);

        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        model.record_batch(&mut encoder, b);
        ctx.queue.submit([encoder.finish()]);
        let grads = model.read_grads(&ctx).unwrap();
        // The GPU's f32 gradients against the host's f64 ones at the host's parameters (which
        // the GPU's follow to f32 precision): relative to the largest gradient of the tensor.
        for t in 0..4 {
            let scale = expected[t].iter().fold(1e-12f64, |m, v| m.max(v.abs()));
            for (ours, reference) in grads[t].iter().zip(&expected[t]) {
                worst_grad = worst_grad.max((f64::from(*ours) - reference).abs() / scale);
            }
        }
        opt.step().unwrap();
        for (t, c) in cpu.iter_mut().enumerate() {
            c.step(&expected[t]).unwrap();
        }
    }
    assert!(worst_grad < 1e-4, "GPU gradients differ from the host's by {worst_grad} of the largest");

    // After 12 AdamW steps at lr 3e-3 each parameter moved by up to ~0.036; the two runs, one in
    // f32 and one in f64, agree to a small fraction of one step's size.
    let params = model.read_params(&ctx).unwrap();
    let mut worst = 0.0f64;
    for t in 0..4 {
        for (ours, reference) in params[t].iter().zip(cpu[t].param()) {
            worst = worst.max((f64::from(*ours) - reference).abs());
        }
    }
    assert!(worst < 3e-4, "after {steps} steps the GPU's parameters differ from the CPU reference by {worst}");
    assert_eq!(opt.steps(), steps as u64);
}
