//! Trains a 64 -> 128 -> 10 MLP (ReLU, softmax cross-entropy) on the UCI digits entirely on the
//! GPU: each epoch is one submission holding every mini-batch's forward pass, backward pass and
//! optimizer update; the loss and the test accuracy are read back once per epoch.
//!
//! ```sh
//! cargo run --release --example train_digits                      # AdamW + warmup/cosine
//! cargo run --release --example train_digits -- --optimizer Lion --schedule one-cycle
//! cargo run --release --example train_digits -- --optimizer '{"name": "SGD", "lr": 0.05, "momentum": 0.9}' \
//!     --schedule '{"name": "StepLR", "step_size": 400, "gamma": 0.1}'
//! cargo run --release --example train_digits -- --sweep           # the grid: sweep/sweep.csv and plots
//! ```
//!
//! `--optimizer` and `--schedule` take a preset name or the JSON `wgpu-optim replay` reads
//! (schedules in optimizer steps). Exit code 0, 1 for a device error, 2 for bad input.

mod data;
mod model;
mod plot;
mod sweep;
mod train;

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use wgpu_optim::GpuContext;

use data::Digits;
use model::Mlp;
use train::{optimizer_preset, schedule_preset, RunSpec, OPTIMIZERS, SCHEDULES};

#[derive(Parser)]
#[command(about = "Train an MLP on the UCI digits on the GPU with wgpu-optim, or sweep optimizers x schedules")]
struct Args {
    /// A preset (SGD, SGD-nesterov, RMSprop, Adagrad, Adam, AdamW, Lion) or the optimizer as
    /// JSON, as `replay` reads it: `{"name": "AdamW", "lr": 0.003}`
    #[arg(long, default_value = "AdamW")]
    optimizer: String,
    /// The learning rate of a preset optimizer (default: the preset's)
    #[arg(long)]
    lr: Option<f64>,
    /// A preset (constant, step, exponential, inverse-time, cosine, warmup-cosine, one-cycle,
    /// plateau) or the schedule as JSON, in optimizer steps
    #[arg(long, default_value = "warmup-cosine")]
    schedule: String,
    /// Epochs (of the 1437 training samples) [default: 30; with --sweep 5]
    #[arg(long)]
    epochs: Option<usize>,
    /// Samples per mini-batch [default: 32; with --sweep 64]
    #[arg(long)]
    batch: Option<usize>,
    /// Seeds the initial weights and the batch order
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run the grid: every preset optimizer (its lr searched first) x every preset schedule x
    /// `--seeds` seeds; writes sweep.csv and the plots into `--out`
    #[arg(long)]
    sweep: bool,
    /// Seeds per cell of the sweep
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Where the sweep writes
    #[arg(long, default_value = "sweep")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let ctx = match GpuContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match args.sweep {
        // The sweep's defaults keep its 189 runs to a few minutes on a CPU adapter.
        true => sweep::run(&ctx, &args.out, args.epochs.unwrap_or(5), args.batch.unwrap_or(64), args.seeds),
        false => single(&ctx, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// One run, its epochs on a progress bar, the final accuracy printed.
fn single(ctx: &GpuContext, args: &Args) -> Result<(), Box<dyn Error>> {
    let digits = Digits::load()?;
    let (epochs, batch) = (args.epochs.unwrap_or(30), args.batch.unwrap_or(32));
    if epochs == 0 {
        return Err("--epochs must be at least 1".into());
    }
    let model = Mlp::new(ctx, &digits, batch)?;
    let optimizer = parse_optimizer(&args.optimizer, args.lr)?;
    // The schedule presets scale with the config's lr (PyTorch's default where the JSON has none).
    let lr = wgpu_optim::OptimizerConfig::from_json(&optimizer)?.algorithm().lr();
    let total = (epochs * model.batches()) as u64;
    let schedule = match SCHEDULES.contains(&args.schedule.as_str()) {
        true => schedule_preset(&args.schedule, lr, total, model.batches() as u64)?,
        false => wgpu_optim::pyjson::parse(&args.schedule)
            .map_err(|e| format!("--schedule is neither a preset ({}) nor JSON: {e}", SCHEDULES.join(", ")))?,
    };
    println!("adapter: {}", ctx.adapter_info().name);
    println!("optimizer: {optimizer}");
    println!("schedule: {schedule}");
    let spec = RunSpec { optimizer, schedule, epochs, seed: args.seed };
    let bar = epoch_bar(epochs as u64, "training");
    let record = train::train(ctx, &model, &spec, |epoch, e| {
        // Above the bar where there is one; plain lines in a log.
        bar.suspend(|| {
            println!(
                "epoch {:>3}  lr {:.2e}  train loss {:.4}  test accuracy {:.1}%",
                epoch + 1,
                e.lr,
                e.train_loss,
                e.test_accuracy
            )
        });
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    let last = record.last().ok_or("--epochs must be at least 1")?;
    println!("test accuracy: {:.2}% ({} test samples)", last.test_accuracy, digits.n_test());
    Ok(())
}

/// A preset name (with `--lr`) or the optimizer's JSON.
fn parse_optimizer(text: &str, lr: Option<f64>) -> Result<serde_json::Value, Box<dyn Error>> {
    if let Some(value) = optimizer_preset(text, lr) {
        return Ok(value);
    }
    let names: Vec<_> = OPTIMIZERS.iter().map(|o| o.0).collect();
    let value = wgpu_optim::pyjson::parse(text)
        .map_err(|e| format!("--optimizer is neither a preset ({}) nor JSON: {e}", names.join(", ")))?;
    if lr.is_some() {
        return Err("--lr goes with a preset optimizer; put \"lr\" into the JSON instead".into());
    }
    // Checked here so that a bad value is reported before any training.
    wgpu_optim::OptimizerConfig::from_json(&value)?;
    Ok(value)
}

/// A bar over `len` epochs (hidden when stderr is not a terminal).
pub fn epoch_bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:<32} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}
