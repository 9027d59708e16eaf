//! Every composed kernel in a browser's WebGPU: headless Chromium (Dawn, which compiles WGSL with
//! Tint) on SwiftShader compiles every variant with the pipeline constants the optimizer sets and
//! runs every registry case against the f64 CPU reference; a kernel broken on purpose fails.
//! Without Chromium these tests fail and say how to get it (`.ci/run` installs it).
#![cfg(feature = "cli")]

use std::path::PathBuf;

use wgpu_optim::tools::browser::{self, BrowserOptions, Report, Written, INSTALL_HINT};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-optim-browser-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Writes the cases (with `edit` applied to each module) and runs them in Chromium.
fn check(name: &str, edit: &dyn Fn(&str, String) -> String) -> (Written, Report) {
    let dir = scratch(name);
    let written = browser::write(&dir, edit).unwrap();
    let report = browser::run(&dir, &BrowserOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n(The browser check needs Chromium: {INSTALL_HINT}.)"));
    assert!(report.adapter.is_some(), "no WebGPU adapter in Chromium: {:?}", report.error);
    assert_eq!(report.error, None, "the harness stopped");
    // Every variant compiled and every case ran: none is missing from the report.
    assert_eq!(report.results.len(), written.variants + written.cases, "variants or cases did not report");
    let _ = std::fs::remove_dir_all(&dir);
    (written, report)
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn every_variant_compiles_and_every_case_passes_in_chromium() {
    let (written, report) = check("all", &|_, wgsl| wgsl);
    assert!(written.variants >= 90 && written.cases >= 40, "{written:?}");
    let failed: Vec<String> =
        report.results.iter().filter(|v| v.status != "PASS").map(|v| format!("{}: {}", v.name, v.detail)).collect();
    assert!(failed.is_empty(), "{} failed in Chromium:\n{}", failed.len(), failed.join("\n"));
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_broken_kernel_is_reported_as_fail_not_skipped() {
    // Adam's step goes the wrong way (it still compiles); Lion does not compile at all; RMSprop
    // ignores the spans of its last step (updating elements of a tensor without a gradient).
    let (_, report) = check("broken", &|kernel, wgsl| match kernel {
        "adam" => wgsl.replace("p - u.step_size * (m / denom)", "p + u.step_size * (m / denom)"),
        "lion" => wgsl.replace("fn update(", "fn update(broken"),
        "rmsprop" => wgsl.replace("keep = in_spans4(e);", "keep = vec4<bool>(true);"),
        _ => wgsl,
    });
    let status = |prefix: &str| -> Vec<&str> {
        report.results.iter().filter(|v| v.name.starts_with(prefix)).map(|v| v.status.as_str()).collect()
    };
    // Adam's kernel runs Adam and AdamW (Adamax has its own).
    let adam_runs: Vec<&str> = report
        .results
        .iter()
        .filter(|v| v.name.starts_with("run adam") && !v.name.starts_with("run adamax"))
        .map(|v| v.status.as_str())
        .collect();
    assert!(!adam_runs.is_empty() && adam_runs.iter().all(|s| *s == "FAIL"), "adam runs: {adam_runs:?}");
    assert!(status("compile adam.").iter().all(|s| *s == "PASS"), "the broken adam still compiles");
    let lion = status("compile lion.");
    assert!(!lion.is_empty() && lion.iter().all(|s| *s == "FAIL"), "lion compiles: {lion:?}");
    assert!(status("run lion").iter().all(|s| *s == "FAIL"));
    let rmsprop = status("run rmsprop");
    assert!(!rmsprop.is_empty() && rmsprop.iter().all(|s| *s == "FAIL"), "rmsprop runs: {rmsprop:?}");
    assert!(status("run sgd").iter().all(|s| *s == "PASS"), "the other kernels still pass");
}

#[test]
fn without_chromium_the_check_says_how_to_get_it() {
    let dir = scratch("none");
    browser::write(&dir, &|_, wgsl| wgsl).unwrap();
    let options = BrowserOptions { chromium: "/nonexistent/chromium".into(), ..Default::default() };
    let error = browser::run(&dir, &options).unwrap_err().to_string();
    assert!(error.contains(INSTALL_HINT), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
