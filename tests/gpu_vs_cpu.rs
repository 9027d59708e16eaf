//! One table over every optimizer and flag combination: the GPU kernels against the f64 CPU
//! reference, on random data at awkward sizes, over 20 steps. Then the sizes that stress the
//! dispatch: 0, 1, past 65,535 workgroups, past the binding limit.

mod common;

use common::{assert_close, buffer, gpu, gpu_with, track_scale, Rng};
use wgpu_optim::cpu::CpuOptimizer;
use wgpu_optim::readback::read_f32;
use wgpu_optim::*;

const STEPS: usize = 20;

/// The tensors of one run: sizes that are no multiple of the workgroup, one element, and one empty.
const SIZES: &[usize] = &[257, 1, 4099, 0, 33];

/// Runs `config` on the GPU over `SIZES`, registered twice: packed in an arena (so they share a
/// dispatch) and at odd offsets in engine buffers of their own (so each binding starts unaligned).
/// Compares parameters after every step and state at the end with the CPU reference.
fn check(name: &str, config: &OptimizerConfig, ctx: &GpuContext, seed: u64) {
    let mut rng = Rng::new(seed);
    let lens: Vec<u64> = SIZES.iter().map(|&n| n as u64).collect();
    let arena = ParamArena::new(ctx, &lens).unwrap();
    let mut opt = Optimizer::new(ctx, config.clone()).unwrap();
    let group = opt.default_group();
    opt.add_params(group, &arena.bindings()).unwrap();
    // One run: four elements per invocation, and one more dispatch for the remainder.
    assert_eq!(opt.dispatch_count(), 2, "{name}: an arena of one group is one run");

    // The same tensors at odd offsets in engine buffers.
    let mut engine = Vec::new();
    let mut cpu = Vec::new();
    let mut inits = Vec::new();
    for (i, &n) in SIZES.iter().enumerate() {
        let init = rng.vector(n);
        arena.write_params(ctx, i, &init).unwrap();
        let offset = 3 + i;
        let mut padded = vec![7.0f32; offset + n + 2];
        padded[offset..offset + n].copy_from_slice(&init);
        let (param, grad) = (buffer(ctx, &padded), buffer(ctx, &vec![0.0; offset + n + 5]));
        let binding = ParamBinding {
            param: param.clone(),
            param_offset: offset as u64,
            grad: grad.clone(),
            grad_offset: (offset + 1) as u64,
            len: n as u64,
        };
        opt.add_params(group, &[binding]).unwrap();
        engine.push((param, grad, offset));
        cpu.push(CpuOptimizer::new(config.clone(), init.iter().map(|&x| x as f64).collect()).unwrap());
        inits.push(init);
    }

    // The scale of an element is the largest magnitude it takes, the start included.
    let mut scales: Vec<Vec<f64>> = cpu.iter().map(|c| c.param().iter().map(|x| x.abs()).collect()).collect();
    for step in 0..STEPS {
        for (i, &n) in SIZES.iter().enumerate() {
            let g = rng.vector(n);
            arena.write_grads(ctx, i, &g).unwrap();
            let (_, grad, offset) = &engine[i];
            if n > 0 {
                ctx.queue.write_buffer(grad, (*offset as u64 + 1) * 4, bytemuck::cast_slice(&g));
            }
            cpu[i].step(&g.iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
            track_scale(&mut scales[i], cpu[i].param());
        }
        opt.step().unwrap();
        for (i, &n) in SIZES.iter().enumerate() {
            let what = format!("{name}, tensor {i} (n = {n}), step {step}");
            let from_arena = read_f32(ctx, arena.params(), arena.offset(i), n as u64).unwrap();
            assert_close(&format!("{what}, arena"), &from_arena, cpu[i].param(), &scales[i]);
            let (param, _, offset) = &engine[i];
            let from_engine = read_f32(ctx, param, *offset as u64, n as u64).unwrap();
            assert_close(&format!("{what}, engine buffer"), &from_engine, cpu[i].param(), &scales[i]);
        }
    }

    // The engine buffers' padding is untouched: the kernels write only their own range.
    for (i, (param, _, offset)) in engine.iter().enumerate() {
        let all = read_f32(ctx, param, 0, param.size() / 4).unwrap();
        let n = SIZES[i];
        assert!(all[..*offset].iter().chain(&all[offset + n..]).all(|&x| x == 7.0), "{name}: padding of tensor {i}");
    }

    // State, and the parameters really moved (a kernel that did nothing would fail here).
    for (i, &n) in SIZES.iter().enumerate() {
        for state in opt.state_names() {
            let ours = opt.read_state(i, state).unwrap();
            let reference = cpu[i].state(state);
            assert_eq!(ours.is_some(), reference.is_some(), "{name}: state {state} kept on one side only");
            if let (Some(ours), Some(reference)) = (ours, reference) {
                let scale = vec![reference.iter().fold(0.0f64, |m, x| m.max(x.abs())); n];
                assert_close(&format!("{name}, tensor {i}, state {state}"), &ours, reference, &scale);
            }
        }
    }
    let moved = read_f32(ctx, arena.params(), 0, 257).unwrap();
    let changed = moved.iter().zip(&inits[0]).filter(|(a, b)| a != b).count();
    assert!(changed > 200, "{name}: only {changed} of 257 elements moved in {STEPS} steps");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn every_optimizer_and_flag_matches_the_cpu_reference() {
    let ctx = gpu();
    for (seed, (name, config)) in cases().iter().enumerate() {
        check(name, config, &ctx, seed as u64);
    }
}

/// Runs `config` on one tensor of `n` elements for `steps` steps (constant random gradient per step)
/// on the GPU and the CPU, and compares the final parameters. Returns the optimizer for more checks.
/// The tensor starts at element `offset` of both buffers: 0 runs four elements per invocation
/// (with the remainder one per invocation), an odd offset one element per invocation throughout.
fn one_tensor(
    ctx: &GpuContext,
    config: OptimizerConfig,
    n: usize,
    offset: usize,
    steps: usize,
    seed: u64,
) -> Optimizer {
    let mut rng = Rng::new(seed);
    let init = rng.vector(n);
    let mut padded = vec![0.0; offset];
    padded.extend(&init);
    let (param, grad) = (buffer(ctx, &padded), buffer(ctx, &vec![0.0; offset + n]));
    let mut opt = Optimizer::new(ctx, config.clone()).unwrap();
    let binding = ParamBinding {
        param_offset: offset as u64,
        grad_offset: offset as u64,
        ..ParamBinding::whole(&param, &grad, n as u64)
    };
    opt.add_params(opt.default_group(), &[binding]).unwrap();
    let mut cpu = CpuOptimizer::new(config, init.iter().map(|&x| x as f64).collect()).unwrap();
    let mut scale = cpu.param().iter().map(|x| x.abs()).collect();
    for _ in 0..steps {
        let g = rng.vector(n);
        ctx.queue.write_buffer(&grad, offset as u64 * 4, bytemuck::cast_slice(&g));
        opt.step().unwrap();
        cpu.step(&g.iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
        track_scale(&mut scale, cpu.param());
    }
    let ours = read_f32(ctx, &param, offset as u64, n as u64).unwrap();
    assert_close(&format!("n = {n}"), &ours, cpu.param(), &scale);
    opt
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn more_than_65535_workgroups_in_one_dimension() {
    let ctx = gpu();
    let n = 65_535 * 256 + 1;
    // At an odd offset, one element per invocation: 65,536 workgroups, past the limit of one
    // dimension. (Four-wide, this would take 256M elements; see the next test for that path.)
    let opt = one_tensor(&ctx, AdamConfig::default().into(), n, 1, 2, 1);
    assert_eq!(opt.dispatch_count(), 1, "16.7M elements fit one binding on this adapter");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_tensor_larger_than_the_binding_limit() {
    let ctx = gpu();
    let limit = ctx.limits().max_storage_buffer_binding_size;
    // 40M f32 is 160 MB, past lavapipe's 128 MiB; on adapters with more, go just past theirs.
    let n = (40_000_000u64).max(limit / 4 + 1_000);
    if n * 4 * 4 > ctx.limits().max_buffer_size.min(8 << 30) {
        panic!("this adapter's binding limit ({limit} bytes) is too large to exceed in a test");
    }
    let opt = one_tensor(&ctx, AdamConfig { amsgrad: true, ..Default::default() }.into(), n as usize, 0, 2, 2);
    assert!(opt.dispatch_count() >= 2, "a tensor past the binding limit must be split");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn every_optimizer_splits_tensors_at_a_small_binding_limit() {
    // The same splitting logic, exercised cheaply: a 16 KiB binding limit splits these tensors
    // several times, at offsets that are no multiple of anything.
    let ctx = gpu_with(&ContextOptions { max_storage_buffer_binding_size: Some(16 << 10), ..Default::default() });
    for (seed, (name, config)) in cases().iter().enumerate() {
        let opt = one_tensor(&ctx, config.clone(), 10_007, 0, 3, 100 + seed as u64);
        assert!(opt.dispatch_count() >= 3, "{name}: 40 KB over a 16 KiB binding limit");
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn both_paths_reach_a_two_dimensional_grid() {
    // Five workgroups per dimension at most: 6,003 elements need a 2-D grid four-wide (1,500
    // invocations, 6 workgroups) and one-wide (24 workgroups), so every kernel's index arithmetic
    // is exercised in 2-D on both paths: at offset 1, a group that keeps state (which starts at
    // a multiple of four) runs one-wide throughout; one that keeps none runs three elements
    // one-wide and the rest four-wide.
    let ctx = gpu_with(&ContextOptions { max_compute_workgroups_per_dimension: Some(5), ..Default::default() });
    for (seed, (name, config)) in cases().iter().enumerate() {
        let keeps_state = config.algorithm().states_used().contains(&true);
        for offset in [0, 1] {
            let opt = one_tensor(&ctx, config.clone(), 6_003, offset, 3, 200 + seed as u64);
            let expected = if offset == 1 && keeps_state { 1 } else { 2 };
            assert_eq!(opt.dispatch_count(), expected, "{name}, offset {offset}");
        }
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn zero_elements_is_a_counted_no_op() {
    let ctx = gpu();
    let (param, grad) = (buffer(&ctx, &[1.0]), buffer(&ctx, &[1.0]));
    let mut opt = Optimizer::new(&ctx, AdamConfig::default()).unwrap();
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&param, &grad, 0)]).unwrap();
    opt.step().unwrap();
    opt.step().unwrap();
    assert_eq!(opt.steps(), 2);
    assert_eq!(opt.dispatch_count(), 0);
    assert_eq!(read_f32(&ctx, &param, 0, 1).unwrap(), vec![1.0]);
    assert_eq!(opt.read_state(0, "exp_avg").unwrap(), Some(vec![]));
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn groups_have_their_own_hyperparameters_in_one_pass() {
    let ctx = gpu();
    let mut rng = Rng::new(7);
    let lens = [300u64, 40, 500, 60];
    let arena = ParamArena::new(&ctx, &lens).unwrap();
    let decay = AdamWConfig { lr: 1e-2, weight_decay: 0.1, ..Default::default() };
    let no_decay = AdamWConfig { weight_decay: 0.0, ..decay.clone() };
    let mut opt = Optimizer::new(&ctx, decay.clone()).unwrap();
    let biases = opt.add_group(no_decay.clone()).unwrap();
    let bindings = arena.bindings();
    // Weights and biases alternate, as a model's parameter list does.
    for (i, b) in bindings.iter().enumerate() {
        let group = if i % 2 == 0 { opt.default_group() } else { biases };
        opt.add_params(group, std::slice::from_ref(b)).unwrap();
    }
    let mut cpu = Vec::new();
    for (i, &n) in lens.iter().enumerate() {
        let init = rng.vector(n as usize);
        arena.write_params(&ctx, i, &init).unwrap();
        let config: OptimizerConfig = if i % 2 == 0 { decay.clone().into() } else { no_decay.clone().into() };
        cpu.push(CpuOptimizer::new(config, init.iter().map(|&x| x as f64).collect()).unwrap());
    }
    let mut scales: Vec<Vec<f64>> = cpu.iter().map(|c| c.param().iter().map(|x| x.abs()).collect()).collect();
    for _ in 0..STEPS {
        for (i, &n) in lens.iter().enumerate() {
            let g = rng.vector(n as usize);
            arena.write_grads(&ctx, i, &g).unwrap();
            cpu[i].step(&g.iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
            track_scale(&mut scales[i], cpu[i].param());
        }
        opt.step().unwrap();
    }
    for (i, &n) in lens.iter().enumerate() {
        let ours = read_f32(&ctx, arena.params(), arena.offset(i), n).unwrap();
        assert_close(&format!("tensor {i}"), &ours, cpu[i].param(), &scales[i]);
    }
    assert_eq!(opt.lr(biases).unwrap(), 1e-2);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn two_steps_recorded_before_one_submit_each_see_their_own_scalars() {
    let ctx = gpu();
    let mut rng = Rng::new(11);
    let n = 1000;
    let init = rng.vector(n);
    let g = rng.vector(n);
    let (param, grad) = (buffer(&ctx, &init), buffer(&ctx, &g));
    let config = AdamConfig { lr: 0.05, ..Default::default() };
    let mut opt = Optimizer::new(&ctx, config.clone()).unwrap();
    let group = opt.default_group();
    opt.add_params(group, &[ParamBinding::whole(&param, &grad, n as u64)]).unwrap();

    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    opt.record(&mut encoder).unwrap();
    opt.set_lr(group, 0.2).unwrap();
    opt.record(&mut encoder).unwrap();
    ctx.queue.submit([encoder.finish()]);

    let mut cpu = CpuOptimizer::new(config.into(), init.iter().map(|&x| x as f64).collect()).unwrap();
    let g64: Vec<f64> = g.iter().map(|&x| x as f64).collect();
    let mut scale = cpu.param().iter().map(|x| x.abs()).collect();
    cpu.step(&g64).unwrap();
    track_scale(&mut scale, cpu.param());
    cpu.set_lr(0.2);
    cpu.step(&g64).unwrap();
    track_scale(&mut scale, cpu.param());
    assert_close("two recorded steps", &read_f32(&ctx, &param, 0, n as u64).unwrap(), cpu.param(), &scale);

    // Had both steps used the second step's scalars (step 2, lr 0.2), the result would differ.
    let mut wrong = CpuOptimizer::new(
        AdamConfig { lr: 0.2, ..Default::default() }.into(),
        init.iter().map(|&x| x as f64).collect(),
    )
    .unwrap();
    wrong.step(&g64).unwrap();
    wrong.step(&g64).unwrap();
    let differs =
        wrong.param().iter().zip(cpu.param()).filter(|(a, b)| (*a - *b).abs() > 1e-4 * b.abs().max(1e-3)).count();
    assert!(differs > n / 2, "the test must distinguish the two outcomes");
    assert_eq!(opt.steps(), 2);
}

/// The one table of optimizer and flag combinations: every algorithm's own cases, from the registry.
fn cases() -> Vec<(&'static str, OptimizerConfig)> {
    OptimizerConfig::cases()
}
