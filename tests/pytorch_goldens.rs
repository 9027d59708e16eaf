//! PyTorch's own numbers: every golden case bundled in `tests/data/` (copied from the shared
//! goldens, made with PyTorch 2.15 by the loop in their README), replayed on the GPU and on the
//! CPU reference, judged by `wgpu_optim::replay`'s tolerance.

mod common;

use wgpu_optim::replay::{bundled_cases, replay_file, Target};

/// The optimizer cases; each must be bundled (the scheduler cases are replayed here too).
const CORE: &[&str] = &[
    "sgd",
    "sgd_momentum",
    "sgd_momentum_dampening",
    "sgd_weight_decay",
    "adagrad",
    "adagrad_init_acc",
    "adagrad_weight_decay",
    "rmsprop",
    "rmsprop_centered",
    "rmsprop_momentum",
    "adam",
    "adam_n1",
    "adam_amsgrad",
    "adam_weight_decay",
    "adam_maximize",
    "adamw",
    "adamax",
    "nadam",
    "radam_decoupled_wd",
    "adadelta",
    "asgd",
    "rprop",
];

fn replay_all(target: Target<'_>) {
    let cases = bundled_cases();
    for name in CORE {
        assert!(cases.iter().any(|p| p.file_stem().is_some_and(|s| s == *name)), "tests/data/{name}.json is missing");
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
