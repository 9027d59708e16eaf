//! A real engine (issue 14): `examples/burn-interop` trains a burn 0.22.1 model on burn's wgpu
//! backend twice from the same weights, once with our AdamW on burn's own buffers and once with
//! burn's AdamW, and exits non-zero when the two disagree (losses, step-1 parameters, burn's AdamW
//! fed our run's gradients, each run's lockstep with an f64 AdamW fed its own gradients). This test
//! builds it (a crate of its own, so burn stays out of this crate's dependencies) and runs its
//! short run.
//!
//! The first run compiles burn into `<target>/burn-interop` (7 minutes on 2 cores), with the
//! example's `ci` profile: release without optimisation, since burn's optimised build would take
//! most of CI's 30 minutes; agreement does not depend on it, and the timing table of that build is
//! not one to quote (the figures come from `cargo run --release`). Later runs reuse the build.
//! `WGPU_OPTIM_SKIP_BURN_INTEROP=1` turns the test off on purpose (shown as ignored).

use std::path::PathBuf;
use std::process::{Command, Stdio};

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
#[cfg_attr(skip_burn_interop, ignore = "WGPU_OPTIM_SKIP_BURN_INTEROP is set")]
fn burn_trains_with_our_adamw_and_agrees_with_burns_own() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Its own target directory inside ours: kept between runs, apart from this crate's artefacts
    // (the example pins different features of wgpu, which would otherwise rebuild back and forth).
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let target = if target.is_relative() { root.join(target) } else { target }.join("burn-interop");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "burn_interop: building and running examples/burn-interop (the first build compiles burn: \
         ~7 min on 2 cores, then ~4 min of running) into {}",
        target.display()
    );
    // Cargo's progress and the example's stderr go straight to the terminal (the harness does not
    // capture a child's output), so a long first build shows what it is doing.
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["run", "--profile", "ci", "--locked", "--manifest-path", "examples/burn-interop/Cargo.toml", "--"])
        .args(["--steps", "12"])
        .env("CARGO_TARGET_DIR", &target)
        .stderr(Stdio::inherit())
        .output()
        .expect("could not start cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "examples/burn-interop failed ({}; 1: the two runs disagree, 2: an error, 101: a build failure):\n{stdout}",
        out.status
    );
    // The report is all there: both runs' losses, their lockstep with the f64 reference, both
    // accuracies and the timing table (whose figures are for the eye, not for a test).
    for line in [
        "loss            wgpu-optim       burn AdamW",
        "parameters after step 1:",
        "lockstep, wgpu-optim: max |run - f64 reference|",
        "lockstep, burn AdamW: max |run - f64 reference|",
        "test accuracy (360 digits): wgpu-optim",
        "optimizer step, steps 6..12",
        "whole training steps",
    ] {
        assert!(stdout.contains(line), "the report lacks {line:?}:\n{stdout}");
    }
    println!("{stdout}");
}
