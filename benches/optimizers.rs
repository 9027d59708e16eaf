//! Criterion benches of the fused kernels, the ceiling kernel, the copy and the unfused baseline,
//! on the default adapter (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME` pick another). The device and every
//! buffer are built once; each iteration records one step, submits it and waits for it.
//! Throughput is the bytes the update must move (Adam 28 B/element, ...), as in `wgpu-optim bench`.
//!
//! `cargo bench` runs them all at 2^20 elements; `WGPU_OPTIM_BENCH_N=4194304 cargo bench -- Adam/`
//! runs Adam at 4M.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wgpu_optim::tools::bench::{variants, Kind, Setup};
use wgpu_optim::GpuContext;

fn optimizers(c: &mut Criterion) {
    let ctx = match GpuContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("no benches: {e}");
            return;
        }
    };
    let n: u64 = std::env::var("WGPU_OPTIM_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 20);
    for variant in variants() {
        let mut group = c.benchmark_group(variant.name);
        group.throughput(Throughput::Bytes(n * variant.bytes_per_element()));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        for tensors in [1, 148] {
            let mut setup = match Setup::new(&ctx, &variant, n, tensors) {
                Ok(setup) => setup,
                Err(e) => {
                    eprintln!("{} at n = {n}: {e}", variant.name);
                    continue;
                }
            };
            // The baselines do not depend on how the total is cut: measure them once.
            let kinds: &[Kind] = if tensors == 1 { &Kind::ALL } else { &[Kind::Fused] };
            for &kind in kinds {
                group.bench_function(format!("{kind:?}/n={n}/tensors={tensors}"), |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let mut encoder = ctx.device.create_command_encoder(&Default::default());
                            if let Err(e) = setup.record(kind, &mut encoder, None) {
                                panic!("{}: {e}", variant.name);
                            }
                            ctx.queue.submit([encoder.finish()]);
                            if let Err(e) = ctx.wait() {
                                panic!("{}: {e}", variant.name);
                            }
                        }
                        start.elapsed()
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, optimizers);
criterion_main!(benches);
