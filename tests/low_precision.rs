//! Low-precision storage: bf16 and f16 parameters and gradients, the f32 master copy and
//! stochastic rounding, each kernel on the GPU against its f64 CPU mirror with the same rounding.
//!
//! Every run registers three tensors: one of 4099 elements two elements into its buffers (a
//! one-wide head of two elements that share a u32, a four-wide body, a one-wide tail whose
//! neighbour in the word is padding) and two (33 and 2049 elements) whose gradients start at
//! another residue than their parameters (all one-wide, so neighbours in a word are stored by two
//! invocations of one dispatch, through atomics: a lost write would show against the mirror).

mod common;

use common::{assert_close, gpu, track_scale, Rng};
use wgpu::util::DeviceExt;
use wgpu_optim::cpu::CpuOptimizer;
use wgpu_optim::kernel::{Format, Rounding, Storage};
use wgpu_optim::readback::read_f32;
use wgpu_optim::*;

const STEPS: usize = 4;

/// (length, param offset, grad offset) of each tensor, in elements of its format.
const TENSORS: [(usize, usize, usize); 3] = [(4099, 2, 2), (33, 1, 3), (2049, 1, 2)];

/// Elements of padding after each tensor, which no step may touch.
const PAD: usize = 3;

/// A buffer holding `values` in `format` from element `offset`, padded with 7.0 around them.
fn stored(ctx: &GpuContext, format: Format, values: &[f32], offset: usize) -> wgpu::Buffer {
    padded(ctx, format, values, offset, 7.0)
}

/// A buffer holding `values` in `format` from element `offset`, padded with `pad` around them.
fn padded(ctx: &GpuContext, format: Format, values: &[f32], offset: usize, pad: f32) -> wgpu::Buffer {
    let mut all = vec![pad; offset + values.len() + PAD];
    all[offset..offset + values.len()].copy_from_slice(values);
    let mut bytes = format.encode_all(&all);
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("low precision test"),
        contents: &bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
    })
}

/// Elements `offset..offset + n` of a buffer in `format`, as f32.
fn read(ctx: &GpuContext, format: Format, buffer: &wgpu::Buffer, offset: usize, n: usize) -> Vec<f32> {
    let words = read_f32(ctx, buffer, 0, buffer.size() / 4).unwrap();
    format.decode(&words, offset as u64, n as u64)
}

/// `|ours - reference| <= rel * scale + abs` per element, `scale` the largest magnitude the
/// element took: within `rel` (a number of the format's units in the last place) of a reference
/// that is itself rounded, or `abs` (as many of its subnormal units). A rounding decided the other
/// way once stays in the parameter, an error of one unit of the magnitude it had then.
fn assert_within(what: &str, ours: &[f32], reference: &[f64], (rel, abs): (f64, f64), scale: &[f64]) {
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        let bound = rel * scale[i] + abs + 1e-5 * scale[i].max(1e-6);
        assert!(
            (f64::from(a) - b).abs() <= bound || (a.is_nan() && b.is_nan()),
            "{what}: element {i} is {a} against the reference {b} (bound {bound:e})"
        );
    }
}

/// One tensor on the GPU and its CPU mirror.
struct Tensor {
    param: wgpu::Buffer,
    grad: wgpu::Buffer,
    n: usize,
    param_offset: usize,
    grad_offset: usize,
    cpu: CpuOptimizer,
    scale: Vec<f64>,
}

/// Runs `config` with `storage` for `STEPS` steps over `TENSORS` on the GPU and the CPU mirror.
/// `param_ulps`: how many of the parameter format's units in the last place the stored
/// parameter may differ by (a rounding decided the other way); the master copy, and every state
/// array where the parameter is f32 or has a master copy, are held to the f32 tolerance.
fn check(ctx: &GpuContext, name: &str, config: &OptimizerConfig, storage: Storage, seed: u64, param_ulps: f64) {
    let mut rng = Rng::new(seed);
    let mut opt = Optimizer::with_storage(ctx, config.clone(), storage).unwrap();
    let mut tensors = Vec::new();
    for &(n, param_offset, grad_offset) in &TENSORS {
        // The parameter as its format holds it.
        let init: Vec<f32> = rng.vector(n).into_iter().map(|v| storage.param.round(v)).collect();
        let param = stored(ctx, storage.param, &init, param_offset);
        let grad = stored(ctx, storage.grad, &vec![0.0; n], grad_offset);
        let binding = ParamBinding {
            param: param.clone(),
            param_offset: param_offset as u64,
            grad: grad.clone(),
            grad_offset: grad_offset as u64,
            len: n as u64,
        };
        opt.add_params(opt.default_group(), &[binding]).unwrap();
        let cpu = CpuOptimizer::new(config.clone(), init.iter().map(|&x| x as f64).collect())
            .unwrap()
            .with_storage(storage)
            .unwrap();
        let scale = init.iter().map(|x| f64::from(x.abs())).collect();
        tensors.push(Tensor { param, grad, n, param_offset, grad_offset, cpu, scale });
    }
    if storage.master {
        for (i, t) in tensors.iter().enumerate() {
            let master = opt.read_state(i, "master").unwrap().expect("a master copy");
            let param: Vec<f64> = t.cpu.param().to_vec();
            assert_close(&format!("{name}: tensor {i}'s master copy at registration"), &master, &param, &t.scale);
        }
    }
    // The unit in the last place, relative and (below the normal range) absolute.
    let ulp = match storage.param {
        Format::BF16 => (2f64.powi(-7), 0.0),
        Format::F16 => (2f64.powi(-10), 2f64.powi(-24)),
        _ => (0.0, 0.0),
    };
    let ulp = (param_ulps * ulp.0, 2.0 * param_ulps * ulp.1);
    for step in 0..STEPS {
        for t in &mut tensors {
            let g = rng.vector(t.n);
            // Rewrite the whole buffer: the padding around the gradient stays 7.0.
            let mut all = vec![7.0f32; t.grad_offset + t.n + PAD];
            all[t.grad_offset..t.grad_offset + t.n].copy_from_slice(&g);
            let mut bytes = storage.grad.encode_all(&all);
            bytes.resize(bytes.len().next_multiple_of(4), 0);
            ctx.queue.write_buffer(&t.grad, 0, &bytes);
            t.cpu.step(&g.iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
            track_scale(&mut t.scale, t.cpu.param());
        }
        opt.step().unwrap();
        for (i, t) in tensors.iter().enumerate() {
            let what = format!("{name} ({}), tensor {i} (n = {}), step {step}", storage.name(), t.n);
            let ours = read(ctx, storage.param, &t.param, t.param_offset, t.n);
            assert_within(&format!("{what}, parameter"), &ours, &t.cpu.stored_param(), ulp, &t.scale);
            if storage.master {
                let master = opt.read_state(i, "master").unwrap().unwrap();
                assert_close(&format!("{what}, master copy"), &master, t.cpu.param(), &t.scale);
            }
        }
    }
    for (i, t) in tensors.iter().enumerate() {
        // The padding on both sides of each slice is untouched.
        let all = read(ctx, storage.param, &t.param, 0, t.param_offset + t.n + PAD);
        let outside = all[..t.param_offset].iter().chain(&all[t.param_offset + t.n..]);
        assert!(outside.clone().all(|&v| v == 7.0), "{name}: tensor {i}'s padding changed: {all:?}");
        if storage.master || !storage.param.is_low_precision() {
            for state in opt.state_names() {
                if let (Some(ours), Some(cpu)) = (opt.read_state(i, state).unwrap(), t.cpu.state(state)) {
                    // The largest magnitude in the array, as tests/gpu_vs_cpu.rs scales state.
                    let scale = vec![cpu.iter().fold(0.0f64, |m, x| m.max(x.abs())); t.n];
                    assert_close(&format!("{name}: tensor {i}'s {state}"), &ours, cpu, &scale);
                }
            }
        }
    }
}

fn bf16_master() -> Storage {
    Storage { param: Format::BF16, grad: Format::BF16, master: true, ..Storage::F32 }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn every_kernel_on_bf16_parameters_with_a_master_copy_and_bf16_gradients() {
    let ctx = gpu();
    for (seed, (name, config)) in OptimizerConfig::cases().iter().enumerate() {
        // The master copy holds the f32 values: the parameter is the master rounded once.
        check(&ctx, name, config, bf16_master(), seed as u64, 1.0);
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn every_kernel_on_f32_parameters_with_bf16_or_f16_gradients() {
    let ctx = gpu();
    let mut grads = vec![Format::BF16];
    if ctx.device.features().contains(wgpu::Features::SHADER_F16) {
        grads.push(Format::F16);
    }
    for grad in grads {
        for (seed, (name, config)) in OptimizerConfig::cases().iter().enumerate() {
            check(&ctx, name, config, Storage { grad, ..Storage::F32 }, seed as u64, 0.0);
        }
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn bf16_parameters_without_a_master_copy_round_to_nearest_or_stochastically() {
    let ctx = gpu();
    let nearest = Storage { param: Format::BF16, grad: Format::BF16, ..Storage::F32 };
    let sr = Storage { rounding: Rounding::Stochastic { seed: 42 }, ..nearest };
    for storage in [nearest, sr, Storage { grad: Format::F32, master: true, ..nearest }] {
        for (seed, (name, config)) in OptimizerConfig::cases().iter().enumerate() {
            // A rounding decided the other way (the f64 mirror against f32 arithmetic) moves the
            // parameter by one unit in the last place, and later steps carry it on.
            check(&ctx, name, config, storage, seed as u64, 4.0);
        }
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn f16_parameters_and_gradients_where_the_adapter_has_shader_f16() {
    let ctx = gpu();
    let f16 = Storage { param: Format::F16, grad: Format::F16, ..Storage::F32 };
    if !ctx.device.features().contains(wgpu::Features::SHADER_F16) {
        let error = Optimizer::with_storage(&ctx, SgdConfig::default(), f16).unwrap_err();
        assert!(matches!(error, Error::ShaderF16Unsupported { .. }), "{error}");
        return;
    }
    for storage in [Storage { master: true, ..f16 }, f16] {
        for (seed, (name, config)) in OptimizerConfig::cases().iter().enumerate() {
            // As for bf16: one unit with a master copy (its f32 against the mirror's f64 may round
            // the other way), more without (a rounding the other way stays in the parameter).
            let ulps = if storage.master { 1.0 } else { 4.0 };
            check(&ctx, name, config, storage, seed as u64, ulps);
        }
    }
}

/// SGD steps that each add a quarter of a bf16 unit to parameters at 1.0, over `n` elements.
fn quarter_steps(ctx: &GpuContext, storage: Storage, n: usize, steps: usize) -> Vec<f32> {
    // lr * grad = -2^-9: a quarter of the unit at 1.0 (2^-7), exact in f32.
    let config = SgdConfig { lr: 2f64.powi(-9), ..Default::default() };
    let mut opt = Optimizer::with_storage(ctx, config, storage).unwrap();
    let param = stored(ctx, Format::BF16, &vec![1.0; n], 0);
    let grad = stored(ctx, Format::F32, &vec![-1.0; n], 0);
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&param, &grad, n as u64)]).unwrap();
    for _ in 0..steps {
        opt.step().unwrap();
    }
    read(ctx, Format::BF16, &param, 0, n)
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn stochastic_rounding_is_reproducible_unbiased_and_mirrored() {
    let ctx = gpu();
    let (n, steps) = (4099, 8);
    let sr = |seed| Storage { param: Format::BF16, rounding: Rounding::Stochastic { seed }, ..Storage::F32 };
    let first = quarter_steps(&ctx, sr(7), n, steps);
    let again = quarter_steps(&ctx, sr(7), n, steps);
    assert!(first.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits()), "the same seed, another result");
    let other = quarter_steps(&ctx, sr(8), n, steps);
    assert!(first.iter().zip(&other).any(|(a, b)| a != b), "another seed, the same result");

    // Round to nearest never moves: each step's quarter unit is rounded away.
    let nearest = quarter_steps(&ctx, Storage { param: Format::BF16, ..Storage::F32 }, n, steps);
    assert!(nearest.iter().all(|&v| v == 1.0), "round to nearest moved a parameter");
    // Stochastic rounding moves each by a quarter unit per step on average: 2 units (2^-6) in 8.
    let mean = first.iter().map(|&v| f64::from(v) - 1.0).sum::<f64>() / n as f64;
    let expected = steps as f64 * 2f64.powi(-9);
    assert!((mean - expected).abs() < 0.05 * expected, "mean move {mean}, expected {expected}");

    // The CPU mirror draws the same bits: identical, element by element (the updates are exact).
    let config = SgdConfig { lr: 2f64.powi(-9), ..Default::default() };
    let mut cpu = CpuOptimizer::new(config.into(), vec![1.0; n]).unwrap().with_storage(sr(7)).unwrap();
    for _ in 0..steps {
        cpu.step(&vec![-1.0; n]).unwrap();
    }
    let differ = first.iter().zip(cpu.param()).position(|(&a, &b)| f64::from(a) != b);
    assert_eq!(differ, None, "GPU and CPU stochastic rounding differ");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn groups_store_their_parameters_in_their_own_formats() {
    let ctx = gpu();
    let n = 37;
    let config = AdamConfig { lr: 1e-2, ..Default::default() };
    let mut opt = Optimizer::new(&ctx, config.clone()).unwrap();
    let bf16 = opt.add_group_with_storage(config.clone(), bf16_master()).unwrap();
    assert_eq!(opt.storage(bf16).unwrap(), bf16_master());
    assert_eq!(opt.storage(opt.default_group()).unwrap(), Storage::F32);
    let mut rng = Rng::new(3);
    let init: Vec<f32> = rng.vector(n).into_iter().map(|v| Format::BF16.round(v)).collect();
    let (p32, g32) = (stored(&ctx, Format::F32, &init, 0), stored(&ctx, Format::F32, &vec![0.5; n], 0));
    let (p16, g16) = (stored(&ctx, Format::BF16, &init, 0), stored(&ctx, Format::BF16, &vec![0.5; n], 0));
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&p32, &g32, n as u64)]).unwrap();
    opt.add_params(bf16, &[ParamBinding::whole(&p16, &g16, n as u64)]).unwrap();
    for _ in 0..3 {
        opt.step().unwrap();
    }
    // The same arithmetic on both: the master copy is the f32 parameter, the bf16 one its rounding.
    let full = read(&ctx, Format::F32, &p32, 0, n);
    let master = opt.read_state(1, "master").unwrap().unwrap();
    assert_eq!(full, master);
    let rounded: Vec<f32> = full.iter().map(|&v| Format::BF16.round(v)).collect();
    assert_eq!(read(&ctx, Format::BF16, &p16, 0, n), rounded);
    assert_eq!(opt.read_state(0, "master").unwrap(), None, "an f32 group keeps no master copy");
}

#[test]
fn f16_storage_needs_shader_f16_and_bad_combinations_are_refused() {
    let f16 = Storage { param: Format::F16, grad: Format::F16, ..Storage::F32 };
    let error = f16.check_features(wgpu::Features::empty()).unwrap_err();
    assert!(matches!(error, Error::ShaderF16Unsupported { .. }));
    assert_eq!(
        error.to_string(),
        "storage f16-f16-f32 uses f16, but the device lacks wgpu::Features::SHADER_F16 (the adapter does not \
         support it, or the device was opened without it); bf16 works on every adapter"
    );
    assert!(f16.check_features(wgpu::Features::SHADER_F16).is_ok());
    let bf16 = Storage { param: Format::BF16, grad: Format::BF16, ..Storage::F32 };
    assert!(bf16.check_features(wgpu::Features::empty()).is_ok(), "bf16 needs nothing");

    let master_of_f32 = Storage { master: true, ..Storage::F32 };
    assert_eq!(
        master_of_f32.check_features(wgpu::Features::empty()).unwrap_err().to_string(),
        "unsupported storage f32-f32-f32-master: a master copy needs a low-precision parameter, not f32"
    );
    let sr_with_master = Storage { rounding: Rounding::Stochastic { seed: 1 }, master: true, ..bf16 };
    assert!(matches!(sr_with_master.check(), Err(reason) if reason.contains("stochastic")));
    let f16_state = Storage { state: Format::F16, ..Storage::F32 };
    assert!(f16_state.check().is_err(), "state arrays stay f32");
    for storage in Storage::supported() {
        assert_eq!(Storage::from_name(&storage.name()), Some(storage.variant()), "{}", storage.name());
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_device_opened_without_shader_f16_refuses_f16_storage() {
    // A device an engine opened without the feature (wgpu's default descriptor asks for none).
    let ctx = common::device_with_default_handler();
    let f16 = Storage { param: Format::F16, grad: Format::F16, ..Storage::F32 };
    let error = Optimizer::with_storage(&ctx, AdamConfig::default(), f16).unwrap_err();
    assert!(matches!(error, Error::ShaderF16Unsupported { .. }), "{error}");
    let mut opt = Optimizer::new(&ctx, AdamConfig::default()).unwrap();
    let error = opt.add_group_with_storage(AdamConfig::default(), f16).unwrap_err();
    assert!(matches!(error, Error::ShaderF16Unsupported { .. }), "{error}");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn the_gradient_scan_reads_bf16_and_f16_gradients() {
    let ctx = gpu();
    let mut formats = vec![Format::BF16];
    if ctx.device.features().contains(wgpu::Features::SHADER_F16) {
        formats.push(Format::F16);
    }
    for format in formats {
        let storage = Storage { grad: format, ..Storage::F32 };
        let n = 33;
        for (bad, value) in [(None, 0.0), (Some(0), f32::NAN), (Some(32), f32::INFINITY), (Some(17), f32::NEG_INFINITY)]
        {
            let mut opt = Optimizer::with_storage(&ctx, SgdConfig::default(), storage).unwrap();
            let mut g = vec![1.5f32; n];
            if let Some(i) = bad {
                g[i] = value;
            }
            // Offset 1: the first element shares its word with padding, a NaN the scan must not read.
            let grad = padded(&ctx, format, &g, 1, f32::NAN);
            let param = stored(&ctx, Format::F32, &vec![0.0; n], 0);
            let binding = ParamBinding { param, param_offset: 0, grad, grad_offset: 1, len: n as u64 };
            opt.add_params(opt.default_group(), &[binding]).unwrap();
            assert_eq!(opt.found_nonfinite().unwrap(), bad.is_some(), "{} gradient, {value} at {bad:?}", format.name());
        }
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn checkpoints_save_and_load_the_master_copy() {
    let ctx = gpu();
    let n = 1031;
    let config = AdamWConfig { lr: 1e-2, ..Default::default() };
    let mut rng = Rng::new(11);
    let init: Vec<f32> = rng.vector(n).into_iter().map(|v| Format::BF16.round(v)).collect();
    let grads: Vec<Vec<f32>> = (0..4).map(|_| rng.vector(n)).collect();
    let mut opt = Optimizer::with_storage(&ctx, config.clone(), bf16_master()).unwrap();
    let (param, grad) = (stored(&ctx, Format::BF16, &init, 0), stored(&ctx, Format::BF16, &vec![0.0; n], 0));
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&param, &grad, n as u64)]).unwrap();
    let step = |opt: &mut Optimizer, g: &[f32]| {
        let mut bytes = Format::BF16.encode_all(g);
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        ctx.queue.write_buffer(&grad, 0, &bytes);
        opt.step().unwrap();
    };
    for g in &grads[..2] {
        step(&mut opt, g);
    }
    let dir = std::env::temp_dir().join(format!("wgpu-optim-low-precision-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("master.safetensors");
    opt.save_state(&path).unwrap();
    let (saved_param, saved_master) = (read(&ctx, Format::BF16, &param, 0, n), opt.read_state(0, "master").unwrap());
    for g in &grads[2..] {
        step(&mut opt, g);
    }
    let (param_after, master_after) = (read(&ctx, Format::BF16, &param, 0, n), opt.read_state(0, "master").unwrap());

    // Back to the checkpoint (the engine puts its parameters back; the optimizer its state).
    let mut bytes = Format::BF16.encode_all(&saved_param);
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    ctx.queue.write_buffer(&param, 0, &bytes);
    opt.load_state(&path).unwrap();
    assert_eq!(opt.read_state(0, "master").unwrap(), saved_master);
    for g in &grads[2..] {
        step(&mut opt, g);
    }
    assert_eq!(opt.read_state(0, "master").unwrap(), master_after, "the master copy after the same steps");
    assert_eq!(read(&ctx, Format::BF16, &param, 0, n), param_after, "the parameter after the same steps");

    // An optimizer without master copies does not keep that array: the file is refused.
    let mut plain = Optimizer::with_storage(&ctx, config, Storage { master: false, ..bf16_master() }).unwrap();
    plain.add_params(plain.default_group(), &[ParamBinding::whole(&param, &grad, n as u64)]).unwrap();
    let error = plain.load_state(&path).unwrap_err().to_string();
    assert!(error.contains("master"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Values whose rounding is an edge case, then random finite bit patterns.
fn rounding_inputs(n: usize) -> Vec<f32> {
    let mut values = vec![
        0.0,
        -0.0,
        1.0,
        f32::from_bits(0x3f80_8000), // halfway between two bf16s: to even
        f32::from_bits(0x3f81_8000),
        f32::from_bits(0x3f80_8001),
        1.0 + 2f32.powi(-11), // halfway between two f16s: to even
        1.0 + 3.0 * 2f32.powi(-11),
        65504.0, // the largest f16
        65519.0,
        65520.0, // halfway past it: infinity
        -70000.0,
        2f32.powi(-14), // the smallest normal f16
        2f32.powi(-24), // the smallest subnormal f16
        2f32.powi(-25), // half of it: to zero (even)
        2f32.powi(-25) * 1.5,
        -3.0 * 2f32.powi(-24),
        1e-30,
        f32::MAX,
        -f32::MAX,
        f32::MIN_POSITIVE,
        f32::from_bits(1), // an f32 subnormal
    ];
    let mut rng = Rng::new(99);
    while values.len() < n {
        let v = f32::from_bits(rng.next_u64() as u32);
        if v.is_finite() {
            values.push(v);
        }
    }
    values.truncate(n);
    values
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn kernels_round_bf16_and_f16_exactly_as_the_host() {
    let ctx = gpu();
    let mut formats = vec![Format::BF16];
    if ctx.device.features().contains(wgpu::Features::SHADER_F16) {
        formats.push(Format::F16);
    }
    // SGD with lr 1 from zero: the update is exactly the value (but -0), which the store rounds.
    let config = SgdConfig { lr: 1.0, ..Default::default() };
    for format in formats {
        for master in [false, true] {
            let storage = Storage { param: format, master, ..Storage::F32 };
            let mut opt = Optimizer::with_storage(&ctx, config.clone(), storage).unwrap();
            let mut tensors = Vec::new();
            for (n, param_offset, grad_offset) in TENSORS {
                let values = rounding_inputs(n);
                let param = stored(&ctx, format, &vec![0.0; n], param_offset);
                let minus: Vec<f32> = values.iter().map(|v| -v).collect();
                let grad = stored(&ctx, Format::F32, &minus, grad_offset);
                let binding = ParamBinding {
                    param: param.clone(),
                    param_offset: param_offset as u64,
                    grad,
                    grad_offset: grad_offset as u64,
                    len: n as u64,
                };
                opt.add_params(opt.default_group(), &[binding]).unwrap();
                // The update in f32, as the kernel computes it (0 - 1 * -v: -0 becomes +0).
                let updates: Vec<f32> = minus.iter().map(|g| 0.0 - g).collect();
                tensors.push((param, param_offset, updates));
            }
            opt.step().unwrap();
            for (i, (param, offset, values)) in tensors.iter().enumerate() {
                let ours = read(&ctx, format, param, *offset, values.len());
                for (k, (&a, &v)) in ours.iter().zip(values).enumerate() {
                    let expected = format.round(v);
                    assert_eq!(
                        a.to_bits(),
                        expected.to_bits(),
                        "{} (master {master}), tensor {i}, element {k}: {v:e} ({:#010x}) stored as {a:e}, \
                         the host rounds it to {expected:e}",
                        format.name(),
                        v.to_bits()
                    );
                }
                if master {
                    assert_eq!(opt.read_state(i, "master").unwrap().unwrap(), *values, "the master copy is exact");
                }
            }
        }
    }
}
