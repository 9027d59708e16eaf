//! Checkpoints: bit-exact resume for every optimizer (and for schedules with milestones and a
//! plateau), in a fresh device and in a fresh process; every refused checkpoint named and
//! harmless; non-finite gradients; device faults.

mod common;

use std::path::{Path, PathBuf};

use common::{buffer, gpu, Rng};
use serde_json::json;
use wgpu_optim::readback::read_f32;
use wgpu_optim::schedule::{self, LrScheduler};
use wgpu_optim::*;

const T: u64 = 6;
const LENS: &[u64] = &[300, 7, 1000];

/// Per algorithm of the registry, named by its PyTorch name: the last of its own cases that keeps
/// the most state arrays, so that every state array a checkpoint can carry is resumed.
fn configs() -> Vec<(&'static str, OptimizerConfig)> {
    let mut out: Vec<(&'static str, OptimizerConfig, usize)> = Vec::new();
    for (_, config) in OptimizerConfig::cases() {
        let states = config.algorithm().states_used().iter().filter(|&&used| used).count();
        match out.iter_mut().find(|(name, _, _)| *name == config.name()) {
            Some(best) if states >= best.2 => *best = (config.name(), config, states),
            Some(_) => {}
            None => out.push((config.name(), config, states)),
        }
    }
    out.into_iter().map(|(name, config, _)| (name, config)).collect()
}

/// A schedule per case: milestones that fall on both sides of the save, or a plateau.
fn schedule_for(name: &str, lr: f64) -> Option<LrScheduler> {
    let spec = match name {
        "SGD" => json!({"name": "MultiStepLR", "milestones": [2, T, T + 3], "gamma": 0.5}),
        "Adam" => json!({"name": "ReduceLROnPlateau", "patience": 1, "factor": 0.5, "cooldown": 1}),
        "AdamW" => json!({"name": "OneCycleLR", "max_lr": 0.01, "total_steps": 2 * T}),
        _ => return None,
    };
    Some(schedule::from_json(&spec, lr).unwrap())
}

/// The metric reported after step `t`: it stalls, so the plateau cuts the rate on both sides.
fn loss(t: u64) -> f64 {
    [1.0, 0.9, 0.95, 0.97, 0.96, 0.99, 0.98, 1.0, 0.99, 1.01, 1.0, 1.02][t as usize % 12]
}

/// An engine: its parameters in buffers, an optimizer over them.
struct Run {
    ctx: GpuContext,
    params: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    opt: Optimizer,
}

impl Run {
    fn new(name: &str, config: &OptimizerConfig, init: Option<Vec<Vec<f32>>>) -> Self {
        let ctx = gpu();
        let mut rng = Rng::new(42);
        let init = init.unwrap_or_else(|| LENS.iter().map(|&n| rng.vector(n as usize)).collect());
        let params: Vec<_> = init.iter().map(|p| (buffer(&ctx, p), buffer(&ctx, &vec![0.0; p.len()]))).collect();
        let mut opt = Optimizer::new(&ctx, config.clone()).unwrap();
        let second = opt.add_group(config.clone()).unwrap();
        for (i, ((p, g), &n)) in params.iter().zip(LENS).enumerate() {
            let group = if i == 1 { second } else { opt.default_group() };
            opt.add_params(group, &[ParamBinding::whole(p, g, n)]).unwrap();
        }
        if let Some(s) = schedule_for(name, config.algorithm().lr()) {
            opt.set_schedule(opt.default_group(), s).unwrap();
        }
        Self { ctx, params, opt }
    }

    /// Steps `from..to`, each with its own gradients (a function of the step alone).
    fn steps(&mut self, from: u64, to: u64) {
        for t in from..to {
            for (i, (_, g)) in self.params.iter().enumerate() {
                let grad = Rng::new(1000 * t + i as u64).vector(LENS[i] as usize);
                self.ctx.queue.write_buffer(g, 0, bytemuck::cast_slice(&grad));
            }
            self.opt.step().unwrap();
            self.opt.observe(loss(t));
        }
    }

    fn params(&self) -> Vec<Vec<f32>> {
        self.params.iter().zip(LENS).map(|((p, _), &n)| read_f32(&self.ctx, p, 0, n).unwrap()).collect()
    }

    /// Every parameter and state element, as bits, with the step count and the next lr.
    fn snapshot(&self) -> (Vec<u32>, u64, u64) {
        let mut bits: Vec<u32> = self.params().concat().iter().map(|x| x.to_bits()).collect();
        for i in 0..LENS.len() {
            for name in self.opt.state_names() {
                if let Some(state) = self.opt.read_state(i, name).unwrap() {
                    bits.extend(state.iter().map(|x| x.to_bits()));
                }
            }
        }
        (bits, self.opt.steps(), self.opt.lr(self.opt.default_group()).unwrap().to_bits())
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-optim-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn save_params(path: &Path, params: &[Vec<f32>]) {
    std::fs::write(path, serde_json::to_string(params).unwrap()).unwrap();
}

fn load_params(path: &Path) -> Vec<Vec<f32>> {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn resume_on_a_fresh_device_is_bit_exact_for_every_optimizer() {
    for (name, config) in configs() {
        let mut straight = Run::new(name, &config, None);
        straight.steps(0, 2 * T);

        let mut first = Run::new(name, &config, None);
        first.steps(0, T);
        let ckpt = scratch(&format!("{}.safetensors", name.replace(' ', "_")));
        first.opt.save_state(&ckpt).unwrap();
        let mut second = Run::new(name, &config, Some(first.params()));
        drop(first);
        second.opt.load_state(&ckpt).unwrap();
        second.steps(T, 2 * T);
        assert!(straight.snapshot() == second.snapshot(), "{name}: resumed run differs from the uninterrupted one");
    }
}

/// The second half of `resume_in_a_fresh_process_is_bit_exact`, run as a child process.
#[test]
#[ignore = "run by resume_in_a_fresh_process_is_bit_exact in a process of its own"]
fn resume_child() {
    let dir = PathBuf::from(std::env::var("WGPU_OPTIM_RESUME_DIR").expect("set by the parent test"));
    let (name, config) = configs().into_iter().find(|(n, _)| *n == "Adam").unwrap();
    let mut run = Run::new(name, &config, Some(load_params(&dir.join("params.json"))));
    run.opt.load_state(dir.join("state.safetensors")).unwrap();
    run.steps(T, 2 * T);
    let (bits, steps, lr) = run.snapshot();
    std::fs::write(dir.join("result.json"), serde_json::to_string(&(bits, steps, lr)).unwrap()).unwrap();
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn resume_in_a_fresh_process_is_bit_exact() {
    let (name, config) = configs().into_iter().find(|(n, _)| *n == "Adam").unwrap();
    let mut straight = Run::new(name, &config, None);
    straight.steps(0, 2 * T);

    let dir = scratch("process");
    std::fs::create_dir_all(&dir).unwrap();
    let mut first = Run::new(name, &config, None);
    first.steps(0, T);
    first.opt.save_state(dir.join("state.safetensors")).unwrap();
    save_params(&dir.join("params.json"), &first.params());
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "resume_child", "--test-threads", "1"])
        .env("WGPU_OPTIM_RESUME_DIR", &dir)
        .status()
        .unwrap();
    assert!(status.success(), "the child process failed");
    let (bits, steps, lr): (Vec<u32>, u64, u64) =
        serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap()).unwrap();
    assert!(straight.snapshot() == (bits, steps, lr), "resumed in a fresh process differs");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn refused_checkpoints_are_named_and_change_nothing() {
    let (name, config) = configs().into_iter().find(|(n, _)| *n == "Adam").unwrap();
    let mut saved = Run::new(name, &config, None);
    saved.steps(0, T);
    let good = scratch("good.safetensors");
    saved.opt.save_state(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let mut target = Run::new(name, &config, None);
    target.steps(0, 2);
    let before = target.snapshot();
    let refuse = |run: &mut Run, path: &Path, message: &str| {
        let error = run.opt.load_state(path).unwrap_err().to_string();
        assert!(error.contains(message), "expected \"{message}\" in: {error}");
    };

    let truncated = scratch("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    refuse(&mut target, &truncated, "not a safetensors file");
    let garbage = scratch("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint").unwrap();
    refuse(&mut target, &garbage, "not a safetensors file");
    refuse(&mut target, &scratch("missing.safetensors"), "No such file or directory");

    // The same file with one metadata entry changed.
    let with_metadata = |key: &str, value: &str| {
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut metadata = header.metadata().clone().unwrap();
        metadata.insert(key.into(), value.into());
        let out = safetensors::serialize(file.tensors(), Some(metadata)).unwrap();
        let path = scratch(&format!("meta-{key}.safetensors"));
        std::fs::write(&path, out).unwrap();
        path
    };
    refuse(&mut target, &with_metadata("format_version", "2"), "format version 2 is newer than this library's (1)");
    refuse(&mut target, &with_metadata("format", "other"), "format is \"other\"");
    refuse(&mut target, &with_metadata("steps", "many"), "steps is not a number");
    refuse(&mut target, &with_metadata("groups", "[{"), "groups metadata");
    refuse(&mut target, &with_metadata("steps", "18446744073709551615"), "past 2^53");
    let groups = |edit: &dyn Fn(&mut serde_json::Value)| {
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut groups: serde_json::Value =
            serde_json::from_str(&header.metadata().as_ref().unwrap()["groups"]).unwrap();
        edit(&mut groups);
        groups.to_string()
    };
    let adamw = groups(&|g| {
        g[0]["config"]["name"] = "AdamW".into();
        g[0]["config"].as_object_mut().unwrap().remove("decoupled_weight_decay");
    });
    refuse(&mut target, &with_metadata("groups", &adamw), "group 0 is of AdamW, but the optimizer is Adam");
    let momentum = groups(&|g| g[1]["momentum"] = 1.0.into());
    refuse(&mut target, &with_metadata("groups", &momentum), "group 1: Invalid momentum value: 1");
    assert!(target.snapshot() == before, "a refused checkpoint changed the optimizer");

    // Another algorithm, other shapes, another layout, other state arrays, no schedule.
    let mut sgd = Run::new("sgd nesterov", &SgdConfig { lr: 0.01, momentum: 0.9, ..Default::default() }.into(), None);
    refuse(&mut sgd, &good, "checkpoint is of Adam, but the optimizer is SGD");
    let mut plain = Run::new(name, &AdamConfig::default().into(), None);
    plain.opt.set_schedule(plain.opt.default_group(), schedule_for(name, 1e-3).unwrap()).unwrap();
    refuse(&mut plain, &good, "group 0: checkpoint keeps state [\"exp_avg\", \"exp_avg_sq\", \"max_exp_avg_sq\"], the optimizer [\"exp_avg\", \"exp_avg_sq\"]");
    let mut unscheduled = Run::new("adam", &config, None);
    refuse(&mut unscheduled, &good, "group 0: checkpoint has a ReduceLROnPlateau schedule and the optimizer none");

    let ctx = gpu();
    let mut other_shape = Optimizer::new(&ctx, config.clone()).unwrap();
    let second = other_shape.add_group(config.clone()).unwrap();
    for (i, n) in [300u64, 7, 999].into_iter().enumerate() {
        let (p, g) = (buffer(&ctx, &vec![0.0; n as usize]), buffer(&ctx, &vec![0.0; n as usize]));
        let group = if i == 1 { second } else { other_shape.default_group() };
        other_shape.add_params(group, &[ParamBinding::whole(&p, &g, n)]).unwrap();
    }
    other_shape.set_schedule(other_shape.default_group(), schedule_for(name, 1e-3).unwrap()).unwrap();
    let error = other_shape.load_state(&good).unwrap_err().to_string();
    assert!(error.ends_with("parameter 2: 1000 elements in the checkpoint, 999 here"), "{error}");
    assert_eq!(other_shape.steps(), 0);

    let mut one_group = Optimizer::new(&ctx, config.clone()).unwrap();
    let (p, g) = (buffer(&ctx, &[0.0; 8]), buffer(&ctx, &[0.0; 8]));
    one_group.add_params(one_group.default_group(), &[ParamBinding::whole(&p, &g, 8)]).unwrap();
    let error = one_group.load_state(&good).unwrap_err().to_string();
    assert!(error.ends_with("checkpoint has 2 parameter groups, the optimizer 1"), "{error}");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn non_finite_gradients_propagate_and_are_reported() {
    let ctx = gpu();
    let (param, grad) = (buffer(&ctx, &[1.0; 600]), buffer(&ctx, &[0.5; 600]));
    let mut opt = Optimizer::new(&ctx, AdamConfig::default()).unwrap();
    // Two tensors in the same buffers: the scan must cover both ranges.
    opt.add_params(
        opt.default_group(),
        &[
            ParamBinding { len: 250, ..ParamBinding::whole(&param, &grad, 250) },
            ParamBinding { param_offset: 300, grad_offset: 300, ..ParamBinding::whole(&param, &grad, 299) },
        ],
    )
    .unwrap();
    assert!(!opt.found_nonfinite().unwrap(), "finite gradients");
    // Outside every registered range: not our gradient, not reported.
    ctx.queue.write_buffer(&grad, 260 * 4, bytemuck::cast_slice(&[f32::NAN]));
    assert!(!opt.found_nonfinite().unwrap(), "a NaN outside the registered ranges");
    for (index, value) in [(598u64, f32::INFINITY), (3, f32::NEG_INFINITY), (400, f32::NAN)] {
        ctx.queue.write_buffer(&grad, index * 4, bytemuck::cast_slice(&[value]));
        assert!(opt.found_nonfinite().unwrap(), "{value} at {index}");
        ctx.queue.write_buffer(&grad, index * 4, bytemuck::cast_slice(&[0.5f32]));
    }
    // PyTorch's behaviour: a NaN gradient makes the parameter NaN, and nothing else.
    ctx.queue.write_buffer(&grad, 400 * 4, bytemuck::cast_slice(&[f32::NAN]));
    opt.step().unwrap();
    let p = read_f32(&ctx, &param, 0, 600).unwrap();
    assert!(p[400].is_nan(), "the NaN propagates");
    assert!(p.iter().enumerate().filter(|(i, _)| *i != 400 && *i != 260).all(|(_, x)| x.is_finite()));
    assert!(opt.read_state(1, "exp_avg").unwrap().unwrap()[100].is_nan());
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_lost_device_is_an_error_not_a_panic() {
    let ctx = gpu();
    let (param, grad) = (buffer(&ctx, &[1.0; 4]), buffer(&ctx, &[1.0; 4]));
    let mut opt = Optimizer::new(&ctx, SgdConfig::default()).unwrap();
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&param, &grad, 4)]).unwrap();
    opt.step().unwrap();
    ctx.device.destroy();
    let _ = ctx.device.poll(wgpu::PollType::wait_indefinitely());
    let error = opt.step().unwrap_err();
    assert!(matches!(error, Error::DeviceLost(_)), "{error}");
    assert!(error.to_string().starts_with("device lost: Destroyed"), "{error}");
    assert!(matches!(opt.found_nonfinite(), Err(Error::DeviceLost(_))));
    assert_eq!(opt.steps(), 1);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_buffer_of_another_device_is_refused_by_name() {
    // Two devices of one instance, as an engine with two devices has them. (Across instances
    // wgpu cannot tell buffers apart at all.)
    let (ours, theirs) = pollster::block_on(async {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance.request_adapter(&Default::default()).await.expect("an adapter");
        let open = || async {
            let (device, queue) = adapter.request_device(&Default::default()).await.unwrap();
            GpuContext::from_device(device, queue)
        };
        (open().await, open().await)
    });
    let (param, grad) = (buffer(&ours, &[1.0; 4]), buffer(&theirs, &[1.0; 4]));
    let mut opt = Optimizer::new(&ours, SgdConfig::default()).unwrap();
    let error = opt.add_params(opt.default_group(), &[ParamBinding::whole(&param, &grad, 4)]).unwrap_err();
    assert!(error.to_string().starts_with("buffer \"grad 0\" cannot be used on the optimizer's device"), "{error}");
    assert_eq!(opt.param_count(), 0);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_tensor_added_late_keeps_its_own_step_count_across_a_resume() {
    let config: OptimizerConfig = AdamConfig { lr: 0.01, ..Default::default() }.into();
    let lens = [300u64, 77];
    let mut rng = Rng::new(5);
    let inits: Vec<Vec<f32>> = lens.iter().map(|&n| rng.vector(n as usize)).collect();
    let grad = |t: u64, i: usize| Rng::new(100 * t + i as u64).vector(lens[i] as usize);
    struct Engine {
        ctx: GpuContext,
        buffers: Vec<(wgpu::Buffer, wgpu::Buffer)>,
        opt: Optimizer,
    }
    let engine = |params: &[Vec<f32>]| {
        let ctx = gpu();
        let buffers: Vec<_> = params.iter().map(|p| (buffer(&ctx, p), buffer(&ctx, &vec![0.0; p.len()]))).collect();
        let opt = Optimizer::new(&ctx, config.clone()).unwrap();
        Engine { ctx, buffers, opt }
    };
    let add = |e: &mut Engine, i: usize| {
        let g = e.opt.default_group();
        e.opt.add_params(g, &[ParamBinding::whole(&e.buffers[i].0, &e.buffers[i].1, lens[i])]).unwrap();
    };
    let step = |e: &mut Engine, t: u64| {
        for (i, (_, g)) in e.buffers.iter().enumerate() {
            e.ctx.queue.write_buffer(g, 0, bytemuck::cast_slice(&grad(t, i)));
        }
        e.opt.step().unwrap();
    };
    let snapshot = |e: &Engine| {
        let mut bits: Vec<u32> = Vec::new();
        for (i, (p, _)) in e.buffers.iter().enumerate() {
            bits.extend(read_f32(&e.ctx, p, 0, lens[i]).unwrap().iter().map(|x| x.to_bits()));
            bits.extend(e.opt.read_state(i, "exp_avg_sq").unwrap().unwrap().iter().map(|x| x.to_bits()));
        }
        bits
    };

    // Uninterrupted: the second tensor joins after two steps; six steps in all. Saved after four.
    let ckpt = scratch("late.safetensors");
    let mut straight = engine(&inits);
    add(&mut straight, 0);
    step(&mut straight, 0);
    step(&mut straight, 1);
    add(&mut straight, 1);
    step(&mut straight, 2);
    step(&mut straight, 3);
    straight.opt.save_state(&ckpt).unwrap();
    let saved: Vec<Vec<f32>> =
        straight.buffers.iter().zip(lens).map(|((p, _), n)| read_f32(&straight.ctx, p, 0, n).unwrap()).collect();
    step(&mut straight, 4);
    step(&mut straight, 5);

    // Resumed on a fresh device: the same tensors, registered as before, then the state.
    let mut resumed = engine(&saved);
    add(&mut resumed, 0);
    add(&mut resumed, 1);
    resumed.opt.load_state(&ckpt).unwrap();
    step(&mut resumed, 4);
    step(&mut resumed, 5);
    assert!(snapshot(&straight) == snapshot(&resumed), "resumed with a late tensor differs");
    // Registered in one call this time: each tensor takes its own step count from the checkpoint.
    let mut one_call = engine(&saved);
    let both: Vec<ParamBinding> =
        (0..2).map(|i| ParamBinding::whole(&one_call.buffers[i].0, &one_call.buffers[i].1, lens[i])).collect();
    one_call.opt.add_params(one_call.opt.default_group(), &both).unwrap();
    one_call.opt.load_state(&ckpt).unwrap();
    step(&mut one_call, 4);
    step(&mut one_call, 5);
    assert!(snapshot(&straight) == snapshot(&one_call), "resumed in one add_params call differs");

    // The late tensor took four steps of its own, as a fresh Adam would from its start.
    let mut cpu =
        wgpu_optim::cpu::CpuOptimizer::new(config.clone(), inits[1].iter().map(|&x| x as f64).collect()).unwrap();
    let mut scale: Vec<f64> = cpu.param().iter().map(|x| x.abs()).collect();
    for t in 2..6 {
        cpu.step(&grad(t, 1).iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
        common::track_scale(&mut scale, cpu.param());
    }
    let late = read_f32(&straight.ctx, &straight.buffers[1].0, 0, lens[1]).unwrap();
    common::assert_close("late tensor", &late, cpu.param(), &scale);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn rprop_starts_its_step_size_at_the_groups_current_rate() {
    let ctx = gpu();
    let (p, g) = (buffer(&ctx, &[1.0; 8]), buffer(&ctx, &[1.0; 8]));
    let mut opt = Optimizer::new(&ctx, RpropConfig::default()).unwrap();
    opt.set_lr(opt.default_group(), 0.05).unwrap();
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&p, &g, 8)]).unwrap();
    assert_eq!(opt.read_state(0, "step_size").unwrap().unwrap(), vec![0.05f32; 8]);
}
