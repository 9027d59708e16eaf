//! The table of optimizer and flag combinations that `validate` and `tests/gpu_vs_cpu.rs` run
//! (optax's "one table of optimizers drives every optimizer test").

use crate::optim::{AdaGradConfig, AdamConfig, AdamWConfig, OptimizerConfig, RmsPropConfig, SgdConfig};

/// Every algorithm with each flag on its own and in combination: the one table that `validate`
/// and `tests/gpu_vs_cpu.rs` run. Names are lower-case, the flags after the algorithm.
pub fn cases() -> Vec<(&'static str, OptimizerConfig)> {
    let sgd = SgdConfig {
        lr: 0.01,
        ..Default::default()
    };
    let adagrad = AdaGradConfig::default();
    let rms = RmsPropConfig::default();
    let adam = AdamConfig::default();
    let adamw = AdamWConfig::default();
    vec![
        ("sgd", sgd.clone().into()),
        (
            "sgd momentum",
            SgdConfig {
                momentum: 0.9,
                ..sgd.clone()
            }
            .into(),
        ),
        (
            "sgd momentum dampening",
            SgdConfig {
                momentum: 0.9,
                dampening: 0.3,
                ..sgd.clone()
            }
            .into(),
        ),
        (
            "sgd nesterov",
            SgdConfig {
                momentum: 0.9,
                nesterov: true,
                ..sgd.clone()
            }
            .into(),
        ),
        (
            "sgd weight_decay",
            SgdConfig {
                weight_decay: 0.05,
                ..sgd.clone()
            }
            .into(),
        ),
        (
            "sgd maximize",
            SgdConfig {
                maximize: true,
                ..sgd.clone()
            }
            .into(),
        ),
        (
            "sgd nesterov weight_decay maximize",
            SgdConfig {
                momentum: 0.8,
                nesterov: true,
                weight_decay: 0.01,
                maximize: true,
                ..sgd
            }
            .into(),
        ),
        ("adagrad", adagrad.clone().into()),
        (
            "adagrad lr_decay",
            AdaGradConfig {
                lr_decay: 0.1,
                ..adagrad.clone()
            }
            .into(),
        ),
        (
            "adagrad weight_decay",
            AdaGradConfig {
                weight_decay: 0.05,
                ..adagrad.clone()
            }
            .into(),
        ),
        (
            "adagrad initial_accumulator",
            AdaGradConfig {
                initial_accumulator_value: 0.5,
                ..adagrad.clone()
            }
            .into(),
        ),
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
        (
            "rmsprop centered",
            RmsPropConfig {
                centered: true,
                ..rms.clone()
            }
            .into(),
        ),
        (
            "rmsprop momentum",
            RmsPropConfig {
                momentum: 0.9,
                ..rms.clone()
            }
            .into(),
        ),
        (
            "rmsprop centered momentum",
            RmsPropConfig {
                centered: true,
                momentum: 0.5,
                ..rms.clone()
            }
            .into(),
        ),
        (
            "rmsprop weight_decay maximize",
            RmsPropConfig {
                weight_decay: 0.01,
                maximize: true,
                ..rms
            }
            .into(),
        ),
        ("adam", adam.clone().into()),
        (
            "adam amsgrad",
            AdamConfig {
                amsgrad: true,
                ..adam.clone()
            }
            .into(),
        ),
        (
            "adam weight_decay",
            AdamConfig {
                weight_decay: 0.05,
                ..adam.clone()
            }
            .into(),
        ),
        (
            "adam maximize",
            AdamConfig {
                maximize: true,
                ..adam.clone()
            }
            .into(),
        ),
        (
            "adam decoupled",
            AdamConfig {
                weight_decay: 0.1,
                decoupled_weight_decay: true,
                ..adam.clone()
            }
            .into(),
        ),
        (
            "adam amsgrad decoupled maximize",
            AdamConfig {
                amsgrad: true,
                weight_decay: 0.1,
                decoupled_weight_decay: true,
                maximize: true,
                ..adam
            }
            .into(),
        ),
        ("adamw", adamw.clone().into()),
        (
            "adamw amsgrad",
            AdamWConfig {
                amsgrad: true,
                lr: 1e-2,
                ..adamw
            }
            .into(),
        ),
    ]
}
