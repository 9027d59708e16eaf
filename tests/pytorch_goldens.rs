//! PyTorch's own numbers: every golden case bundled in `tests/data/` (copied from the shared
//! goldens, made with PyTorch 2.15 by the loop in their README), replayed on the GPU and on the
//! CPU reference, judged by `wgpu_optim::replay`'s tolerance.

mod common;

use wgpu_optim::algorithm::OPTIMIZER_NAMES;
use wgpu_optim::replay::{bundled_cases, replay_file, Target};

fn replay_all(target: Target<'_>) {
    let cases = bundled_cases();
    // Every algorithm of the registry has PyTorch's (or its reference package's) numbers here.
    let optimizers: Vec<String> = cases
        .iter()
        .filter_map(|path| {
            let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
            Some(case["optimizer"]["name"].as_str()?.to_string())
        })
        .collect();
    for name in OPTIMIZER_NAMES {
        assert!(optimizers.iter().any(|o| o == name), "no golden case in tests/data/ runs {name}");
    }
    let mut failures = Vec::new();
    for path in &cases {
        match replay_file(path, target) {
            Ok(r) if r.passed => {}
            Ok(r) => failures.push(format!("{}: {:?}, lr error {:?}", r.name, r.worst, r.worst_lr)),
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn every_bundled_case_passes_on_the_cpu_reference() {
    replay_all(Target::Cpu);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn every_bundled_case_passes_on_the_gpu() {
    replay_all(Target::Gpu(&common::gpu()));
}
