//! Storage formats are a parameter of the composition: a kernel runs unchanged on arrays stored
//! in another format. Shown with the test-only format `ScaledF32` (values stored divided by a
//! power of two): every load multiplies back and every store divides, both exactly, so each
//! kernel on scaled parameters, gradients and state must match the plain f32 run bit for bit.

mod common;

use common::{buffer, gpu, Rng};
use wgpu_optim::kernel::{Format, Storage};
use wgpu_optim::readback::read_f32;
use wgpu_optim::*;

const STEPS: usize = 4;
/// Past one four-wide run, with a remainder, so that `main4` and `main` both run.
const N: usize = 1031;

/// `log2` of the scale each role's values are stored at.
const PARAM: i8 = 3;
const GRAD: i8 = -2;
const STATE: i8 = 5;

fn scaled(values: &[f32], log2: i8) -> Vec<f32> {
    values.iter().map(|v| v / 2f32.powi(log2.into())).collect()
}

/// Runs `config` for a few steps on f32 storage and on the scaled storage, and returns the
/// parameters (scaled ones read back to values) and every used state array of both runs.
fn run(ctx: &GpuContext, config: &OptimizerConfig, seed: u64) -> [Vec<Vec<f32>>; 2] {
    let mut rng = Rng::new(seed);
    let init = rng.vector(N);
    let grads: Vec<Vec<f32>> = (0..STEPS).map(|_| rng.vector(N)).collect();
    let storages = [
        (Storage::F32, 0, 0, 0),
        (
            Storage {
                param: Format::ScaledF32 { log2_scale: PARAM },
                grad: Format::ScaledF32 { log2_scale: GRAD },
                state: Format::ScaledF32 { log2_scale: STATE },
                ..Storage::F32
            },
            PARAM,
            GRAD,
            STATE,
        ),
    ];
    storages.map(|(storage, p_log2, g_log2, s_log2)| {
        let mut opt = Optimizer::with_storage(ctx, config.clone(), storage).unwrap();
        let param = buffer(ctx, &scaled(&init, p_log2));
        let grad = buffer(ctx, &vec![0.0; N]);
        opt.add_params(opt.default_group(), &[ParamBinding::whole(&param, &grad, N as u64)]).unwrap();
        for g in &grads {
            ctx.queue.write_buffer(&grad, 0, bytemuck::cast_slice(&scaled(g, g_log2)));
            opt.step().unwrap();
        }
        let unscale = |v: Vec<f32>, log2: i8| v.into_iter().map(|x| x * 2f32.powi(log2.into())).collect::<Vec<_>>();
        let mut out = vec![unscale(read_f32(ctx, &param, 0, N as u64).unwrap(), p_log2)];
        for name in opt.state_names() {
            if let Some(state) = opt.read_state(0, name).unwrap() {
                out.push(unscale(state, s_log2));
            }
        }
        out
    })
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn every_kernel_runs_unchanged_on_another_storage_format() {
    let ctx = gpu();
    for (seed, (name, config)) in OptimizerConfig::cases().iter().enumerate() {
        let [plain, scaled] = run(&ctx, config, seed as u64);
        assert_eq!(plain.len(), scaled.len(), "{name}");
        for (k, (a, b)) in plain.iter().zip(&scaled).enumerate() {
            let differ = a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits());
            assert!(
                differ.is_none(),
                "{name}: array {k} differs at element {:?}: {:?} (f32) vs {:?} (scaled)",
                differ,
                differ.map(|i| a[i]),
                differ.map(|i| b[i])
            );
        }
    }
}

#[test]
fn the_scaled_format_is_test_only_and_f32_is_the_default() {
    assert_eq!(Storage::default(), Storage::F32);
    assert_eq!(Storage::supported()[0], Storage::F32);
    assert!(Storage::supported()
        .iter()
        .all(|s| ![s.param, s.grad, s.state].iter().any(|f| matches!(f, Format::ScaledF32 { .. }))));
    assert_eq!(Storage::from_name("f32-f32-f32"), Some(Storage::F32));
    assert_eq!(Storage::from_name("f32-f32x0.25-f32").map(|s| s.grad), Some(Format::ScaledF32 { log2_scale: -2 }));
    assert_eq!(Storage::from_name("f16-f32-f32").map(|s| s.param), Some(Format::F16));
    assert_eq!(Storage::from_name("bf16-bf16-f32-master").map(|s| s.master), Some(true));
    // A master copy of an f32 parameter, f16 state: not storages the optimizer runs.
    assert_eq!(Storage::from_name("f32-f32-f32-master"), None);
    assert_eq!(Storage::from_name("f32-f32-f16"), None);
    assert_eq!(Storage::from_name("f64-f32-f32"), None);
}
