//! `wgpu-optim`: list adapters, validate the kernels against the CPU reference, benchmark them,
//! replay PyTorch's golden cases; with no arguments, the main job (validate, then a short bench).

mod tools_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wgpu_optim::replay::{self, CaseReport, Target};
use wgpu_optim::GpuContext;

use tools_cli::{AdapterArgs, BenchArgs, ValidateArgs};

#[derive(Parser)]
#[command(
    name = "wgpu-optim",
    version,
    about = "GPU optimizer kernels with PyTorch's semantics, on any wgpu adapter"
)]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Replay { cases, cpu, json }) => replay_cases(&cases, cpu, json),
        Some(Command::Adapters { backend, json }) => tools_cli::adapters(backend, json),
        Some(Command::Validate(args)) => tools_cli::validate(&args),
        Some(Command::Bench(args)) => tools_cli::bench(&args),
        None => tools_cli::main_job(&AdapterArgs::default()),
    }
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
                    println!("ERROR {}: {e}", path.display());
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
}
