//! The table of optimizer and flag combinations that `validate` and `tests/gpu_vs_cpu.rs` run
//! (optax's "one table of optimizers drives every optimizer test").

use crate::algorithm::{
    AdaGradConfig, AdadeltaConfig, AdamConfig, AdamWConfig, AdamaxConfig, AsgdConfig, NAdamConfig, OptimizerConfig,
    RAdamConfig, RmsPropConfig, RpropConfig, SgdConfig,
};

/// Every algorithm with each flag on its own and in combination: the one table that `validate`
/// and `tests/gpu_vs_cpu.rs` run. Names are lower-case, the flags after the algorithm.
pub fn cases() -> Vec<(&'static str, OptimizerConfig)> {
    let sgd = SgdConfig { lr: 0.01, ..Default::default() };
    let adagrad = AdaGradConfig::default();
    let rms = RmsPropConfig::default();
    let adam = AdamConfig::default();
    let adamw = AdamWConfig::default();
    vec![
        ("sgd", sgd.clone().into()),
        ("sgd momentum", SgdConfig { momentum: 0.9, ..sgd.clone() }.into()),
        ("sgd momentum dampening", SgdConfig { momentum: 0.9, dampening: 0.3, ..sgd.clone() }.into()),
        ("sgd nesterov", SgdConfig { momentum: 0.9, nesterov: true, ..sgd.clone() }.into()),
        ("sgd weight_decay", SgdConfig { weight_decay: 0.05, ..sgd.clone() }.into()),
        ("sgd maximize", SgdConfig { maximize: true, ..sgd.clone() }.into()),
        (
            "sgd nesterov weight_decay maximize",
            SgdConfig { momentum: 0.8, nesterov: true, weight_decay: 0.01, maximize: true, ..sgd }.into(),
        ),
        ("adagrad", adagrad.clone().into()),
        ("adagrad lr_decay", AdaGradConfig { lr_decay: 0.1, ..adagrad.clone() }.into()),
        ("adagrad weight_decay", AdaGradConfig { weight_decay: 0.05, ..adagrad.clone() }.into()),
        ("adagrad initial_accumulator", AdaGradConfig { initial_accumulator_value: 0.5, ..adagrad.clone() }.into()),
        (
            "adagrad all",
            AdaGradConfig {
                lr_decay: 0.01,
                weight_decay: 0.01,
                initial_accumulator_value: 0.1,
                maximize: true,
                ..adagrad
            }
            .into(),
        ),
        ("rmsprop", rms.clone().into()),
        ("rmsprop centered", RmsPropConfig { centered: true, ..rms.clone() }.into()),
        ("rmsprop momentum", RmsPropConfig { momentum: 0.9, ..rms.clone() }.into()),
        ("rmsprop centered momentum", RmsPropConfig { centered: true, momentum: 0.5, ..rms.clone() }.into()),
        ("rmsprop weight_decay maximize", RmsPropConfig { weight_decay: 0.01, maximize: true, ..rms }.into()),
        ("adam", adam.clone().into()),
        ("adam amsgrad", AdamConfig { amsgrad: true, ..adam.clone() }.into()),
        ("adam weight_decay", AdamConfig { weight_decay: 0.05, ..adam.clone() }.into()),
        ("adam maximize", AdamConfig { maximize: true, ..adam.clone() }.into()),
        ("adam decoupled", AdamConfig { weight_decay: 0.1, decoupled_weight_decay: true, ..adam.clone() }.into()),
        (
            "adam amsgrad decoupled maximize",
            AdamConfig { amsgrad: true, weight_decay: 0.1, decoupled_weight_decay: true, maximize: true, ..adam }
                .into(),
        ),
        ("adamw", adamw.clone().into()),
        ("adamw amsgrad", AdamWConfig { amsgrad: true, lr: 1e-2, ..adamw }.into()),
        ("adamax weight_decay", AdamaxConfig { weight_decay: 0.05, ..Default::default() }.into()),
        // Last of its kernel, so the large sizes take it: no L2 term (see "nadam decoupled" below).
        ("adamax maximize", AdamaxConfig { maximize: true, ..Default::default() }.into()),
        ("nadam", NAdamConfig::default().into()),
        (
            "nadam weight_decay maximize",
            NAdamConfig { weight_decay: 0.05, maximize: true, ..Default::default() }.into(),
        ),
        // Last of its kernel, so `validate` takes it at the large sizes: with L2 decay, among a
        // million random elements some gradient `-grad + wd * p` cancels to near `eps`, where a
        // term like `g / (|g| + eps)` turns float32's rounding of `g` into a relative error past
        // any tolerance (PyTorch's own float32 does the same). Adam's and Adamax's rows likewise.
        (
            "nadam decoupled maximize",
            NAdamConfig { weight_decay: 0.1, decoupled_weight_decay: true, maximize: true, ..Default::default() }
                .into(),
        ),
        ("radam", RAdamConfig::default().into()),
        (
            "radam decoupled maximize",
            RAdamConfig { weight_decay: 0.1, decoupled_weight_decay: true, maximize: true, ..Default::default() }
                .into(),
        ),
        ("adadelta", AdadeltaConfig::default().into()),
        (
            "adadelta weight_decay maximize",
            AdadeltaConfig { weight_decay: 0.05, maximize: true, ..Default::default() }.into(),
        ),
        // t0 small, so that averaging starts within the run.
        ("asgd averaging", AsgdConfig { t0: 5.0, lambd: 1e-2, ..Default::default() }.into()),
        ("asgd weight_decay maximize", AsgdConfig { weight_decay: 0.05, maximize: true, ..Default::default() }.into()),
        ("rprop", RpropConfig::default().into()),
        ("rprop maximize", RpropConfig { maximize: true, etas: (0.3, 1.5), ..Default::default() }.into()),
    ]
}
