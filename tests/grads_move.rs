//! Gradients where an engine leaves them: in the parameters' own buffer (disjoint ranges, as a
//! pooled allocator places them), and at new places every step (`Optimizer::set_grad`), with the
//! bind groups of locations seen before reused. Each against the same steps with every gradient
//! in a buffer of its own: bit for bit.

mod common;

use wgpu_optim::readback::read_f32;
use wgpu_optim::{AdamWConfig, ClipGradNorm, Error, GpuContext, GradScalerConfig, Optimizer, ParamBinding};

/// Tensor lengths: several, odd ones among them, so that runs, four-wide bodies and tails all occur.
const LENS: [u64; 5] = [1000, 37, 4096, 5, 260];

fn adamw(ctx: &GpuContext) -> Optimizer {
    Optimizer::new(ctx, AdamWConfig { lr: 1e-2, weight_decay: 0.1, ..Default::default() }).unwrap()
}

/// Each tensor's parameter and gradient in buffers of their own: the reference.
struct Separate {
    params: Vec<wgpu::Buffer>,
    grads: Vec<wgpu::Buffer>,
    opt: Optimizer,
}

impl Separate {
    fn new(ctx: &GpuContext, init: &[Vec<f32>], configure: impl Fn(&mut Optimizer)) -> Self {
        let params: Vec<_> = init.iter().map(|p| common::buffer(ctx, p)).collect();
        let grads: Vec<_> = init.iter().map(|p| common::buffer(ctx, &vec![0.0; p.len()])).collect();
        let mut opt = adamw(ctx);
        configure(&mut opt);
        let bindings: Vec<_> =
            params.iter().zip(&grads).zip(LENS).map(|((p, g), n)| ParamBinding::whole(p, g, n)).collect();
        opt.add_params(opt.default_group(), &bindings).unwrap();
        Self { params, grads, opt }
    }

    fn step(&mut self, ctx: &GpuContext, grads: &[Vec<f32>]) {
        for (buffer, g) in self.grads.iter().zip(grads) {
            ctx.queue.write_buffer(buffer, 0, bytemuck::cast_slice(g));
        }
        self.opt.step().unwrap();
    }

    fn params(&self, ctx: &GpuContext) -> Vec<Vec<f32>> {
        self.params.iter().zip(LENS).map(|(b, n)| read_f32(ctx, b, 0, n).unwrap()).collect()
    }
}

fn data(seed: u64) -> Vec<Vec<f32>> {
    let mut rng = common::Rng::new(seed);
    LENS.iter().map(|&n| rng.vector(n as usize)).collect()
}

/// One buffer holding every tensor as [param | grad], tensor after tensor.
fn interleaved(ctx: &GpuContext, init: &[Vec<f32>]) -> (wgpu::Buffer, Vec<ParamBinding>) {
    let total: u64 = LENS.iter().map(|n| 2 * n).sum();
    let buffer = common::buffer(ctx, &vec![0.0; total as usize]);
    let mut bindings = Vec::new();
    let mut at = 0;
    for (p, n) in init.iter().zip(LENS) {
        ctx.queue.write_buffer(&buffer, at * 4, bytemuck::cast_slice(p));
        bindings.push(ParamBinding {
            param: buffer.clone(),
            param_offset: at,
            grad: buffer.clone(),
            grad_offset: at + n,
            len: n,
        });
        at += 2 * n;
    }
    (buffer, bindings)
}

fn shared_buffer_matches(configure: impl Fn(&mut Optimizer)) {
    let ctx = common::gpu();
    let init = data(1);
    let mut reference = Separate::new(&ctx, &init, &configure);
    let (buffer, bindings) = interleaved(&ctx, &init);
    let mut opt = adamw(&ctx);
    configure(&mut opt);
    opt.add_params(opt.default_group(), &bindings).unwrap();
    for step in 0..4 {
        let grads = data(100 + step);
        for (b, g) in bindings.iter().zip(&grads) {
            ctx.queue.write_buffer(&buffer, b.grad_offset * 4, bytemuck::cast_slice(g));
        }
        opt.step().unwrap();
        reference.step(&ctx, &grads);
        let expected = reference.params(&ctx);
        for (i, b) in bindings.iter().enumerate() {
            let ours = read_f32(&ctx, &buffer, b.param_offset, b.len).unwrap();
            assert_eq!(ours, expected[i], "step {step}, tensor {i}");
            // The gradients are read, never written.
            assert_eq!(read_f32(&ctx, &buffer, b.grad_offset, b.len).unwrap(), grads[i], "step {step}, grad {i}");
        }
    }
    assert!(ctx.take_uncaptured_errors().is_empty());
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn gradients_in_the_parameters_buffer() {
    shared_buffer_matches(|_| {});
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn gradients_in_the_parameters_buffer_under_loss_scaling_and_clipping() {
    // The gradient scan binds the same buffer too.
    shared_buffer_matches(|opt| {
        opt.set_loss_scaling(Some(GradScalerConfig::default())).unwrap();
        opt.set_grad_clipping(Some(ClipGradNorm::new(1.0))).unwrap();
    });
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn gradients_that_move_every_step_reuse_the_bind_groups_of_places_seen_before() {
    let ctx = common::gpu();
    let init = data(2);
    let mut reference = Separate::new(&ctx, &init, |_| {});
    let params: Vec<_> = init.iter().map(|p| common::buffer(&ctx, p)).collect();
    // Three pools, as an allocator that hands out the same places every third step; in each the
    // gradients lie in another order, at other offsets.
    let total: u64 = LENS.iter().sum::<u64>() + 64;
    let pools: Vec<_> = (0..3).map(|_| common::buffer(&ctx, &vec![0.0; total as usize])).collect();
    let places = |pool: usize| -> Vec<u64> {
        let mut order: Vec<usize> = (0..LENS.len()).collect();
        order.rotate_left(pool);
        let mut at = 3 * pool as u64 + 1;
        let mut offsets = vec![0; LENS.len()];
        for i in order {
            offsets[i] = at;
            at += LENS[i] + 1;
        }
        offsets
    };
    let mut opt = adamw(&ctx);
    let first = places(0);
    let bindings: Vec<_> = (0..LENS.len())
        .map(|i| ParamBinding {
            param: params[i].clone(),
            param_offset: 0,
            grad: pools[0].clone(),
            grad_offset: first[i],
            len: LENS[i],
        })
        .collect();
    opt.add_params(opt.default_group(), &bindings).unwrap();
    for step in 0..9 {
        let pool = step % 3;
        let offsets = places(pool);
        let grads = data(200 + step as u64);
        for i in 0..LENS.len() {
            ctx.queue.write_buffer(&pools[pool], offsets[i] * 4, bytemuck::cast_slice(&grads[i]));
            opt.set_grad(i, &pools[pool], offsets[i]).unwrap();
        }
        opt.step().unwrap();
        reference.step(&ctx, &grads);
        let expected = reference.params(&ctx);
        for i in 0..LENS.len() {
            assert_eq!(read_f32(&ctx, &params[i], 0, LENS[i]).unwrap(), expected[i], "step {step}, tensor {i}");
        }
    }
    // One plan per pool; the six steps after the first three reuse them.
    assert_eq!(opt.plans_built(), 3);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn misplaced_gradients_are_refused_and_change_nothing() {
    let ctx = common::gpu();
    let p = common::buffer(&ctx, &[1.0; 100]);
    let g = common::buffer(&ctx, &[0.5; 100]);
    let mut opt = adamw(&ctx);
    let tensors = [
        ParamBinding { param: p.clone(), param_offset: 0, grad: g.clone(), grad_offset: 0, len: 10 },
        ParamBinding { param: p.clone(), param_offset: 10, grad: p.clone(), grad_offset: 50, len: 10 },
    ];
    opt.add_params(opt.default_group(), &tensors).unwrap();

    let message = |e: Error| e.to_string();
    // On its own parameter, on another's, past the end, unknown tensor, wrong usage.
    assert_eq!(
        message(opt.set_grad(1, &p, 15).unwrap_err()),
        "parameter 1's gradient overlaps parameter 1's elements in the same buffer: the step writes the \
         parameter while it reads the gradient; place them in disjoint ranges"
    );
    assert!(message(opt.set_grad(0, &p, 0).unwrap_err()).starts_with("parameter 0's gradient overlaps parameter 0's"));
    assert!(message(opt.set_grad(0, &p, 5).unwrap_err()).starts_with("parameter 0's gradient overlaps parameter 1's"));
    assert!(message(opt.set_grad(1, &p, 0).unwrap_err()).starts_with("parameter 1's gradient overlaps parameter 0's"));
    assert_eq!(
        message(opt.set_grad(0, &g, 95).unwrap_err()),
        "grad 0: elements 95..105 do not fit in a buffer of 100 elements"
    );
    assert_eq!(
        message(opt.set_grad(2, &g, 0).unwrap_err()),
        "parameter index: elements 2..3 do not fit in a buffer of 2 elements"
    );
    let uniform = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 400,
        usage: wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    });
    assert_eq!(
        message(opt.set_grad(0, &uniform, 0).unwrap_err()),
        "buffer \"grad 0\" lacks usage STORAGE: create it with `BufferUsages::STORAGE`"
    );
    // Registration refuses the same: a gradient on a parameter's elements, or a parameter on a
    // registered gradient's.
    let on_param = ParamBinding { param: p.clone(), param_offset: 30, grad: p.clone(), grad_offset: 2, len: 5 };
    assert!(message(opt.add_params(opt.default_group(), &[on_param]).unwrap_err())
        .starts_with("parameter 2's gradient overlaps parameter 0's"));
    let on_grad = ParamBinding { param: p.clone(), param_offset: 55, grad: g.clone(), grad_offset: 20, len: 10 };
    assert!(message(opt.add_params(opt.default_group(), &[on_grad]).unwrap_err())
        .starts_with("parameter 1's gradient overlaps parameter 2's"));
    assert_eq!(opt.param_count(), 2);

    // Nothing moved: the step reads the gradients where they were (0.5 and p[50..60] = 1.0).
    opt.step().unwrap();
    let after = read_f32(&ctx, &p, 0, 20).unwrap();
    assert!(after.iter().all(|&v| v < 1.0), "{after:?}");
    assert_eq!(read_f32(&ctx, &p, 50, 10).unwrap(), vec![1.0; 10]);
}
