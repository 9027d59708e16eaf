//! How tensors are laid out and dispatched: the call pattern of registration does not change the
//! plan or the results, tensors in buffers of their own run four elements per invocation, and a
//! registration after steps keeps the state already there.

mod common;

use common::{buffer, gpu, gpu_with, Rng};
use wgpu_optim::readback::read_f32;
use wgpu_optim::*;

/// As many tensors as GPT-2 small has, of odd lengths: 1, 3, 5 and 7 elements first, then up to 999.
fn odd_lens() -> Vec<u64> {
    (0..148u64).map(|i| if i < 4 { 2 * i + 1 } else { 2 * ((i * 37 + 11) % 500) + 1 }).collect()
}

/// Below this length a tensor whose length is no multiple of four is one `main` dispatch
/// (`SMALL_RUN` in src/optim/plan.rs).
const SMALL_RUN: u64 = 4096;

/// The dispatches of a tensor of `n` elements in buffers of its own: one four-wide where `n` is a
/// multiple of four; one `main` for a small ragged tensor; four-wide and a tail otherwise.
fn dispatches(n: u64) -> usize {
    match n {
        0 => 0,
        n if n % 4 == 0 || n < SMALL_RUN => 1,
        _ => 2,
    }
}

/// Where the engine keeps its tensors.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Back to back in one parameter and one gradient buffer.
    Arena,
    /// One parameter and one gradient buffer per tensor, as an engine allocates them.
    Buffers,
}

/// The tensors of `lens` in `layout`, each starting at its own random values.
fn tensors(ctx: &GpuContext, lens: &[u64], layout: Layout) -> Vec<ParamBinding> {
    let inits: Vec<Vec<f32>> = lens.iter().enumerate().map(|(i, &n)| Rng::new(i as u64).vector(n as usize)).collect();
    match layout {
        Layout::Arena => {
            let arena = ParamArena::new(ctx, lens).unwrap();
            for (i, init) in inits.iter().enumerate() {
                arena.write_params(ctx, i, init).unwrap();
            }
            arena.bindings()
        }
        Layout::Buffers => (inits.iter().zip(lens))
            .map(|(init, &n)| ParamBinding::whole(&buffer(ctx, init), &buffer(ctx, &vec![0.0; n as usize]), n))
            .collect(),
    }
}

/// Writes step `t`'s gradients (a function of the step and the tensor alone).
fn write_grads(ctx: &GpuContext, bindings: &[ParamBinding], first: usize, t: u64) {
    for (i, b) in bindings.iter().enumerate() {
        let grad = Rng::new(1000 * t + (first + i) as u64).vector(b.len as usize);
        ctx.queue.write_buffer(&b.grad, b.grad_offset * 4, bytemuck::cast_slice(&grad));
    }
}

/// Every parameter and every `exp_avg_sq` element of `bindings` (tensors `first..`), as bits.
fn bits(ctx: &GpuContext, opt: &Optimizer, bindings: &[ParamBinding], first: usize) -> Vec<Vec<u32>> {
    (bindings.iter().enumerate())
        .map(|(i, b)| {
            let mut values = read_f32(ctx, &b.param, b.param_offset, b.len).unwrap();
            values.extend(opt.read_state(first + i, "exp_avg_sq").unwrap().unwrap());
            values.iter().map(|x| x.to_bits()).collect()
        })
        .collect()
}

/// Adam over `lens` in `layout`, registered in one call or one call per tensor; three steps.
/// Returns the dispatch count and every parameter and state element after the steps.
fn adam(ctx: &GpuContext, lens: &[u64], layout: Layout, one_call: bool) -> (usize, Vec<Vec<u32>>) {
    let bindings = tensors(ctx, lens, layout);
    let mut opt = Optimizer::new(ctx, AdamConfig { lr: 0.01, ..Default::default() }).unwrap();
    let g = opt.default_group();
    if one_call {
        opt.add_params(g, &bindings).unwrap();
    } else {
        for b in &bindings {
            opt.add_params(g, std::slice::from_ref(b)).unwrap();
        }
    }
    for t in 0..3 {
        write_grads(ctx, &bindings, 0, t);
        opt.step().unwrap();
    }
    (opt.dispatch_count(), bits(ctx, &opt, &bindings, 0))
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn an_arena_registered_one_call_at_a_time_is_planned_and_updated_as_in_one_call() {
    let ctx = gpu();
    let lens = odd_lens();
    let (one_call, expected) = adam(&ctx, &lens, Layout::Arena, true);
    // One run: four elements per invocation, and one more dispatch for the remainder.
    let total: u64 = lens.iter().sum();
    assert_eq!(one_call, 1 + usize::from(!total.is_multiple_of(4)), "one call");
    let (each_call, results) = adam(&ctx, &lens, Layout::Arena, false);
    assert_eq!(each_call, one_call, "148 calls");
    assert!(results == expected, "148 calls give other parameters or state than one call");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn tensors_in_buffers_of_their_own_run_four_elements_per_invocation() {
    let ctx = gpu();
    // Lengths that are multiples of four, small ragged ones and large ragged ones.
    let lens: Vec<u64> = odd_lens()
        .iter()
        .enumerate()
        .map(|(i, &n)| match i % 3 {
            0 => n,
            1 => (n + 1).next_multiple_of(4),
            _ => SMALL_RUN + n,
        })
        .collect();
    let (one_call, expected) = adam(&ctx, &lens, Layout::Buffers, true);
    assert_eq!(
        one_call,
        lens.iter().map(|&n| dispatches(n)).sum::<usize>(),
        "every tensor's four-wide part runs four-wide"
    );
    assert!(one_call <= 2 * lens.len());
    let (each_call, results) = adam(&ctx, &lens, Layout::Buffers, false);
    assert_eq!(each_call, one_call, "148 calls");
    assert!(results == expected, "148 calls give other parameters or state than one call");
    // The same update, element for element, as the arena's (one dispatch for nearly everything).
    let (_, arena) = adam(&ctx, &lens, Layout::Arena, true);
    assert!(results == arena, "buffers of their own give other parameters or state than an arena");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn the_binding_limit_splits_runs_alike_whatever_the_call_pattern() {
    // A 16 KiB binding limit cuts the arena's one run into many, at the same places.
    let ctx = gpu_with(&ContextOptions { max_storage_buffer_binding_size: Some(16 << 10), ..Default::default() });
    let lens = odd_lens();
    let (one_call, expected) = adam(&ctx, &lens, Layout::Arena, true);
    let total: u64 = lens.iter().sum();
    assert!(one_call as u64 >= total * 4 / (16 << 10), "{one_call} dispatches for {total} elements");
    let (each_call, results) = adam(&ctx, &lens, Layout::Arena, false);
    assert_eq!(each_call, one_call);
    assert!(results == expected, "148 calls give other parameters or state than one call");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_registration_after_steps_keeps_the_state_and_its_own_step_count() {
    let ctx = gpu();
    let lens = odd_lens();
    // The first tensors, up to a multiple of four elements, then the rest: both halves start
    // four-aligned in the arena, as each does in an arena of its own.
    let split = (1..lens.len()).rev().find(|&i| lens[..i].iter().sum::<u64>().is_multiple_of(4) && i <= 100).unwrap();
    let config = AdamConfig { lr: 0.01, ..Default::default() };

    // One arena: the first tensors registered, two steps, the rest registered, three steps.
    let all = tensors(&ctx, &lens, Layout::Arena);
    let (early, late) = all.split_at(split);
    let mut opt = Optimizer::new(&ctx, config.clone()).unwrap();
    let g = opt.default_group();
    opt.add_params(g, early).unwrap();
    let alone = opt.dispatch_count();
    for t in 0..2 {
        write_grads(&ctx, &all, 0, t);
        opt.step().unwrap();
    }
    let before = bits(&ctx, &opt, early, 0);
    for b in late {
        opt.add_params(g, std::slice::from_ref(b)).unwrap();
    }
    assert!(bits(&ctx, &opt, early, 0) == before, "registering more tensors changed the state of the first");
    assert!(opt.dispatch_count() > alone, "tensors of different step counts must not share a dispatch");
    for t in 2..5 {
        write_grads(&ctx, &all, 0, t);
        opt.step().unwrap();
    }

    // The same tensors in arenas of their own: the first five steps from step 0, the rest three.
    let early_alone = tensors(&ctx, &lens[..split], Layout::Arena);
    let mut first = Optimizer::new(&ctx, config.clone()).unwrap();
    first.add_params(first.default_group(), &early_alone).unwrap();
    for t in 0..5 {
        write_grads(&ctx, &early_alone, 0, t);
        first.step().unwrap();
    }
    let late_alone: Vec<ParamBinding> = {
        let inits: Vec<Vec<f32>> = (split..lens.len()).map(|i| Rng::new(i as u64).vector(lens[i] as usize)).collect();
        let arena = ParamArena::new(&ctx, &lens[split..]).unwrap();
        for (i, init) in inits.iter().enumerate() {
            arena.write_params(&ctx, i, init).unwrap();
        }
        arena.bindings()
    };
    let mut second = Optimizer::new(&ctx, config).unwrap();
    second.add_params(second.default_group(), &late_alone).unwrap();
    for t in 2..5 {
        write_grads(&ctx, &late_alone, split, t);
        second.step().unwrap();
    }
    assert!(bits(&ctx, &opt, early, 0) == bits(&ctx, &first, &early_alone, 0), "the first tensors differ");
    assert!(bits(&ctx, &opt, late, split) == bits(&ctx, &second, &late_alone, 0), "the late tensors differ");
}

#[cfg(feature = "cli")]
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn bench_runs_one_buffer_per_tensor() {
    use wgpu_optim::tools::bench::{find, transformer_shapes, Kind, Layout, Setup, Timer};
    let ctx = gpu();
    let timer = Timer::new(&ctx).unwrap();
    let adam = find("Adam").unwrap().remove(0);
    let lens = transformer_shapes(4099, 7);
    let expected = lens.iter().map(|&n| dispatches(n)).sum::<usize>();
    let mut setup = Setup::with_layout(&ctx, &adam, 4099, 7, Layout::Buffers).unwrap();
    assert_eq!(setup.layout, Layout::Buffers);
    for kind in Kind::ALL {
        assert!(timer.time(&ctx, &mut setup, kind).unwrap() >= 0.0, "{kind:?}");
    }
    assert_eq!(setup.dispatches(Kind::Fused), expected, "{lens:?}");
}
