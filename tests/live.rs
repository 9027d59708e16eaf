//! Hyperparameters changed between steps (PyTorch's `param_groups[i][name] = value`), and
//! schedules attached mid-run, which start at their own step 0.

mod common;

use common::{assert_close, buffer, gpu, track_scale, Rng};
use serde_json::json;
use wgpu_optim::cpu::CpuOptimizer;
use wgpu_optim::readback::read_f32;
use wgpu_optim::schedule::{LinearLr, LinearLrConfig, LrScheduler};
use wgpu_optim::*;

/// One change per algorithm, to a hyperparameter its default config uses.
fn changes() -> Vec<(&'static str, &'static str, serde_json::Value)> {
    vec![
        ("SGD", "weight_decay", json!(0.05)),
        ("Adagrad", "lr_decay", json!(0.01)),
        ("RMSprop", "alpha", json!(0.9)),
        ("Adam", "betas", json!([0.8, 0.99])),
        ("AdamW", "weight_decay", json!(0.2)),
        ("Adamax", "eps", json!(1e-3)),
        ("NAdam", "momentum_decay", json!(0.01)),
        ("RAdam", "weight_decay", json!(0.01)),
        ("Adadelta", "rho", json!(0.5)),
        ("ASGD", "lambd", json!(0.01)),
        ("Rprop", "etas", json!([0.3, 1.5])),
        ("Lion", "betas", json!([0.5, 0.9])),
    ]
}

const N: usize = 1000;

/// `config` on the GPU for 4 steps, `name = value` set, 4 more steps; against the CPU mirror
/// whose config changes at the same step; and against the same run without the change, which
/// must differ (the change took effect).
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn every_algorithm_takes_a_changed_hyperparameter_from_the_next_step() {
    let ctx = gpu();
    let configs = OptimizerConfig::defaults();
    assert_eq!(configs.len(), changes().len(), "one change per algorithm of the registry");
    for (seed, (algorithm, name, value)) in changes().into_iter().enumerate() {
        let config = configs.iter().find(|c| c.name() == algorithm).unwrap().clone();
        let mut rng = Rng::new(seed as u64 + 7);
        let init = rng.vector(N);
        let grads: Vec<Vec<f32>> = (0..8).map(|_| rng.vector(N)).collect();
        let mut runs = Vec::new();
        for change in [true, false] {
            let (param, grad) = (buffer(&ctx, &init), buffer(&ctx, &vec![0.0; N]));
            let mut opt = Optimizer::new(&ctx, config.clone()).unwrap();
            let group = opt.default_group();
            opt.add_params(group, &[ParamBinding::whole(&param, &grad, N as u64)]).unwrap();
            let mut cpu = CpuOptimizer::new(config.clone(), init.iter().map(|&x| x as f64).collect()).unwrap();
            let mut scale: Vec<f64> = cpu.param().iter().map(|x| x.abs()).collect();
            for (t, g) in grads.iter().enumerate() {
                if t == 4 && change {
                    opt.set_hyperparameter(group, name, value.clone()).unwrap();
                    let changed = opt.group_config(group).unwrap().clone();
                    assert_eq!(changed.to_json()[name], value, "{algorithm}: {name} is set");
                    cpu.set_config(changed).unwrap();
                }
                ctx.queue.write_buffer(&grad, 0, bytemuck::cast_slice(g));
                opt.step().unwrap();
                cpu.step(&g.iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
                track_scale(&mut scale, cpu.param());
                let ours = read_f32(&ctx, &param, 0, N as u64).unwrap();
                assert_close(&format!("{algorithm}, {name} changed at step 4, step {t}"), &ours, cpu.param(), &scale);
            }
            runs.push(read_f32(&ctx, &param, 0, N as u64).unwrap());
        }
        assert_ne!(runs[0], runs[1], "{algorithm}: changing {name} changed nothing");
    }
}

fn adam_with_state(ctx: &GpuContext) -> (Optimizer, wgpu::Buffer, wgpu::Buffer) {
    let (param, grad) = (buffer(ctx, &[1.0; 8]), buffer(ctx, &[0.5; 8]));
    let mut opt = Optimizer::new(ctx, AdamConfig::default()).unwrap();
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&param, &grad, 8)]).unwrap();
    opt.step().unwrap();
    (opt, param, grad)
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn changes_are_checked_as_the_constructor_checks_them_and_a_refusal_changes_nothing() {
    let ctx = gpu();
    let (mut opt, _param, _grad) = adam_with_state(&ctx);
    let group = opt.default_group();
    let before = opt.group_config(group).unwrap().clone();
    let refusals: Vec<(&str, serde_json::Value, &str)> = vec![
        ("lr", json!(-1.0), "Invalid learning rate: -1.0"),
        ("betas", json!([0.9, 1.0]), "Invalid beta parameter at index 1: 1.0"),
        ("eps", json!(-1e-8), "Invalid epsilon value: -1e-08"),
        ("weight_decay", serde_json::Value::from(f64::NAN), "weight_decay must be a number, got null"),
        ("amsgrad", json!(true), "the arrays a group keeps are fixed when its tensors are registered"),
        ("momentum", json!(0.9), "Adam has no hyperparameter \"momentum\""),
        ("name", json!("SGD"), "Adam has no hyperparameter \"name\""),
        ("betas", json!("fast"), "invalid type"),
    ];
    for (name, value, message) in refusals {
        let error = opt.set_hyperparameter(group, name, value.clone()).unwrap_err().to_string();
        assert!(error.contains(message), "{name} = {value}: expected \"{message}\" in: {error}");
        assert_eq!(opt.group_config(group).unwrap(), &before, "{name} = {value}: a refusal changed the group");
    }
    let other = opt.set_group_config(group, SgdConfig::default()).unwrap_err();
    assert!(matches!(other, Error::GroupAlgorithm { .. }), "{other}");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_changed_hyperparameter_is_saved_in_checkpoints() {
    let ctx = gpu();
    let dir = std::env::temp_dir().join(format!("wgpu-optim-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("live.safetensors");
    let (mut opt, _param, _grad) = adam_with_state(&ctx);
    let group = opt.default_group();
    opt.set_hyperparameter(group, "weight_decay", json!(0.25)).unwrap();
    opt.set_hyperparameter(group, "lr", json!(0.02)).unwrap();
    assert_eq!(opt.lr(group).unwrap(), 0.02, "the group's rate is the config's");
    opt.save_state(&path).unwrap();
    let (mut restored, _p, _g) = adam_with_state(&ctx);
    restored.load_state(&path).unwrap();
    assert_eq!(restored.group_config(group).unwrap(), opt.group_config(group).unwrap());
    assert_eq!(restored.lr(group).unwrap(), 0.02);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_schedule_attached_mid_run_starts_at_its_own_step_0_and_checkpoints_keep_where() {
    let ctx = gpu();
    let (mut opt, _param, _grad) = adam_with_state(&ctx);
    let group = opt.default_group();
    for _ in 0..4 {
        opt.step().unwrap();
    }
    let base = 1e-3;
    let warmup =
        || LinearLr::new(base, LinearLrConfig { start_factor: 0.25, end_factor: 1.0, total_iters: 3 }).unwrap();
    opt.set_schedule(group, LrScheduler::new(warmup())).unwrap();
    let mut rates = Vec::new();
    for _ in 0..4 {
        rates.push(opt.lr(group).unwrap());
        opt.step().unwrap();
    }
    let expected = [0.25 * base, 0.5 * base, 0.75 * base, base];
    for (ours, reference) in rates.iter().zip(expected) {
        assert!((ours - reference).abs() < 1e-15, "warmup attached at step 5: {rates:?}");
    }
    // A checkpoint keeps the step the schedule was set at.
    let dir = std::env::temp_dir().join(format!("wgpu-optim-sched-at-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("at.safetensors");
    let before_save = {
        opt.set_step_count(6).unwrap();
        opt.lr(group).unwrap()
    };
    opt.save_state(&path).unwrap();
    let (mut restored, _p, _g) = adam_with_state(&ctx);
    restored.set_schedule(group, LrScheduler::new(warmup())).unwrap();
    restored.load_state(&path).unwrap();
    assert_eq!(restored.lr(group).unwrap(), before_save);
    assert_eq!(before_save, 0.5 * base);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn set_hyperparameter_keeps_an_lr_set_by_set_lr() {
    let ctx = gpu();
    let mut opt = Optimizer::new(&ctx, AdamWConfig { lr: 1e-3, ..Default::default() }).unwrap();
    let g = opt.default_group();
    opt.set_lr(g, 0.5).unwrap();
    assert_eq!(opt.lr(g).unwrap(), 0.5);
    // PyTorch: param_groups[0]["weight_decay"] = 0.05 leaves param_groups[0]["lr"] at 0.5.
    opt.set_hyperparameter(g, "weight_decay", 0.05.into()).unwrap();
    assert_eq!(opt.lr(g).unwrap(), 0.5, "changing weight_decay reverted the learning rate");
}

/// Two steps recorded into one encoder that the engine then drops; it rewinds both with
/// set_step_count, as the docs say. The next step must be the tensor's first step again.
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn rewinding_two_dropped_steps_restores_nadam_carry() {
    let ctx = gpu();
    let n = 64u64;
    let init: Vec<f32> = (0..n).map(|i| 0.1 * i as f32 - 1.0).collect();
    let grads: Vec<f32> = (0..n).map(|i| 0.3 - 0.01 * i as f32).collect();
    let make = || {
        let p = buffer(&ctx, &init);
        let g = buffer(&ctx, &grads);
        let mut opt = Optimizer::new(&ctx, NAdamConfig { lr: 0.01, ..Default::default() }).unwrap();
        opt.add_params(opt.default_group(), &[ParamBinding::whole(&p, &g, n)]).unwrap();
        (opt, p, g)
    };
    let (mut a, pa, _ga) = make();
    {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        a.record(&mut enc).unwrap();
        a.record(&mut enc).unwrap();
        drop(enc); // never submitted
    }
    a.set_step_count(0).unwrap();
    a.step().unwrap();
    let (mut b, pb, _gb) = make();
    b.step().unwrap();
    let (xa, xb) = (read_f32(&ctx, &pa, 0, n).unwrap(), read_f32(&ctx, &pb, 0, n).unwrap());
    assert_eq!(xa, xb, "after rewinding to 0, the next step differs from a first step");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn set_lr_is_what_the_config_says() {
    let ctx = gpu();
    let mut opt = Optimizer::new(&ctx, SgdConfig { lr: 0.1, ..Default::default() }).unwrap();
    let g = opt.default_group();
    opt.set_lr(g, 0.25).unwrap();
    assert_eq!(opt.group_config(g).unwrap().to_json()["lr"], json!(0.25));
}

/// More recorded steps dropped than a rewind can take back one by one: the carries are rebuilt
/// from the schedule (a constant rate here: exactly).
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn rewinding_past_what_is_kept_rebuilds_the_carries() {
    let ctx = gpu();
    let init = [0.5f32, -1.0, 2.0, 0.25];
    let grads = [0.1f32, 0.2, -0.3, 0.4];
    let make = || {
        let (p, g) = (buffer(&ctx, &init), buffer(&ctx, &grads));
        let mut opt = Optimizer::new(&ctx, AsgdConfig { lr: 0.05, lambd: 0.1, ..Default::default() }).unwrap();
        opt.add_params(opt.default_group(), &[ParamBinding::whole(&p, &g, 4)]).unwrap();
        (opt, p, g)
    };
    let (mut a, pa, _ga) = make();
    for _ in 0..3 {
        a.step().unwrap();
    }
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    for _ in 0..70 {
        a.record(&mut enc).unwrap();
    }
    drop(enc);
    a.set_step_count(3).unwrap();
    a.step().unwrap();
    let (mut b, pb, _gb) = make();
    for _ in 0..4 {
        b.step().unwrap();
    }
    assert_eq!(read_f32(&ctx, &pa, 0, 4).unwrap(), read_f32(&ctx, &pb, 0, 4).unwrap());
}
