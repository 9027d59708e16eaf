//! Turns `WGPU_OPTIM_SKIP_GPU_TESTS=1` into `cfg(skip_gpu_tests)`, so that GPU tests show as
//! ignored on purpose instead of failing for want of an adapter (vello's convention), and
//! `WGPU_OPTIM_SKIP_BURN_INTEROP=1` into `cfg(skip_burn_interop)`, for the one test that builds
//! burn (`tests/burn_interop.rs`: minutes of compiling the first time).

fn main() {
    for (var, cfg) in
        [("WGPU_OPTIM_SKIP_GPU_TESTS", "skip_gpu_tests"), ("WGPU_OPTIM_SKIP_BURN_INTEROP", "skip_burn_interop")]
    {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0") {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
