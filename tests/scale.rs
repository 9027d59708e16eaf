//! Many tensors: 10^5 registrations, a step, a checkpoint round trip, and the overlap check that
//! keeps registration O(log n) per tensor, against a brute-force oracle. (How long each part
//! takes is measured by `examples/many_tensors`, not here.)

mod common;

use common::{buffer, gpu};
use proptest::prelude::*;
use wgpu_optim::readback::read_f32;
use wgpu_optim::{AdamConfig, Error, GpuContext, Optimizer, ParamArena, ParamBinding, SgdConfig};

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_hundred_thousand_tensors_register_step_save_and_load() {
    let ctx = gpu();
    let n = 100_000u64;
    // Lengths 1..=8: tensors start on and off multiples of four.
    let lens: Vec<u64> = (0..n).map(|i| 1 + i % 8).collect();
    let arena = ParamArena::new(&ctx, &lens).unwrap();
    let total: u64 = lens.iter().sum();
    let grads: Vec<f32> = (0..total).map(|i| ((i % 97) as f32 - 48.0) / 16.0).collect();
    ctx.queue.write_buffer(arena.grads(), 0, bytemuck::cast_slice(&grads));
    let mut opt = Optimizer::new(&ctx, AdamConfig { lr: 0.01, ..Default::default() }).unwrap();
    for b in arena.bindings() {
        opt.add_params(opt.default_group(), &[b]).unwrap();
    }
    assert_eq!(opt.dispatch_count(), 1, "an arena registered one call at a time is one dispatch");
    opt.step().unwrap();
    opt.step().unwrap();

    // Adam's first moment after two steps of the same gradient g: (1 - 0.9^2) g.
    let (first, last) = (0usize, (n - 1) as usize);
    for i in [first, 12_345, last] {
        let m = opt.read_state(i, "exp_avg").unwrap().unwrap();
        let g = &grads[arena.offset(i) as usize..][..lens[i] as usize];
        for (m, g) in m.iter().zip(g) {
            assert!((m - 0.19 * g).abs() <= 1e-6 * g.abs().max(1.0), "tensor {i}: {m} vs {}", 0.19 * g);
        }
    }

    let dir = std::env::temp_dir().join(format!("wgpu-optim-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("many.safetensors");
    opt.save_state(&path).unwrap();
    let before = opt.read_state(last, "exp_avg_sq").unwrap();
    // A fresh optimizer of the same tensors resumes exactly.
    let mut resumed = Optimizer::new(&ctx, AdamConfig { lr: 0.01, ..Default::default() }).unwrap();
    resumed.add_params(resumed.default_group(), &arena.bindings()).unwrap();
    resumed.load_state(&path).unwrap();
    assert_eq!(resumed.steps(), 2);
    assert_eq!(resumed.read_state(last, "exp_avg_sq").unwrap(), before);
    for i in [first, 54_321] {
        assert_eq!(resumed.read_state(i, "exp_avg").unwrap(), opt.read_state(i, "exp_avg").unwrap(), "tensor {i}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A registration in one of two buffers: (buffer, offset, len).
fn ranges() -> impl Strategy<Value = Vec<Vec<(usize, u64, u64)>>> {
    let range = (0..2usize, 0..60u64, 0..6u64);
    prop::collection::vec(prop::collection::vec(range, 1..4), 1..12)
}

/// Whether two ranges of one buffer share an element (empty ranges share none).
fn overlap(a: (usize, u64, u64), b: (usize, u64, u64)) -> bool {
    a.0 == b.0 && a.2 > 0 && b.2 > 0 && a.1 < b.1 + b.2 && b.1 < a.1 + a.2
}

fn engine_buffers(ctx: &GpuContext) -> ([wgpu::Buffer; 2], wgpu::Buffer) {
    ([buffer(ctx, &[0.0; 64]), buffer(ctx, &[0.0; 64])], buffer(ctx, &[0.0; 64]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Each call is refused exactly when one of its ranges overlaps another of the call or one
    /// registered before, and then nothing of it is registered.
    #[test]
    fn overlaps_are_refused_exactly_as_a_brute_force_check_says(calls in ranges()) {
        let ctx = gpu();
        let (params, grad) = engine_buffers(&ctx);
        let mut opt = Optimizer::new(&ctx, SgdConfig::default()).unwrap();
        let mut registered: Vec<(usize, u64, u64)> = Vec::new();
        for call in calls {
            let bindings: Vec<ParamBinding> = (call.iter())
                .map(|&(b, offset, len)| ParamBinding {
                    param: params[b].clone(),
                    param_offset: offset,
                    grad: grad.clone(),
                    grad_offset: 0,
                    len,
                })
                .collect();
            let clash = call.iter().enumerate().any(|(i, &a)| {
                registered.iter().any(|&r| overlap(a, r)) || call[..i].iter().any(|&b| overlap(a, b))
            });
            let result = opt.add_params(opt.default_group(), &bindings);
            match (clash, result) {
                (true, Err(Error::Overlap { .. })) => {}
                (false, Ok(_)) => registered.extend(&call),
                (clash, result) => prop_assert!(false, "overlap {clash}, but {result:?} for {call:?} after {registered:?}"),
            }
            prop_assert_eq!(opt.param_count(), registered.len());
        }
        // The registered tensors step: the state follows every range.
        if !registered.is_empty() {
            opt.step().unwrap();
            prop_assert_eq!(read_f32(&ctx, &params[0], 0, 1).unwrap().len(), 1);
        }
    }
}
