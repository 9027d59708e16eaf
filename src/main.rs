//! `wgpu-optim`: list adapters, validate the kernels against the CPU reference, benchmark them,
//! replay PyTorch's golden cases; with no arguments, the main job (validate, then a short bench).

mod tools_cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wgpu_optim::algorithm::kernels;
use wgpu_optim::kernel::{Kernel, Storage, Variant};
use wgpu_optim::replay::{self, CaseReport, Target};
use wgpu_optim::{schedule, Error, GpuContext, OptimizerConfig};

use tools_cli::{AdapterArgs, BenchArgs, ValidateArgs};

#[derive(Parser)]
#[command(name = "wgpu-optim", version, about = "GPU optimizer kernels with PyTorch's semantics, on any wgpu adapter")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter wgpu sees: name, backend, device type, driver, the limits that matter
    /// here, and f16 / subgroup / timestamp support.
    Adapters {
        /// Only these backends (vulkan, gl, metal, dx12; comma-separated).
        #[arg(long, value_parser = tools_cli::parse_backends)]
        backend: Option<wgpu::Backends>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every kernel and flag combination against the f64 CPU reference on fresh random data
    /// at awkward sizes (1, 257, past 65,535 workgroups, past the binding limit).
    ///
    /// Exit code: 0 if every row passes (or is skipped, saying why), 1 on any FAIL, 2 for bad input.
    Validate(ValidateArgs),
    /// Measure ms/step and GB/s of the fused kernels against the adapter's ceiling kernel,
    /// copy_buffer_to_buffer and an unfused baseline.
    ///
    /// Exit code: 0, or 2 for bad input or a failing device.
    Bench(BenchArgs),
    /// Replay PyTorch golden cases (JSON) and compare every step with PyTorch's float64 run.
    ///
    /// Exit code: 0 if all pass, 1 if any case is out of tolerance, 2 for bad input.
    Replay {
        /// Case files, in the schema of the shared goldens' README.
        #[arg(required = true)]
        cases: Vec<PathBuf>,
        /// Run the f64 CPU reference instead of the GPU kernels.
        #[arg(long)]
        cpu: bool,
        /// Print one JSON record per case instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a kernel's composed WGSL exactly as it is compiled: its `update()` from shaders/ with
    /// the `Step` struct, bindings, loads, stores and entry points the crate composes around it.
    ///
    /// With `--all`, every variant (each flag combination and storage format); without NAME, of
    /// every kernel. With `--out DIR`, one file per variant instead of standard output.
    /// Exit code: 0, or 2 for bad input.
    Shader {
        /// The kernel (`adam`, `sgd`, ...) or an optimizer's PyTorch name (`AdamW`); optional with
        /// `--all`.
        name: Option<String>,
        /// Flags to turn on (comma-separated, as the kernel names them: `AMSGRAD,MAXIMIZE`).
        #[arg(long, value_delimiter = ',', conflicts_with = "all")]
        flags: Vec<String>,
        /// Storage formats of parameters, gradients and state: `PARAM-GRAD-STATE` (each `f32`,
        /// `bf16` or `f16`; state `f32`), then `-master` for an f32 master copy of a bf16 or f16
        /// parameter, or `-sr` for stochastic rounding of a bf16 one: `bf16-bf16-f32-master`.
        #[arg(long, default_value = "f32-f32-f32", conflicts_with = "all")]
        storage: String,
        /// The variant loss scaling and gradient clipping run: gradients unscaled and clipped as
        /// they load, the gradient scan (`scan`, `scan4`), the step's decision read from `amp`.
        #[arg(long, conflicts_with = "all")]
        amp: bool,
        /// Every variant of the kernel (of every kernel, without NAME).
        #[arg(long)]
        all: bool,
        /// Write one `.wgsl` file per variant into this folder (created if missing).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run every composed kernel in a browser's WebGPU (headless Chromium, Dawn/Tint on
    /// SwiftShader): each variant compiled with every pipeline constant, each optimizer case of the
    /// registry run for three steps against the f64 CPU reference.
    ///
    /// Exit code: 0 if everything passes, 1 on any FAIL, 2 without Chromium or a WebGPU adapter.
    BrowserCheck {
        /// Where to write the variants, the cases and the page [default: a temporary folder].
        #[arg(long)]
        out: Option<PathBuf>,
        /// The Chromium binary.
        #[arg(long, default_value = "chromium")]
        chromium: PathBuf,
        /// Seconds the page may take.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Draw a schedule's learning rate (and momentum, when cycled) over the steps.
    ///
    /// SPEC is a scheduler object (`{"name": "StepLR", "step_size": 7}`) or a golden case holding
    /// `optimizer` and `scheduler`, whose `lr` and `steps` are then the defaults.
    /// Exit code: 0, or 2 for bad input.
    PlotSchedule {
        /// The scheduler spec (JSON).
        spec: PathBuf,
        /// The image to write: `.png` or `.svg`.
        #[arg(short, long)]
        output: PathBuf,
        /// Steps to draw [default: the case's `steps`, else 100].
        #[arg(long)]
        steps: Option<u64>,
        /// The optimizer's learning rate the schedule starts from [default: the case's, else 0.1].
        #[arg(long)]
        lr: Option<f64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Replay { cases, cpu, json }) => replay_cases(&cases, cpu, json),
        Some(Command::PlotSchedule { spec, output, steps, lr }) => match plot(&spec, &output, steps, lr) {
            Ok(name) => {
                println!("wrote {} ({name})", output.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Some(Command::Shader { name, flags, storage, amp, all, out }) => {
            match shader(name.as_deref(), &flags, &storage, amp, all, out.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::BrowserCheck { out, chromium, timeout }) => tools_cli::browser_check(out, chromium, timeout),
        Some(Command::Adapters { backend, json }) => tools_cli::adapters(backend, json),
        Some(Command::Validate(args)) => tools_cli::validate(&args),
        Some(Command::Bench(args)) => tools_cli::bench(&args),
        None => tools_cli::main_job(&AdapterArgs::default()),
    }
}

/// Prints (or writes into `out`) the composed modules `wgpu-optim shader` asks for.
fn shader(
    name: Option<&str>,
    flags: &[String],
    storage: &str,
    amp: bool,
    all: bool,
    out: Option<&Path>,
) -> Result<(), String> {
    let known = || kernels().iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
    let selected: Vec<&'static Kernel> = match name {
        Some(name) => {
            let lower = name.to_lowercase();
            // A kernel's own name, or an optimizer's (AdamW runs the adam kernel).
            let by_optimizer = OptimizerConfig::defaults()
                .into_iter()
                .find(|c| c.name().to_lowercase() == lower)
                .map(|c| c.algorithm().kernel());
            let kernel = kernels().into_iter().find(|k| k.name == lower).or(by_optimizer);
            vec![kernel.ok_or_else(|| format!("unknown kernel \"{name}\" (known: {})", known()))?]
        }
        None if all => kernels(),
        None => return Err(format!("name a kernel ({}), or pass --all for every one", known())),
    };
    let mut variants = Vec::new();
    for kernel in selected {
        if all {
            variants.extend(Variant::all(kernel));
            continue;
        }
        let storage = Storage::from_name(storage).ok_or_else(|| {
            format!(
                "unknown storage \"{storage}\" (formats: PARAM-GRAD-STATE[-master|-sr], e.g. f32-f32-f32 or \
                 bf16-bf16-f32-master)"
            )
        })?;
        let mut bits = 0;
        for flag in flags {
            let bit = kernel.flags.iter().position(|f| f.eq_ignore_ascii_case(flag)).ok_or_else(|| {
                format!("{} has no flag \"{flag}\" (its flags: {})", kernel.name, kernel.flags.join(", "))
            })?;
            bits |= 1 << bit;
        }
        variants.push(Variant { kernel, storage, flags: bits, amp });
    }
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for v in &variants {
                let path = dir.join(v.file_name());
                std::fs::write(&path, v.source()).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            println!("wrote {} variants into {}", variants.len(), dir.display());
        }
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            for (i, v) in variants.iter().enumerate() {
                let mut text = String::new();
                if variants.len() > 1 {
                    // Between modules, so that a reader can cut the output apart.
                    text = format!("{}// ==== {} ====\n", if i > 0 { "\n" } else { "" }, v.file_name());
                }
                text.push_str(&v.source());
                // A closed pipe (`| head`) ends the output quietly.
                if stdout.write_all(text.as_bytes()).is_err() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Builds the schedule of `spec` and draws it; returns the schedule's name.
fn plot(spec: &Path, output: &Path, steps: Option<u64>, lr: Option<f64>) -> wgpu_optim::Result<String> {
    let text = std::fs::read_to_string(spec).map_err(|source| Error::Io { path: spec.into(), source })?;
    // A repeated key (`"gamma"` twice) is refused, as in a case file, not quietly its last value.
    let value =
        replay::parse_unique_keys(&text).map_err(|e| Error::Parse { path: spec.into(), message: e.to_string() })?;
    // A golden case carries its scheduler next to the optimizer whose lr it starts from.
    let (scheduler, case_lr, case_steps) = match value.get("scheduler") {
        Some(scheduler) => {
            let optimizer = value.get("optimizer").map(OptimizerConfig::from_json).transpose()?;
            (scheduler.clone(), optimizer.map(|o| o.algorithm().lr()), value.get("steps").and_then(|s| s.as_u64()))
        }
        None => (value, None, None),
    };
    if scheduler.is_null() {
        return Err(Error::Parse {
            path: spec.into(),
            message: "the case has no scheduler (\"scheduler\": null)".into(),
        });
    }
    let schedule = schedule::from_json(&scheduler, lr.or(case_lr).unwrap_or(0.1))?;
    let name = schedule.name().to_string();
    schedule::plot_schedule(&schedule, &name, steps.or(case_steps).unwrap_or(100), output)?;
    Ok(name)
}

fn replay_cases(paths: &[PathBuf], cpu: bool, json: bool) -> ExitCode {
    let ctx = if cpu {
        None
    } else {
        match GpuContext::new() {
            Ok(ctx) => {
                let info = ctx.adapter_info();
                if !json {
                    println!("adapter: {} ({:?}, {:?})", info.name, info.backend, info.device_type);
                }
                Some(ctx)
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let target = ctx.as_ref().map_or(Target::Cpu, Target::Gpu);
    let (mut passed, mut failed, mut bad_input) = (0, 0, false);
    for path in paths {
        match replay::replay_file(path, target) {
            Ok(report) => {
                if report.passed {
                    passed += 1;
                } else {
                    failed += 1;
                }
                print_report(&report, json);
            }
            Err(e) => {
                failed += 1;
                bad_input = true;
                if json {
                    println!("{}", serde_json::json!({ "case": path, "error": e.to_string() }));
                } else {
                    // Errors about the file itself already name it.
                    let (message, name) = (e.to_string(), path.display().to_string());
                    if message.starts_with(&name) {
                        println!("ERROR {message}");
                    } else {
                        println!("ERROR {name}: {message}");
                    }
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if bad_input {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_report(r: &CaseReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    let w = &r.worst;
    println!(
        "{} {:<32} {}  worst {:.3} of tolerance (step {}, element {}: {:.9e} vs {:.9e}), lr rel err {:.1e}",
        if r.passed { "PASS" } else { "FAIL" },
        r.name,
        r.target,
        w.ratio,
        w.step,
        w.index,
        w.ours,
        w.reference,
        r.worst_lr.0
    );
    if let Some(m) = &r.mismatch {
        println!("     {m}");
    }
}
