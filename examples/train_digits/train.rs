//! One training run: the optimizer and schedule from a preset name or the JSON `replay` reads,
//! `epochs` epochs of mini-batches, each epoch one submission (every batch's forward, backward
//! and update), the loss and test accuracy read back once per epoch (for the log, the curves and
//! `ReduceLROnPlateau`).

use std::error::Error;

use serde_json::{json, Value};
use wgpu_optim::schedule::from_json as schedule_from_json;
use wgpu_optim::{GpuContext, Optimizer, OptimizerConfig};

use crate::data::Rng;
use crate::model::Mlp;

/// The optimizer presets: name, PyTorch config (without `lr`), the default lr and the lrs the
/// sweep searches (a factor of ~3 apart around the default).
pub const OPTIMIZERS: [(&str, &str, f64, [f64; 3]); 7] = [
    ("SGD", r#"{"name": "SGD"}"#, 0.1, [0.03, 0.1, 0.3]),
    ("SGD-nesterov", r#"{"name": "SGD", "momentum": 0.9, "nesterov": true}"#, 0.03, [0.01, 0.03, 0.1]),
    ("RMSprop", r#"{"name": "RMSprop"}"#, 1e-3, [3e-4, 1e-3, 3e-3]),
    ("Adagrad", r#"{"name": "Adagrad"}"#, 0.03, [0.01, 0.03, 0.1]),
    ("Adam", r#"{"name": "Adam"}"#, 1e-3, [3e-4, 1e-3, 3e-3]),
    ("AdamW", r#"{"name": "AdamW", "weight_decay": 0.01}"#, 3e-3, [1e-3, 3e-3, 1e-2]),
    ("Lion", r#"{"name": "Lion", "weight_decay": 0.01}"#, 3e-4, [1e-4, 3e-4, 1e-3]),
];

/// The schedule presets, each over the whole run (`total` steps, `per_epoch` of them an epoch).
pub const SCHEDULES: [&str; 8] =
    ["constant", "step", "exponential", "inverse-time", "cosine", "warmup-cosine", "one-cycle", "plateau"];

/// A schedule preset as the JSON `replay` reads (`null`: the lr stays).
///
/// - `step`: StepLR, x0.2 at each third of the run
/// - `exponential`: ExponentialLR down to 1% of the lr at the end
/// - `inverse-time`: Keras InverseTimeDecay, `lr / (1 + 0.5 epoch)` (continuous)
/// - `cosine`: CosineAnnealingLR over the run
/// - `warmup-cosine`: LinearLR from 1% over the first 10% of the run, then CosineAnnealingLR
/// - `one-cycle`: OneCycleLR with `max_lr` the lr, `cycle_momentum` false
/// - `plateau`: ReduceLROnPlateau (x0.5 after 2 epochs without a better training loss)
pub fn schedule_preset(name: &str, lr: f64, total: u64, per_epoch: u64) -> Result<Value, String> {
    let warmup = (total / 10).max(1);
    Ok(match name {
        "constant" => Value::Null,
        "step" => json!({"name": "StepLR", "step_size": (total / 3).max(1), "gamma": 0.2}),
        "exponential" => json!({"name": "ExponentialLR", "gamma": 0.01f64.powf(1.0 / total as f64)}),
        "inverse-time" => json!({"name": "InverseTimeDecay", "decay_steps": per_epoch, "decay_rate": 0.5}),
        "cosine" => json!({"name": "CosineAnnealingLR", "T_max": total}),
        "warmup-cosine" => json!({
            "name": "SequentialLR",
            "schedulers": [
                {"name": "LinearLR", "start_factor": 0.01, "end_factor": 1.0, "total_iters": warmup},
                {"name": "CosineAnnealingLR", "T_max": total - warmup},
            ],
            "milestones": [warmup],
        }),
        // Without momentum cycling, which PyTorch refuses for optimizers without momentum (Adagrad).
        "one-cycle" => json!({"name": "OneCycleLR", "max_lr": lr, "total_steps": total, "cycle_momentum": false}),
        "plateau" => json!({"name": "ReduceLROnPlateau", "factor": 0.5, "patience": 2}),
        other => return Err(format!("unknown schedule preset {other:?}; presets: {}", SCHEDULES.join(", "))),
    })
}

/// An optimizer preset's JSON with `lr`, or `None` for an unknown name.
pub fn optimizer_preset(name: &str, lr: Option<f64>) -> Option<Value> {
    let (_, json, default, _) = OPTIMIZERS.iter().find(|(n, ..)| n.eq_ignore_ascii_case(name))?;
    let mut value: Value = serde_json::from_str(json).expect("the presets are valid JSON");
    value["lr"] = json!(lr.unwrap_or(*default));
    Some(value)
}

/// What one run trains.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The optimizer as `replay` reads it (`{"name": "AdamW", "lr": 0.003, ...}`).
    pub optimizer: Value,
    /// The schedule as `replay` reads it, in optimizer steps, or `null`.
    pub schedule: Value,
    pub epochs: usize,
    /// Seeds the initial weights and the batch order.
    pub seed: u64,
}

/// One epoch's figures.
#[derive(Clone, Copy, Debug)]
pub struct Epoch {
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Test accuracy (%) after the epoch.
    pub test_accuracy: f64,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
}

/// Trains `model` from freshly initialised weights as `spec` says; `on_epoch` sees each epoch.
///
/// # Errors
/// An invalid optimizer or schedule (PyTorch's message), or a device error.
pub fn train(
    ctx: &GpuContext,
    model: &Mlp,
    spec: &RunSpec,
    mut on_epoch: impl FnMut(usize, &Epoch),
) -> Result<Vec<Epoch>, Box<dyn Error>> {
    let config = OptimizerConfig::from_json(&spec.optimizer)?;
    // The config's lr: the JSON's, or the optimizer's PyTorch default where it has none.
    let lr = config.algorithm().lr();
    let mut opt = Optimizer::new(ctx, config)?;
    let group = opt.default_group();
    // The schedule first: one that cycles SGD's momentum (OneCycleLR) needs its buffer to exist
    // when the tensors are registered.
    if !spec.schedule.is_null() {
        opt.set_schedule(group, schedule_from_json(&spec.schedule, lr)?)?;
    }
    opt.add_params(group, &model.arena().bindings())?;
    model.write_params(ctx, &Mlp::initial_params(spec.seed))?;
    let mut rng = Rng::new(spec.seed ^ 0x5eed_0bde_c0de);
    let mut epochs = Vec::with_capacity(spec.epochs);
    for epoch in 0..spec.epochs {
        model.set_order(ctx, &rng.permutation(crate::data::TRAIN))?;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let mut lr_now = opt.lr(group)?;
        for b in 0..model.batches() {
            lr_now = opt.lr(group)?;
            model.record_batch(&mut encoder, b);
            opt.record(&mut encoder)?;
        }
        model.record_evaluate(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        let (train_loss, test_accuracy) = model.read_record(ctx)?;
        // ReduceLROnPlateau's metric; the other schedules ignore it.
        opt.observe(train_loss);
        let record = Epoch { train_loss, test_accuracy, lr: lr_now };
        on_epoch(epoch, &record);
        epochs.push(record);
    }
    Ok(epochs)
}
