//! `--sweep`: which optimizer, which schedule? Every preset optimizer x every preset schedule x
//! `seeds` seeds, after a small lr search per optimizer so that each competes at a good lr.
//!
//! 1. lr search: each optimizer's three preset lrs (a factor of ~3 apart), with the `cosine`
//!    schedule and seed 0; the lr with the best final test accuracy wins (ties: lower final
//!    training loss).
//! 2. The grid at that lr: seeds 1..=seeds per cell (not the search's seed 0).
//! 3. `sweep.csv` (one row per run and epoch, search runs included), `sweep_curves.{png,svg}`,
//!    `sweep_heatmap.{png,svg}`, and the best cells printed.

use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;

use indicatif::MultiProgress;
use wgpu_optim::GpuContext;

use crate::data::Digits;
use crate::model::Mlp;
use crate::plot::{plot_sweep, RunCurve};
use crate::train::{optimizer_preset, schedule_preset, train, Epoch, RunSpec, OPTIMIZERS, SCHEDULES};

/// Runs the sweep and writes its files into `out`.
///
/// # Errors
/// No seeds or epochs, a file that cannot be written, or a device error.
pub fn run(ctx: &GpuContext, out: &Path, epochs: usize, batch: usize, seeds: u64) -> Result<(), Box<dyn Error>> {
    if seeds == 0 || epochs == 0 {
        return Err("the sweep needs --seeds and --epochs of at least 1".into());
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let digits = Digits::load()?;
    let model = Mlp::new(ctx, &digits, batch)?;
    let per_epoch = model.batches() as u64;
    let total = epochs as u64 * per_epoch;
    println!("adapter: {}", ctx.adapter_info().name);
    let runs_total = OPTIMIZERS.len() * (3 + SCHEDULES.len() * seeds as usize);
    println!(
        "{} optimizers x {} schedules x {seeds} seeds, {epochs} epochs of {per_epoch} batches each, after a 3-lr search \
         per optimizer: {runs_total} runs",
        OPTIMIZERS.len(),
        SCHEDULES.len()
    );

    let bars = MultiProgress::new();
    let overall = bars.add(crate::epoch_bar(runs_total as u64, "sweep (runs)"));
    let mut csv = String::from("phase,optimizer,schedule,lr,seed,epoch,train_loss,test_accuracy,epoch_lr\n");
    let mut grid = Vec::new();
    let mut one = |phase: &str, name: &str, schedule: &str, lr: f64, seed: u64| -> Result<RunCurve, Box<dyn Error>> {
        let spec = RunSpec {
            optimizer: optimizer_preset(name, Some(lr)).ok_or("a preset optimizer")?,
            schedule: schedule_preset(schedule, lr, total, per_epoch)?,
            epochs,
            seed,
        };
        let bar = bars.add(crate::epoch_bar(epochs as u64, &format!("{name} {schedule} lr {lr:.0e} seed {seed}")));
        let record = train(ctx, &model, &spec, |_, _| bar.inc(1))?;
        bar.finish_and_clear();
        bars.remove(&bar);
        overall.inc(1);
        for (epoch, e) in record.iter().enumerate() {
            let Epoch { train_loss, test_accuracy, lr: epoch_lr } = e;
            let _ = writeln!(
                csv,
                "{phase},{name},{schedule},{lr:e},{seed},{},{train_loss:.6},{test_accuracy:.4},{epoch_lr:e}",
                epoch + 1
            );
        }
        Ok(RunCurve {
            optimizer: name.to_string(),
            schedule: schedule.to_string(),
            lr,
            seed,
            train_loss: record.iter().map(|e| e.train_loss).collect(),
            test_accuracy: record.iter().map(|e| e.test_accuracy).collect(),
        })
    };

    for (name, _, _, lrs) in OPTIMIZERS {
        let mut best: Option<(f64, f64, f64)> = None; // (accuracy, -loss, lr)
        for lr in lrs {
            let run = one("search", name, "cosine", lr, 0)?;
            let score = (final_value(&run.test_accuracy), -final_value(&run.train_loss), lr);
            if best.is_none_or(|b| (score.0, score.1) > (b.0, b.1)) {
                best = Some(score);
            }
        }
        let lr = best.map_or(lrs[1], |b| b.2);
        // Above the bars where there are some; plain lines in a log.
        bars.suspend(|| println!("{name}: lr {lr:e} (searched {lrs:?} with cosine, seed 0)"));
        for schedule in SCHEDULES {
            for seed in 1..=seeds {
                grid.push(one("grid", name, schedule, lr, seed)?);
            }
        }
    }
    overall.finish_and_clear();

    let csv_path = out.join("sweep.csv");
    std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    println!("wrote {}", csv_path.display());
    for path in plot_sweep(&grid, out)? {
        println!("wrote {}", path.display());
    }
    print_best(&grid, seeds);
    Ok(())
}

/// The last epoch's value, NaN (ranked last) where a run diverged.
fn final_value(values: &[f64]) -> f64 {
    values.last().copied().filter(|v| v.is_finite()).unwrap_or(f64::NAN)
}

/// The ten best cells by mean final test accuracy, with the spread over seeds.
fn print_best(grid: &[RunCurve], seeds: u64) {
    let mut cells: Vec<(String, String, f64, Vec<f64>, f64)> = Vec::new();
    for run in grid {
        let acc = final_value(&run.test_accuracy);
        match cells.iter_mut().find(|c| c.0 == run.optimizer && c.1 == run.schedule) {
            Some(cell) => cell.3.push(acc),
            None => cells.push((run.optimizer.clone(), run.schedule.clone(), run.lr, vec![acc], 0.0)),
        }
    }
    for cell in &mut cells {
        cell.4 = mean(&cell.3);
    }
    cells.sort_by(|a, b| b.4.total_cmp(&a.4).then(a.0.cmp(&b.0)));
    println!("\nbest cells (final test accuracy, mean and range over {seeds} seeds):");
    println!("| optimizer | schedule | lr | accuracy | min-max |");
    println!("|---|---|---|---|---|");
    for (optimizer, schedule, lr, accs, m) in cells.iter().filter(|c| c.4.is_finite()).take(10) {
        let lo = accs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = accs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!("| {optimizer} | {schedule} | {lr:e} | {m:.2}% | {lo:.1}-{hi:.1} |");
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}
