//! Trains softmax regression on 8x8 handwritten digits, entirely on the GPU: each step is one
//! submission holding the forward pass, the backward pass and the optimizer's update (AdamW with a
//! one-cycle schedule, no weight decay on the bias). The host reads the loss back only to print
//! it every 25 steps.
//!
//! ```sh
//! cargo run --release --example digits
//! ```

use wgpu::util::DeviceExt;
use wgpu_optim::readback::read_f32;
use wgpu_optim::schedule::{LrScheduler, OneCycleLr, OneCycleLrConfig};
use wgpu_optim::{AdamWConfig, GpuContext, Optimizer, ParamArena};

const FEATURES: usize = 64;
const CLASSES: usize = 10;
const TRAIN: usize = 1500;
const STEPS: u64 = 300;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (x, labels) = load_digits()?;
    let ctx = GpuContext::new()?;
    println!("adapter: {}", ctx.adapter_info().name);

    // The model: W (10 x 64) and b (10), in one arena so the optimizer sees two tensors.
    let arena = ParamArena::new(&ctx, &[(CLASSES * FEATURES) as u64, CLASSES as u64])?;
    let mut seed = 1u64;
    let w: Vec<f32> = (0..CLASSES * FEATURES).map(|_| 0.01 * (lcg(&mut seed) - 0.5)).collect();
    arena.write_params(&ctx, 0, &w)?;

    let weights = AdamWConfig { lr: 0.05, weight_decay: 1e-3, ..Default::default() };
    let mut opt = Optimizer::new(&ctx, weights.clone())?;
    let bias = opt.add_group(AdamWConfig { weight_decay: 0.0, ..weights })?;
    let bindings = arena.bindings();
    opt.add_params(opt.default_group(), &bindings[..1])?;
    opt.add_params(bias, &bindings[1..])?;
    for group in [opt.default_group(), bias] {
        let one_cycle = OneCycleLr::new(0.05, OneCycleLrConfig::new(0.1, STEPS))?;
        opt.set_schedule(group, LrScheduler::new(one_cycle))?;
    }

    let model = Model::new(&ctx, &arena, &x[..TRAIN * FEATURES], &labels[..TRAIN]);
    for step in 0..STEPS {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        model.forward_backward(&mut encoder);
        opt.record(&mut encoder)?;
        ctx.queue.submit([encoder.finish()]);
        if step % 25 == 0 || step == STEPS - 1 {
            let loss = read_f32(&ctx, &model.loss, 0, TRAIN as u64)?;
            let mean = loss.iter().map(|&l| l as f64).sum::<f64>() / TRAIN as f64;
            println!("step {step:>3}  lr {:.4}  train loss {mean:.4}", opt.lr(opt.default_group())?);
        }
    }

    let params = read_f32(&ctx, arena.params(), 0, (CLASSES * FEATURES + CLASSES) as u64)?;
    let accuracy = |range: std::ops::Range<usize>| {
        let right = range.clone().filter(|&s| predict(&params, &x[s * FEATURES..][..FEATURES]) == labels[s]).count();
        100.0 * right as f64 / range.len() as f64
    };
    println!("accuracy: train {:.1}%, held out {:.1}%", accuracy(0..TRAIN), accuracy(TRAIN..labels.len()));
    Ok(())
}

/// The forward and backward kernels and their buffers.
struct Model {
    forward: wgpu::ComputePipeline,
    backward: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    loss: wgpu::Buffer,
    samples: u32,
}

impl Model {
    fn new(ctx: &GpuContext, arena: &ParamArena, x: &[f32], labels: &[u32]) -> Self {
        let device = &ctx.device;
        let init = |label, contents: &[u8], usage| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage })
        };
        let storage = wgpu::BufferUsages::STORAGE;
        let samples = labels.len() as u32;
        let dims = init("dims", bytemuck::cast_slice(&[samples, FEATURES as u32, 0, 0]), wgpu::BufferUsages::UNIFORM);
        let x = init("x", bytemuck::cast_slice(x), storage);
        let labels = init("labels", bytemuck::cast_slice(labels), storage);
        let delta = init("delta", &vec![0; labels.size() as usize * CLASSES], storage);
        let loss = init("loss", &vec![0; labels.size() as usize], storage | wgpu::BufferUsages::COPY_SRC);

        // An explicit layout: `backward` leaves some bindings unused, and both share one group.
        let layout_entries: Vec<_> = (0..7)
            .map(|i| wgpu::BindGroupLayoutEntry {
                binding: i,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match i {
                        0 => wgpu::BufferBindingType::Uniform,
                        1..=3 => wgpu::BufferBindingType::Storage { read_only: true },
                        _ => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("digits"),
            entries: &layout_entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("digits"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let module = device.create_shader_module(wgpu::include_wgsl!("digits.wgsl"));
        let pipeline = |entry_point| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry_point),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry_point),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let (forward, backward) = (pipeline("forward"), pipeline("backward"));
        let entries: Vec<_> = [&dims, &x, &labels, arena.params(), &delta, &loss, arena.grads()]
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("digits"),
            layout: &layout,
            entries: &entries,
        });
        Self { forward, backward, bind_group, loss, samples }
    }

    /// Records the forward pass (per-sample softmax and loss) and the backward pass (the gradient
    /// of the mean loss, written into the arena's gradient buffer).
    fn forward_backward(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.set_pipeline(&self.forward);
        pass.dispatch_workgroups(self.samples.div_ceil(64), 1, 1);
        pass.set_pipeline(&self.backward);
        pass.dispatch_workgroups(((CLASSES * FEATURES + CLASSES) as u32).div_ceil(64), 1, 1);
    }
}

fn predict(params: &[f32], x: &[f32]) -> u32 {
    let logit =
        |k: usize| params[CLASSES * FEATURES + k] + (0..FEATURES).map(|j| params[k * FEATURES + j] * x[j]).sum::<f32>();
    (0..CLASSES).max_by(|&a, &b| logit(a).total_cmp(&logit(b))).unwrap_or(0) as u32
}

/// The 1797 digits, pixels scaled to [0, 1], in a fixed shuffled order.
fn load_digits() -> Result<(Vec<f32>, Vec<u32>), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/digits.csv");
    let mut rows: Vec<Vec<u32>> = std::fs::read_to_string(path)?
        .lines()
        .map(|line| line.split(',').map(str::parse).collect::<Result<_, _>>())
        .collect::<Result<_, _>>()?;
    // The file is sorted in blocks; shuffle so that the held-out rows are a fair sample.
    let mut seed = 7u64;
    for i in (1..rows.len()).rev() {
        rows.swap(i, (lcg(&mut seed) * (i + 1) as f32) as usize % (i + 1));
    }
    let x = rows.iter().flat_map(|r| r[..FEATURES].iter().map(|&p| p as f32 / 16.0)).collect();
    let labels = rows.iter().map(|r| r[FEATURES]).collect();
    Ok((x, labels))
}

/// A uniform number in [0, 1): the example needs repeatable numbers, not a crate.
fn lcg(state: &mut u64) -> f32 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (*state >> 40) as f32 / (1u64 << 24) as f32
}
