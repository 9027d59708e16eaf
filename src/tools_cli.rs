//! The `adapters`, `validate` and `bench` subcommands and the main job: flags in, tables out. The
//! work is in `wgpu_optim::tools`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use wgpu_optim::tools::validate::{self, ValidateOptions, Verdict};
use wgpu_optim::tools::{adapters, bench, open, AdapterChoice};

/// Parses `vulkan`, `gl`, `metal`, `dx12` (comma-separated) strictly: an unknown name is an error.
pub fn parse_backends(s: &str) -> Result<wgpu::Backends, String> {
    let mut backends = wgpu::Backends::empty();
    for name in s.split(',').map(|b| b.trim().to_lowercase()) {
        backends |= match name.as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "metal" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "all" => wgpu::Backends::all(),
            other => return Err(format!("unknown backend \"{other}\" (known: vulkan, gl, metal, dx12, all)")),
        };
    }
    Ok(backends)
}

/// Which adapter(s): the flags shared by `validate` and `bench`.
#[derive(Args, Clone, Debug, Default)]
pub struct AdapterArgs {
    /// An adapter whose name contains this (case-insensitive); default: WGPU_ADAPTER_NAME, else
    /// wgpu's choice.
    #[arg(long)]
    pub adapter: Option<String>,
    /// Only these backends (vulkan, gl, metal, dx12; comma-separated); default: WGPU_BACKEND.
    #[arg(long, value_parser = parse_backends)]
    pub backend: Option<wgpu::Backends>,
    /// Every adapter of those backends, one after the other.
    #[arg(long)]
    pub all: bool,
}

impl AdapterArgs {
    fn choice(&self) -> AdapterChoice {
        AdapterChoice { adapter: self.adapter.clone(), backends: self.backend, all: self.all }
    }
}

/// `validate`'s flags.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    adapters: AdapterArgs,
    /// Tensor sizes (comma-separated); default: 1, 257, past 65,535 workgroups, past the binding
    /// limit.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..))]
    sizes: Option<Vec<u64>>,
    /// Steps per case.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    steps: u64,
    /// Seed of the random data (printed by every run); default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// Only cases whose name contains this, e.g. "adam" or "nesterov".
    #[arg(long)]
    case: Option<String>,
    /// Every case at every size. By default sizes past 1M elements run, for each kernel, the case
    /// that binds the most state arrays (each takes seconds on a CPU adapter).
    #[arg(long)]
    full: bool,
}

/// `bench`'s flags.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    adapters: AdapterArgs,
    /// Configurations (comma-separated): every algorithm by its PyTorch name (SGD, Adam, AdamW,
    /// ...), the variants with the most state (SGD-momentum, RMSprop-centered-momentum,
    /// Adam-amsgrad, ...), and with loss scaling and clipping AdamW-amp and SGD-momentum-amp;
    /// default: all.
    #[arg(long)]
    optimizer: Option<String>,
    /// Total elements (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1048576,4194304", value_parser = clap::value_parser!(u64).range(1..))]
    sizes: Vec<u64>,
    /// Tensor counts the total is cut into, shaped like a small transformer (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,148", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    tensors: Vec<u64>,
    /// Where the tensors live (comma-separated): `arena` (one parameter and one gradient buffer
    /// for all) or `buffers` (one of each per tensor, as an engine allocates them).
    #[arg(long, value_delimiter = ',', default_value = "arena")]
    layout: Vec<bench::Layout>,
    /// Steps before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Steps measured (the median is reported).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    reps: u64,
    /// Also write the records to this file, as a JSON array.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// `adapters`.
pub fn adapters(backend: Option<wgpu::Backends>, json: bool) -> ExitCode {
    let reports = adapters::list(backend);
    if json {
        println!("{}", serde_json::to_string_pretty(&reports).unwrap_or_default());
    } else {
        print!("{}", adapters::table(&reports));
    }
    ExitCode::SUCCESS
}

/// `validate`: a table per adapter; 1 on any FAIL (including an adapter that would not open).
pub fn validate(args: &ValidateArgs) -> ExitCode {
    let options = ValidateOptions {
        sizes: args.sizes.clone(),
        steps: args.steps as usize,
        seed: args.seed.unwrap_or_else(validate::fresh_seed),
        filter: args.case.clone(),
        full: args.full,
    };
    if let Some(filter) = &options.filter {
        let f = filter.to_lowercase();
        if !validate::cases().iter().any(|(name, _)| name.contains(&f)) {
            let names: Vec<_> = validate::cases().iter().map(|(name, _)| *name).collect();
            return error(format!("no case matches \"{filter}\" (cases: {})", names.join(", ")));
        }
    }
    run_validate(&args.adapters, &options)
}

fn run_validate(choice: &AdapterArgs, options: &ValidateOptions) -> ExitCode {
    let targets = match open(&choice.choice()) {
        Ok(targets) => targets,
        Err(e) => return error(e),
    };
    // Sizes a user named must fit every adapter asked for, checked before any row runs.
    for target in &targets {
        if let (Ok(ctx), Some(sizes)) = (&target.context, &options.sizes) {
            if let Err(e) = validate::check_sizes(ctx, sizes) {
                return error(format!("--sizes on {}: {e}", target.info.name));
            }
        }
    }
    let mut failed = false;
    for target in targets {
        let info = &target.info;
        println!(
            "validate on {} ({:?}, {:?}), {} steps, seed {}{}",
            info.name,
            info.backend,
            info.device_type,
            options.steps,
            options.seed,
            if options.full { "" } else { "; past 1M elements, one case per kernel (--full: all)" }
        );
        match target.context {
            Ok(ctx) => {
                let rows = validate::run(&ctx, options);
                failed |= rows.iter().any(|r| r.verdict == Verdict::Fail);
                print!("{}", validate::table(&rows));
            }
            Err(e) => {
                failed = true;
                println!("FAIL  the adapter would not open a device: {e}");
            }
        }
        println!();
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `bench`: a table per adapter, and the records of all of them in `--json`.
pub fn bench(args: &BenchArgs) -> ExitCode {
    let variants = match &args.optimizer {
        Some(names) => match bench::find(names) {
            Ok(v) if !v.is_empty() => v,
            Ok(_) => return error("--optimizer names no configuration"),
            Err(e) => return error(e),
        },
        None => bench::variants(),
    };
    let options = bench::BenchOptions {
        variants,
        sizes: args.sizes.clone(),
        tensors: args.tensors.iter().map(|&t| t as usize).collect(),
        layouts: args.layout.clone(),
        warmup: args.warmup,
        reps: args.reps as usize,
    };
    if let Err(e) = options.check() {
        return error(e);
    }
    run_bench(&args.adapters, &options, args.json.as_ref())
}

fn run_bench(choice: &AdapterArgs, options: &bench::BenchOptions, json: Option<&PathBuf>) -> ExitCode {
    let targets = match open(&choice.choice()) {
        Ok(targets) => targets,
        Err(e) => return error(e),
    };
    let mut all = Vec::new();
    let mut failed = false;
    for target in targets {
        let info = &target.info;
        let ctx = match target.context {
            Ok(ctx) => ctx,
            Err(e) => {
                failed = true;
                eprintln!("error: {} ({:?}): {e}", info.name, info.backend);
                continue;
            }
        };
        let timer = bench::Timer::source_of(&ctx);
        println!(
            "bench on {} ({:?}, {:?}), {timer} time, median of {} steps after {} warm-up",
            info.name, info.backend, info.device_type, options.reps, options.warmup
        );
        match bench::run(&ctx, options) {
            Ok(records) => {
                print!("{}", bench::table(&records));
                all.extend(records);
            }
            Err(e) => {
                failed = true;
                eprintln!("error: {e}");
            }
        }
        println!();
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&all).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            return error(format!("{}: {e}", path.display()));
        }
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// No arguments: `validate` on the default adapter, then a short `bench`. 1 on any FAIL.
pub fn main_job(choice: &AdapterArgs) -> ExitCode {
    println!("wgpu-optim: validate on the default adapter, then a short bench\n");
    let validated = run_validate(choice, &ValidateOptions::default());
    let options =
        bench::BenchOptions { sizes: vec![1 << 20], tensors: vec![1, 148], warmup: 2, reps: 5, ..Default::default() };
    let benched = run_bench(choice, &options, None);
    if validated != ExitCode::SUCCESS {
        validated
    } else {
        benched
    }
}

/// `wgpu-optim browser-check`: writes the cases, runs them in headless Chromium, prints each
/// verdict. Exit 0 if all pass, 1 on a FAIL, 2 without Chromium or an adapter.
pub fn browser_check(out: Option<PathBuf>, chromium: PathBuf, timeout: u64) -> ExitCode {
    use wgpu_optim::tools::browser;
    let dir = out.unwrap_or_else(|| std::env::temp_dir().join(format!("wgpu-optim-browser-{}", std::process::id())));
    let written = match browser::write(&dir, &|_, wgsl| wgsl) {
        Ok(written) => written,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    println!("wrote {} variants and {} cases into {}", written.variants, written.cases, dir.display());
    let options = browser::BrowserOptions { chromium, timeout: std::time::Duration::from_secs(timeout) };
    let report = match browser::run(&dir, &options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(adapter) = &report.adapter else {
        eprintln!("error: {}", report.error.as_deref().unwrap_or("no WebGPU adapter"));
        return ExitCode::from(2);
    };
    println!("adapter: {adapter} (shader-f16: {})", report.shader_f16);
    for v in &report.results {
        println!("{} {}: {}", v.status, v.name, v.detail);
    }
    let failed = report.results.iter().filter(|v| v.status != "PASS").count();
    let missing = (written.variants + written.cases).saturating_sub(report.results.len());
    println!("{} passed, {failed} failed, {missing} did not run", report.results.len() - failed);
    if missing > 0 {
        eprintln!("error: {missing} variants or cases did not report");
        return ExitCode::FAILURE;
    }
    if let Some(error) = &report.error {
        eprintln!("error: the harness stopped: {error}");
        return ExitCode::FAILURE;
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
