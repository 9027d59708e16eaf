//! Checkpoints: bit-exact resume for every optimizer (and for schedules with milestones and a
//! plateau), in a fresh device and in a fresh process; every refused checkpoint named and
//! harmless (damage, values no writer produces, version 1); where `save_state` writes (no device
//! node, FIFO or directory; symlinks followed; concurrent saves; stale partial files);
//! non-finite gradients; device faults. The bit-flip and fuzz tests are in `checkpoint_fuzz.rs`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::edit::{edit_json, rewrite, seal, Edit};
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

/// Sets element `i` of a tensor's f32 bytes.
fn set_f32(data: &mut [u8], i: usize, x: f32) {
    data[4 * i..4 * i + 4].copy_from_slice(&x.to_le_bytes());
}

/// An empty scratch directory.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch(name);
    std::fs::write(&path, bytes).unwrap();
    path
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
    refuse(&mut target, &truncated, "but its header describes");
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
    refuse(&mut target, &with_metadata("format_version", "5"), "format version 5 is newer than this library's (4)");
    refuse(&mut target, &with_metadata("format", "other"), "format is \"other\"");
    refuse(&mut target, &with_metadata("steps", "many"), "steps is \"many\", not a number as a writer writes it");
    refuse(&mut target, &with_metadata("steps", "06"), "steps is \"06\", not a number");
    refuse(&mut target, &with_metadata("format_version", "0"), "format version 0 does not exist");
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
    // Such a state is not saved: load_state would refuse it.
    let path = scratch("nan.safetensors");
    let _ = std::fs::remove_file(&path);
    let error = opt.save_state(&path).unwrap_err().to_string();
    assert!(
        error.contains("not written: parameter 1's exp_avg: element 100 is NaN: optimizer state is always finite"),
        "{error}"
    );
    assert!(!path.exists());
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
fn rprop_starts_its_step_size_at_the_rate_of_its_first_step() {
    let ctx = gpu();
    let (p, g) = (buffer(&ctx, &[1.0; 8]), buffer(&ctx, &[1.0; 8]));
    let mut opt = Optimizer::new(&ctx, RpropConfig::default()).unwrap();
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&p, &g, 8)]).unwrap();
    opt.set_lr(opt.default_group(), 0.05).unwrap();
    opt.step().unwrap();
    assert_eq!(opt.read_state(0, "step_size").unwrap().unwrap(), vec![0.05f32; 8]);
}

/// Adam (AMSGrad, a plateau schedule on group 0) after `T` steps, and its checkpoint's bytes.
fn adam_checkpoint(file: &str) -> (Run, Vec<u8>) {
    let (name, config) = configs().into_iter().find(|(n, _)| *n == "Adam").unwrap();
    let mut run = Run::new(name, &config, None);
    run.steps(0, T);
    let path = scratch(file);
    run.opt.save_state(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (run, bytes)
}

fn adam_target() -> Run {
    let (name, config) = configs().into_iter().find(|(n, _)| *n == "Adam").unwrap();
    let mut target = Run::new(name, &config, None);
    target.steps(0, 2);
    target
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn the_checksum_is_the_crc32_of_the_file_with_its_digits_zeroed() {
    let (_, bytes) = adam_checkpoint("sealed.safetensors");
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().as_ref().unwrap();
    assert_eq!(metadata["format_version"], "4");
    let checksum = &metadata["checksum"];
    assert!(checksum.len() == 8 && checksum.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert!(seal(bytes.clone()) == bytes, "the stored checksum is not the CRC-32 of the file with its digits zeroed");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn values_no_writer_produces_are_refused_and_change_nothing() {
    let (_, bytes) = adam_checkpoint("strict.safetensors");
    let mut target = adam_target();
    let before = target.snapshot();
    // Each file is sealed with a valid checksum: only the value checks can refuse it.
    let cases: Vec<(&str, Edit)> = vec![
        ("metadata has the key \"note\", which no version-4 writer writes", Box::new(|m, _| {
            m.insert("note".into(), "hi".into());
        })),
        ("groups metadata: unknown field `extra`", Box::new(|m, _| edit_json(m, "groups", |g| g[1]["extra"] = 1.into()))),
        ("params metadata: unknown field `extra`", Box::new(|m, _| edit_json(m, "params", |p| p[0]["extra"] = 1.into()))),
        (
            "params metadata: parameter 2 lacks \"added_at\"",
            Box::new(|m, _| edit_json(m, "params", |p| drop(p[2].as_object_mut().unwrap().remove("added_at")))),
        ),
        (
            "group 0: config.amsgrad is missing",
            Box::new(|m, _| edit_json(m, "groups", |g| drop(g[0]["config"].as_object_mut().unwrap().remove("amsgrad")))),
        ),
        (
            "groups metadata: [0].lr is 1, which a writer writes as 1.0",
            Box::new(|m, _| edit_json(m, "groups", |g| g[0]["lr"] = 1.into())),
        ),
        (
            "groups metadata: unknown field `extra`, expected one of `lr`, `best`",
            Box::new(|m, _| edit_json(m, "groups", |g| g[0]["schedule"]["state"]["extra"] = 1.into())),
        ),
        (
            "group 0: invalid scheduler config: ReduceLROnPlateau state: num_bad_epochs is 18446744073709551615, over patience (1)",
            Box::new(|m, _| edit_json(m, "groups", |g| g[0]["schedule"]["state"]["num_bad_epochs"] = u64::MAX.into())),
        ),
        (
            "ReduceLROnPlateau state: last_epoch is 18446744073709551615, past 2^53",
            Box::new(|m, _| edit_json(m, "groups", |g| g[0]["schedule"]["state"]["last_epoch"] = u64::MAX.into())),
        ),
        (
            "ReduceLROnPlateau state: cooldown_counter is 18446744073709551615, over cooldown (1)",
            Box::new(|m, _| edit_json(m, "groups", |g| g[0]["schedule"]["state"]["cooldown_counter"] = u64::MAX.into())),
        ),
        (
            "ReduceLROnPlateau state: best is nan",
            Box::new(|m, _| edit_json(m, "groups", |g| g[0]["schedule"]["state"]["best"] = "nan".into())),
        ),
        (
            "tensor param.0.exp_avg: element 5 is NaN: optimizer state is always finite",
            Box::new(|_, t| set_f32(t.get_mut("param.0.exp_avg").unwrap(), 5, f32::NAN)),
        ),
        (
            "tensor param.1.max_exp_avg_sq: element 0 is inf: optimizer state is always finite",
            Box::new(|_, t| set_f32(t.get_mut("param.1.max_exp_avg_sq").unwrap(), 0, f32::INFINITY)),
        ),
        (
            "tensor param.2.exp_avg_sq: element 999 is -0.5, but exp_avg_sq is never negative",
            Box::new(|_, t| set_f32(t.get_mut("param.2.exp_avg_sq").unwrap(), 999, -0.5)),
        ),
        (
            "holds tensor param.3.exp_avg, which this optimizer does not keep",
            Box::new(|_, t| drop(t.insert("param.3.exp_avg".into(), vec![0; 8]))),
        ),
        (
            "checksum \"ABCDEF01\" is not eight lowercase hex digits",
            Box::new(|m, _| drop(m.insert("checksum".into(), "ABCDEF01".into()))),
        ),
    ];
    for (i, (message, edit)) in cases.into_iter().enumerate() {
        let sealed = if message.starts_with("checksum") { rewrite(&bytes, edit) } else { seal(rewrite(&bytes, edit)) };
        let path = write_scratch(&format!("strict-{i}.safetensors"), &sealed);
        let error = target.opt.load_state(&path).unwrap_err().to_string();
        assert!(error.contains(message), "expected \"{message}\" in: {error}");
    }
    let unsealed = write_scratch(
        "unsealed.safetensors",
        &rewrite(&bytes, |_, t| {
            set_f32(t.get_mut("param.0.exp_avg").unwrap(), 0, 1.0);
        }),
    );
    let error = target.opt.load_state(&unsealed).unwrap_err().to_string();
    assert!(error.contains("checksum mismatch: the file says "), "{error}");
    assert!(target.snapshot() == before, "a refused checkpoint changed the optimizer");
    // The same file re-serialized and sealed, unedited, loads: the refusals were the edits'.
    target.opt.load_state(write_scratch("resealed.safetensors", &seal(rewrite(&bytes, |_, _| {})))).unwrap();
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_version_1_file_loads_and_resumes_bit_exactly() {
    let (name, config) = configs().into_iter().find(|(n, _)| *n == "Adam").unwrap();
    let mut straight = Run::new(name, &config, None);
    straight.steps(0, 2 * T);
    let (first, bytes) = adam_checkpoint("v2.safetensors");
    // What a version-1 writer wrote: no checksum, and (early ones) no `added_at`.
    let v1 = rewrite(&bytes, |m, _| {
        m.remove("checksum");
        m.insert("format_version".into(), "1".into());
        edit_json(m, "params", |p| {
            for param in p.as_array_mut().unwrap() {
                param.as_object_mut().unwrap().remove("added_at");
                param.as_object_mut().unwrap().remove("skipped");
            }
        });
        without_schedule_at(m);
    });
    let mut second = Run::new(name, &config, Some(first.params()));
    second.opt.load_state(write_scratch("v1.safetensors", &v1)).unwrap();
    second.steps(T, 2 * T);
    assert!(straight.snapshot() == second.snapshot(), "resumed from a version-1 file differs");
    // A version-1 file has no checksum to hold.
    let with_checksum = rewrite(&bytes, |m, _| drop(m.insert("format_version".into(), "1".into())));
    let error = second.opt.load_state(write_scratch("v1-sum.safetensors", &with_checksum)).unwrap_err().to_string();
    assert!(error.ends_with("metadata has the key \"checksum\", which no version-1 writer writes"), "{error}");
}

/// Takes out what version 3 added to the groups: the step each schedule was set at.
fn without_schedule_at(m: &mut HashMap<String, String>) {
    edit_json(m, "groups", |g| {
        for group in g.as_array_mut().unwrap() {
            if let Some(schedule) = group["schedule"].as_object_mut() {
                schedule.remove("at");
            }
        }
    });
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_version_2_file_loads_and_resumes_bit_exactly() {
    let (name, config) = configs().into_iter().find(|(n, _)| *n == "Adam").unwrap();
    let mut straight = Run::new(name, &config, None);
    straight.steps(0, 2 * T);
    let (first, bytes) = adam_checkpoint("v3.safetensors");
    // What a version-2 writer wrote: no `skipped` (it had no steps without gradients), sealed.
    let without_skipped = |m: &mut _| {
        edit_json(m, "params", |p| {
            for param in p.as_array_mut().unwrap() {
                param.as_object_mut().unwrap().remove("skipped");
            }
        });
        without_schedule_at(m);
    };
    let v2 = seal(rewrite(&bytes, |m, _| {
        m.insert("format_version".into(), "2".into());
        without_skipped(m);
    }));
    let mut second = Run::new(name, &config, Some(first.params()));
    second.opt.load_state(write_scratch("v2.safetensors", &v2)).unwrap();
    second.steps(T, 2 * T);
    assert!(straight.snapshot() == second.snapshot(), "resumed from a version-2 file differs");
    // Version 3 requires it; version 2 refuses it.
    let v3_without = seal(rewrite(&bytes, |m, _| {
        edit_json(m, "params", |p| drop(p[0].as_object_mut().unwrap().remove("skipped")));
    }));
    let error = second.opt.load_state(write_scratch("v3-without.safetensors", &v3_without)).unwrap_err().to_string();
    assert!(error.ends_with("parameter 0 lacks \"skipped\""), "{error}");
    let v3_without_at = seal(rewrite(&bytes, |m, _| without_schedule_at(m)));
    let error =
        second.opt.load_state(write_scratch("v3-without-at.safetensors", &v3_without_at)).unwrap_err().to_string();
    assert!(error.ends_with("the schedule lacks \"at\""), "{error}");
    let v2_with = seal(rewrite(&bytes, |m, _| drop(m.insert("format_version".into(), "2".into()))));
    let error = second.opt.load_state(write_scratch("v2-with.safetensors", &v2_with)).unwrap_err().to_string();
    assert!(error.ends_with("which no version-2 writer writes"), "{error}");
}

#[cfg(unix)]
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn save_state_writes_only_to_a_regular_file_or_a_new_path() {
    use std::os::unix::fs::FileTypeExt;
    let (run, _) = adam_checkpoint("regular.safetensors");
    let dir = fresh_dir("not-regular");
    std::fs::create_dir(dir.join("a-directory")).unwrap();
    let fifo = dir.join("a-fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let socket = dir.join("a-socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let dev_null = PathBuf::from("/dev/null");
    let link_to_fifo = dir.join("link");
    std::os::unix::fs::symlink("a-fifo", &link_to_fifo).unwrap();
    for (path, what) in [
        (dir.join("a-directory"), "is a directory, not a regular file"),
        (fifo.clone(), "is a FIFO, not a regular file"),
        (socket.clone(), "is a socket, not a regular file"),
        (dev_null.clone(), "is a character device, not a regular file"),
        (link_to_fifo.clone(), &format!("is a symlink to {}, which is a FIFO, not a regular file", fifo.display())),
    ] {
        let error = run.opt.save_state(&path).unwrap_err();
        assert!(matches!(error, Error::Checkpoint { .. }), "{error}");
        let message = error.to_string();
        assert!(message.starts_with(&format!("checkpoint {}: {what}", path.display())), "{message}");
    }
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    assert!(std::fs::metadata(&socket).unwrap().file_type().is_socket(), "the socket was replaced");
    assert!(std::fs::metadata(&dev_null).unwrap().file_type().is_char_device(), "/dev/null was replaced");
    assert!(std::fs::symlink_metadata(&link_to_fifo).unwrap().file_type().is_symlink());
    let partials: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(partials.is_empty(), "left {partials:?}");

    // Loading opens only a regular file: a FIFO would block the open until a writer came.
    let mut target = adam_target();
    let error = target.opt.load_state(&fifo).unwrap_err().to_string();
    assert!(error.ends_with("a-fifo: is a FIFO, not a regular file"), "{error}");
    let error = target.opt.load_state(&dev_null).unwrap_err().to_string();
    assert!(error.ends_with("is a character device, not a regular file"), "{error}");
}

#[cfg(unix)]
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn save_state_through_a_symlink_replaces_its_target() {
    use std::os::unix::fs::PermissionsExt;
    let (run, _) = adam_checkpoint("linked.safetensors");
    let dir = fresh_dir("links");
    std::fs::create_dir(dir.join("runs")).unwrap();
    let target = dir.join("runs").join("step-6.safetensors");
    std::fs::write(&target, b"old").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    // latest -> runs/step-6.safetensors (relative, read from the link's directory)
    let latest = dir.join("latest.safetensors");
    std::os::unix::fs::symlink("runs/step-6.safetensors", &latest).unwrap();
    run.opt.save_state(&latest).unwrap();
    assert!(std::fs::symlink_metadata(&latest).unwrap().file_type().is_symlink(), "the link was replaced");
    assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600, "permissions changed");
    adam_target().opt.load_state(&target).unwrap();
    // A dangling link: its target is created.
    let dangling = dir.join("next.safetensors");
    std::os::unix::fs::symlink("runs/step-7.safetensors", &dangling).unwrap();
    run.opt.save_state(&dangling).unwrap();
    adam_target().opt.load_state(dir.join("runs/step-7.safetensors")).unwrap();
    assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn two_threads_saving_to_one_path_both_succeed() {
    let (a, _) = adam_checkpoint("thread-a.safetensors");
    let (b, _) = adam_checkpoint("thread-b.safetensors");
    let path = scratch("shared.safetensors");
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        for run in [&a, &b] {
            let (path, barrier) = (&path, &barrier);
            s.spawn(move || {
                barrier.wait();
                for _ in 0..8 {
                    run.opt.save_state(path).unwrap();
                }
            });
        }
    });
    adam_target().opt.load_state(&path).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn stale_partial_files_of_dead_processes_are_removed() {
    let (run, _) = adam_checkpoint("stale-source.safetensors");
    let dir = fresh_dir("stale");
    let ours = std::process::id();
    // No pid reaches u32::MAX (Linux's pid_max is at most 2^22).
    let dead = [format!("ckpt.{}-3.partial", u32::MAX), format!("ckpt.{}.partial", u32::MAX - 1)];
    let kept = [
        format!("ckpt.{ours}-999999.partial"), // this process: another thread may be writing it
        "ckpt.1-0.partial".to_string(),        // a live process
        format!("ckpt.7.{}-0.partial", u32::MAX), // another checkpoint's (ckpt.7)
        "ckpt.x-1.partial".to_string(),        // not our pattern
        "other.4294967295-1.partial".to_string(),
    ];
    // Written by a dead process an hour ago, unless a name below says otherwise.
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3601);
    for name in dead.iter().chain(&kept) {
        std::fs::File::create(dir.join(name)).unwrap().set_modified(hour_ago).unwrap();
    }
    // Dead, but written a minute ago: perhaps a process this one cannot see, still saving.
    let recent = format!("ckpt.{}-4.partial", u32::MAX);
    std::fs::File::create(dir.join(&recent)).unwrap().set_modified(hour_ago + Duration::from_secs(3540)).unwrap();
    run.opt.save_state(dir.join("ckpt")).unwrap();
    for name in &dead {
        assert!(!dir.join(name).exists(), "{name} was left");
    }
    for name in kept.iter().chain([&recent]) {
        assert!(dir.join(name).exists(), "{name} was removed");
    }
}

/// Sets the file at `path` to `len` bytes without writing them (sparse where the file system
/// allows), as `truncate -s` does.
fn extend_sparse(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_huge_file_is_refused_from_its_header_without_reading_the_rest() {
    const HUGE: u64 = 4 << 30;
    let (_, bytes) = adam_checkpoint("huge-source.safetensors");
    let mut target = adam_target();
    let timed = |target: &mut Run, path: &Path| {
        let start = Instant::now();
        let error = target.opt.load_state(path).unwrap_err().to_string();
        (start.elapsed(), error)
    };
    // A valid checkpoint followed by 4 GiB of nothing.
    let padded = write_scratch("huge-padded.safetensors", &bytes);
    extend_sparse(&padded, HUGE);
    let (took, error) = timed(&mut target, &padded);
    assert!(
        error.ends_with(&format!(
            "the file is {HUGE} bytes, but its header describes {}: truncated or damaged",
            bytes.len()
        )),
        "{error}"
    );
    eprintln!("4 GiB after a valid checkpoint: refused in {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // A valid header that describes a 4 GiB tensor, in a file of that size.
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap();
    let json = serde_json::json!({
        "__metadata__": metadata,
        "param.0.exp_avg": {"dtype": "F32", "shape": [HUGE / 4], "data_offsets": [0, HUGE]},
    })
    .to_string();
    let mut head = json.into_bytes();
    head.resize(head.len().next_multiple_of(8), b' ');
    let mut file = (head.len() as u64).to_le_bytes().to_vec();
    file.extend(&head);
    let described = write_scratch("huge-tensor.safetensors", &file);
    extend_sparse(&described, file.len() as u64 + HUGE);
    let (took, error) = timed(&mut target, &described);
    assert!(error.ends_with("tensor param.0.exp_avg is F32 [1073741824], expected F32 [300]"), "{error}");
    eprintln!("a header describing a 4 GiB tensor: refused in {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // A header length past safetensors' cap is refused before the header is read.
    let mut capped = bytes.clone();
    capped[..8].copy_from_slice(&(100_000_001u64).to_le_bytes());
    let (_, error) = timed(&mut target, &write_scratch("huge-header.safetensors", &capped));
    assert!(error.contains("a header of 100000001 bytes, past safetensors' limit of 100000000"), "{error}");
    let _ = std::fs::remove_file(&padded);
    let _ = std::fs::remove_file(&described);
}

/// A version-3 checkpoint of an algorithm that carries values from step to step (NAdam's
/// mu_product, ASGD's eta and mu) holds them exactly where a writer writes them, with values its
/// steps can produce; anything else is refused (sealed again, so the checksum is not what refuses).
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn carried_values_are_where_and_what_a_writer_writes() {
    for algorithm in ["NAdam", "ASGD"] {
        let (name, config) = configs().into_iter().find(|(n, _)| *n == algorithm).unwrap();
        let mut run = Run::new(name, &config, None);
        run.steps(0, T);
        let path = scratch(&format!("carry-{algorithm}.safetensors"));
        run.opt.save_state(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut target = Run::new(name, &config, None);
        let before = target.snapshot();
        type Edit = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(String, Edit)> = vec![
            ("lacks \"carry\" after".into(), Box::new(|p| drop(p[0].as_object_mut().unwrap().remove("carry")))),
            ("carry:".into(), Box::new(|p| p[0]["carry"] = serde_json::json!([0.5, 1.5]))),
            ("carry:".into(), Box::new(|p| p[0]["carry"] = serde_json::json!([-1.0, 0.0]))),
        ];
        for (i, (message, edit)) in cases.iter().enumerate() {
            let edited = seal(rewrite(&bytes, |m, _| edit_json(m, "params", |p| edit(p))));
            let path = write_scratch(&format!("carry-{algorithm}-{i}.safetensors"), &edited);
            let error = match target.opt.load_state(&path) {
                Ok(()) => panic!("{algorithm} case {i}: loaded, expected \"{message}\""),
                Err(e) => e.to_string(),
            };
            assert!(error.contains(message.as_str()), "{algorithm} case {i}: expected \"{message}\" in: {error}");
            assert!(target.snapshot() == before, "{algorithm}: a refused checkpoint changed the optimizer");
        }
        // Unedited, it loads and resumes as the saved run goes on.
        target.opt.load_state(&path).unwrap();
    }
}
