//! Turns `WGPU_OPTIM_SKIP_GPU_TESTS=1` into `cfg(skip_gpu_tests)`, so that GPU tests show as
//! ignored on purpose instead of failing for want of an adapter (vello's convention).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(skip_gpu_tests)");
    println!("cargo::rerun-if-env-changed=WGPU_OPTIM_SKIP_GPU_TESTS");
    if std::env::var("WGPU_OPTIM_SKIP_GPU_TESTS").is_ok_and(|v| !v.is_empty() && v != "0") {
        println!("cargo::rustc-cfg=skip_gpu_tests");
    }
}
