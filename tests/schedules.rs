//! Learning-rate schedules against PyTorch: the golden lr sequences, exact values at every
//! boundary, resume from a checkpoint at every step, and every argument check's message.
//!
//! The goldens in `tests/data/` come from PyTorch 2.15.0 (see `shared/goldens/README.md` for the
//! loop that made them): `lr[t]` is `optimizer.param_groups[0]["lr"]` before the (t+1)-th step.

use std::path::PathBuf;

mod common;

use serde_json::{json, Value};
use wgpu_optim::schedule::*;
use wgpu_optim::Error;

/// PyTorch runs most schedules recursively, we use closed forms: they agree to ~1e-15 relative.
const REL_TOL: f64 = 1e-12;
/// For values at or near 0 (PolynomialLR's end).
const ABS_TOL: f64 = 1e-18;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= ABS_TOL + REL_TOL * b.abs()
}

/// Fails with the worst element, its index and both values.
fn assert_seq(case: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{case}: lengths");
    let worst = (0..want.len())
        .max_by(|&i, &j| {
            let e = |k: usize| (got[k] - want[k]).abs() / (ABS_TOL + REL_TOL * want[k].abs());
            e(i).total_cmp(&e(j))
        })
        .unwrap_or(0);
    assert!(
        got.iter().zip(want).all(|(&g, &w)| close(g, w)),
        "{case}: worst at step {worst}: ours {:e}, PyTorch {:e} (rel tol {REL_TOL:e}, abs tol {ABS_TOL:e})",
        got[worst],
        want[worst]
    );
}

fn assert_close(what: &str, got: f64, want: f64) {
    assert!(close(got, want), "{what}: ours {got:e}, expected {want:e}");
}

fn golden(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number")).collect()
}

/// A golden's scheduler, its optimizer's lr, its lr sequence and its losses (plateau only).
struct Case {
    scheduler: Value,
    base_lr: f64,
    lr: Vec<f64>,
    losses: Option<Vec<f64>>,
}

fn case(name: &str) -> Case {
    let g = golden(name);
    Case {
        scheduler: g["scheduler"].clone(),
        base_lr: g["optimizer"]["lr"].as_f64().expect("optimizer.lr"),
        lr: floats(&g["lr"]),
        losses: g.get("losses").map(floats),
    }
}

/// The lr before each step, observing the loss after it, as the golden loop does.
fn run(sched: &mut LrScheduler, from: u64, steps: u64, losses: Option<&[f64]>) -> Vec<f64> {
    (from..steps)
        .map(|t| {
            let lr = sched.lr(t).expect("a step within the schedule");
            if let Some(losses) = losses {
                sched.observe_at(t + 1, losses[t as usize]);
            }
            lr
        })
        .collect()
}

macro_rules! golden_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let c = case(stringify!($name));
            let mut sched = from_json(&c.scheduler, c.base_lr).expect("golden scheduler builds");
            let got = run(&mut sched, 0, c.lr.len() as u64, c.losses.as_deref());
            assert_seq(stringify!($name), &got, &c.lr);
        }
    )*};
}

golden_tests!(
    sched_step,
    sched_multistep,
    sched_exponential,
    sched_cosine,
    sched_cosine_warm_restarts,
    sched_cyclic_triangular,
    sched_cyclic_triangular2,
    sched_onecycle_cos,
    sched_polynomial,
    sched_linear,
    sched_constant,
    sched_inverse_time,
    sched_sequential_warmup_cosine,
    sched_chained_constant_exponential,
    sched_plateau_min,
    adam_sequential_warmup_cosine,
    adamw_onecycle_cycle_momentum,
    sched_sequential_milestone0,
    sched_chained_linear_cosine,
    sched_linear_plateau,
    sgd_momentum_sequential_onecycle_constant,
);

const ALL_GOLDENS: [&str; 21] = [
    "sched_step",
    "sched_multistep",
    "sched_exponential",
    "sched_cosine",
    "sched_cosine_warm_restarts",
    "sched_cyclic_triangular",
    "sched_cyclic_triangular2",
    "sched_onecycle_cos",
    "sched_polynomial",
    "sched_linear",
    "sched_constant",
    "sched_inverse_time",
    "sched_sequential_warmup_cosine",
    "sched_chained_constant_exponential",
    "sched_plateau_min",
    "adam_sequential_warmup_cosine",
    "adamw_onecycle_cycle_momentum",
    "sched_sequential_milestone0",
    "sched_chained_linear_cosine",
    "sched_linear_plateau",
    "sgd_momentum_sequential_onecycle_constant",
];

/// Where PyTorch itself evaluates a closed form (or keeps a plain state), ours is the same
/// arithmetic in the same order, so the numbers are bit for bit PyTorch's.
#[test]
fn pytorch_closed_forms_are_bit_exact() {
    for name in [
        "sched_step",
        "sched_constant",
        "sched_cosine_warm_restarts",
        "sched_cyclic_triangular",
        "sched_cyclic_triangular2",
        "sched_onecycle_cos",
        "adamw_onecycle_cycle_momentum",
        "sched_inverse_time",
        "sched_plateau_min",
    ] {
        let c = case(name);
        let mut sched = from_json(&c.scheduler, c.base_lr).expect("builds");
        let got = run(&mut sched, 0, c.lr.len() as u64, c.losses.as_deref());
        let diff = got.iter().zip(&c.lr).position(|(a, b)| a != b);
        assert!(
            diff.is_none(),
            "{name}: step {diff:?} differs from PyTorch's bits (is serde_json's `float_roundtrip` \
             feature on? without it the goldens' decimals can parse 1 ulp off)"
        );
    }
}

#[test]
fn onecycle_golden_cycles_beta1() {
    // The golden does not store beta1; PyTorch sets it to max_momentum at construction and to
    // base_momentum at the peak (pct_start * total_steps - 1 = 11), then back.
    let c = case("adamw_onecycle_cycle_momentum");
    let sched = from_json(&c.scheduler, c.base_lr).expect("builds");
    assert_eq!(sched.momentum(0).unwrap(), Some(0.95));
    assert_eq!(sched.momentum(11).unwrap(), Some(0.85));
    assert_eq!(sched.momentum(39).unwrap(), Some(0.95));
    let peak = (0..40).max_by(|&a, &b| c.lr[a].total_cmp(&c.lr[b]));
    assert_eq!(peak, Some(11));
}

// ---------------------------------------------------------------------------------------------
// Resume: the state at step k, through JSON, into a fresh scheduler, continues identically.

#[test]
fn resume_at_every_step_matches_an_uninterrupted_run() {
    for name in ALL_GOLDENS {
        let c = case(name);
        let steps = c.lr.len() as u64;
        let mut whole = from_json(&c.scheduler, c.base_lr).expect("builds");
        let uninterrupted = run(&mut whole, 0, steps, c.losses.as_deref());
        for k in 0..=steps {
            let mut first = from_json(&c.scheduler, c.base_lr).expect("builds");
            run(&mut first, 0, k, c.losses.as_deref());
            let saved = serde_json::to_string(&first.state()).expect("state serializes");
            let state: SchedulerState = serde_json::from_str(&saved).expect("state deserializes");
            let mut resumed = from_json(&c.scheduler, c.base_lr).expect("builds");
            resumed.restore(&state).expect("restores");
            let rest = run(&mut resumed, k, steps, c.losses.as_deref());
            assert_eq!(rest, uninterrupted[k as usize..], "{name}: resumed at step {k}");
        }
    }
}

#[test]
fn plateau_state_keeps_counters_and_an_infinite_best() {
    let c = case("sched_plateau_min");
    let mut sched = from_json(&c.scheduler, c.base_lr).expect("builds");
    let fresh = serde_json::to_value(sched.state()).expect("serializes");
    assert_eq!(fresh["kind"], "ReduceLROnPlateau");
    assert_eq!(fresh["best"], "inf", "JSON has no infinity: it is written as a name");
    let losses = c.losses.expect("losses");
    run(&mut sched, 0, 20, Some(&losses));
    let SchedulerState::ReduceLROnPlateau(s) = sched.state() else { panic!("plateau state") };
    assert_eq!(s.last_epoch, 20);
    assert_eq!(s.lr, c.lr[20]);
    assert!(s.best.is_finite());
}

#[test]
fn restore_refuses_a_state_of_the_other_kind() {
    let mut pure = from_json(&json!({"name": "StepLR", "step_size": 3}), 0.1).expect("builds");
    let mut plateau = from_json(&json!({"name": "ReduceLROnPlateau"}), 0.1).expect("builds");
    let err = pure.restore(&plateau.state()).expect_err("plateau state into StepLR");
    assert_eq!(err.to_string(), "invalid scheduler config: cannot restore a ReduceLROnPlateau state into StepLR");
    let err = plateau.restore(&SchedulerState::Pure).expect_err("pure state into plateau");
    assert!(matches!(err, Error::Config { what: "scheduler", .. }), "{err:?}");
    let SchedulerState::ReduceLROnPlateau(mut bad) = plateau.state() else { panic!("plateau state") };
    bad.lr = -1.0;
    let err = plateau.restore(&SchedulerState::ReduceLROnPlateau(bad)).expect_err("negative lr");
    assert_eq!(err.to_string(), "invalid scheduler config: ReduceLROnPlateau state: invalid lr -1.0");
}

// ---------------------------------------------------------------------------------------------
// Exact values at the boundaries.

#[test]
fn step_lr_boundaries() {
    let s = StepLr::new(0.1, StepLrConfig { step_size: 7, gamma: 0.5 }).expect("valid");
    assert_eq!([s.lr(0), s.lr(6), s.lr(7), s.lr(13), s.lr(14), s.lr(21)], [0.1, 0.1, 0.05, 0.05, 0.025, 0.0125]);
    assert_eq!(StepLrConfig::new(3).gamma, 0.1);
    assert_eq!(s.multiplier(14), Some(0.25));
}

#[test]
fn multi_step_lr_boundaries_and_repeats() {
    let s = MultiStepLr::new(1.0, MultiStepLrConfig { milestones: vec![10, 25, 25], gamma: 0.5 }).expect("valid");
    assert_eq!([s.lr(9), s.lr(10), s.lr(24), s.lr(25), s.lr(1000)], [1.0, 0.5, 0.5, 0.125, 0.125]);
    let pytorch = MultiStepLr::new(0.1, MultiStepLrConfig { milestones: vec![10, 25, 40], gamma: 0.3 }).expect("valid");
    for (t, k) in [(9, 0), (10, 1), (24, 1), (25, 2), (39, 2), (40, 3)] {
        assert_close(&format!("MultiStepLR at {t}"), pytorch.lr(t), 0.1 * 0.3f64.powi(k));
    }
}

#[test]
fn constant_lr_boundaries() {
    let s = ConstantLr::new(0.1, ConstantLrConfig::default()).expect("valid");
    assert_eq!([s.lr(0), s.lr(4), s.lr(5), s.lr(100)], [0.1 / 3.0, 0.1 / 3.0, 0.1, 0.1]);
    // PyTorch applies the factor at step 0 and, with total_iters 0, never takes it back.
    let zero = ConstantLr::new(0.1, ConstantLrConfig { factor: 0.5, total_iters: 0 }).expect("valid");
    assert_eq!([zero.lr(0), zero.lr(50)], [0.05, 0.05]);
}

#[test]
fn linear_lr_boundaries() {
    let s = LinearLr::new(0.1, LinearLrConfig { start_factor: 0.1, end_factor: 1.0, total_iters: 20 }).expect("valid");
    assert_close("LinearLR at 0", s.lr(0), 0.01);
    assert_close("LinearLR at 10", s.lr(10), 0.055);
    assert_eq!([s.lr(20), s.lr(21), s.lr(1000)], [0.1, 0.1, 0.1]);
    let down =
        LinearLr::new(1.0, LinearLrConfig { start_factor: 1.0, end_factor: 0.0, total_iters: 4 }).expect("valid");
    assert_eq!([down.lr(0), down.lr(2), down.lr(4), down.lr(5)], [1.0, 0.5, 0.0, 0.0]);
    let zero =
        LinearLr::new(1.0, LinearLrConfig { start_factor: 0.25, end_factor: 1.0, total_iters: 0 }).expect("valid");
    assert_eq!(zero.lr(9), 0.25, "PyTorch keeps start_factor when total_iters is 0");
}

#[test]
fn exponential_lr_values() {
    let s = ExponentialLr::new(0.1, ExponentialLrConfig { gamma: 0.95 }).expect("valid");
    assert_eq!(s.lr(0), 0.1);
    assert_close("ExponentialLR at 59", s.lr(59), 0.1 * 0.95f64.powi(59));
}

#[test]
fn polynomial_lr_reaches_zero_and_stays() {
    let s = PolynomialLr::new(0.1, PolynomialLrConfig { total_iters: 40, power: 2.0 }).expect("valid");
    assert_eq!(s.lr(0), 0.1);
    assert_close("PolynomialLR at 20", s.lr(20), 0.025);
    assert_eq!([s.lr(40), s.lr(41), s.lr(1 << 40)], [0.0, 0.0, 0.0]);
    let zero = PolynomialLr::new(0.1, PolynomialLrConfig { total_iters: 0, power: 1.0 }).expect("valid");
    assert_eq!(zero.lr(7), 0.1, "PyTorch leaves the lr alone when total_iters is 0");
}

#[test]
fn cosine_annealing_lr_rises_back_past_t_max() {
    let s = CosineAnnealingLr::new(0.1, CosineAnnealingLrConfig { t_max: 20, eta_min: 0.001 }).expect("valid");
    assert_eq!(s.lr(0), 0.1);
    assert_close("at T_max / 2", s.lr(10), 0.0505);
    assert_eq!(s.lr(20), 0.001, "eta_min at T_max");
    assert!(s.lr(21) > s.lr(20), "past T_max the lr rises");
    assert_close("at 2 T_max", s.lr(40), 0.1);
    assert_eq!(s.lr(60), 0.001, "period 2 T_max");
    // PyTorch's recursion is not a product, even with eta_min = 0: past each trough it adds.
    let zero = CosineAnnealingLr::new(2.0, CosineAnnealingLrConfig::new(4)).expect("valid");
    assert_eq!((s.multiplier(3), zero.multiplier(3)), (None, None));
    let mut lr = 2.0;
    for t in 0..=16 {
        lr = zero.chain(t, lr);
        assert_close(&format!("the recursion at {t} follows the closed form"), lr + 1.0, zero.lr(t) + 1.0);
    }
}

#[test]
fn warm_restarts_restart_at_base_lr() {
    let cfg = CosineAnnealingWarmRestartsConfig { t_0: 10, t_mult: 2, eta_min: 0.0 };
    let s = CosineAnnealingWarmRestarts::new(0.1, cfg).expect("valid");
    for restart in [0, 10, 30, 70, 150] {
        assert_eq!(s.lr(restart), 0.1, "restart at {restart}");
        assert!(restart == 0 || s.lr(restart - 1) < 0.01, "end of the cycle before {restart}");
    }
    assert_close("middle of the 20-step cycle", s.lr(20), 0.05);
    let flat = CosineAnnealingWarmRestarts::new(1.0, CosineAnnealingWarmRestartsConfig::new(5)).expect("valid");
    assert_eq!([flat.lr(3), flat.lr(8), flat.lr(10_000_003)].map(f64::to_bits), [flat.lr(3).to_bits(); 3]);
    let triple =
        CosineAnnealingWarmRestarts::new(1.0, CosineAnnealingWarmRestartsConfig { t_0: 2, t_mult: 3, eta_min: 0.5 })
            .expect("valid");
    assert_eq!([triple.lr(2), triple.lr(8), triple.lr(26)], [1.0, 1.0, 1.0]); // 2, 2+6, 2+6+18
    assert_close("T_cur 3 of 6", triple.lr(5), 0.75);
    assert!(triple.lr(u64::MAX).is_finite());
}

#[test]
fn cyclic_lr_triangles() {
    let cfg = CyclicLrConfig { step_size_up: 10, ..CyclicLrConfig::new(0.01, 0.1) };
    let s = CyclicLr::new(123.0, cfg.clone()).expect("valid");
    assert_eq!(s.lr(0), 0.01, "the optimizer's lr is ignored");
    assert_close("peak", s.lr(10), 0.1);
    assert_close("back at the base", s.lr(20), 0.01);
    assert_close("second peak", s.lr(30), 0.1);
    assert_eq!(s.momentum(0), Some(0.9));
    assert_close("momentum at the peak", s.momentum(10).unwrap_or(f64::NAN), 0.8);

    let halving = CyclicLr::new(
        0.0,
        CyclicLrConfig {
            step_size_up: 8,
            step_size_down: Some(4),
            mode: CyclicMode::Triangular2,
            cycle_momentum: false,
            ..cfg.clone()
        },
    )
    .expect("valid");
    assert_close("first peak", halving.lr(8), 0.1);
    assert_close("end of cycle 1", halving.lr(12), 0.01);
    assert_close("second peak is half as high", halving.lr(20), 0.01 + 0.09 / 2.0);
    assert_close("third peak", halving.lr(32), 0.01 + 0.09 / 4.0);
    assert_eq!(halving.momentum(8), None);

    let exp =
        CyclicLr::new(0.0, CyclicLrConfig { mode: CyclicMode::ExpRange, gamma: 0.99, ..cfg.clone() }).expect("valid");
    assert_close("exp_range scales by gamma^t", exp.lr(10), 0.01 + 0.09 * 0.99f64.powi(10));

    let custom = CyclicLr::new(
        0.0,
        CyclicLrConfig {
            scale_fn: Some(ScaleFn(std::sync::Arc::new(|x| 1.0 / x))),
            scale_mode: ScaleMode::Cycle,
            ..cfg
        },
    )
    .expect("valid");
    assert_close("custom scale on the cycle", custom.lr(30), 0.01 + 0.09 / 2.0);
}

#[test]
fn one_cycle_lr_phase_ends() {
    let s = OneCycleLr::new(0.0, OneCycleLrConfig::new(0.1, 60)).expect("valid");
    assert_close("start", s.lr(0), 0.1 / 25.0);
    assert_eq!(s.lr(17), 0.1, "peak at pct_start * total_steps - 1");
    assert_eq!(s.momentum(17), Some(0.85));
    assert_close("end", s.lr(59), 0.1 / 25.0 / 1e4);
    assert_eq!(s.momentum(59), Some(0.95));
    assert_eq!(s.lr(1000), s.lr(60), "PyTorch stops at total_steps; we hold its last value");

    let three =
        OneCycleLr::new(0.0, OneCycleLrConfig { three_phase: true, ..OneCycleLrConfig::new(0.1, 100) }).expect("valid");
    assert_eq!(three.lr(29), 0.1);
    assert_close("back at initial", three.lr(58), 0.004);
    assert_eq!(three.momentum(58), Some(0.95));
    assert_close("end", three.lr(99), 4e-7);

    let linear = OneCycleLr::new(
        0.0,
        OneCycleLrConfig {
            anneal_strategy: AnnealStrategy::Linear,
            cycle_momentum: false,
            ..OneCycleLrConfig::with_epochs(1.0, 10, 10)
        },
    )
    .expect("valid");
    assert_close("halfway up", linear.lr(29) - linear.lr(0), (1.0 - 0.04) * 29.0 / 29.0);
    assert_eq!(linear.momentum(3), None);
}

#[test]
fn sequential_lr_restarts_each_piece_at_its_milestone() {
    let s = SequentialLr::new(
        vec![
            Box::new(
                LinearLr::new(0.1, LinearLrConfig { start_factor: 0.1, total_iters: 5, ..Default::default() })
                    .expect("valid"),
            ),
            Box::new(StepLr::new(0.1, StepLrConfig { step_size: 3, gamma: 0.5 }).expect("valid")),
            Box::new(ConstantLr::new(0.1, ConstantLrConfig { factor: 0.5, total_iters: 100 }).expect("valid")),
        ],
        vec![5, 12],
    )
    .expect("valid");
    assert_close("warmup start", s.lr(0), 0.01);
    assert_close("warmup end", s.lr(4), 0.082);
    assert_eq!([s.lr(5), s.lr(7), s.lr(8), s.lr(11)], [0.1, 0.1, 0.05, 0.025]);
    assert_eq!(s.lr(12), 0.05, "the third piece starts from its own step 0");
    let cycled = SequentialLr::new(
        vec![
            Box::new(ConstantLr::new(0.1, ConstantLrConfig::default()).expect("valid")),
            Box::new(OneCycleLr::new(0.1, OneCycleLrConfig::new(0.1, 10)).expect("valid")),
        ],
        vec![4],
    )
    .expect("valid");
    assert_eq!(cycled.momentum(3), Some(0.95), "OneCycleLR's constructor set max_momentum already");
    assert_eq!(cycled.momentum(4), Some(0.95), "momentum comes from the active piece");
    assert_eq!(cycled.momentum(7), OneCycleLr::new(0.1, OneCycleLrConfig::new(0.1, 10)).unwrap().momentum(3));
}

#[test]
fn sequential_lr_milestone_zero_skips_the_first_piece() {
    let s = schedule_from_json(
        &json!({"name": "SequentialLR", "schedulers": [
            {"name": "ConstantLR", "factor": 0.5, "total_iters": 3},
            {"name": "ExponentialLR", "gamma": 0.5}
        ], "milestones": [0]}),
        1.0,
    )
    .expect("PyTorch takes milestone 0");
    assert_eq!([s.lr(0), s.lr(1), s.lr(3)], [1.0, 0.5, 0.125]);
    // Equal milestones skip the pieces between them.
    let s = SequentialLr::new(
        vec![
            Box::new(ConstantLr::new(1.0, ConstantLrConfig { factor: 0.5, total_iters: 9 }).unwrap()),
            Box::new(ConstantLr::new(1.0, ConstantLrConfig { factor: 0.25, total_iters: 9 }).unwrap()),
            Box::new(ExponentialLr::new(1.0, ExponentialLrConfig { gamma: 0.5 }).unwrap()),
        ],
        vec![2, 2],
    )
    .unwrap();
    assert_eq!([s.lr(1), s.lr(2), s.lr(3)], [0.5, 1.0, 0.5]);
}

#[test]
fn sequential_lr_keeps_the_momentum_a_cycling_piece_left() {
    let one_cycle = json!({"name": "OneCycleLR", "max_lr": 0.1, "total_steps": 20});
    let s = schedule_from_json(
        &json!({"name": "SequentialLR", "schedulers": [one_cycle, {"name": "ConstantLR", "factor": 0.5, "total_iters": 10}], "milestones": [14]}),
        0.1,
    )
    .unwrap();
    let alone = OneCycleLr::new(0.1, OneCycleLrConfig::new(0.1, 20)).unwrap();
    let last = alone.momentum(13).expect("cycled");
    assert!(last > 0.85 && last < 0.95, "cut mid-cycle: {last}");
    for t in [14, 25, 100] {
        assert_eq!(s.momentum(t), Some(last), "step {t}: the group keeps OneCycleLR's last momentum");
    }
    // The ConstantLR's base is the group's initial_lr, which OneCycleLR set to max_lr / div_factor.
    assert_close("ConstantLR on initial_lr", s.lr(14), 0.1 / 25.0 * 0.5);
    assert_close("ConstantLR done", s.lr(24), 0.1 / 25.0);
    // No piece cycles: the optimizer's own.
    let plain = schedule_from_json(
        &json!({"name": "SequentialLR", "schedulers": [{"name": "ConstantLR"}, {"name": "ConstantLR"}], "milestones": [3]}),
        0.1,
    )
    .unwrap();
    assert_eq!(plain.momentum(5), None);
}

#[test]
fn one_cycle_lr_past_total_steps_is_pytorchs_error() {
    let spec = json!({"name": "OneCycleLR", "max_lr": 0.1, "total_steps": 10});
    let sched = from_json(&spec, 0.1).unwrap();
    assert!(sched.lr(10).is_ok(), "step total_steps is the last PyTorch computes");
    for err in [sched.lr(11).unwrap_err(), sched.momentum(11).unwrap_err()] {
        assert!(matches!(err, Error::ScheduleEnded { step: 11, total_steps: 10 }), "{err:?}");
        assert_eq!(err.to_string(), "Tried to step 11 times. The specified number of total steps is 10");
    }
    // Inside a join, PyTorch raised when the piece was stepped past its end, whatever follows.
    let joined = from_json(
        &json!({"name": "SequentialLR", "schedulers": [spec, {"name": "ConstantLR"}], "milestones": [13]}),
        0.1,
    )
    .unwrap();
    assert!(joined.lr(10).is_ok());
    assert_eq!(
        joined.lr(11).unwrap_err().to_string(),
        "Tried to step 11 times. The specified number of total steps is 10"
    );
    assert_eq!(
        joined.lr(20).unwrap_err().to_string(),
        "Tried to step 12 times. The specified number of total steps is 10"
    );
    let chained =
        from_json(&json!({"name": "ChainedScheduler", "schedulers": [{"name": "ConstantLR"}, spec]}), 0.1).unwrap();
    assert!(chained.lr(10).is_ok());
    assert!(matches!(chained.lr(11), Err(Error::ScheduleEnded { step: 11, total_steps: 10 })));
}

/// The optimizer's step surfaces OneCycleLR's end and counts nothing; the plateau beside a warmup
/// gets the optimizer's step count.
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn optimizer_steps_stop_at_one_cycles_end_and_feed_the_plateau() {
    use wgpu_optim::{ParamArena, SgdConfig};
    let ctx = common::gpu();
    let arena = ParamArena::new(&ctx, &[4]).unwrap();
    let mut opt = wgpu_optim::Optimizer::new(&ctx, SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() }).unwrap();
    let g = opt.default_group();
    opt.add_params(g, &arena.bindings()).unwrap();
    let one_cycle = json!({"name": "OneCycleLR", "max_lr": 0.1, "total_steps": 3});
    opt.set_schedule(g, from_json(&one_cycle, 0.1).unwrap()).unwrap();
    for _ in 0..4 {
        opt.step().expect("steps 0..=total_steps run, as in PyTorch");
    }
    let err = opt.step().expect_err("past total_steps");
    assert_eq!(err.to_string(), "Tried to step 4 times. The specified number of total steps is 3");
    assert_eq!(opt.steps(), 4, "the refused step is not counted");
    assert!(opt.lr(g).is_err());

    let spec = json!([{"name": "LinearLR", "start_factor": 0.5, "total_iters": 4}, {"name": "ReduceLROnPlateau", "factor": 0.5, "patience": 0}]);
    let mut opt = wgpu_optim::Optimizer::new(&ctx, SgdConfig { lr: 1.0, ..Default::default() }).unwrap();
    let g = opt.default_group();
    opt.add_params(g, &arena.bindings()).unwrap();
    opt.set_schedule(g, from_json(&spec, 1.0).unwrap()).unwrap();
    let mut reference = from_json(&spec, 1.0).unwrap();
    for (t, loss) in [1.0, 1.0, 0.5, 0.5, 0.5].into_iter().enumerate() {
        assert_eq!(opt.lr(g).unwrap(), reference.lr(t as u64).unwrap(), "step {t}");
        opt.step().unwrap();
        opt.observe(loss);
        reference.observe_at(t as u64 + 1, loss);
    }
    assert_eq!(opt.lr(g).unwrap(), reference.lr(5).unwrap());
}

#[test]
fn chained_scheduler_steps_every_piece_in_order() {
    // CyclicLR sets the lr outright, then ConstantLR scales it: the order matters, as in PyTorch.
    let cyclic =
        json!({"name": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4, "cycle_momentum": false});
    let constant = json!({"name": "ConstantLR", "factor": 0.5, "total_iters": 3});
    let after =
        schedule_from_json(&json!({"name": "ChainedScheduler", "schedulers": [cyclic, constant]}), 0.1).unwrap();
    let before =
        schedule_from_json(&json!({"name": "ChainedScheduler", "schedulers": [constant, cyclic]}), 0.1).unwrap();
    let alone = schedule_from_json(&cyclic, 0.1).unwrap();
    assert_close("scaled at 0", after.lr(0), alone.lr(0) * 0.5);
    assert_close("not scaled at 1", after.lr(1), alone.lr(1));
    assert_close("undone at total_iters", after.lr(3), alone.lr(3) * 2.0);
    for t in 0..10 {
        assert_eq!(before.lr(t), alone.lr(t), "an outright piece last discards the others");
    }
    // Asked out of order, the replay gives the same numbers.
    let chain = schedule_from_json(
        &json!({"name": "ChainedScheduler", "schedulers": [
            {"name": "LinearLR", "start_factor": 0.1, "total_iters": 10},
            {"name": "CosineAnnealingLR", "T_max": 20, "eta_min": 0.001}
        ]}),
        0.1,
    )
    .unwrap();
    let forward: Vec<f64> = (0..60).map(|t| chain.lr(t)).collect();
    for t in (0..60).rev() {
        assert_eq!(chain.lr(t), forward[t as usize]);
    }
    assert!(chain.lr(MAX_CHAIN_STEPS + 1).is_nan());
    let wrapped = LrScheduler::from_boxed(chain);
    assert!(matches!(wrapped.lr(MAX_CHAIN_STEPS + 1), Err(Error::Config { .. })));
    // The momentum of the last piece that cycles it.
    let two = schedule_from_json(
        &json!({"name": "ChainedScheduler", "schedulers": [
            {"name": "OneCycleLR", "max_lr": 0.1, "total_steps": 100},
            {"name": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4}
        ]}),
        0.1,
    )
    .unwrap();
    assert_eq!(two.momentum(2), schedule_from_json(&cyclic_with_momentum(), 0.1).unwrap().momentum(2));
}

fn cyclic_with_momentum() -> Value {
    json!({"name": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4})
}

#[test]
fn with_plateau_cuts_and_the_warmup_continues() {
    let spec = json!([
        {"name": "LinearLR", "start_factor": 0.5, "end_factor": 1.0, "total_iters": 4},
        {"name": "ReduceLROnPlateau", "factor": 0.5, "patience": 0}
    ]);
    let mut s = from_json(&spec, 1.0).unwrap();
    assert_eq!(s.name(), "LinearLR+ReduceLROnPlateau");
    assert!(s.as_plateau().is_some() && s.schedule().is_some());
    assert_eq!(s.lr(0).unwrap(), 0.5);
    assert_eq!(s.lr(1).unwrap(), 0.625, "with no metric the warmup runs alone");
    s.observe_at(1, 1.0);
    s.observe_at(2, 1.0); // no better: cut after the warmup's step 2
    assert_eq!(s.lr(2).unwrap(), 0.375);
    assert_close("continues from the cut", s.lr(3).unwrap(), 0.4375);
    // Observed once every 3 steps: the warmup steps in between.
    let mut sparse = from_json(&spec, 1.0).unwrap();
    sparse.observe_at(3, 1.0);
    assert_eq!(sparse.lr(3).unwrap(), 0.875);
    sparse.observe_at(6, 1.0);
    assert_eq!(sparse.lr(6).unwrap(), 0.5, "1.0 after the warmup, cut");
    // Checkpoint: the step and the plateau's state.
    let state = sparse.state();
    let text = serde_json::to_string(&state).unwrap();
    assert!(text.starts_with(r#"{"kind":"WithPlateau","at":6,"plateau":{"lr":0.5,"#), "{text}");
    let mut resumed = from_json(&spec, 1.0).unwrap();
    resumed.restore(&serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(resumed.lr(7).unwrap(), sparse.lr(7).unwrap());
    let err = resumed.restore(&SchedulerState::Pure).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid scheduler config: cannot restore a pure schedule's state into LinearLR+ReduceLROnPlateau"
    );
    // A sequence counts as one schedule: its pieces continue from the cut too.
    let join = json!([
        {"name": "SequentialLR", "schedulers": [{"name": "LinearLR", "start_factor": 0.5, "total_iters": 4}, {"name": "ExponentialLR", "gamma": 0.5}], "milestones": [4]},
        {"name": "ReduceLROnPlateau", "factor": 0.5, "patience": 0}
    ]);
    let mut j = from_json(&join, 1.0).unwrap();
    j.observe_at(5, 1.0);
    j.observe_at(6, 1.0);
    assert_eq!([j.lr(6).unwrap(), j.lr(7).unwrap()], [0.125, 0.0625]);
}

#[test]
fn chained_scheduler_multiplies() {
    let s = ChainedScheduler::new(
        0.1,
        vec![
            Box::new(ConstantLr::new(0.1, ConstantLrConfig { factor: 0.5, total_iters: 10 }).expect("valid")),
            Box::new(StepLr::new(0.1, StepLrConfig { step_size: 4, gamma: 0.5 }).expect("valid")),
        ],
    )
    .expect("valid");
    assert_eq!([s.lr(0), s.lr(3), s.lr(4), s.lr(9), s.lr(10), s.lr(12)], [0.05, 0.05, 0.025, 0.0125, 0.025, 0.0125]);
}

#[test]
fn keras_decays_and_staircase() {
    let cfg = InverseTimeDecayConfig { decay_steps: 10.0, decay_rate: 0.5, staircase: true };
    let s = InverseTimeDecay::new(0.1, cfg).expect("valid");
    assert_eq!([s.lr(9), s.lr(10), s.lr(19), s.lr(20)], [0.1, 0.1 / 1.5, 0.1 / 1.5, 0.05]);
    let smooth = InverseTimeDecay::new(0.1, InverseTimeDecayConfig { staircase: false, ..cfg }).expect("valid");
    assert_eq!(smooth.lr(5), 0.1 / 1.25);
    let e = ExponentialDecay::new(1.0, ExponentialDecayConfig { decay_steps: 4.0, decay_rate: 0.25, staircase: false })
        .expect("valid");
    assert_eq!([e.lr(0), e.lr(2), e.lr(4), e.lr(8)], [1.0, 0.5, 0.25, 0.0625]);
}

#[test]
fn random_lr_is_splitmix64_and_reproducible() {
    let s = RandomLr::new(0.0, RandomLrConfig { min_lr: 0.01, max_lr: 0.1, seed: 0 }).expect("valid");
    // The first output of SplitMix64 seeded with 0 is 0xE220A8397B1DCDAF.
    assert_eq!(s.uniform(0), (0xE220_A839_7B1D_CDAFu64 >> 11) as f64 / (1u64 << 53) as f64);
    let draws: Vec<f64> = (0..1000).map(|t| s.lr(t)).collect();
    assert!(draws.iter().all(|lr| (0.01..=0.1).contains(lr)));
    assert_eq!(draws[500], s.lr(500), "a pure function of the step");
    let mean = draws.iter().sum::<f64>() / 1000.0;
    assert!((mean - 0.055).abs() < 0.005, "uniform: mean {mean}");
    let other = RandomLr::new(0.0, RandomLrConfig { min_lr: 0.01, max_lr: 0.1, seed: 1 }).expect("valid");
    assert_ne!(other.lr(0), s.lr(0));
}

#[test]
fn lambda_and_multiplicative_lr() {
    let l = LambdaLr::new(0.1, |t| 0.5f64.powi(t as i32)).expect("valid");
    assert_eq!([l.lr(0), l.lr(2)], [0.1, 0.025]);
    assert_eq!(l.multiplier(2), None, "LambdaLR sets the lr outright");
    let m = MultiplicativeLr::new(1.0, |t| if t % 2 == 0 { 0.5 } else { 1.0 }).expect("valid");
    assert_eq!([m.lr(0), m.lr(1), m.lr(2), m.lr(4), m.lr(3), m.lr(0)], [1.0, 1.0, 0.5, 0.25, 0.5, 1.0]);
    let chained = ChainedScheduler::new(
        1.0,
        vec![Box::new(m), Box::new(ExponentialLr::new(1.0, ExponentialLrConfig { gamma: 0.5 }).expect("valid"))],
    )
    .expect("valid");
    assert_eq!(chained.lr(2), 0.125);
}

#[test]
fn plateau_cuts_after_patience_and_waits_out_the_cooldown() {
    let cfg = ReduceLrOnPlateauConfig { factor: 0.5, patience: 1, cooldown: 1, min_lr: 0.02, ..Default::default() };
    let mut p = ReduceLrOnPlateau::new(0.1, cfg).expect("valid");
    let mut lrs = vec![];
    for loss in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5] {
        p.observe(loss);
        lrs.push(p.lr());
    }
    assert_eq!(lrs, [0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025]);
    let mut more = p.clone();
    for _ in 0..10 {
        more.observe(1.0);
    }
    assert_eq!(more.lr(), 0.02, "floored at min_lr");
    let mut max = ReduceLrOnPlateau::new(
        1.0,
        ReduceLrOnPlateauConfig {
            mode: PlateauMode::Max,
            threshold_mode: ThresholdMode::Abs,
            threshold: 0.1,
            patience: 0,
            ..Default::default()
        },
    )
    .expect("valid");
    max.observe(0.5);
    max.observe(0.55); // not better by more than 0.1
    assert_eq!(max.lr(), 0.1);
    let mut tiny =
        ReduceLrOnPlateau::new(1e-8, ReduceLrOnPlateauConfig { patience: 0, ..Default::default() }).expect("valid");
    tiny.observe(1.0);
    tiny.observe(1.0);
    assert_eq!(tiny.lr(), 1e-8, "a cut smaller than eps is skipped");
}

#[test]
fn lr_scheduler_wraps_both_kinds() {
    let mut p = LrScheduler::from(ReduceLrOnPlateau::new(0.1, ReduceLrOnPlateauConfig::default()).expect("valid"));
    assert_eq!((p.name(), p.lr(99).unwrap(), p.momentum(0).unwrap()), ("ReduceLROnPlateau", 0.1, None));
    assert!(p.schedule().is_none() && p.as_plateau().is_some());
    p.observe(1.0);
    let s = LrScheduler::new(ExponentialLr::new(0.1, ExponentialLrConfig { gamma: 0.5 }).expect("valid"));
    assert_eq!((s.name(), s.lr(1).unwrap()), ("ExponentialLR", 0.05));
    assert_eq!(s.state(), SchedulerState::Pure);
    assert_eq!(serde_json::to_string(&s.state()).expect("serializes"), r#"{"kind":"Pure"}"#);
}

// ---------------------------------------------------------------------------------------------
// JSON: defaults, nesting, and what is refused.

#[test]
fn json_defaults_are_pytorchs() {
    let from = |v: Value| schedule_from_json(&v, 1.0).expect("valid");
    assert_close("ConstantLR default factor", from(json!({"name": "ConstantLR"})).lr(0), 1.0 / 3.0);
    assert_eq!(from(json!({"name": "ConstantLR"})).lr(5), 1.0);
    assert_eq!(from(json!({"name": "StepLR", "step_size": 2})).lr(2), 0.1);
    assert_eq!(from(json!({"name": "MultiStepLR", "milestones": [1]})).lr(1), 0.1);
    assert_eq!(from(json!({"name": "PolynomialLR"})).lr(5), 0.0);
    assert_eq!(from(json!({"name": "CosineAnnealingLR", "T_max": 2})).lr(2), 0.0);
    assert_eq!(from(json!({"name": "CosineAnnealingWarmRestarts", "T_0": 3})).lr(3), 1.0);
    let cyclic = from(json!({"name": "CyclicLR", "base_lr": 0.0, "max_lr": 1.0}));
    assert_eq!((cyclic.lr(2000), cyclic.momentum(0)), (1.0, Some(0.9)));
    let one = from(json!({"name": "OneCycleLR", "max_lr": 1.0, "epochs": 10, "steps_per_epoch": 10, "last_epoch": -1}));
    assert_eq!((one.lr(29), one.momentum(29)), (1.0, Some(0.85)));
    let keras = from(json!({"name": "ExponentialDecay", "decay_steps": 1, "decay_rate": 0.5}));
    assert_eq!(keras.lr(2), 0.25);
    let random = from(json!({"name": "RandomLR", "min_lr": 0.5, "max_lr": 0.5}));
    assert_eq!(random.lr(3), 0.5);
    let nested = from(json!({"name": "ChainedScheduler", "schedulers": [
        {"name": "SequentialLR", "schedulers": [{"name": "ConstantLR", "factor": 0.5, "total_iters": 2}, {"name": "ExponentialLR", "gamma": 0.5}], "milestones": [2]},
        {"name": "StepLR", "step_size": 3, "gamma": 0.5}
    ]}));
    assert_eq!([nested.lr(0), nested.lr(2), nested.lr(3), nested.lr(4)], [0.5, 1.0, 0.25, 0.125]);
    assert!(schedule_from_json(&json!({"name": "StepLR", "step_size": 1}), 1.0).is_ok());
}

/// The error from building `spec` with base lr 0.1.
fn json_error(spec: Value) -> Error {
    from_json(&spec, 0.1).expect_err(&format!("{spec} must be refused"))
}

/// Asserts an `InvalidHyperparameter` naming `name` with exactly `message`.
fn assert_invalid(err: Error, name: &str, message: &str) {
    match &err {
        Error::InvalidHyperparameter { name: n, message: m } => {
            assert_eq!((n.as_str(), m.as_str()), (name, message));
        }
        other => panic!("expected InvalidHyperparameter {{ {name}: {message} }}, got {other:?}"),
    }
    assert_eq!(err.to_string(), message);
}

fn assert_config(err: Error, message: &str) {
    assert!(matches!(err, Error::Config { what: "scheduler", .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("invalid scheduler config: {message}"));
}

#[test]
fn json_structure_errors_name_the_key() {
    let err = json_error(json!({"name": "StepLRR", "step_size": 7}));
    assert!(matches!(&err, Error::UnsupportedScheduler(n) if n == "StepLRR"));
    assert_eq!(err.to_string(), "unsupported scheduler: StepLRR");
    assert_eq!(json_error(json!({"name": "LambdaLR"})).to_string(), "unsupported scheduler: LambdaLR");
    assert_config(
        json_error(json!({"name": "StepLR", "step_size": 7, "gama": 0.5})),
        "StepLR: unknown key \"gama\" (expected: step_size, gamma)",
    );
    assert_config(json_error(json!({"name": "StepLR", "gamma": 0.5})), "StepLR: missing required key \"step_size\"");
    assert_config(
        json_error(json!({"name": "StepLR", "step_size": 7, "gamma": "0.5"})),
        "StepLR: \"gamma\" must be a number, got \"0.5\"",
    );
    assert_config(
        json_error(json!({"name": "StepLR", "step_size": "7"})),
        "StepLR: \"step_size\" must be an integer, got \"7\"",
    );
    assert_config(
        json_error(json!({"name": "OneCycleLR", "max_lr": 1, "total_steps": 9, "three_phase": 1})),
        "OneCycleLR: \"three_phase\" must be true or false, got 1",
    );
    assert_config(
        json_error(json!({"name": "CyclicLR", "base_lr": 0.1, "max_lr": 1, "mode": 3})),
        "CyclicLR: \"mode\" must be a string, got 3",
    );
    assert_config(
        json_error(json!({"name": "MultiStepLR", "milestones": 5})),
        "MultiStepLR: \"milestones\" must be a list, got 5",
    );
    assert_config(json_error(json!({"step_size": 7})), "missing key \"name\"");
    assert_config(json_error(json!({"name": 7})), "\"name\" must be a string, got 7");
    assert_config(json_error(json!("StepLR")), "a scheduler must be a JSON object, got \"StepLR\"");
    assert_config(
        json_error(json!(["StepLR"])),
        "a list of schedulers must be [a schedule, a ReduceLROnPlateau] (stepped in that order, the plateau with the metric)",
    );
    assert_config(
        json_error(json!([{"name": "ReduceLROnPlateau"}, {"name": "StepLR", "step_size": 2}])),
        "a list of schedulers must be [a schedule, a ReduceLROnPlateau] (stepped in that order, the plateau with the metric)",
    );
    assert_config(
        json_error(json!({"name": "ExponentialLR", "gamma": 0.9, "last_epoch": 4})),
        "ExponentialLR: \"last_epoch\" must be -1 (resume by restoring the optimizer's step instead), got 4",
    );
    assert_config(
        json_error(json!({"name": "InverseTimeDecay", "decay_steps": 10, "decay_rate": 0.5, "source": "tf"})),
        "InverseTimeDecay: \"source\" must be \"keras-formula\", got \"tf\"",
    );
    assert_config(
        json_error(json!({"name": "CyclicLR", "base_lr": 0.1, "max_lr": 1, "scale_fn": "lambda x: 1"})),
        "CyclicLR: \"scale_fn\" is a function and cannot come from JSON (use CyclicLrConfig::scale_fn)",
    );
    assert!(from_json(&json!({"name": "CyclicLR", "base_lr": 0.1, "max_lr": 1, "scale_fn": null}), 0.1).is_ok());
    assert_config(
        schedule_from_json(&json!({"name": "ReduceLROnPlateau"}), 0.1).expect_err("not pure"),
        "ReduceLROnPlateau is not a pure schedule: build it with from_json",
    );
}

#[test]
fn base_lr_is_checked_like_the_optimizer() {
    assert_invalid(
        json_error_with_lr(json!({"name": "StepLR", "step_size": 1}), -1.0),
        "lr",
        "Invalid learning rate: -1.0",
    );
    assert_invalid(
        json_error_with_lr(json!({"name": "ExponentialLR", "gamma": 0.9}), f64::NAN),
        "lr",
        "Invalid learning rate: nan",
    );
    assert_invalid(ChainedScheduler::new(-0.5, vec![]).expect_err("negative"), "lr", "Invalid learning rate: -0.5");
}

fn json_error_with_lr(spec: Value, lr: f64) -> Error {
    from_json(&spec, lr).expect_err("must be refused")
}

#[test]
fn integer_argument_checks() {
    assert_invalid(
        StepLr::new(0.1, StepLrConfig::new(0)).expect_err("step_size 0"),
        "step_size",
        "Invalid step_size value: 0 (must be a positive integer)",
    );
    assert_invalid(
        json_error(json!({"name": "StepLR", "step_size": -1})),
        "step_size",
        "Invalid step_size value: -1 (must be a positive integer)",
    );
    assert_invalid(
        json_error(json!({"name": "StepLR", "step_size": 1.5})),
        "step_size",
        "Invalid step_size value: 1.5 (must be a positive integer)",
    );
    assert_invalid(
        json_error(json!({"name": "MultiStepLR", "milestones": [3, -2]})),
        "milestones",
        "Invalid milestones value: -2 (must be a non-negative integer)",
    );
    assert_invalid(
        json_error(json!({"name": "ConstantLR", "total_iters": -5})),
        "total_iters",
        "Invalid total_iters value: -5 (must be a non-negative integer)",
    );
    assert_invalid(
        CosineAnnealingLr::new(0.1, CosineAnnealingLrConfig::new(0)).expect_err("T_max 0"),
        "T_max",
        "Invalid T_max value: 0 (must be a positive integer)",
    );
    assert_invalid(
        CosineAnnealingWarmRestarts::new(0.1, CosineAnnealingWarmRestartsConfig::new(0)).expect_err("T_0 0"),
        "T_0",
        "Expected positive integer T_0, but got 0",
    );
    assert_invalid(
        json_error(json!({"name": "CosineAnnealingWarmRestarts", "T_0": -1})),
        "T_0",
        "Expected positive integer T_0, but got -1",
    );
    assert_invalid(
        json_error(json!({"name": "CosineAnnealingWarmRestarts", "T_0": 10.0})),
        "T_0",
        "Expected positive integer T_0, but got 10.0",
    );
    assert_invalid(
        CosineAnnealingWarmRestarts::new(
            0.1,
            CosineAnnealingWarmRestartsConfig { t_mult: 0, ..CosineAnnealingWarmRestartsConfig::new(1) },
        )
        .expect_err("T_mult 0"),
        "T_mult",
        "Expected integer T_mult >= 1, but got 0",
    );
    assert_invalid(
        json_error(json!({"name": "CosineAnnealingWarmRestarts", "T_0": 1, "T_mult": -2})),
        "T_mult",
        "Expected integer T_mult >= 1, but got -2",
    );
    assert_invalid(
        json_error(json!({"name": "ReduceLROnPlateau", "patience": -1})),
        "patience",
        "Invalid patience value: -1 (must be a non-negative integer)",
    );
    assert_invalid(
        json_error(json!({"name": "ReduceLROnPlateau", "cooldown": -1})),
        "cooldown",
        "Invalid cooldown value: -1 (must be a non-negative integer)",
    );
    assert_invalid(
        json_error(json!({"name": "RandomLR", "min_lr": 0, "max_lr": 1, "seed": -1})),
        "seed",
        "Invalid seed value: -1 (must be a non-negative integer)",
    );
}

#[test]
fn factor_checks() {
    assert_invalid(
        ConstantLr::new(0.1, ConstantLrConfig { factor: 1.5, total_iters: 5 }).expect_err("factor"),
        "factor",
        "Constant multiplicative factor expected to be between 0 and 1.",
    );
    assert_invalid(
        json_error(json!({"name": "ConstantLR", "factor": -0.1})),
        "factor",
        "Constant multiplicative factor expected to be between 0 and 1.",
    );
    assert_invalid(
        json_error(json!({"name": "LinearLR", "start_factor": 0})),
        "start_factor",
        "Starting multiplicative factor expected to be greater than 0 and less or equal to 1.",
    );
    assert_invalid(
        LinearLr::new(0.1, LinearLrConfig { end_factor: 1.5, ..Default::default() }).expect_err("end"),
        "end_factor",
        "Ending multiplicative factor expected to be between 0 and 1.",
    );
    assert_invalid(
        json_error(json!({"name": "PolynomialLR", "power": -1})),
        "power",
        "Invalid power value: -1.0 (must be non-negative)",
    );
    assert_invalid(
        json_error(json!({"name": "InverseTimeDecay", "decay_steps": 0, "decay_rate": 0.5})),
        "decay_steps",
        "Invalid decay_steps value: 0.0 (must be positive)",
    );
    assert_invalid(
        json_error(json!({"name": "InverseTimeDecay", "decay_steps": 10, "decay_rate": -1})),
        "decay_rate",
        "Invalid decay_rate value: -1.0 (must be non-negative)",
    );
    assert_invalid(
        json_error(json!({"name": "ExponentialDecay", "decay_steps": -2.5, "decay_rate": 0.5})),
        "decay_steps",
        "Invalid decay_steps value: -2.5 (must be positive)",
    );
    assert_invalid(
        json_error(json!({"name": "RandomLR", "min_lr": -1, "max_lr": 1})),
        "min_lr",
        "Invalid min_lr value: -1.0 (must be finite and non-negative)",
    );
    assert_invalid(
        json_error(json!({"name": "RandomLR", "min_lr": 0.1, "max_lr": 0.01})),
        "max_lr",
        "Invalid max_lr value: 0.01 (must be finite and at least min_lr 0.1)",
    );
}

#[test]
fn cyclic_lr_checks() {
    let base = json!({"name": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1});
    let with = |key: &str, value: Value| {
        let mut spec = base.clone();
        spec[key] = value;
        json_error(spec)
    };
    assert_invalid(with("mode", json!("triangle")), "mode", "mode is invalid and scale_fn is None");
    assert_invalid(
        with("step_size_up", json!(0)),
        "step_size_up",
        "Invalid step_size_up value: 0 (must be a positive integer)",
    );
    assert_invalid(
        with("step_size_down", json!(-4)),
        "step_size_down",
        "Invalid step_size_down value: -4 (must be a non-negative integer)",
    );
    assert_invalid(
        with("scale_mode", json!("epochs")),
        "scale_mode",
        "scale_mode must be one of 'cycle' or 'iterations', instead got epochs",
    );
    assert_config(
        json_error(json!({"name": "CyclicLR", "base_lr": 0.01})),
        "CyclicLR: missing required key \"max_lr\"",
    );
}

#[test]
fn one_cycle_lr_checks_in_pytorchs_order() {
    let spec = |extra: Value| {
        let mut s = json!({"name": "OneCycleLR", "max_lr": 0.1, "total_steps": 100});
        for (k, v) in extra.as_object().expect("object") {
            s[k] = v.clone();
        }
        s
    };
    assert_invalid(
        json_error(spec(json!({"total_steps": 0}))),
        "total_steps",
        "Expected positive integer total_steps, but got 0",
    );
    assert_invalid(
        json_error(spec(json!({"total_steps": -3}))),
        "total_steps",
        "Expected positive integer total_steps, but got -3",
    );
    assert_invalid(
        json_error(spec(json!({"total_steps": null, "epochs": 3}))),
        "total_steps",
        "You must define either total_steps OR (epochs AND steps_per_epoch)",
    );
    assert_invalid(
        json_error(spec(json!({"total_steps": null, "epochs": 0, "steps_per_epoch": 3}))),
        "epochs",
        "Expected positive integer epochs, but got 0",
    );
    assert_invalid(
        OneCycleLr::new(0.1, OneCycleLrConfig::with_epochs(0.1, 2, 0)).expect_err("steps_per_epoch"),
        "steps_per_epoch",
        "Expected positive integer steps_per_epoch, but got 0",
    );
    assert_invalid(
        json_error(spec(json!({"pct_start": 1.5}))),
        "pct_start",
        "Expected float between 0 and 1 pct_start, but got 1.5",
    );
    assert_invalid(
        json_error(spec(json!({"anneal_strategy": "exp"}))),
        "anneal_strategy",
        "anneal_strategy must be one of 'cos' or 'linear', instead got exp",
    );
    assert_invalid(
        json_error(spec(json!({"anneal_strategy": "exp", "pct_start": -0.5}))),
        "pct_start",
        "Expected float between 0 and 1 pct_start, but got -0.5",
    );
    assert_invalid(
        json_error(spec(json!({"div_factor": 0}))),
        "div_factor",
        "Invalid div_factor value: 0 (must be non-zero)",
    );
    assert_invalid(
        json_error(spec(json!({"final_div_factor": 0.0}))),
        "final_div_factor",
        "Invalid final_div_factor value: 0 (must be non-zero)",
    );
    assert_invalid(
        json_error(spec(json!({"total_steps": 10, "pct_start": 0.1}))),
        "pct_start",
        "pct_start * total_steps must not be 1: the warm-up would have no length (pct_start 0.1, total_steps 10)",
    );
    // A last phase of no length (pct_start 1) still gives finite numbers at step total_steps.
    let full =
        OneCycleLr::new(0.1, OneCycleLrConfig { pct_start: 1.0, ..OneCycleLrConfig::new(1.0, 10) }).expect("valid");
    assert_eq!(full.lr(9), 1.0);
    assert!(full.lr(10).is_finite());
}

/// What PyTorch takes only to produce nonsense, refused at construction with the value named.
#[test]
fn beyond_pytorch_checks_name_the_value() {
    let cases = [
        (
            json!({"name": "StepLR", "step_size": 2, "gamma": -0.5}),
            "gamma",
            "Invalid gamma value: -0.5 (must be finite and non-negative)",
        ),
        (
            json!({"name": "MultiStepLR", "milestones": [3], "gamma": -0.5}),
            "gamma",
            "Invalid gamma value: -0.5 (must be finite and non-negative)",
        ),
        (
            json!({"name": "MultiStepLR", "milestones": [10, 5]}),
            "milestones",
            "milestones must be non-decreasing, but got [10, 5]",
        ),
        (
            json!({"name": "ExponentialLR", "gamma": -0.5}),
            "gamma",
            "Invalid gamma value: -0.5 (must be finite and non-negative)",
        ),
        (
            json!({"name": "ReduceLROnPlateau", "factor": -0.5}),
            "factor",
            "Invalid factor value: -0.5 (must be finite and non-negative)",
        ),
        (
            json!({"name": "ReduceLROnPlateau", "min_lr": -0.5}),
            "min_lr",
            "Invalid min_lr value: -0.5 (must be finite and non-negative)",
        ),
        (
            json!({"name": "ExponentialDecay", "decay_steps": 1, "decay_rate": -0.5}),
            "decay_rate",
            "Invalid decay_rate value: -0.5 (must be non-negative)",
        ),
        (
            json!({"name": "InverseTimeDecay", "decay_steps": 1, "decay_rate": -0.5}),
            "decay_rate",
            "Invalid decay_rate value: -0.5 (must be non-negative)",
        ),
        (
            json!({"name": "CosineAnnealingLR", "T_max": 3, "eta_min": -0.5}),
            "eta_min",
            "Invalid eta_min value: -0.5 (must be finite and non-negative)",
        ),
        (
            json!({"name": "CosineAnnealingWarmRestarts", "T_0": 3, "eta_min": -0.5}),
            "eta_min",
            "Invalid eta_min value: -0.5 (must be finite and non-negative)",
        ),
        (
            json!({"name": "CyclicLR", "base_lr": -0.5, "max_lr": 0.1}),
            "base_lr",
            "Invalid base_lr value: -0.5 (must be finite and non-negative)",
        ),
        (
            json!({"name": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "mode": "exp_range", "gamma": -0.5}),
            "gamma",
            "Invalid gamma value: -0.5 (must be finite and non-negative)",
        ),
        (
            json!({"name": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "max_momentum": 1.5}),
            "max_momentum",
            "Invalid max_momentum value: 1.5 (must be in [0, 1))",
        ),
        (
            json!({"name": "OneCycleLR", "max_lr": -0.5, "total_steps": 10}),
            "max_lr",
            "Invalid max_lr value: -0.5 (must be finite and non-negative)",
        ),
        (
            json!({"name": "OneCycleLR", "max_lr": 0.1, "total_steps": 10, "div_factor": -2.5}),
            "div_factor",
            "Invalid div_factor value: -2.5 (must be finite and positive)",
        ),
        (
            json!({"name": "OneCycleLR", "max_lr": 0.1, "total_steps": 10, "base_momentum": -0.5}),
            "base_momentum",
            "Invalid base_momentum value: -0.5 (must be in [0, 1))",
        ),
        (
            json!({"name": "SequentialLR", "schedulers": [{"name": "ConstantLR"}, {"name": "ConstantLR"}, {"name": "ConstantLR"}], "milestones": [4, 2]}),
            "milestones",
            "milestones must be non-decreasing, but got [4, 2]",
        ),
    ];
    for (spec, name, message) in cases {
        assert_invalid(json_error(spec), name, message);
    }
    // Python prints 0.0 where this crate's py_float may still print 0: the message uses py_float.
    let zero = format!(
        "Invalid factor value: {} (must be above 0: the lr is divided by it at total_iters)",
        wgpu_optim::py_float(0.0)
    );
    assert_invalid(json_error(json!({"name": "ConstantLR", "factor": 0.0})), "factor", &zero);
    // NaN and infinity, built from Rust (JSON has neither).
    let nan = OneCycleLr::new(0.1, OneCycleLrConfig::new(f64::NAN, 10)).expect_err("max_lr NaN");
    assert_invalid(nan, "max_lr", "Invalid max_lr value: nan (must be finite and non-negative)");
    let inf = ExponentialLr::new(0.1, ExponentialLrConfig { gamma: f64::INFINITY }).expect_err("gamma inf");
    assert_invalid(inf, "gamma", "Invalid gamma value: inf (must be finite and non-negative)");
    // Unused momentum bounds are not checked, as PyTorch does not use them.
    assert!(from_json(
        &json!({"name": "OneCycleLR", "max_lr": 0.1, "total_steps": 10, "cycle_momentum": false, "base_momentum": 2.5}),
        0.1
    )
    .is_ok());
    // PyTorch's own checks come first: anneal_strategy before max_lr, the modes before factor.
    assert_invalid(
        json_error(json!({"name": "OneCycleLR", "max_lr": -0.5, "total_steps": 10, "anneal_strategy": "x"})),
        "anneal_strategy",
        "anneal_strategy must be one of 'cos' or 'linear', instead got x",
    );
    assert_invalid(
        json_error(json!({"name": "ReduceLROnPlateau", "factor": -0.5, "mode": "up"})),
        "mode",
        "mode up is unknown!",
    );
}

#[test]
fn composite_checks() {
    assert_invalid(
        SequentialLr::new(vec![], vec![]).expect_err("empty"),
        "schedulers",
        "SequentialLR expects at least one scheduler, but got no scheduler.",
    );
    assert_invalid(
        json_error(json!({"name": "SequentialLR", "schedulers": [{"name": "ConstantLR"}, {"name": "ExponentialLR", "gamma": 0.9}], "milestones": [2, 4]})),
        "milestones",
        "Sequential Schedulers expects number of schedulers provided to be one more than the number of milestone points, but got number of schedulers 2 and the number of milestones to be equal to 2",
    );
    assert_invalid(
        json_error(
            json!({"name": "SequentialLR", "schedulers": [{"name": "ConstantLR"}, {"name": "ConstantLR"}, {"name": "ConstantLR"}], "milestones": [10, 5]}),
        ),
        "milestones",
        "milestones must be non-decreasing, but got [10, 5]",
    );
    assert_invalid(
        json_error(
            json!({"name": "SequentialLR", "schedulers": [{"name": "ConstantLR"}, {"name": "ConstantLR"}], "milestones": [-5]}),
        ),
        "milestones",
        "Invalid milestones value: -5 (must be a non-negative integer)",
    );
    assert_invalid(
        json_error(json!({"name": "SequentialLR", "schedulers": [{"name": "ConstantLR"}, {"name": "ReduceLROnPlateau"}], "milestones": [3]})),
        "schedulers",
        "SequentialLR does not support `ReduceLROnPlateau` scheduler as it requires additional kwargs to be specified when calling `step`, but got one at index 1 in the given schedulers sequence.",
    );
    assert_invalid(
        json_error(json!({"name": "ChainedScheduler", "schedulers": []})),
        "schedulers",
        "ChainedScheduler expects at least one scheduler to be chained, but got no scheduler.",
    );
    assert_invalid(
        json_error(json!({"name": "ChainedScheduler", "schedulers": [{"name": "ReduceLROnPlateau"}]})),
        "schedulers",
        "ChainedScheduler does not support `ReduceLROnPlateau` scheduler as it requires additional kwargs to be specified when calling `step`, but got one at index 0 in the given schedulers sequence.",
    );
    // Every scheduler but ReduceLROnPlateau chains, as in PyTorch.
    for spec in [
        json!({"name": "ChainedScheduler", "schedulers": [{"name": "ConstantLR"}, {"name": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1}]}),
        json!({"name": "ChainedScheduler", "schedulers": [{"name": "CosineAnnealingLR", "T_max": 5, "eta_min": 0.01}]}),
    ] {
        assert!(from_json(&spec, 0.1).is_ok(), "{spec}");
    }
    assert_config(
        json_error(json!({"name": "SequentialLR", "schedulers": [{"name": "ConstantLR", "x": 1}], "milestones": []})),
        "ConstantLR: unknown key \"x\" (expected: factor, total_iters)",
    );
}

#[test]
fn plateau_checks_in_pytorchs_order() {
    assert_invalid(
        json_error(json!({"name": "ReduceLROnPlateau", "factor": 1.0})),
        "factor",
        "Factor should be < 1.0.",
    );
    assert_invalid(
        ReduceLrOnPlateau::new(0.1, ReduceLrOnPlateauConfig { factor: 2.0, ..Default::default() }).expect_err("factor"),
        "factor",
        "Factor should be < 1.0.",
    );
    assert_invalid(
        json_error(json!({"name": "ReduceLROnPlateau", "mode": "minimum"})),
        "mode",
        "mode minimum is unknown!",
    );
    assert_invalid(
        json_error(json!({"name": "ReduceLROnPlateau", "threshold_mode": "relative"})),
        "threshold_mode",
        "threshold mode relative is unknown!",
    );
    assert_invalid(
        json_error(json!({"name": "ReduceLROnPlateau", "mode": "minimum", "factor": 1.5})),
        "factor",
        "Factor should be < 1.0.",
    );
    assert_invalid("up".parse::<PlateauMode>().expect_err("mode"), "mode", "mode up is unknown!");
}

// ---------------------------------------------------------------------------------------------
// Plots.

#[cfg(feature = "cli")]
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-optim-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn warmup_cosine() -> LrScheduler {
    from_json(
        &json!({"name": "SequentialLR", "milestones": [5], "schedulers": [
            {"name": "LinearLR", "start_factor": 0.1, "total_iters": 5},
            {"name": "CosineAnnealingLR", "T_max": 55, "eta_min": 0.001}
        ]}),
        0.1,
    )
    .expect("valid")
}

#[cfg(feature = "cli")] // plot_schedule draws with plotters, a dependency of the tools only
#[test]
fn plots_png_and_svg() {
    let dir = temp_dir("plot");
    let sched = warmup_cosine();
    let png = dir.join("warmup_cosine.png");
    plot_schedule(&sched, sched.name(), 60, &png).expect("png written");
    let bytes = std::fs::read(&png).expect("png read");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    let svg = dir.join("warmup_cosine.svg");
    plot_schedule(&sched, sched.name(), 60, &svg).expect("svg written");
    let text = std::fs::read_to_string(&svg).expect("svg read");
    let root = text.trim_start().trim_start_matches(|c| c != '<');
    assert!(root.starts_with("<svg"), "root element: {}", &root[..root.len().min(40)]);
    assert!(text.trim_end().ends_with("</svg>"));
    for label in ["SequentialLR", "step", "learning rate"] {
        assert!(text.contains(label), "the SVG shows {label}");
    }

    let onecycle = from_json(&json!({"name": "OneCycleLR", "max_lr": 0.1, "total_steps": 100}), 0.1).expect("valid");
    let both = dir.join("onecycle.SVG");
    plot_schedule(&onecycle, onecycle.name(), 100, &both).expect("svg with momentum");
    assert!(std::fs::read_to_string(&both).expect("read").contains("momentum"));
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(feature = "cli")] // plot_schedule draws with plotters, a dependency of the tools only
#[test]
fn plot_refuses_other_formats_and_no_steps() {
    let dir = temp_dir("plot-errors");
    let sched = warmup_cosine();
    let err = plot_schedule(&sched, "x", 60, &dir.join("lr.jpg")).expect_err("jpg");
    assert!(matches!(err, Error::Config { what: "plot", .. }), "{err:?}");
    assert!(err.to_string().ends_with("the file name must end in .png or .svg"), "{err}");
    let err = plot_schedule(&sched, "x", 0, &dir.join("lr.svg")).expect_err("0 steps");
    assert_eq!(err.to_string(), "invalid plot config: steps must be at least 1");
    let err = plot_schedule(&sched, "x", 10, &dir.join("missing/dir/lr.png")).expect_err("no such dir");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    std::fs::remove_dir_all(&dir).ok();
}
