//! Loss scaling and gradient clipping on the device: against the CPU mirror (`cpu::CpuAmp`),
//! many steps in one submit against one submit each, tensors without gradients, and the errors.

mod common;

use common::{assert_close, buffer, gpu, scratch_dir, track_scale, Rng};
use wgpu_optim::cpu::{CpuAmp, CpuOptimizer};
use wgpu_optim::kernel::{Format, Storage};
use wgpu_optim::readback::read_f32;
use wgpu_optim::*;

const SIZES: [usize; 3] = [257, 64, 1031];

/// Tensors in buffers of their own (so that both `main` and `main4` run), their gradients.
struct Setup {
    opt: Optimizer,
    params: Vec<wgpu::Buffer>,
    grads: Vec<wgpu::Buffer>,
}

fn setup(ctx: &GpuContext, config: OptimizerConfig, init: &[Vec<f32>]) -> Setup {
    let mut opt = Optimizer::new(ctx, config).unwrap();
    let params: Vec<_> = init.iter().map(|v| buffer(ctx, v)).collect();
    let grads: Vec<_> = init.iter().map(|v| buffer(ctx, &vec![0.0; v.len()])).collect();
    let bindings: Vec<_> =
        params.iter().zip(&grads).zip(init).map(|((p, g), v)| ParamBinding::whole(p, g, v.len() as u64)).collect();
    opt.add_params(opt.default_group(), &bindings).unwrap();
    Setup { opt, params, grads }
}

/// Scaled gradients of step `t`: `scale * N(0, 1) * magnitude`, with an infinity or a NaN at
/// the steps that have one.
fn grads_at(rng: &mut Rng, t: usize, scale: f32) -> Vec<Vec<f32>> {
    let mut out: Vec<Vec<f32>> =
        SIZES.iter().map(|&n| rng.vector(n).into_iter().map(|g| g * scale * 0.3).collect()).collect();
    match t {
        4 | 11 => out[1][7] = f32::INFINITY,
        17 => out[2][1030] = f32::NAN,
        23 => {
            out[0][0] = f32::NEG_INFINITY;
            out[2][3] = f32::INFINITY;
        }
        _ => {}
    }
    out
}

fn scaler() -> GradScalerConfig {
    GradScalerConfig { init_scale: 1024.0, growth_interval: 3, ..Default::default() }
}

/// AdamW with loss scaling and clipping against the CPU mirror, step by step: parameters, the
/// scale, skipped steps and the norm.
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn adamw_with_scaling_and_clipping_matches_the_cpu_mirror() {
    for (norm_type, max_norm) in [(NormType::L2, 25.5), (NormType::Inf, 6.0)] {
        let ctx = gpu();
        let mut rng = Rng::new(7);
        let init: Vec<Vec<f32>> = SIZES.iter().map(|&n| rng.vector(n)).collect();
        let config: OptimizerConfig = AdamWConfig { lr: 1e-2, ..Default::default() }.into();
        let mut s = setup(&ctx, config.clone(), &init);
        let clip = ClipGradNorm { max_norm, norm_type, groups: None };
        s.opt.set_loss_scaling(Some(scaler())).unwrap();
        s.opt.set_grad_clipping(Some(clip.clone())).unwrap();
        let mut cpu: Vec<CpuOptimizer> = init
            .iter()
            .map(|v| CpuOptimizer::new(config.clone(), v.iter().map(|&x| x.into()).collect()).unwrap())
            .collect();
        let mut amp = CpuAmp::new(Some(scaler()), Some(clip));
        let mut scales = vec![Vec::new(); SIZES.len()];
        let (mut skipped, mut clipped) = (0, 0);
        for t in 0..30 {
            let grads = grads_at(&mut rng, t, amp.scale as f32);
            for (b, g) in s.grads.iter().zip(&grads) {
                ctx.queue.write_buffer(b, 0, bytemuck::cast_slice(g));
            }
            s.opt.step().unwrap();
            let wide: Vec<Option<Vec<f64>>> =
                grads.iter().map(|g| Some(g.iter().map(|&x| x.into()).collect())).collect();
            skipped += usize::from(amp.step(&mut cpu, &[0, 0, 0], &wide).unwrap());
            let status = s.opt.amp_status().unwrap().unwrap();
            assert_eq!(status.found_inf, amp.found_inf, "{norm_type:?} step {t}: skipped");
            assert_eq!(f64::from(status.scale), amp.scale, "{norm_type:?} step {t}: scale");
            assert_eq!(status.growth_tracker, amp.growth_tracker, "{norm_type:?} step {t}: growth tracker");
            if !amp.found_inf {
                let norm = f64::from(status.total_norm);
                assert!(
                    (norm - amp.total_norm).abs() <= 1e-5 * amp.total_norm,
                    "step {t}: norm {norm} vs {}",
                    amp.total_norm
                );
                clipped += usize::from(amp.total_norm > max_norm);
            } else {
                assert!(!status.total_norm.is_finite(), "step {t}: the norm of non-finite gradients");
            }
            for (k, (b, c)) in s.params.iter().zip(&cpu).enumerate() {
                track_scale(&mut scales[k], c.param());
                let ours = read_f32(&ctx, b, 0, SIZES[k] as u64).unwrap();
                assert_close(&format!("{norm_type:?} step {t} tensor {k}"), &ours, c.param(), &scales[k]);
            }
        }
        assert_eq!(skipped, 4, "the injected steps are skipped");
        assert!(clipped > 3 && clipped < 26, "{norm_type:?}: clipping active at some steps only ({clipped})");
        assert_eq!(s.opt.amp_status().unwrap().unwrap().skipped_steps, 4);
        // The skipped steps did not count for the bias corrections: the CPU mirror took 26 steps.
        assert_eq!(cpu[0].steps(), 26);
    }
}

/// Everything the optimizer reads and writes on the device after `steps` steps, recorded into one
/// encoder and submitted once, or submitted one by one.
fn run_recorded(ctx: &GpuContext, one_submit: bool, steps: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(11);
    let init: Vec<Vec<f32>> = SIZES.iter().map(|&n| rng.vector(n)).collect();
    // bf16 parameters and gradients, an f32 master copy, an EMA of the weights.
    let storage = Storage { param: Format::BF16, grad: Format::BF16, master: true, ..Storage::F32 };
    let config: OptimizerConfig = AdamWConfig { lr: 1e-2, ..Default::default() }.into();
    let mut opt = Optimizer::with_storage(ctx, config, storage).unwrap();
    opt.set_ema(Some(0.9)).unwrap();
    let bf16 = |v: &[f32]| bf16_words(v);
    let params: Vec<wgpu::Buffer> = init.iter().map(|v| buffer(ctx, &bf16(v))).collect();
    let grads: Vec<wgpu::Buffer> = init.iter().map(|v| buffer(ctx, &bf16(&vec![0.0; v.len()]))).collect();
    let bindings: Vec<_> =
        params.iter().zip(&grads).zip(&init).map(|((p, g), v)| ParamBinding::whole(p, g, v.len() as u64)).collect();
    opt.add_params(opt.default_group(), &bindings).unwrap();
    opt.set_loss_scaling(Some(scaler())).unwrap();
    opt.set_grad_clipping(Some(ClipGradNorm::new(25.5))).unwrap();
    // Every step's gradients in buffers of their own, copied in by the same encoder: what an
    // engine's backward pass would write, without reading anything back.
    let all: Vec<Vec<wgpu::Buffer>> = (0..steps)
        .map(|t| grads_at(&mut rng, t % 30, 1024.0).iter().map(|g| buffer(ctx, &bf16(g))).collect())
        .collect();
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    for step in &all {
        for (src, dst) in step.iter().zip(&grads) {
            encoder.copy_buffer_to_buffer(src, 0, dst, 0, src.size());
        }
        opt.record(&mut encoder).unwrap();
        if !one_submit {
            ctx.queue.submit([
                std::mem::replace(&mut encoder, ctx.device.create_command_encoder(&Default::default())).finish()
            ]);
        }
    }
    ctx.queue.submit([encoder.finish()]);
    let mut out: Vec<Vec<f32>> = params.iter().map(|b| read_f32(ctx, b, 0, b.size() / 4).unwrap()).collect();
    for i in 0..SIZES.len() {
        for name in ["exp_avg", "exp_avg_sq", "master", "ema"] {
            out.push(opt.read_state(i, name).unwrap().unwrap());
        }
    }
    let st = opt.amp_status().unwrap().unwrap();
    out.push(vec![st.scale, st.growth_tracker as f32, st.skipped_steps as f32, st.total_norm, st.clip_coef]);
    out
}

/// `values` as bf16 (nearest), two per word, read as f32 words for [`buffer`].
fn bf16_words(values: &[f32]) -> Vec<f32> {
    let mut bytes = Format::BF16.encode_all(values);
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    bytemuck::pod_collect_to_vec(&bytes)
}

/// 100 steps of AdamW with loss scaling, clipping and an EMA, on bf16 parameters with master
/// weights, recorded before one submit, non-finite gradients at some, give exactly what 100 steps
/// submitted one by one give: nothing the device decides goes through the host.
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn hundred_steps_in_one_submit_equal_one_submit_each() {
    let ctx = gpu();
    let one = run_recorded(&ctx, true, 100);
    let each = run_recorded(&ctx, false, 100);
    assert_eq!(one.len(), each.len());
    for (k, (a, b)) in one.iter().zip(&each).enumerate() {
        let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "array {k} differs");
    }
    // Steps were skipped (four of every thirty: 13 in 100).
    let status = one.last().unwrap();
    assert_eq!(status[2], 13.0, "skipped steps");
}

/// A tensor without a gradient in a step the device skips keeps its own step count apart from
/// the others' (its class splits): against the CPU mirror, where it simply does not step.
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn tensors_without_gradients_count_their_own_skipped_steps() {
    let ctx = gpu();
    let mut rng = Rng::new(3);
    let init: Vec<Vec<f32>> = SIZES.iter().map(|&n| rng.vector(n)).collect();
    let config: OptimizerConfig = AdamConfig { lr: 1e-2, ..Default::default() }.into();
    let mut s = setup(&ctx, config.clone(), &init);
    s.opt.set_loss_scaling(Some(scaler())).unwrap();
    let mut cpu: Vec<CpuOptimizer> = init
        .iter()
        .map(|v| CpuOptimizer::new(config.clone(), v.iter().map(|&x| x.into()).collect()).unwrap())
        .collect();
    let mut amp = CpuAmp::new(Some(scaler()), None);
    let mut scales = vec![Vec::new(); SIZES.len()];
    for t in 0..30 {
        // Tensor 1 sits out steps 2-6 (step 4 is skipped by the others), tensor 0 steps 10-12.
        let present = [!(10..13).contains(&t), !(2..7).contains(&t), true];
        let mut grads = grads_at(&mut rng, t, amp.scale as f32);
        if t == 4 {
            grads[1][7] = 0.0;
            grads[0][3] = f32::NAN;
        }
        for (i, ((b, g), &p)) in s.grads.iter().zip(&grads).zip(&present).enumerate() {
            ctx.queue.write_buffer(b, 0, bytemuck::cast_slice(g));
            s.opt.set_has_grad(i, p).unwrap();
        }
        s.opt.step().unwrap();
        let wide: Vec<Option<Vec<f64>>> =
            (grads.iter().zip(&present)).map(|(g, &p)| p.then(|| g.iter().map(|&x| x.into()).collect())).collect();
        amp.step(&mut cpu, &[0, 0, 0], &wide).unwrap();
        for (k, (b, c)) in s.params.iter().zip(&cpu).enumerate() {
            track_scale(&mut scales[k], c.param());
            let ours = read_f32(&ctx, b, 0, SIZES[k] as u64).unwrap();
            assert_close(&format!("step {t} tensor {k}"), &ours, c.param(), &scales[k]);
        }
    }
    assert_eq!(s.opt.amp_status().unwrap().unwrap().skipped_steps, 4);
}

/// Clipping only some groups: the norm is theirs, the other group's gradients are left alone.
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn clipping_chosen_groups_only() {
    let ctx = gpu();
    let mut rng = Rng::new(5);
    let init: Vec<Vec<f32>> = SIZES.iter().map(|&n| rng.vector(n)).collect();
    let config: OptimizerConfig = SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() }.into();
    let mut opt = Optimizer::new(&ctx, config.clone()).unwrap();
    let other = opt.add_group(config.clone()).unwrap();
    let params: Vec<_> = init.iter().map(|v| buffer(&ctx, v)).collect();
    let grads: Vec<_> = init.iter().map(|v| buffer(&ctx, &vec![0.0; v.len()])).collect();
    for (i, ((p, g), v)) in params.iter().zip(&grads).zip(&init).enumerate() {
        let group = if i == 1 { other } else { opt.default_group() };
        opt.add_params(group, &[ParamBinding::whole(p, g, v.len() as u64)]).unwrap();
    }
    let clip = ClipGradNorm { max_norm: 1.0, norm_type: NormType::L2, groups: Some(vec![0]) };
    opt.set_grad_clipping(Some(clip.clone())).unwrap();
    let mut cpu: Vec<CpuOptimizer> = init
        .iter()
        .map(|v| CpuOptimizer::new(config.clone(), v.iter().map(|&x| x.into()).collect()).unwrap())
        .collect();
    let mut amp = CpuAmp::new(None, Some(clip));
    let mut scales = vec![Vec::new(); SIZES.len()];
    for t in 0..8 {
        let g = grads_at(&mut rng, 0, 1.0);
        for (b, g) in grads.iter().zip(&g) {
            ctx.queue.write_buffer(b, 0, bytemuck::cast_slice(g));
        }
        opt.step().unwrap();
        let wide: Vec<Option<Vec<f64>>> = g.iter().map(|g| Some(g.iter().map(|&x| x.into()).collect())).collect();
        amp.step(&mut cpu, &[0, 1, 0], &wide).unwrap();
        let status = opt.amp_status().unwrap().unwrap();
        assert!((f64::from(status.total_norm) - amp.total_norm).abs() <= 1e-5 * amp.total_norm);
        assert!(status.clip_coef < 1.0, "step {t}: clipped");
        for (k, (b, c)) in params.iter().zip(&cpu).enumerate() {
            track_scale(&mut scales[k], c.param());
            let ours = read_f32(&ctx, b, 0, SIZES[k] as u64).unwrap();
            assert_close(&format!("step {t} tensor {k}"), &ours, c.param(), &scales[k]);
        }
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn errors_name_the_problem() {
    let ctx = gpu();
    let mut opt = Optimizer::new(&ctx, NAdamConfig::default()).unwrap();
    let e = opt.set_loss_scaling(Some(GradScalerConfig::default())).unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)) && e.to_string().contains("NAdam"), "{e}");
    // Clipping works with every optimizer.
    opt.set_grad_clipping(Some(ClipGradNorm::new(1.0))).unwrap();

    let mut opt = Optimizer::new(&ctx, AdamConfig::default()).unwrap();
    let bad = [
        (GradScalerConfig { growth_factor: 1.0, ..Default::default() }, "The growth factor must be > 1.0."),
        (GradScalerConfig { backoff_factor: 1.0, ..Default::default() }, "The backoff factor must be < 1.0."),
        (GradScalerConfig { backoff_factor: 0.0, ..Default::default() }, "Invalid backoff_factor value: 0.0"),
        (GradScalerConfig { init_scale: -1.0, ..Default::default() }, "Invalid init_scale value: -1.0"),
        (GradScalerConfig { init_scale: f64::INFINITY, ..Default::default() }, "Invalid init_scale value: inf"),
    ];
    for (config, message) in bad {
        assert_eq!(opt.set_loss_scaling(Some(config)).unwrap_err().to_string(), message);
    }
    assert_eq!(
        opt.set_grad_clipping(Some(ClipGradNorm::new(-1.0))).unwrap_err().to_string(),
        "Invalid max_norm value: -1.0"
    );
    let groups = ClipGradNorm { groups: Some(vec![3]), ..ClipGradNorm::new(1.0) };
    assert!(matches!(opt.set_grad_clipping(Some(groups)).unwrap_err(), Error::UnknownGroup(3)));
    assert!(opt.amp_status().unwrap().is_none(), "nothing was set");

    // No step back under loss scaling: the device has moved on.
    let param = buffer(&ctx, &[1.0; 8]);
    let grad = buffer(&ctx, &[1.0; 8]);
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&param, &grad, 8)]).unwrap();
    opt.set_loss_scaling(Some(GradScalerConfig::default())).unwrap();
    opt.step().unwrap();
    assert!(matches!(opt.set_step_count(0).unwrap_err(), Error::Unsupported(_)));
    assert_eq!(opt.steps(), 1);
    // The scale is readable, and bindable.
    assert_eq!(opt.amp_status().unwrap().unwrap().scale, 65536.0);
    assert!(opt.loss_scale_buffer().is_some());
}

/// A checkpoint holds the scaler's state and each tensor's steps skipped on the device: a run
/// saved at step 12 and resumed in a fresh optimizer ends bit for bit where the unbroken run does.
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn checkpoints_resume_bit_exactly_under_loss_scaling() {
    let ctx = gpu();
    let dir = scratch_dir("amp");
    let path = dir.join("amp.safetensors");
    let mut rng = Rng::new(21);
    let init: Vec<Vec<f32>> = SIZES.iter().map(|&n| rng.vector(n)).collect();
    let grads: Vec<Vec<Vec<f32>>> = (0..24).map(|t| grads_at(&mut rng, t, 1024.0)).collect();
    let config: OptimizerConfig = AdamWConfig { lr: 1e-2, ..Default::default() }.into();
    let set = |opt: &mut Optimizer| {
        opt.set_loss_scaling(Some(scaler())).unwrap();
        opt.set_grad_clipping(Some(ClipGradNorm::new(25.5))).unwrap();
    };
    let run = |s: &mut Setup, range: std::ops::Range<usize>| {
        for t in range {
            // Tensor 1 sits out steps 9-13 (step 11 is skipped by the others): classes split.
            s.opt.set_has_grad(1, !(9..14).contains(&t)).unwrap();
            for (b, g) in s.grads.iter().zip(&grads[t]) {
                ctx.queue.write_buffer(b, 0, bytemuck::cast_slice(g));
            }
            s.opt.step().unwrap();
        }
    };
    let read = |s: &Setup| -> Vec<Vec<u32>> {
        let mut out: Vec<Vec<u32>> =
            s.params.iter().zip(&SIZES).map(|(b, &n)| bits(read_f32(&ctx, b, 0, n as u64).unwrap())).collect();
        let st = s.opt.amp_status().unwrap().unwrap();
        out.push(vec![st.scale.to_bits(), st.growth_tracker, st.skipped_steps]);
        out
    };
    let mut unbroken = setup(&ctx, config.clone(), &init);
    set(&mut unbroken.opt);
    run(&mut unbroken, 0..24);

    let mut first = setup(&ctx, config.clone(), &init);
    set(&mut first.opt);
    run(&mut first, 0..12);
    first.opt.save_state(&path).unwrap();
    let saved: Vec<Vec<f32>> =
        first.params.iter().zip(&SIZES).map(|(b, &n)| read_f32(&ctx, b, 0, n as u64).unwrap()).collect();
    let mut resumed = setup(&ctx, config.clone(), &saved);
    // Loading needs the same settings set first, as schedules do.
    let e = resumed.opt.load_state(&path).unwrap_err();
    assert!(e.to_string().contains("set_loss_scaling"), "{e}");
    set(&mut resumed.opt);
    resumed.opt.load_state(&path).unwrap();
    for i in 0..SIZES.len() {
        assert_eq!(resumed.opt.param_steps(i).unwrap(), first.opt.param_steps(i).unwrap());
    }
    run(&mut resumed, 12..24);
    assert_eq!(read(&resumed), read(&unbroken), "resumed and unbroken runs differ");
    std::fs::remove_dir_all(&dir).ok();
}

fn bits(v: Vec<f32>) -> Vec<u32> {
    v.into_iter().map(f32::to_bits).collect()
}

/// What a writer never writes under loss scaling is refused, naming it, and changes nothing.
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn checkpoints_with_impossible_scaler_state_are_refused() {
    use common::edit::{edit_json, rewrite, seal, Edit};
    let ctx = gpu();
    let dir = scratch_dir("amp-bad");
    let mut rng = Rng::new(4);
    let init: Vec<Vec<f32>> = SIZES.iter().map(|&n| rng.vector(n)).collect();
    let config: OptimizerConfig = AdamConfig::default().into();
    let mut s = setup(&ctx, config.clone(), &init);
    s.opt.set_loss_scaling(Some(scaler())).unwrap();
    for t in 0..6 {
        for (b, g) in s.grads.iter().zip(grads_at(&mut rng, t, 1024.0)) {
            ctx.queue.write_buffer(b, 0, bytemuck::cast_slice(&g));
        }
        s.opt.step().unwrap();
    }
    let good = dir.join("good.safetensors");
    s.opt.save_state(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let mut target = setup(&ctx, config, &init);
    target.opt.set_loss_scaling(Some(scaler())).unwrap();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "scale 3.0000001 is not a scale a run holds",
            Box::new(|m, _| edit_json(m, "amp", |a| a["scale"] = 3.0000001.into())),
        ),
        ("scale -2.0 is not a scale a run holds", Box::new(|m, _| edit_json(m, "amp", |a| a["scale"] = (-2.0).into()))),
        (
            "growth_tracker 3 is not below growth_interval 3",
            Box::new(|m, _| edit_json(m, "amp", |a| a["growth_tracker"] = 3.into())),
        ),
        (
            "parameter 1 skipped 7 steps on the device",
            Box::new(|m, _| edit_json(m, "params", |p| p[1]["amp_skipped"] = 7.into())),
        ),
        (
            "parameter 0 lacks \"amp_skipped\"",
            Box::new(|m, _| edit_json(m, "params", |p| drop(p[0].as_object_mut().unwrap().remove("amp_skipped")))),
        ),
        ("amp metadata: unknown field `extra`", Box::new(|m, _| edit_json(m, "amp", |a| a["extra"] = 1.into()))),
        ("which no version-3 writer writes", Box::new(|m, _| drop(m.insert("format_version".into(), "3".into())))),
    ];
    for (i, (message, edit)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("bad-{i}.safetensors"));
        std::fs::write(&path, seal(rewrite(&bytes, edit))).unwrap();
        let error = target.opt.load_state(&path).unwrap_err().to_string();
        assert!(error.contains(message), "expected {message:?} in: {error}");
    }
    target.opt.step().unwrap();
    // Nothing was loaded: the target stepped from its own fresh state (scale 1024, no skips;
    // the saved run had skipped one step).
    assert_eq!(s.opt.amp_status().unwrap().unwrap().skipped_steps, 1);
    let status = target.opt.amp_status().unwrap().unwrap();
    assert_eq!((status.scale, status.skipped_steps, status.growth_tracker), (1024.0, 0, 1));
    assert_eq!(target.opt.param_steps(0).unwrap(), 1);
    std::fs::remove_dir_all(&dir).ok();
}

/// The EMA of the weights against the average the CPU mirror's weights give (the first update
/// copies; skipped steps move it toward unchanged weights), and swapped with the weights on the
/// device and back, exactly.
#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn ema_follows_the_weights_and_swaps_with_them() {
    let ctx = gpu();
    let mut rng = Rng::new(8);
    let init: Vec<Vec<f32>> = SIZES.iter().map(|&n| rng.vector(n)).collect();
    let config: OptimizerConfig = AdamWConfig { lr: 1e-2, ..Default::default() }.into();
    let mut opt = Optimizer::new(&ctx, config.clone()).unwrap();
    assert!(matches!(opt.set_ema(Some(1.5)).unwrap_err(), Error::InvalidHyperparameter { .. }));
    opt.set_ema(Some(0.8)).unwrap();
    let params: Vec<_> = init.iter().map(|v| buffer(&ctx, v)).collect();
    let grads: Vec<_> = init.iter().map(|v| buffer(&ctx, &vec![0.0; v.len()])).collect();
    for ((p, g), v) in params.iter().zip(&grads).zip(&init) {
        opt.add_params(opt.default_group(), &[ParamBinding::whole(p, g, v.len() as u64)]).unwrap();
    }
    assert!(matches!(opt.set_ema(None).unwrap_err(), Error::Unsupported(_)), "laid out with the state");
    opt.set_loss_scaling(Some(scaler())).unwrap();
    let mut cpu: Vec<CpuOptimizer> = init
        .iter()
        .map(|v| CpuOptimizer::new(config.clone(), v.iter().map(|&x| x.into()).collect()).unwrap())
        .collect();
    let mut amp = CpuAmp::new(Some(scaler()), None);
    let mut ema: Vec<Vec<f64>> = Vec::new();
    let mut scales = vec![Vec::new(); SIZES.len()];
    for t in 0..12 {
        let g = grads_at(&mut rng, t, amp.scale as f32);
        for (b, g) in grads.iter().zip(&g) {
            ctx.queue.write_buffer(b, 0, bytemuck::cast_slice(g));
        }
        opt.step().unwrap();
        let wide: Vec<Option<Vec<f64>>> = g.iter().map(|g| Some(g.iter().map(|&x| x.into()).collect())).collect();
        amp.step(&mut cpu, &[0, 0, 0], &wide).unwrap();
        for (k, c) in cpu.iter().enumerate() {
            match ema.get_mut(k) {
                None => ema.push(c.param().to_vec()),
                Some(e) => e.iter_mut().zip(c.param()).for_each(|(e, &w)| *e += 0.2 * (w - *e)),
            }
        }
        for k in 0..SIZES.len() {
            track_scale(&mut scales[k], &ema[k]);
            let ours = opt.read_state(k, "ema").unwrap().unwrap();
            assert_close(&format!("step {t} tensor {k} ema"), &ours, &ema[k], &scales[k]);
        }
    }
    assert_eq!(opt.amp_status().unwrap().unwrap().skipped_steps, 2, "steps 4 and 11 skipped, averaged all the same");
    let read = |b: &wgpu::Buffer, n: usize| read_f32(&ctx, b, 0, n as u64).unwrap();
    let weights: Vec<Vec<f32>> = params.iter().zip(&SIZES).map(|(b, &n)| read(b, n)).collect();
    let averages: Vec<Vec<f32>> = (0..SIZES.len()).map(|k| opt.read_state(k, "ema").unwrap().unwrap()).collect();
    opt.swap_ema().unwrap();
    for k in 0..SIZES.len() {
        assert_eq!(read(&params[k], SIZES[k]), averages[k], "tensor {k}: the parameters hold the average");
        assert_eq!(opt.read_state(k, "ema").unwrap().unwrap(), weights[k], "tensor {k}: the EMA holds the weights");
    }
    opt.swap_ema().unwrap();
    for k in 0..SIZES.len() {
        assert_eq!(read(&params[k], SIZES[k]), weights[k], "tensor {k}: swapped back");
    }
    let mut plain = Optimizer::new(&ctx, config).unwrap();
    assert!(matches!(plain.swap_ema().unwrap_err(), Error::Unsupported(_)));
}
