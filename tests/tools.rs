//! The tools as a user meets them: `validate` passes and lists every case, `bench --json` writes
//! records with the documented keys, `adapters` lists what wgpu sees, bad flags are exit 2 with a
//! message. Nothing here times anything: the figures are for `bench`, not for tests.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::gpu;
use wgpu_optim::algorithm::OPTIMIZER_NAMES;
use wgpu_optim::kernel::{Format, Storage};
use wgpu_optim::tools::bench::{self, transformer_shapes};
use wgpu_optim::tools::validate::{self, ValidateOptions, Verdict};

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wgpu-optim")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("panicked"), "the tool panicked on {args:?}:\n{text}");
    (out.status.code().unwrap_or(-1), text)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-optim-tools-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `wgpu-optim bench` with `args`, its records written to a scratch `name` as JSON: the records
/// and what it printed (it must succeed).
fn bench_records(name: &str, args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let path = scratch(name);
    let path_text = path.display().to_string();
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend(["--json", &path_text]);
    let (code, text) = run(&all);
    assert_eq!(code, 0, "{text}");
    let records: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    (records.as_array().unwrap().clone(), text)
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn validate_passes_every_case_at_small_sizes() {
    let ctx = gpu();
    let options = ValidateOptions { sizes: Some(vec![1, 257]), ..Default::default() };
    let rows = validate::run(&ctx, &options);
    assert_eq!(rows.len(), validate::cases().len() * 2);
    for (name, _) in validate::cases() {
        for n in [1, 257] {
            let row = rows.iter().find(|r| r.case == name && r.n == n).unwrap();
            assert_eq!(row.verdict, Verdict::Pass, "{row:?}");
        }
    }
    let table = validate::table(&rows);
    assert!(
        table.ends_with(&format!(
            "{} passed, 0 failed, 0 skipped (worst: fraction of the tolerance 1e-5 x scale)\n",
            rows.len()
        )),
        "{table}"
    );
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn validate_command_lists_every_case() {
    let (code, text) = run(&["validate", "--sizes", "1,257", "--steps", "2", "--seed", "7"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("seed 7"), "{text}");
    for (name, _) in validate::cases() {
        let rows = text
            .lines()
            // Columns are two spaces apart; case names have single spaces.
            .filter(|l| l.starts_with("PASS") && l[6..].split("  ").next() == Some(name))
            .count();
        assert_eq!(rows, 2, "{name} at two sizes:\n{text}");
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_large_size_runs_one_case_per_kernel_unless_full() {
    let ctx = gpu();
    let options = ValidateOptions { sizes: Some(vec![validate::LARGE + 1]), ..Default::default() };
    let rows = validate::run(&ctx, &options);
    let names: Vec<&str> = rows.iter().map(|r| r.case.as_str()).collect();
    // Per kernel of the registry's table, the last case among those that bind the most state.
    let mut expected: Vec<(&str, &str, usize)> = Vec::new();
    for (name, config) in validate::cases() {
        let kernel = config.algorithm().kernel().name;
        let states = config.algorithm().states_used().iter().filter(|&&used| used).count();
        match expected.iter_mut().find(|(k, _, _)| *k == kernel) {
            Some(best) if states >= best.2 => *best = (kernel, name, states),
            Some(_) => {}
            None => expected.push((kernel, name, states)),
        }
    }
    let expected: Vec<&str> = expected.into_iter().map(|(_, name, _)| name).collect();
    assert_eq!(expected.len(), wgpu_optim::algorithm::kernels().len());
    assert_eq!(names, expected);
    assert!(rows.iter().all(|r| r.verdict == Verdict::Pass), "{rows:?}");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn bench_json_has_the_documented_keys() {
    let (records, text) = bench_records(
        "bench.json",
        &[
            "--optimizer",
            "sgd,Adam-amsgrad,lion",
            "--sizes",
            "1000",
            "--tensors",
            "1,148",
            "--warmup",
            "0",
            "--reps",
            "1",
        ],
    );
    assert!(text.contains("Adam-amsgrad"), "{text}");
    assert_eq!(records.len(), 6);
    for r in &records {
        for key in [
            "adapter",
            "backend",
            "optimizer",
            "n",
            "tensors",
            "ms_per_step",
            "gbps",
            "ceiling_gbps",
            "copy_gbps",
            "unfused_ms_per_step",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        assert_eq!(r["n"], 1000);
    }
    assert_eq!(records[0]["optimizer"], "SGD");
    assert_eq!(records[0]["bytes_per_element"], 12);
    assert_eq!(records[2]["bytes_per_element"], 36);
    assert_eq!(records[3]["tensors"], 148);
    assert_eq!(records[3]["unfused_dispatches"], 8);
    // Lion has no unfused baseline: null, and n/a in the table.
    assert_eq!(records[4]["optimizer"], "Lion");
    assert!(
        records[4]["unfused_ms_per_step"].is_null() && records[4]["unfused_dispatches"].is_null(),
        "{}",
        records[4]
    );
    assert!(text.lines().any(|l| l.starts_with("Lion") && l.trim_end().ends_with("n/a    n/a")), "{text}");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn bench_counts_the_bytes_of_loss_scaling_and_clipping() {
    let (records, text) = bench_records(
        "bench-amp.json",
        &[
            "--optimizer",
            "AdamW,AdamW-amp,SGD-momentum-amp",
            "--sizes",
            "1000",
            "--tensors",
            "1",
            "--warmup",
            "1",
            "--reps",
            "2",
        ],
    );
    assert_eq!(records.len(), 3);
    let (plain, amp, sgd) = (&records[0], &records[1], &records[2]);
    assert_eq!(plain["optimizer"], "AdamW");
    assert_eq!(plain["loss_scaling"], false);
    assert_eq!(plain["dispatches"], 1);
    assert_eq!(plain["bytes_per_element"], 28);
    assert_eq!(plain["bytes_per_step"], 28_000);
    assert_eq!(plain["state_bytes_per_param"], 8);
    assert_eq!(amp["optimizer"], "AdamW-amp");
    assert_eq!((&amp["loss_scaling"], &amp["clipping"]), (&true.into(), &true.into()));
    // The scan, `finish`, the update; the scan of 1,000 elements four-wide is one workgroup: 256
    // partial norms, each written and read back (16 bytes), on top of the gradient read once more.
    assert_eq!(amp["dispatches"], 3);
    assert_eq!(amp["bytes_per_element"], 32);
    assert_eq!(amp["bytes_per_step"], 32 * 1000 + 256 * 16);
    assert_eq!(amp["ceiling_bytes_per_element"], 28);
    assert_eq!(amp["state_bytes_per_param"], 8);
    // No unfused baseline with loss scaling.
    assert!(amp["unfused_ms_per_step"].is_null() && amp["unfused_dispatches"].is_null(), "{amp}");
    let ratio = amp["ratio"].as_f64().unwrap();
    let by_bytes = amp["gbps"].as_f64().unwrap() / amp["ceiling_gbps"].as_f64().unwrap();
    assert!((ratio - by_bytes).abs() <= 1e-9 * by_bytes, "{amp}");
    assert_eq!(sgd["optimizer"], "SGD-momentum-amp");
    assert_eq!((&sgd["bytes_per_element"], &sgd["bytes_per_step"]), (&24.into(), &(24_000 + 4096).into()));
    assert_eq!(sgd["state_bytes_per_param"], 4);
    let row = text.lines().find(|l| l.starts_with("AdamW-amp")).expect(&text);
    assert!(row.contains(" 36.10 ") && row.contains(" 8 "), "{row}");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn bench_counts_the_bytes_of_bf16_storage() {
    let (records, text) = bench_records(
        "bench-bf16.json",
        &[
            "--optimizer",
            "AdamW-bf16-master,AdamW-bf16-sr,AdamW-bf16grad",
            "--sizes",
            "1000",
            "--tensors",
            "1,7",
            "--layout",
            "arena,buffers",
            "--warmup",
            "1",
            "--reps",
            "2",
        ],
    );
    assert_eq!(records.len(), 12);
    // (name, storage, bytes per element, state bytes per parameter): a bf16 array is 2 B each way,
    // a master copy one more f32 array read and written (+8 B, 4 B of state).
    let expected = [
        // With a master copy the parameter is written, not read (the update reads the copy).
        ("AdamW-bf16-master", "bf16-bf16-f32-master", 2 + 2 + 2 * 8 + 8, 12),
        ("AdamW-bf16-sr", "bf16-bf16-f32-sr", 2 * 2 + 2 + 2 * 8, 8),
        ("AdamW-bf16grad", "f32-bf16-f32", 2 * 4 + 2 + 2 * 8, 8),
    ];
    for (r, (name, storage, bytes, state)) in records.iter().zip(expected.iter().flat_map(|e| [*e; 4])) {
        assert_eq!(r["optimizer"], name, "{r}");
        assert_eq!(r["storage"], storage, "{r}");
        assert_eq!(r["bytes_per_element"], bytes, "{r}");
        assert_eq!(r["ceiling_bytes_per_element"], bytes, "{r}");
        assert_eq!(r["bytes_per_step"], 1000 * bytes, "{r}");
        assert_eq!(r["state_bytes_per_param"], state, "{r}");
        // The unfused baseline is f32 only.
        assert!(r["unfused_ms_per_step"].is_null() && r["unfused_dispatches"].is_null(), "{r}");
        for key in ["gbps", "ceiling_gbps", "copy_gbps", "ratio"] {
            assert!(r[key].as_f64().is_some_and(|x| x.is_finite() && x > 0.0), "{key}: {r}");
        }
    }
    // bf16 parameters and gradients move half the bytes of f32 ones: against f32 AdamW's 28, the
    // parameter's 8 B become 4 and the gradient's 4 become 2.
    let adamw = bench::find("AdamW").unwrap()[0].bytes_per_element();
    let sr = bench::find("AdamW-bf16-sr").unwrap()[0].bytes_per_element();
    assert_eq!((adamw, adamw - sr), (28, (2 * 4 + 4) / 2));
    let row = text.lines().find(|l| l.starts_with("AdamW-bf16-master")).expect(&text);
    assert!(row.contains(" 28.00 ") && row.contains(" 12 ") && row.trim_end().ends_with("n/a    n/a"), "{row}");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn every_bench_workload_runs_on_the_device() {
    let ctx = gpu();
    let timer = bench::Timer::new(&ctx).unwrap();
    for variant in bench::variants() {
        // Past one binding on a capped device would need 40M elements; the chunking is exercised
        // by the optimizer's tests. Here: an awkward size, several tensors.
        let mut setup = bench::Setup::new(&ctx, &variant, 4099, 7).unwrap();
        for kind in bench::Kind::ALL {
            let t = timer.time(&ctx, &mut setup, kind).unwrap();
            assert!(t.is_finite() && t >= 0.0, "{} {kind:?}: {t}", variant.name);
        }
        // One run: 4,096 elements four-wide, the remaining 3 one-wide; with loss scaling and
        // clipping the scan over the same two dispatches and `finish` before them.
        let dispatches = if variant.scans() { 5 } else { 2 };
        assert_eq!(setup.dispatches(bench::Kind::Fused), dispatches, "{}: an arena is one run", variant.name);
        // The bench's gradients are finite: no step was skipped. The scan launches an invocation
        // per 64 of the update's (one workgroup for the 1,024 four-wide, one for the 3 one-wide),
        // each writing a partial norm: 512 of 16 bytes (written and read back).
        let bytes = 4099 * variant.bytes_per_element();
        if variant.scans() {
            assert_eq!(setup.skipped_steps().unwrap(), Some(0), "{}", variant.name);
            assert_eq!(setup.bytes(), bytes + 512 * 16, "{}", variant.name);
        } else {
            assert_eq!(setup.skipped_steps().unwrap(), None, "{}", variant.name);
            assert_eq!(setup.bytes(), bytes, "{}", variant.name);
        }
        assert_eq!(setup.ceiling_bytes(), 4099 * variant.update_bytes_per_element(), "{}", variant.name);
    }
}

#[test]
fn bytes_per_element_are_the_documented_ones() {
    let variants = bench::variants();
    // Every algorithm of the registry is benched, by its PyTorch name, in registry order.
    let plain: Vec<&str> = variants.iter().filter(|v| OPTIMIZER_NAMES.contains(&v.name)).map(|v| v.name).collect();
    assert_eq!(plain, OPTIMIZER_NAMES);
    for v in variants.iter().filter(|v| v.storage != Storage::F32) {
        // Each role in its format, the master copy one more f32 array.
        let Storage { param, grad, master, .. } = v.storage;
        let states = v.states() as u64;
        // With a master copy the parameter is only written.
        let param_bytes = if master { param.element_bytes() } else { 2 * param.element_bytes() };
        let expected = param_bytes + grad.element_bytes() + 8 * states + 8 * u64::from(master);
        assert_eq!((v.update_bytes_per_element(), v.bytes_per_element()), (expected, expected), "{}", v.name);
        assert_eq!(v.state_bytes_per_param(), 4 * states + 4 * u64::from(master), "{}", v.name);
        assert_eq!(v.f32_arrays() as u64, states + u64::from(master), "{}", v.name);
    }
    for v in variants.iter().filter(|v| v.storage == Storage::F32) {
        assert!(v.name == v.config.name() || v.name.starts_with(&format!("{}-", v.config.name())), "{}", v.name);
        let states = v.config.algorithm().states_used().iter().filter(|&&used| used).count() as u64;
        assert_eq!(v.update_bytes_per_element(), 12 + 8 * states, "{}", v.name);
        // The scan reads every f32 gradient once more.
        let scan = if v.scans() { 4 } else { 0 };
        assert_eq!(v.bytes_per_element(), 12 + 8 * states + scan, "{}", v.name);
        assert_eq!(v.state_bytes_per_param(), 4 * states, "{}", v.name);
        assert_eq!(v.scans(), v.name.ends_with("-amp"), "{}", v.name);
        assert_eq!(variants.iter().filter(|w| w.name.eq_ignore_ascii_case(v.name)).count(), 1, "{}", v.name);
    }
    // Spot checks of the documented figures, not computed the same way.
    let bytes = |name: &str| bench::find(name).unwrap()[0].bytes_per_element();
    assert_eq!(bytes("SGD"), 12);
    assert_eq!(bytes("Adam"), 28);
    assert_eq!(bytes("Adam-amsgrad"), 36);
    assert_eq!(bytes("AdamW-amp"), 32);
    assert_eq!(bytes("sgd-momentum-AMP"), 24);
    let state = |name: &str| bench::find(name).unwrap()[0].state_bytes_per_param();
    assert_eq!((state("SGD"), state("SGD-momentum"), state("Adam"), state("Adam-amsgrad")), (0, 4, 8, 12));
    assert_eq!(state("AdamW-amp"), 8);
    // The mixed-precision rows: AdamW's and SGD-momentum's defaults with GradScaler's defaults and
    // clip_grad_norm_(max_norm = 1), after the registry's rows.
    let amp: Vec<&str> = variants.iter().filter(|v| v.scans()).map(|v| v.name).collect();
    assert_eq!(amp, ["AdamW-amp", "SGD-momentum-amp"]);
    let adamw = &bench::find("AdamW-amp").unwrap()[0];
    assert_eq!(adamw.config, bench::find("AdamW").unwrap()[0].config);
    assert_eq!(adamw.loss_scaling, Some(wgpu_optim::GradScalerConfig::default()));
    assert_eq!(adamw.clipping, Some(wgpu_optim::ClipGradNorm::new(1.0)));
    // The bf16 rows: AdamW's defaults, last.
    let low: Vec<&str> = variants.iter().filter(|v| v.storage != Storage::F32).map(|v| v.name).collect();
    assert_eq!(low, ["AdamW-bf16-master", "AdamW-bf16-sr", "AdamW-bf16grad"]);
    assert_eq!(variants[variants.len() - 3..].iter().map(|v| v.name).collect::<Vec<_>>(), low);
    for name in &low {
        let v = &bench::find(name).unwrap()[0];
        assert_eq!(v.config, bench::find("AdamW").unwrap()[0].config, "{name}");
        assert!(!v.scans(), "{name}");
    }
    assert_eq!((bytes("AdamW-bf16-master"), bytes("AdamW-bf16-sr"), bytes("AdamW-bf16grad")), (28, 22, 26));
    assert_eq!((state("AdamW-bf16-master"), state("AdamW-bf16-sr"), state("AdamW-bf16grad")), (12, 8, 8));
    let master = &bench::find("adamw-BF16-master").unwrap()[0].storage;
    assert_eq!(
        (master.param, master.grad, master.state, master.master),
        (Format::BF16, Format::BF16, Format::F32, true)
    );
    assert!(bench::find("AdamW-bf16-sr").unwrap()[0].storage.stochastic());
}

#[test]
fn transformer_shapes_add_up() {
    for (n, tensors) in [(4_194_304u64, 148usize), (1000, 148), (1000, 7), (12_345, 1), (10_000_000, 300)] {
        let lens = transformer_shapes(n, tensors);
        assert_eq!(lens.len(), tensors, "n = {n}");
        assert_eq!(lens.iter().sum::<u64>(), n, "n = {n}, tensors = {tensors}");
    }
    let lens = transformer_shapes(4_194_304, 148);
    assert!(lens.iter().all(|&l| l > 0));
    // GPT-2 small: the embedding is the largest tensor, a LayerNorm among the smallest.
    assert_eq!(lens.iter().max(), Some(&lens[0]));
    assert!(lens[2] < 1000);
}

#[test]
fn tool_kernels_are_valid_wgsl() {
    let mut sources: Vec<String> =
        (0..=3).flat_map(|k| [bench::ceiling_source(k), bench::ceiling_source_wide(k)]).collect();
    // The bf16 ones: a parameter, a gradient or both moved as words, with and without state.
    for (param, grad) in [(Format::BF16, Format::BF16), (Format::F32, Format::BF16), (Format::BF16, Format::F32)] {
        for k in 0..=3 {
            for (read, wide) in [(true, false), (true, true), (false, false), (false, true)] {
                sources.push(bench::ceiling_source_formats(param, grad, k, read, wide));
            }
        }
    }
    // In f32 they are the f32 kernels.
    assert_eq!(bench::ceiling_source_formats(Format::F32, Format::F32, 2, true, true), bench::ceiling_source_wide(2));
    // With a master copy the parameter is written, not read.
    let master = bench::ceiling_source_formats(Format::BF16, Format::BF16, 3, false, true);
    assert!(master.contains("param[i] = ") && !master.contains("= param["), "{master}");
    sources.push(bench::UNFUSED_SOURCE.to_string());
    for source in sources {
        let module =
            naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{}\n{source}", e.emit_to_string(&source)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{e:?}\n{source}"));
    }
}

#[test]
fn bad_flags_are_exit_2_with_a_message() {
    let cases: [(&[&str], &str); 5] = [
        (&["bench", "--optimizer", "Lamb"], "unknown optimizer \"Lamb\" (known: SGD, SGD-momentum"),
        (&["bench", "--sizes", "4M"], "invalid value '4M' for '--sizes"),
        (&["bench", "--tensors", "0"], "invalid value '0' for '--tensors"),
        (&["validate", "--backend", "glide"], "unknown backend \"glide\" (known: vulkan, gl, metal, dx12, all)"),
        (&["validate", "--case", "lamb"], "no case matches \"lamb\" (cases: sgd, sgd momentum"),
    ];
    for (args, message) in cases {
        let (code, text) = run(args);
        assert_eq!(code, 2, "{args:?}:\n{text}");
        assert!(text.contains(message), "{args:?}: expected {message:?} in\n{text}");
    }
}

#[test]
fn adapters_lists_what_wgpu_sees() {
    let out = Command::new(env!("CARGO_BIN_EXE_wgpu-optim")).args(["adapters", "--json"]).output().unwrap();
    assert!(out.status.success());
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for r in reports.as_array().unwrap() {
        for key in ["name", "backend", "device_type", "driver", "max_storage_buffer_binding_size", "timestamp_query"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn sizes_whose_bytes_overflow_or_pass_the_buffer_limit_are_exit_2() {
    // 2^62 elements of 12 or 28 bytes came to 0 bytes, passed the size check and panicked with
    // "capacity overflow" when the host asked for 2^62 values.
    let cases: [(&[&str], &str); 5] = [
        (
            &["bench", "--sizes", "4611686018427387904", "--optimizer", "SGD"],
            "SGD at 4611686018427387904 elements: 12 bytes per element overflow a 64-bit byte count",
        ),
        (&["bench", "--sizes", "4611686018427387904", "--optimizer", "Adam"], "28 bytes per element overflow"),
        (&["bench", "--sizes", "288230376151711744", "--optimizer", "SGD"], "do not fit in a buffer of"),
        (
            &["validate", "--sizes", "4611686018427387904", "--case", "sgd"],
            "a tensor of 4611686018427387904 f32 is 2^64 bytes or more, past this adapter's max_buffer_size",
        ),
        (
            &["validate", "--sizes", "1,2305843009213693952", "--case", "sgd"],
            "a tensor of 2305843009213693952 f32 is 8388608 TiB, past this adapter's max_buffer_size",
        ),
    ];
    for (args, message) in cases {
        let (code, text) = run(args);
        assert_eq!(code, 2, "{args:?}:\n{text}");
        assert!(text.contains(message), "{args:?}: expected {message:?} in\n{text}");
    }
}

#[test]
fn bench_refuses_counts_it_cannot_run() {
    // The warm-up count wrapped around: no step was measured and the table said NaN, exit 0.
    let (code, text) =
        run(&["bench", "--warmup", "18446744073709551615", "--optimizer", "SGD", "--sizes", "1024", "--tensors", "1"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("warmup 18446744073709551615 + reps 10 overflow") && !text.contains("NaN"), "{text}");
    let sgd = bench::BenchOptions {
        variants: bench::find("SGD").unwrap(),
        sizes: vec![1024],
        tensors: vec![1, 7],
        warmup: 3,
        reps: 10,
        ..Default::default()
    };
    assert_eq!(sgd.check().unwrap(), 26, "13 steps at each of two tensor counts");
    let none_measured = bench::BenchOptions { reps: 0, ..sgd.clone() };
    assert_eq!(
        none_measured.check().unwrap_err().to_string(),
        "invalid bench config: reps is 0: at least one step must be measured"
    );
    // The sum fits, the product over the two tensor counts does not.
    let too_many = bench::BenchOptions { warmup: usize::MAX / 2, reps: 1, ..sgd };
    let message = too_many.check().unwrap_err().to_string();
    assert!(message.contains("overflow") && message.contains("2 tensor counts"), "{message}");
}

#[test]
#[cfg(target_os = "linux")]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn bench_out_of_device_memory_is_exit_2_not_a_panic() {
    // Within a 3 GB address space, 100M elements of SGD leave room for the host's data (0.8 GB)
    // but not for the device's buffers: wgpu's create_buffer_init panicked on the failed buffer.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 3000000 && exec '{}' bench --sizes 100000000 --optimizer SGD --tensors 1 --warmup 0 --reps 1",
            env!("CARGO_BIN_EXE_wgpu-optim")
        ))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("panicked"), "{text}");
    // On a CPU adapter (lavapipe) device memory is the process's; a GPU may hold the buffers.
    if text.contains(", Cpu)") {
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains("out of memory") || text.contains("of memory, "), "{text}");
    }
}
