//! Criterion benches of the fused kernels, the ceiling kernel, the copy and the unfused baseline,
//! on the default adapter (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME` pick another). The device and every
//! buffer are built once; each iteration records one step, submits it and waits for it.
//! Throughput is the bytes each workload moves, as in `wgpu-optim bench`: the update's arrays
//! (Adam 28 B/element, ...) for the ceiling, the copy and the unfused baseline; for the fused step
//! the same, and with loss scaling and clipping (`AdamW-amp`, `SGD-momentum-amp`) the scan's second
//! read of the gradients and its partial norms too ([`Setup::bytes`]). Those have no unfused
//! baseline.
//!
//! `cargo bench` runs them all at 2^20 elements; `WGPU_OPTIM_BENCH_N=4194304 cargo bench -- Adam/`
//! runs Adam at 4M.
//!
//! The `null_grads` group (`cargo bench --bench optimizers -- null_grads`) measures steps in which
//! some tensors have no gradient ([`Optimizer::set_has_grad`]): see [`null_grads`]. The
//! `moving_grads` group (`-- moving_grads`) measures steps whose gradients move
//! ([`Optimizer::set_grad`]): see [`moving_grads`].

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wgpu_optim::tools::bench::{find, transformer_shapes, variants, Kind, Setup};
use wgpu_optim::{GpuContext, Optimizer, ParamArena};

/// Elements in all: 2^20, or `WGPU_OPTIM_BENCH_N`.
fn elements() -> u64 {
    std::env::var("WGPU_OPTIM_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 20)
}

/// Wall time of `iters` steps, each recorded by `record` into an encoder of its own, submitted
/// and waited for alone. A failure panics naming `what`.
fn steps(
    ctx: &GpuContext,
    iters: u64,
    what: &str,
    mut record: impl FnMut(&mut wgpu::CommandEncoder) -> wgpu_optim::Result<()>,
) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        if let Err(e) = record(&mut encoder) {
            panic!("{what}: {e}");
        }
        ctx.queue.submit([encoder.finish()]);
        if let Err(e) = ctx.wait() {
            panic!("{what}: {e}");
        }
    }
    start.elapsed()
}

/// Both groups on one device, built once.
fn all(c: &mut Criterion) {
    let ctx = match GpuContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("no benches: {e}");
            return;
        }
    };
    optimizers(c, &ctx);
    null_grads(c, &ctx);
    moving_grads(c, &ctx);
}

fn optimizers(c: &mut Criterion, ctx: &GpuContext) {
    let n = elements();
    for variant in variants() {
        let mut group = c.benchmark_group(variant.name);
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        for tensors in [1, 148] {
            let mut setup = match Setup::new(ctx, &variant, n, tensors) {
                Ok(setup) => setup,
                Err(e) => {
                    eprintln!("{} at n = {n}: {e}", variant.name);
                    continue;
                }
            };
            // The baselines do not depend on how the total is cut: measure them once. None has
            // loss scaling or clipping: the unfused one would be a different step.
            let kinds: &[Kind] = if tensors == 1 { &Kind::ALL } else { &[Kind::Fused] };
            for &kind in kinds.iter().filter(|&&k| !(k == Kind::Unfused && variant.scans())) {
                let bytes = match kind {
                    Kind::Fused => setup.bytes(),
                    Kind::Copy => setup.copy_bytes(),
                    Kind::Ceiling | Kind::Unfused => setup.ceiling_bytes(),
                };
                group.throughput(Throughput::Bytes(bytes));
                group.bench_function(format!("{kind:?}/n={n}/tensors={tensors}"), |b| {
                    b.iter_custom(|iters| steps(ctx, iters, variant.name, |encoder| setup.record(kind, encoder, None)))
                });
            }
        }
        group.finish();
    }
}

/// Whether tensor `i` has a gradient.
type Mask = fn(usize) -> bool;

/// Which of the 148 tensors have a gradient, by name.
const MASKS: [(&str, Mask); 4] = [
    ("all", |_| true),
    // The first 74 sit out, one contiguous block (the embeddings among them): the rest, a third of
    // the elements, is one stretch.
    ("half-block", |i| i >= 74),
    // Every odd tensor sits out (the biases and LayerNorm shifts): 74 stretches of one tensor
    // each, the embedding and every weight, 99% of the elements.
    ("half-alternating", |i| i % 2 == 0),
    // Only every tenth tensor has a gradient (0, 10, ..., 140): 15 stretches.
    ("tenth", |i| i % 10 == 0),
];

/// Adam (the registry's defaults) over an arena of 148 tensors shaped like GPT-2 small's
/// ([`transformer_shapes`], about 2^20 elements in all, or `WGPU_OPTIM_BENCH_N`), with the tensors
/// that sit out the step chosen by each of [`MASKS`]. One optimizer per mask, all on the same
/// arena; the marks are set once, before the first step, and stay.
///
/// Throughput is the bytes of the tensors that are updated (28 B per element stepped, as in
/// `wgpu-optim bench`), so a mask's GB/s is what it gets done per second; compare the masks by
/// time. The dispatches of each step (`Optimizer::dispatch_count`) and the elements stepped are
/// printed to stderr before the group runs.
fn null_grads(c: &mut Criterion, ctx: &GpuContext) {
    let n = elements();
    let variant = match find("Adam") {
        Ok(mut found) => found.remove(0),
        Err(e) => panic!("null_grads: {e}"),
    };
    let lens = transformer_shapes(n, 148);
    let arena = match ParamArena::new(ctx, &lens) {
        Ok(arena) => arena,
        Err(e) => {
            eprintln!("null_grads at n = {n}: {e}");
            return;
        }
    };
    // Gradients of either sign and several magnitudes; the parameters start at zero.
    let grads: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.618_034).sin() * 1e-2).collect();
    ctx.queue.write_buffer(arena.grads(), 0, bytemuck::cast_slice(&grads));
    let mut steppers = Vec::new();
    for (name, has_grad) in MASKS {
        let built = Optimizer::new(ctx, variant.config.clone()).and_then(|mut opt| {
            opt.add_params(opt.default_group(), &arena.bindings())?;
            for i in (0..lens.len()).filter(|&i| !has_grad(i)) {
                opt.set_has_grad(i, false)?;
            }
            Ok(opt)
        });
        let opt = match built {
            Ok(opt) => opt,
            Err(e) => panic!("null_grads {name}: {e}"),
        };
        let stepped: Vec<usize> = (0..lens.len()).filter(|&i| has_grad(i)).collect();
        let elements: u64 = stepped.iter().map(|&i| lens[i]).sum();
        eprintln!(
            "null_grads/{name}: {} of {} tensors stepped, {elements} of {n} elements, {} dispatches",
            stepped.len(),
            lens.len(),
            opt.dispatch_count()
        );
        steppers.push((name, elements, opt));
    }
    let mut group = c.benchmark_group("null_grads");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    for (name, elements, opt) in &mut steppers {
        group.throughput(Throughput::Bytes(*elements * variant.bytes_per_element()));
        group.bench_function(format!("{}/n={n}/tensors={}/{name}", variant.name, lens.len()), |b| {
            b.iter_custom(|iters| steps(ctx, iters, name, |encoder| opt.record(encoder)))
        });
    }
    group.finish();
}

/// Adam over 148 tensors whose gradients move, as an engine's do when each step's gradients are
/// new tensors from a pool: `fixed` (no move: the baseline), `alternating` (two places, every
/// step the other: the plans of both are reused), `new` (a place not among the last four each
/// step: a plan, with its bind groups, built every step). The difference to `fixed` is what
/// moving costs on the host.
fn moving_grads(c: &mut Criterion, ctx: &GpuContext) {
    let n = elements();
    let variant = match find("Adam") {
        Ok(mut found) => found.remove(0),
        Err(e) => panic!("moving_grads: {e}"),
    };
    let lens = transformer_shapes(n, 148);
    // Room for eight placements of every gradient: shifted by 4 elements each (four-wide stays).
    let places = 8u64;
    let pool = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("gradient pool"),
        size: (n + 4 * places) * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let arena = match ParamArena::new(ctx, &lens) {
        Ok(arena) => arena,
        Err(e) => {
            eprintln!("moving_grads at n = {n}: {e}");
            return;
        }
    };
    let offsets: Vec<u64> = (0..lens.len()).map(|i| arena.offset(i)).collect();
    let mut group = c.benchmark_group("moving_grads");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.throughput(Throughput::Bytes(n * variant.bytes_per_element()));
    for (name, cycle) in [("fixed", 1u64), ("alternating", 2), ("new", places)] {
        let built = Optimizer::new(ctx, variant.config.clone()).and_then(|mut opt| {
            opt.add_params(opt.default_group(), &arena.bindings())?;
            Ok(opt)
        });
        let mut opt = match built {
            Ok(opt) => opt,
            Err(e) => panic!("moving_grads {name}: {e}"),
        };
        let mut step = 0u64;
        group.bench_function(format!("{}/n={n}/tensors={}/{name}", variant.name, lens.len()), |b| {
            b.iter_custom(|iters| {
                steps(ctx, iters, name, |encoder| {
                    let shift = 4 * (step % cycle);
                    step += 1;
                    for (i, &offset) in offsets.iter().enumerate() {
                        opt.set_grad(i, &pool, offset + shift)?;
                    }
                    opt.record(encoder)
                })
            })
        });
        eprintln!("moving_grads/{name}: {} plans built in {step} steps", opt.plans_built());
    }
    group.finish();
}

criterion_group!(benches, all);
criterion_main!(benches);
