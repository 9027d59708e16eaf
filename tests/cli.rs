//! The command-line tool as a user meets it: `replay`'s exit codes and messages on good and bad
//! input. Bad input must be exit 2 with a message naming the problem, never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// A scratch directory of this test binary's own.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-optim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How long a command may take before it counts as hung: every command here answers in seconds.
const HANG: Duration = Duration::from_secs(60);

fn run(args: &[&str]) -> (i32, String) {
    run_within(args, HANG)
}

/// Runs the tool and fails the test, killing it, if it has not answered within `limit`: a hang
/// fails instead of stalling the suite. Output goes to files, so that nothing blocks on a pipe.
fn run_within(args: &[&str], limit: Duration) -> (i32, String) {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let out = scratch().join(format!("run-{}.out", RUNS.fetch_add(1, Ordering::Relaxed)));
    let file = std::fs::File::create(&out).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgpu-optim"))
        .args(args)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{args:?} did not answer within {limit:?}:\n{}", std::fs::read_to_string(&out).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = String::from_utf8_lossy(&std::fs::read(&out).unwrap()).into_owned();
    assert!(!text.contains("panicked"), "the tool panicked on {args:?}:\n{text}");
    (status.code().unwrap_or(-1), text)
}

/// `adam.json` with one change, written to a file of its own.
fn variant(name: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut case: Value = serde_json::from_str(&std::fs::read_to_string(data("adam.json")).unwrap()).unwrap();
    change(&mut case);
    let path = scratch().join(format!("{name}.json"));
    std::fs::write(&path, case.to_string()).unwrap();
    path.display().to_string()
}

#[test]
fn a_good_case_passes_on_the_cpu_reference() {
    let path = data("adam.json").display().to_string();
    let (code, text) = run(&["replay", "--cpu", &path]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("PASS adam"), "{text}");
    assert_eq!(text.lines().last(), Some("1 passed, 0 failed"), "{text}");
}

#[test]
fn a_case_out_of_tolerance_is_exit_1() {
    // PyTorch's numbers, nudged past the tolerance at one element of one step.
    let path = variant("nudged", |c| {
        let x = c["params_f64"][20][5].as_f64().unwrap();
        c["params_f64"][20][5] = (x + 1e-3 * x.abs().max(1.0)).into();
    });
    let (code, text) = run(&["replay", "--cpu", &path]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("FAIL adam") && text.contains("step 20, element 5"), "{text}");
    assert_eq!(text.lines().last(), Some("0 passed, 1 failed"), "{text}");
}

#[test]
fn bad_input_is_exit_2_naming_the_problem() {
    let truncated = scratch().join("truncated.json");
    let full = std::fs::read_to_string(data("adam.json")).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let empty = scratch().join("empty-object.json");
    std::fs::write(&empty, "{}").unwrap();

    let cases: Vec<(String, &str)> = vec![
        (variant("lr", |c| c["optimizer"]["lr"] = (-1).into()), "Invalid learning rate: -1"),
        (
            variant("betas", |c| c["optimizer"]["betas"] = serde_json::json!([1.5, 0.999])),
            "Invalid beta parameter at index 0: 1.5",
        ),
        (variant("eps", |c| c["optimizer"]["eps"] = (-1e-8).into()), "Invalid epsilon value: -1e-08"),
        (variant("wd", |c| c["optimizer"]["weight_decay"] = (-0.1).into()), "Invalid weight_decay value: -0.1"),
        (variant("name", |c| c["optimizer"]["name"] = "Adamm".into()), "unknown optimizer \"Adamm\""),
        (variant("key", |c| c["optimizer"]["lrr"] = 0.1.into()), "unknown field `lrr`"),
        (
            variant("short", |c| {
                c["grads"][3].as_array_mut().unwrap().pop();
            }),
            "grads[3]: expected 257 elements, got 256",
        ),
        (
            variant("nesterov", |c| {
                c["optimizer"] = serde_json::json!({"name": "SGD", "nesterov": true, "momentum": 0.0});
            }),
            "Nesterov momentum requires a momentum and zero dampening",
        ),
        (
            variant("scheduler", |c| c["scheduler"] = serde_json::json!({"name": "NoSuchLR"})),
            "unsupported scheduler: NoSuchLR",
        ),
        (truncated.display().to_string(), "EOF while parsing"),
        (empty.display().to_string(), "missing field `name`"),
        ("/no/such/case.json".into(), "/no/such/case.json: No such file or directory"),
    ];
    for (path, message) in &cases {
        let (code, text) = run(&["replay", "--cpu", path]);
        assert_eq!(code, 2, "{path}: {text}");
        assert!(text.contains(message), "{path}: expected \"{message}\" in:\n{text}");
        assert_eq!(text.lines().last(), Some("0 passed, 1 failed"), "{text}");
    }
    // On the GPU too, the input is judged before anything runs.
    let (code, text) = run(&["replay", &cases[0].0]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("Invalid learning rate: -1"), "{text}");
}

#[test]
fn one_bad_case_among_good_ones_still_reports_every_case() {
    let good = data("sgd.json").display().to_string();
    let bad = variant("among", |c| c["optimizer"]["lr"] = (-1).into());
    let (code, text) = run(&["replay", "--cpu", &good, &bad]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("PASS sgd"), "{text}");
    assert_eq!(text.lines().last(), Some("1 passed, 1 failed"), "{text}");
}

#[test]
fn plot_schedule_writes_png_and_svg() {
    let spec = data("sched_sequential_warmup_cosine.json").display().to_string();
    let png = scratch().join("warmup_cosine.png");
    let (code, text) = run(&["plot-schedule", &spec, "-o", &png.display().to_string()]);
    assert_eq!(code, 0, "{text}");
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "not a PNG of a plot");

    // A bare scheduler object, with the optimizer's lr given on the command line.
    let bare = scratch().join("bare.json");
    let case: Value =
        serde_json::from_str(&std::fs::read_to_string(data("sched_sequential_warmup_cosine.json")).unwrap()).unwrap();
    std::fs::write(&bare, case["scheduler"].to_string()).unwrap();
    let svg = scratch().join("warmup_cosine.svg");
    let (code, text) = run(&[
        "plot-schedule",
        &bare.display().to_string(),
        "-o",
        &svg.display().to_string(),
        "--steps",
        "60",
        "--lr",
        "0.1",
    ]);
    assert_eq!(code, 0, "{text}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"), "not an SVG document");
    assert!(svg.contains("SequentialLR") && svg.contains("learning rate"), "title and axis label");
}

#[test]
fn plot_schedule_refuses_bad_specs() {
    let dir = scratch();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let out = dir.join("never.png").display().to_string();
    let cases = [
        (write("misspelt.json", r#"{"name": "StepLRR", "step_size": 3}"#), "unsupported scheduler: StepLRR"),
        (write("zero.json", r#"{"name": "StepLR", "step_size": 0}"#), "Invalid step_size value: 0"),
        (write("unknown_key.json", r#"{"name": "StepLR", "step_size": 2, "gama": 0.5}"#), "gama"),
        (write("broken.json", r#"{"name": "StepLR", "#), "EOF while parsing"),
    ];
    for (path, message) in &cases {
        let (code, text) = run(&["plot-schedule", path, "-o", &out]);
        assert_eq!(code, 2, "{path}: {text}");
        assert!(text.contains(message), "{path}: expected \"{message}\" in:\n{text}");
    }
    let spec = data("sched_step.json").display().to_string();
    let (code, text) = run(&["plot-schedule", &spec, "-o", &dir.join("plot.jpg").display().to_string()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(".png or .svg"), "{text}");
}

#[test]
fn replay_runs_schedules_and_refuses_unknown_ones() {
    let paths: Vec<String> = ["sched_step.json", "sched_plateau_min.json", "adamw_onecycle_cycle_momentum.json"]
        .iter()
        .map(|n| data(n).display().to_string())
        .collect();
    let mut args = vec!["replay", "--cpu"];
    args.extend(paths.iter().map(String::as_str));
    let (code, text) = run(&args);
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.lines().last(), Some("3 passed, 0 failed"), "{text}");

    let misspelt = variant("steplrr", |c| c["scheduler"] = serde_json::json!({"name": "StepLRR", "step_size": 7}));
    let (code, text) = run(&["replay", "--cpu", &misspelt]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("unsupported scheduler: StepLRR"), "{text}");
    let zero = variant("step0", |c| c["scheduler"] = serde_json::json!({"name": "StepLR", "step_size": 0}));
    let (code, text) = run(&["replay", "--cpu", &zero]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("Invalid step_size value: 0"), "{text}");
}

#[test]
fn shader_prints_the_composed_module_that_naga_accepts() {
    let (code, text) = run(&["shader", "adamw", "--flags", "AMSGRAD,maximize"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("const AMSGRAD: bool = true;") && text.contains("const MAXIMIZE: bool = true;"), "{text}");
    assert!(text.contains("const WEIGHT_DECAY: bool = false;"), "{text}");
    let module = naga::front::wgsl::parse_str(&text).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&text)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string(&text)));
}

#[test]
fn shader_all_writes_every_variant_and_refuses_bad_names() {
    let dir = scratch().join("shaders");
    let (code, text) = run(&["shader", "--all", "--out", &dir.display().to_string()]);
    assert_eq!(code, 0, "{text}");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(files.iter().any(|f| f == "adam.f32-f32-f32.AMSGRAD.wgsl"), "{files:?}");
    assert!(text.contains(&format!("wrote {} variants", files.len())), "{text}");
    for (args, needle) in [
        (&["shader", "adamm"][..], "unknown kernel \"adamm\""),
        (&["shader", "adam", "--flags", "NESTEROV"], "adam has no flag \"NESTEROV\""),
        (&["shader", "adam", "--storage", "f64-f32-f32"], "unknown storage \"f64-f32-f32\""),
        (&["shader"], "pass --all"),
    ] {
        let (code, text) = run(args);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains(needle), "{args:?}: {text}");
    }
}

/// Where the tests below run replay: the CPU reference, and the GPU unless GPU tests are off.
fn targets() -> Vec<&'static str> {
    if cfg!(skip_gpu_tests) {
        vec!["--cpu"]
    } else {
        vec!["--cpu", "--gpu"]
    }
}

/// `replay` on `path` on a target of [`targets`] (`--gpu` is the default, no flag).
fn replay_on(target: &str, path: &str) -> (i32, String) {
    run(&if target == "--gpu" { vec!["replay", path] } else { vec!["replay", target, path] })
}

#[test]
fn plot_schedule_refuses_values_too_large_to_draw() {
    // 1.79e308 hung the command (plotters' tick spacing overflowed to infinity); 1e308 drew an
    // axis past what f64 ticks can label. Both are refused at once.
    let out = scratch().join("huge.png").display().to_string();
    for (spec, lr, value) in
        [("sched_constant.json", "1.79e308", "5.966666666666666e307"), ("sched_step.json", "1e308", "1e308")]
    {
        let spec = data(spec).display().to_string();
        let start = Instant::now();
        let (code, text) = run_within(&["plot-schedule", &spec, "-o", &out, "--lr", lr], Duration::from_secs(30));
        assert_eq!(code, 2, "--lr {lr}: {text}");
        assert!(text.contains(&format!("the learning rate reaches {value} at step 0: too large to draw")), "{text}");
        assert!(start.elapsed() < Duration::from_secs(30));
    }
    // The largest values that draw still do.
    let spec = data("sched_constant.json").display().to_string();
    let (code, text) = run(&["plot-schedule", &spec, "-o", &out, "--lr", "1e300"]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn plot_schedule_refuses_a_repeated_key() {
    let spec = scratch().join("repeated.json");
    std::fs::write(&spec, r#"{"name": "StepLR", "step_size": 3, "gamma": 0.5, "gamma": 2.0}"#).unwrap();
    let out = scratch().join("repeated.png").display().to_string();
    let (code, text) = run(&["plot-schedule", &spec.display().to_string(), "-o", &out]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("duplicate key \"gamma\""), "{text}");
}

#[test]
fn replay_refuses_unknown_keys_and_accepts_every_documented_one() {
    // A misspelt "scheduler" used to run without the schedule (and pass or fail on that).
    let typo = variant("schedular", |c| {
        c["schedular"] = serde_json::json!({"name": "StepLR", "step_size": 7, "gamma": 0.5});
    });
    let (code, text) = run(&["replay", "--cpu", &typo]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("unknown field `schedular`"), "{text}");
    // The schema's optional keys (../shared/goldens/README.md) are not unknown.
    let documented = variant("documented", |c| {
        c["reference"] = "torch 2.15.0".into();
        c["note"] = "a sentence for readers".into();
        c["shape"] = serde_json::json!([1, 257]);
        c["eval_params"] = c["init"].clone();
        c["eval_params_f64"] = c["init"].clone();
        c["params_bf16_ns"] = c["params"].clone();
    });
    let (code, text) = run(&["replay", "--cpu", &documented]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("PASS adam"), "{text}");
}

#[test]
fn replay_refuses_empty_cases() {
    let no_steps = variant("no-steps", |c| {
        for key in ["grads", "lr", "params", "params_f64"] {
            c[key] = serde_json::json!([]);
        }
        c["steps"] = 0.into();
    });
    let no_elements = variant("no-elements", |c| {
        c["init"] = serde_json::json!([]);
        for key in ["grads", "params", "params_f64"] {
            c[key] = serde_json::json!(vec![Vec::<f64>::new(); 40]);
        }
    });
    for target in targets() {
        for (path, message) in [
            (&no_steps, "\"steps\" is 0: a case needs at least one step"),
            (&no_elements, "\"init\" is empty: a case needs at least one element"),
        ] {
            let (code, text) = replay_on(target, path);
            assert_eq!(code, 2, "{target} {path}: {text}");
            assert!(text.contains(message), "{target} {path}: {text}");
            // The file is named once.
            let name = std::path::Path::new(path).display().to_string();
            assert_eq!(text.matches(&name).count(), 1, "{target} {path}: {text}");
        }
    }
}

#[test]
fn replay_refuses_repeated_keys() {
    let full = std::fs::read_to_string(data("adam.json")).unwrap();
    let write = |name: &str, text: String| {
        assert_ne!(text, full, "{name}: the edit did not apply");
        let path = scratch().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    // serde_json's Value keeps the last of two equal keys: this ran with lr 5 and said nothing.
    let optimizer = write("repeated-lr.json", full.replacen("\"optimizer\": {", "\"optimizer\": {\"lr\": 5.0, ", 1));
    let scheduler = write(
        "repeated-gamma.json",
        full.replacen(
            "\"scheduler\": null",
            r#""scheduler": {"name": "StepLR", "step_size": 7, "gamma": 0.5, "gamma": 2}"#,
            1,
        ),
    );
    let top = write("repeated-steps.json", full.replacen("\"steps\": 40", "\"steps\": 40, \"steps\": 40", 1));
    for (path, message) in [
        (&optimizer, "duplicate key \"lr\""),
        (&scheduler, "duplicate key \"gamma\""),
        (&top, "duplicate field `steps`"),
    ] {
        let (code, text) = run(&["replay", "--cpu", path]);
        assert_eq!(code, 2, "{path}: {text}");
        assert!(text.contains(message), "{path}: expected {message:?} in\n{text}");
    }
}

#[test]
fn replay_refuses_a_schedule_out_of_range_alike_on_both_targets() {
    let adamw = serde_json::json!({"name": "AdamW", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08,
        "weight_decay": 0.01, "amsgrad": false, "maximize": false});
    let beta1 = variant("beta1-past-1", |c| {
        c["optimizer"] = adamw.clone();
        c["scheduler"] = serde_json::json!({"name": "OneCycleLR", "max_lr": 0.01, "total_steps": 40,
            "base_momentum": 0.85, "max_momentum": 1.5});
    });
    // The lr overflows to infinity at step 31: the GPU refused it, the CPU reference ran to NaN.
    let infinite = variant("lr-inf", |c| c["scheduler"] = serde_json::json!({"name": "ExponentialLR", "gamma": 1e10}));
    // Nothing to cycle: the GPU refused it, the CPU reference ran without it.
    let no_momentum = variant("no-momentum", |c| {
        c["optimizer"] = serde_json::json!({"name": "Adagrad", "lr": 0.01});
        c["scheduler"] = serde_json::json!({"name": "OneCycleLR", "max_lr": 0.01, "total_steps": 40});
    });
    let cases = [
        // Checked when the schedule is built, before either target runs.
        (&beta1, "Invalid max_momentum value: 1.5 (must be in [0, 1))"),
        (&infinite, "Invalid learning rate: inf (the schedule's, at step 31)"),
        (&no_momentum, "the schedule cycles the momentum (cycle_momentum), but Adagrad has none to cycle"),
    ];
    for target in targets() {
        for (path, message) in cases {
            let (code, text) = replay_on(target, path);
            assert_eq!(code, 2, "{target} {path}: {text}");
            assert!(text.contains(message), "{target} {path}: expected {message:?} in\n{text}");
        }
    }
}

#[test]
fn replay_reads_pythons_nan_and_refuses_it_naming_the_parameter() {
    // `json.dump` writes float("nan") as a bare NaN: this failed to parse ("expected value at
    // line 3 column 37") instead of naming lr.
    let full = std::fs::read_to_string(data("adam.json")).unwrap();
    let write = |name: &str, from: &str, to: &str| {
        let text = full.replacen(from, to, 1);
        assert_ne!(text, full, "{name}: the edit did not apply");
        let path = scratch().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let lr = write("lr-nan.json", "\"lr\": 0.001", "\"lr\": NaN");
    let beta = write("beta-inf.json", "\"betas\": [0.9, 0.999]", "\"betas\": [-Infinity, 0.999]");
    let gamma =
        write("gamma-nan.json", "\"scheduler\": null", r#""scheduler": {"name": "PolynomialLR", "power": NaN}"#);
    // A parse error after a token still points into the text as written: column 42 is the `x`, as in the text with 1.0 for NaN.
    let typo = write("after-nan.json", "\"lr\": 0.001, ", "\"lr\": NaN, x ");
    for target in targets() {
        for (path, message) in [
            (&lr, "Invalid learning rate: nan"),
            (&beta, "Invalid beta parameter at index 0: -inf"),
            (&gamma, "Invalid power value: nan"),
            (&typo, "key must be a string at line 3 column 42"),
        ] {
            let (code, text) = replay_on(target, path);
            assert_eq!(code, 2, "{target} {path}: {text}");
            assert!(text.contains(message), "{target} {path}: expected {message:?} in\n{text}");
        }
    }
}
