//! No input panics: property tests over everything that parses user data (optimizer and scheduler
//! JSON, golden case files, checkpoints). The budget is proptest's (256 cases a property; set
//! `PROPTEST_CASES` for a longer run).

mod common;

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::{json, Value};
use wgpu_optim::replay::GoldenCase;
use wgpu_optim::schedule;
use wgpu_optim::OptimizerConfig;

/// Any JSON value, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or inf", |x| x.is_finite()).prop_map(Value::from),
        prop_oneof![Just(-1.0), Just(0.0), Just(1e-300), Just(1e300), Just(0.5), Just(1.0)].prop_map(Value::from),
        "[a-zA-Z_]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys that exist somewhere in our configs, and some that do not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "name",
            "lr",
            "betas",
            "eps",
            "weight_decay",
            "amsgrad",
            "maximize",
            "momentum",
            "dampening",
            "nesterov",
            "alpha",
            "centered",
            "lr_decay",
            "initial_accumulator_value",
            "decoupled_weight_decay",
            "step_size",
            "gamma",
            "milestones",
            "schedulers",
            "T_max",
            "eta_min",
            "T_0",
            "T_mult",
            "base_lr",
            "max_lr",
            "total_steps",
            "epochs",
            "steps_per_epoch",
            "pct_start",
            "anneal_strategy",
            "mode",
            "factor",
            "patience",
            "threshold",
            "cooldown",
            "min_lr",
            "total_iters",
            "power",
            "start_factor",
            "end_factor",
            "decay_steps",
            "decay_rate",
            "staircase",
            "step_size_up",
            "step_size_down",
            "cycle_momentum",
            "base_momentum",
            "max_momentum",
            "three_phase",
            "div_factor",
            "final_div_factor",
        ])
        .prop_map(String::from),
        "[a-z_]{1,8}",
    ]
}

fn names() -> impl Strategy<Value = Value> {
    // Every optimizer of the registry, the schedules, and one name that is neither.
    let mut names: Vec<&'static str> = wgpu_optim::algorithm::OPTIMIZER_NAMES.to_vec();
    names.extend([
        "StepLR",
        "MultiStepLR",
        "ConstantLR",
        "LinearLR",
        "ExponentialLR",
        "PolynomialLR",
        "CosineAnnealingLR",
        "CosineAnnealingWarmRestarts",
        "CyclicLR",
        "OneCycleLR",
        "SequentialLR",
        "ChainedScheduler",
        "ReduceLROnPlateau",
        "InverseTimeDecay",
        "ExponentialDecay",
        "RandomLR",
        "Nope",
    ]);
    prop::sample::select(names).prop_map(Value::from)
}

/// An object with a real name and arbitrary arguments: the shape that reaches deepest.
fn config_like() -> impl Strategy<Value = Value> {
    (names(), prop::collection::btree_map(key(), any_json(), 0..8)).prop_map(|(name, args)| {
        let mut object: serde_json::Map<String, Value> = args.into_iter().collect();
        object.insert("name".into(), name);
        Value::Object(object)
    })
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-optim-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

proptest! {
    #[test]
    fn configs_never_panic(value in prop_oneof![any_json(), config_like()]) {
        let _ = OptimizerConfig::from_json(&value);
        if let Ok(s) = schedule::from_json(&value, 0.1) {
            // A schedule that was accepted evaluates anywhere without panicking.
            for step in [0u64, 1, 7, 1000, u64::MAX / 2] {
                let _ = (s.lr(step), s.momentum(step));
            }
        }
    }

    #[test]
    fn nested_schedules_never_panic(inner in prop::collection::vec(config_like(), 0..4), milestones in any_json()) {
        for name in ["SequentialLR", "ChainedScheduler"] {
            let spec = json!({"name": name, "schedulers": inner.clone(), "milestones": milestones.clone()});
            if let Ok(s) = schedule::from_json(&spec, 0.1) {
                let _ = s.lr(50);
            }
        }
    }

    #[test]
    fn case_files_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), cut in 0.0f64..1.0) {
        let path = scratch("random.json");
        std::fs::write(&path, &bytes).unwrap();
        prop_assert!(GoldenCase::load(&path).is_err());
        // A real case cut anywhere.
        let full = std::fs::read(common::data("adam_n1.json")).unwrap();
        // Cut before the closing brace (what follows it is only whitespace, and optional).
        let body = full.iter().rposition(|&b| b == b'}').unwrap();
        std::fs::write(&path, &full[..(body as f64 * cut) as usize]).unwrap();
        prop_assert!(GoldenCase::load(&path).is_err());
    }
}

#[cfg(not(skip_gpu_tests))]
mod checkpoints {
    use super::*;
    use wgpu_optim::{AdamConfig, Optimizer, ParamBinding};

    fn checkpoint() -> (Optimizer, Vec<u8>) {
        let ctx = common::gpu();
        let (p, g) = (common::buffer(&ctx, &[1.0; 64]), common::buffer(&ctx, &[0.5; 64]));
        let mut opt = Optimizer::new(&ctx, AdamConfig { amsgrad: true, ..Default::default() }).unwrap();
        opt.add_params(opt.default_group(), &[ParamBinding::whole(&p, &g, 64)]).unwrap();
        opt.step().unwrap();
        let path = scratch("good.safetensors");
        opt.save_state(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        (opt, bytes)
    }

    proptest! {
        #[test]
        fn damaged_checkpoints_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in 0.0f64..1.0,
            noise in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            thread_local!(static STATE: std::cell::RefCell<Option<(Optimizer, Vec<u8>)>> = const { std::cell::RefCell::new(None) });
            STATE.with(|state| {
                let mut state = state.borrow_mut();
                let (opt, good) = state.get_or_insert_with(checkpoint);
                let path = scratch("damaged.safetensors");
                let mut bytes = good.clone();
                for (at, byte) in &flips {
                    let i = at.index(bytes.len());
                    bytes[i] ^= byte | 1;
                }
                std::fs::write(&path, &bytes).unwrap();
                let _ = opt.load_state(&path);
                std::fs::write(&path, &good[..(good.len() as f64 * cut) as usize]).unwrap();
                let _ = opt.load_state(&path);
                std::fs::write(&path, &noise).unwrap();
                assert!(opt.load_state(&path).is_err());
            });
        }
    }
}
