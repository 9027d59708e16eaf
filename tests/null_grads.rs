//! Steps without a gradient (PyTorch's `p.grad is None`): the tensor's parameter, state and own
//! step count are left alone, whatever the others do, and nothing is rebuilt to say so.

mod common;

use common::{buffer, gpu, Rng};
use wgpu_optim::cpu::CpuOptimizer;
use wgpu_optim::readback::read_f32;
use wgpu_optim::*;

const STEPS: usize = 16;

/// Sizes that cut an arena run at every kind of place: one element, ranges shorter and longer
/// than the four-wide threshold, ragged ends.
const SIZES: &[usize] = &[257, 1, 4099, 33, 600, 5003, 7, 0, 4096];

/// Every tensor has a gradient at random steps (some steps none at all); the skipped ones get NaN
/// gradients, so a kernel that read them would show it. Each tensor is checked against the same
/// tensor alone in an optimizer of its own, stepped only when it has a gradient: bit for bit
/// (the same kernel and scalars; data whose f32 rounding is ill-conditioned would blur a
/// comparison with the f64 mirror, which tests/gpu_vs_cpu.rs makes). A skipped tensor's parameter
/// must not change by one bit, and its own step count must be the mirror's.
fn check(name: &str, config: &OptimizerConfig, ctx: &GpuContext, seed: u64) {
    let mut rng = Rng::new(seed);
    // Then many small tensors, so that random marks cut the run into more stretches than the
    // optimizer cuts into dispatches: it runs one dispatch that skips what lies between them.
    let sizes: Vec<usize> = SIZES.iter().copied().chain((0..40).map(|i| 1 + (7 * i) % 61)).collect();
    let lens: Vec<u64> = sizes.iter().map(|&n| n as u64).collect();
    let arena = ParamArena::new(ctx, &lens).unwrap();
    let mut opt = Optimizer::new(ctx, config.clone()).unwrap();
    opt.add_params(opt.default_group(), &arena.bindings()).unwrap();
    // One more tensor in buffers of its own at an odd offset (its own run, one element per
    // invocation).
    let (odd_n, odd_off) = (301usize, 3usize);
    let odd_init = rng.vector(odd_n);
    let mut padded = vec![0.0f32; odd_off];
    padded.extend(&odd_init);
    let (odd_param, odd_grad) = (buffer(ctx, &padded), buffer(ctx, &vec![0.0; odd_off + odd_n]));
    let binding = ParamBinding {
        param: odd_param.clone(),
        param_offset: odd_off as u64,
        grad: odd_grad.clone(),
        grad_offset: odd_off as u64,
        len: odd_n as u64,
    };
    opt.add_params(opt.default_group(), &[binding]).unwrap();
    let all: Vec<usize> = sizes.iter().copied().chain([odd_n]).collect();
    let read = |i: usize| {
        if i < sizes.len() {
            read_f32(ctx, arena.params(), arena.offset(i), all[i] as u64).unwrap()
        } else {
            read_f32(ctx, &odd_param, odd_off as u64, odd_n as u64).unwrap()
        }
    };
    let write_grad = |i: usize, g: &[f32]| {
        if i < sizes.len() {
            arena.write_grads(ctx, i, g).unwrap();
        } else {
            ctx.queue.write_buffer(&odd_grad, odd_off as u64 * 4, bytemuck::cast_slice(g));
        }
    };

    let mut cpu = Vec::new();
    let mut alone = Vec::new();
    for (i, &n) in all.iter().enumerate() {
        let init = if i < sizes.len() { rng.vector(n) } else { odd_init.clone() };
        if i < sizes.len() {
            arena.write_params(ctx, i, &init).unwrap();
        }
        cpu.push(CpuOptimizer::new(config.clone(), init.iter().map(|&x| x as f64).collect()).unwrap());
        let (param, grad) = (buffer(ctx, &init), buffer(ctx, &vec![0.0; n]));
        let mut own = Optimizer::new(ctx, config.clone()).unwrap();
        own.add_params(own.default_group(), &[ParamBinding::whole(&param, &grad, n as u64)]).unwrap();
        alone.push((own, param, grad));
    }
    let mut skipped_some = false;
    for step in 0..STEPS {
        // Step 0: every other tensor (while all count alike, one dispatch that skips the others);
        // step 3: no gradient anywhere; otherwise each tensor has one with probability 0.6.
        let present: Vec<bool> = all
            .iter()
            .enumerate()
            .map(|(i, _)| if step == 0 { i % 2 == 0 } else { step != 3 && rng.uniform() < 0.6 })
            .collect();
        let before: Vec<Vec<f32>> = all.iter().enumerate().map(|(i, _)| read(i)).collect();
        for (i, &n) in all.iter().enumerate() {
            opt.set_has_grad(i, present[i]).unwrap();
            if present[i] {
                let g = rng.vector(n);
                write_grad(i, &g);
                cpu[i].step(&g.iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
                let (own, _, grad) = &mut alone[i];
                if n > 0 {
                    ctx.queue.write_buffer(grad, 0, bytemuck::cast_slice(&g));
                }
                own.step().unwrap();
            } else if n > 0 {
                write_grad(i, &vec![f32::NAN; n]);
                skipped_some = true;
            }
        }
        opt.step().unwrap();
        for (i, &n) in all.iter().enumerate() {
            let what = format!("{name}, tensor {i} (n = {n}), step {step}");
            let after = read(i);
            if present[i] {
                let reference = read_f32(ctx, &alone[i].1, 0, n as u64).unwrap();
                let same = after.iter().zip(&reference).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{what}: differs from the tensor stepped alone");
            } else {
                let same = after.iter().zip(&before[i]).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{what}: a tensor without a gradient changed");
            }
            assert_eq!(opt.param_steps(i).unwrap(), cpu[i].steps(), "{what}: its own step count");
        }
    }
    assert!(skipped_some);
    assert_eq!(opt.steps(), STEPS as u64, "{name}: the optimizer counts every step");
    for (i, (own, _, _)) in alone.iter().enumerate() {
        for state in opt.state_names() {
            let (ours, reference) = (opt.read_state(i, state).unwrap(), own.read_state(0, state).unwrap());
            assert_eq!(ours, reference, "{name}, tensor {i}, state {state}");
        }
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn tensors_without_gradients_sit_out_the_step_in_every_optimizer() {
    let ctx = gpu();
    for (seed, (name, config)) in OptimizerConfig::cases().iter().enumerate() {
        check(name, config, &ctx, 100 + seed as u64);
    }
}

/// An arena of `n` tensors of `len` elements, Adam, gradients of ones.
fn arena_adam(ctx: &GpuContext, n: usize, len: u64) -> (ParamArena, Optimizer) {
    let arena = ParamArena::new(ctx, &vec![len; n]).unwrap();
    let mut opt = Optimizer::new(ctx, AdamConfig { lr: 0.1, ..Default::default() }).unwrap();
    opt.add_params(opt.default_group(), &arena.bindings()).unwrap();
    for i in 0..n {
        arena.write_grads(ctx, i, &vec![1.0; len as usize]).unwrap();
    }
    (arena, opt)
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn marks_stay_until_changed_and_bad_indices_are_refused() {
    let ctx = gpu();
    let (arena, mut opt) = arena_adam(&ctx, 3, 8);
    assert!(opt.has_grad(1).unwrap(), "every tensor has a gradient until told otherwise");
    opt.set_has_grad(1, false).unwrap();
    for _ in 0..3 {
        opt.step().unwrap();
    }
    assert_eq!(read_f32(&ctx, arena.params(), arena.offset(1), 8).unwrap(), vec![0.0; 8]);
    assert_eq!((opt.param_steps(0).unwrap(), opt.param_steps(1).unwrap()), (3, 0));
    opt.set_has_grad(1, true).unwrap();
    opt.step().unwrap();
    assert_eq!((opt.param_steps(0).unwrap(), opt.param_steps(1).unwrap()), (4, 1));
    // Adam's first step moves by lr whatever the gradient's size: the tensor's own first step.
    let first = read_f32(&ctx, arena.params(), arena.offset(1), 8).unwrap();
    assert!(first.iter().all(|&x| (x + 0.1).abs() < 1e-6), "{first:?}");
    for bad in [3, usize::MAX] {
        assert!(matches!(opt.set_has_grad(bad, false), Err(Error::OutOfBounds { .. })));
        assert!(matches!(opt.has_grad(bad), Err(Error::OutOfBounds { .. })));
        assert!(matches!(opt.param_steps(bad), Err(Error::OutOfBounds { .. })));
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_step_without_any_gradient_changes_nothing_but_the_count() {
    let ctx = gpu();
    let (arena, mut opt) = arena_adam(&ctx, 2, 5);
    opt.set_has_grad(0, false).unwrap();
    opt.set_has_grad(1, false).unwrap();
    opt.step().unwrap();
    assert_eq!(opt.steps(), 1);
    assert_eq!(read_f32(&ctx, arena.params(), 0, 10).unwrap(), vec![0.0; 10]);
    assert_eq!(opt.read_state(0, "exp_avg").unwrap().unwrap(), vec![0.0; 5]);
    assert_eq!(opt.param_steps(0).unwrap(), 0);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn rewinding_a_step_takes_back_what_it_sat_out() {
    let ctx = gpu();
    let (_arena, mut opt) = arena_adam(&ctx, 2, 4);
    opt.step().unwrap();
    opt.set_has_grad(1, false).unwrap();
    opt.step().unwrap();
    assert_eq!((opt.param_steps(0).unwrap(), opt.param_steps(1).unwrap()), (2, 1));
    // The mark changes after the step; the rewind still takes back what that step counted.
    opt.set_has_grad(1, true).unwrap();
    opt.set_step_count(1).unwrap();
    assert_eq!((opt.param_steps(0).unwrap(), opt.param_steps(1).unwrap()), (1, 1));
    // Rewinding several steps takes back what each counted.
    let (_arena, mut opt) = arena_adam(&ctx, 1, 4);
    opt.step().unwrap();
    opt.set_has_grad(0, false).unwrap();
    opt.step().unwrap();
    opt.step().unwrap();
    assert_eq!(opt.param_steps(0).unwrap(), 1);
    opt.set_step_count(1).unwrap();
    assert_eq!((opt.steps(), opt.param_steps(0).unwrap()), (1, 1));
    // Past the 64 steps a rewind takes back one by one, earlier sat-out steps stay counted: a
    // count below them is refused, and the refusal changes nothing.
    for _ in 0..70 {
        opt.step().unwrap();
    }
    assert_eq!((opt.steps(), opt.param_steps(0).unwrap()), (71, 1));
    let err = opt.set_step_count(0).unwrap_err().to_string();
    assert_eq!(err, "step count 0 is below 6, parameter 0's registration step, 0, and the 6 steps it sat out");
    assert_eq!((opt.steps(), opt.param_steps(0).unwrap()), (71, 1), "a refused rewind changes nothing");
    opt.set_step_count(70).unwrap();
    assert_eq!((opt.steps(), opt.param_steps(0).unwrap()), (70, 1));
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn the_nonfinite_scan_reads_only_gradients_a_step_would_read() {
    let ctx = gpu();
    let (arena, mut opt) = arena_adam(&ctx, 3, 6);
    arena.write_grads(&ctx, 1, &[1.0, f32::NAN, 0.0, 0.0, 0.0, 0.0]).unwrap();
    assert!(opt.found_nonfinite().unwrap());
    opt.set_has_grad(1, false).unwrap();
    assert!(!opt.found_nonfinite().unwrap(), "tensor 1 has no gradient this step");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn checkpoints_keep_the_steps_each_tensor_sat_out() {
    let ctx = gpu();
    let dir = std::env::temp_dir().join(format!("wgpu-optim-null-grads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ckpt.safetensors");
    let (arena, mut opt) = arena_adam(&ctx, 3, 16);
    opt.step().unwrap();
    opt.set_has_grad(2, false).unwrap();
    opt.step().unwrap();
    opt.step().unwrap();
    opt.save_state(&path).unwrap();

    let (arena2, mut restored) = arena_adam(&ctx, 3, 16);
    restored.load_state(&path).unwrap();
    assert_eq!(restored.param_steps(2).unwrap(), 1);
    assert_eq!(restored.param_steps(0).unwrap(), 3);
    // Both continue with every gradient: tensor 2 takes its own second step on both sides.
    let params = read_f32(&ctx, arena.params(), 0, 48).unwrap();
    ctx.queue.write_buffer(arena2.params(), 0, bytemuck::cast_slice(&params));
    opt.set_has_grad(2, true).unwrap();
    opt.step().unwrap();
    restored.step().unwrap();
    assert_eq!(read_f32(&ctx, arena.params(), 0, 48).unwrap(), read_f32(&ctx, arena2.params(), 0, 48).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// ASGD under a decaying rate carries `eta` from each tensor's last step: tensors that sat out
/// different steps carry different values even where their own step counts agree. Each is
/// checked against itself stepped alone, at the rates of the steps it took.
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn carried_values_follow_each_tensor_through_the_steps_it_sat_out() {
    use wgpu_optim::schedule::{ExponentialLr, ExponentialLrConfig, LrScheduler};
    let ctx = gpu();
    let config = AsgdConfig { lr: 0.05, lambd: 0.1, ..Default::default() };
    let lens = [40u64, 40, 40];
    let arena = ParamArena::new(&ctx, &lens).unwrap();
    let mut opt = Optimizer::new(&ctx, config.clone()).unwrap();
    let group = opt.default_group();
    opt.add_params(group, &arena.bindings()).unwrap();
    let decay = ExponentialLr::new(0.05, ExponentialLrConfig { gamma: 0.7 }).unwrap();
    opt.set_schedule(group, LrScheduler::new(decay)).unwrap();
    let mut rng = Rng::new(5);
    let mut alone = Vec::new();
    for (i, &n) in lens.iter().enumerate() {
        let init = rng.vector(n as usize);
        arena.write_params(&ctx, i, &init).unwrap();
        let (param, grad) = (buffer(&ctx, &init), buffer(&ctx, &vec![0.0; n as usize]));
        let mut own = Optimizer::new(&ctx, config.clone()).unwrap();
        own.add_params(own.default_group(), &[ParamBinding::whole(&param, &grad, n)]).unwrap();
        alone.push((own, param, grad));
    }
    // Tensor 1 sits out step 1, tensor 2 step 2: after step 2 both have taken one step, at
    // different rates, so their etas differ.
    let present = [[true, false, true], [true, true, false], [true, true, true], [true, true, true]];
    for row in present {
        let lr = opt.lr(group).unwrap();
        for (i, &has) in row.iter().enumerate() {
            opt.set_has_grad(i, has).unwrap();
            if has {
                let g = rng.vector(40);
                arena.write_grads(&ctx, i, &g).unwrap();
                let (own, _, grad) = &mut alone[i];
                ctx.queue.write_buffer(grad, 0, bytemuck::cast_slice(&g));
                own.set_lr(own.default_group(), lr).unwrap();
                own.step().unwrap();
            }
        }
        opt.step().unwrap();
    }
    for (i, (_, param, _)) in alone.iter().enumerate() {
        let ours = read_f32(&ctx, arena.params(), arena.offset(i), 40).unwrap();
        let reference = read_f32(&ctx, param, 0, 40).unwrap();
        assert_eq!(ours, reference, "tensor {i}");
    }
}

/// Tensors without gradients scattered through an arena do not cost a dispatch per stretch: the
/// run is dispatched once (four-wide and a tail) over the stretches it lists, skipping the rest,
/// and a block of them is cut out instead.
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn scattered_tensors_without_gradients_keep_the_dispatches_of_a_full_step() {
    let ctx = gpu();
    // 257 elements each: the dispatch runs four-wide (and a tail), skipping lanes.
    let (arena, mut opt) = arena_adam(&ctx, 40, 257);
    let full = opt.dispatch_count();
    for i in (1..40).step_by(2) {
        opt.set_has_grad(i, false).unwrap();
    }
    assert!(opt.dispatch_count() <= full + 1, "{} dispatches for a step that had {full}", opt.dispatch_count());
    opt.step().unwrap();
    let params = read_f32(&ctx, arena.params(), 0, 40 * 257).unwrap();
    for (i, tensor) in params.chunks(257).enumerate() {
        // Adam's first step moves every element by lr (gradients of ones); the others stay at 0.
        let expected = if i % 2 == 0 { -0.1 } else { 0.0 };
        assert!(tensor.iter().all(|&x| (x - expected).abs() < 1e-6), "tensor {i}: {tensor:?}");
    }
    // A block (on a fresh optimizer: after the step above, odd and even tensors have different
    // step counts, and so different scalars): cut out, the rest in at most three dispatches.
    let (_arena, mut opt) = arena_adam(&ctx, 40, 37);
    for i in 0..40 {
        opt.set_has_grad(i, i >= 20).unwrap();
    }
    assert!(opt.dispatch_count() <= 3, "{}", opt.dispatch_count());
}
