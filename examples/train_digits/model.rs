//! The MLP on the GPU: its parameters in one [`ParamArena`] (four tensors, as torch.nn.Linear
//! lays them out), the digits in storage buffers, and the forward and backward passes of
//! `mlp.wgsl` recorded per mini-batch into the caller's encoder, so that the optimizer's update
//! follows in the same submission and a whole epoch is one submit.

use std::error::Error;

use wgpu::util::DeviceExt;
use wgpu_optim::readback::read_f32;
use wgpu_optim::{GpuContext, ParamArena};

use crate::data::{Digits, Rng, CLASSES, FEATURES};

/// Hidden units.
pub const HIDDEN: usize = 128;
/// The tensors' lengths: W1 (HIDDEN x FEATURES), b1, W2 (CLASSES x HIDDEN), b2.
pub const LENS: [usize; 4] = [HIDDEN * FEATURES, HIDDEN, CLASSES * HIDDEN, CLASSES];

/// `struct Batch` of `mlp.wgsl`: one uniform slot per mini-batch (and one for `evaluate`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Batch {
    start: u32,
    size: u32,
    n_test: u32,
    _pad: u32,
    offsets: [u32; 4],
}

/// The kernels of `mlp.wgsl`, in the order one mini-batch runs them.
const TRAIN_KERNELS: [&str; 7] = [
    "hidden_forward",
    "logits_forward",
    "output_forward",
    "hidden_backward",
    "output_grads",
    "hidden_grads",
    "bias_grads",
];

pub struct Mlp {
    arena: ParamArena,
    train: Vec<wgpu::ComputePipeline>,
    test_hidden: wgpu::ComputePipeline,
    evaluate: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    /// Where the next epoch's sample order goes (written before the epoch's submission).
    order: wgpu::Buffer,
    /// Each train position's loss, then each test sample's 1.0 if predicted right.
    record: wgpu::Buffer,
    slot_stride: u32,
    batch: usize,
    n_train: usize,
    n_test: usize,
}

impl Mlp {
    /// Uploads the data and builds the kernels for mini-batches of `batch` samples.
    ///
    /// # Errors
    /// A batch of 0 or larger than the training set, or the crate's error for the arena.
    pub fn new(ctx: &GpuContext, digits: &Digits, batch: usize) -> Result<Self, Box<dyn Error>> {
        let n_train = digits.train_y.len();
        let n_test = digits.n_test();
        if batch == 0 || batch > n_train {
            return Err(format!("--batch must be in 1..={n_train}, got {batch}").into());
        }
        let device = &ctx.device;
        // Shader or binding mistakes become this call's error, not a message on the side.
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let arena = ParamArena::new(ctx, &LENS.map(|n| n as u64))?;
        let offsets = [0, 1, 2, 3].map(|i| arena.offset(i) as u32);
        // The kernels read W1 and W2 four at a time.
        if offsets.iter().any(|o| o % 4 != 0) {
            return Err(format!("the arena placed a tensor off a multiple of 4 elements: {offsets:?}").into());
        }

        // A slot per batch, then `evaluate`'s (start: after the train losses in `record`).
        let slot_stride = device.limits().min_uniform_buffer_offset_alignment.max(32);
        let batches = n_train.div_ceil(batch);
        let mut slots = vec![0u8; (batches + 1) * slot_stride as usize];
        for b in 0..=batches {
            let (start, size) = match b < batches {
                true => (b * batch, batch.min(n_train - b * batch)),
                false => (n_train, 0),
            };
            let slot = Batch { start: start as u32, size: size as u32, n_test: n_test as u32, _pad: 0, offsets };
            slots[b * slot_stride as usize..][..size_of::<Batch>()].copy_from_slice(bytemuck::bytes_of(&slot));
        }

        let init = |label: &str, contents: &[u8], usage: wgpu::BufferUsages| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage })
        };
        let storage = wgpu::BufferUsages::STORAGE;
        let copy = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let slots = init("mlp batches", &slots, wgpu::BufferUsages::UNIFORM);
        let x = init("train x", bytemuck::cast_slice(&digits.train_x), storage);
        let labels = init("train labels", bytemuck::cast_slice(&digits.train_y), storage);
        let order = init("order", bytemuck::cast_slice(&(0..n_train as u32).collect::<Vec<_>>()), storage | copy);
        let scratch = |label: &str, n: usize| init(label, &vec![0u8; 4 * n], storage);
        let hidden = scratch("hidden", batch * HIDDEN);
        let dhidden = scratch("dhidden", batch * HIDDEN);
        let delta = scratch("delta", batch * CLASSES);
        let record = init("record", &vec![0u8; 4 * (n_train + n_test)], storage | copy);
        let test_x = init("test x", bytemuck::cast_slice(&digits.test_x), storage);
        let test_labels = init("test labels", bytemuck::cast_slice(&digits.test_y), storage);
        let test_hidden = scratch("test hidden", n_test * HIDDEN);

        let entry = |binding: u32, ty: wgpu::BufferBindingType, dynamic: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: dynamic, min_binding_size: None },
            count: None,
        };
        let read = wgpu::BufferBindingType::Storage { read_only: true };
        let write = wgpu::BufferBindingType::Storage { read_only: false };
        let kinds = [read, read, read, read, write, write, write, write, write, read, read, write];
        let mut entries = vec![entry(0, wgpu::BufferBindingType::Uniform, true)];
        entries.extend(kinds.iter().zip(1..).map(|(&ty, binding)| entry(binding, ty, false)));
        let layout =
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("mlp"), entries: &entries });
        let buffers = [
            &x,
            &labels,
            &order,
            arena.params(),
            arena.grads(),
            &hidden,
            &dhidden,
            &delta,
            &record,
            &test_x,
            &test_labels,
            &test_hidden,
        ];
        let mut bind_entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &slots,
                offset: 0,
                size: wgpu::BufferSize::new(size_of::<Batch>() as u64),
            }),
        }];
        bind_entries.extend(
            buffers
                .iter()
                .zip(1..)
                .map(|(b, binding)| wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }),
        );
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("mlp"),
            layout: &layout,
            entries: &bind_entries,
        });

        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("mlp"),
            source: wgpu::ShaderSource::Wgsl(include_str!("mlp.wgsl").into()),
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("mlp"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let train = TRAIN_KERNELS.iter().map(|k| pipeline(k)).collect();
        let test_hidden = pipeline("test_hidden_forward");
        let evaluate = pipeline("evaluate");
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(format!("building the MLP's kernels: {error}").into());
        }
        Ok(Self { arena, train, test_hidden, evaluate, bind_group, order, record, slot_stride, batch, n_train, n_test })
    }

    /// The parameters and gradients (four tensors: W1, b1, W2, b2).
    pub fn arena(&self) -> &ParamArena {
        &self.arena
    }

    /// Mini-batches per epoch (the last may be short).
    pub fn batches(&self) -> usize {
        self.n_train.div_ceil(self.batch)
    }

    /// torch.nn.Linear's initialisation from `seed`: weights and biases uniform in
    /// `[-1/sqrt(fan_in), 1/sqrt(fan_in)]` (kaiming_uniform with a = sqrt(5)).
    pub fn initial_params(seed: u64) -> [Vec<f32>; 4] {
        let mut rng = Rng::new(seed);
        let fan_in = [FEATURES, FEATURES, HIDDEN, HIDDEN];
        [0, 1, 2, 3].map(|t| {
            let bound = 1.0 / (fan_in[t] as f64).sqrt();
            (0..LENS[t]).map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32).collect()
        })
    }

    /// Writes `params` (W1, b1, W2, b2) into the arena.
    ///
    /// # Errors
    /// The crate's error for a tensor of the wrong length.
    pub fn write_params(&self, ctx: &GpuContext, params: &[Vec<f32>; 4]) -> Result<(), Box<dyn Error>> {
        for (i, p) in params.iter().enumerate() {
            self.arena.write_params(ctx, i, p)?;
        }
        Ok(())
    }

    /// Reads the parameters back (W1, b1, W2, b2): for tests/train_digits.rs.
    ///
    /// # Errors
    /// The crate's error for a failed readback.
    #[allow(dead_code, reason = "the test reads them; the example does not")]
    pub fn read_params(&self, ctx: &GpuContext) -> Result<[Vec<f32>; 4], Box<dyn Error>> {
        let read = |i: usize| read_f32(ctx, self.arena.params(), self.arena.offset(i), LENS[i] as u64);
        Ok([read(0)?, read(1)?, read(2)?, read(3)?])
    }

    /// Reads the gradients of the last batch back (W1, b1, W2, b2): for tests/train_digits.rs.
    ///
    /// # Errors
    /// The crate's error for a failed readback.
    #[allow(dead_code, reason = "the test reads them; the example does not")]
    pub fn read_grads(&self, ctx: &GpuContext) -> Result<[Vec<f32>; 4], Box<dyn Error>> {
        let read = |i: usize| read_f32(ctx, self.arena.grads(), self.arena.offset(i), LENS[i] as u64);
        Ok([read(0)?, read(1)?, read(2)?, read(3)?])
    }

    /// Sets the order the next epoch visits the training samples in (a permutation of them),
    /// written before the next submission.
    ///
    /// # Errors
    /// An order that is not one index below the training set's size per training sample.
    pub fn set_order(&self, ctx: &GpuContext, order: &[u32]) -> Result<(), Box<dyn Error>> {
        if order.len() != self.n_train || order.iter().any(|&i| i as usize >= self.n_train) {
            return Err(format!("the order must hold {} indices below {0}", self.n_train).into());
        }
        ctx.queue.write_buffer(&self.order, 0, bytemuck::cast_slice(order));
        Ok(())
    }

    /// Records mini-batch `b`'s forward and backward passes: its gradients land in the arena,
    /// its samples' losses in the epoch's record.
    pub fn record_batch(&self, encoder: &mut wgpu::CommandEncoder, b: usize) {
        let size = self.batch.min(self.n_train - b * self.batch) as u32;
        let groups = |invocations: usize| (invocations.div_ceil(64) as u32, 1);
        let c = CLASSES as u32;
        // Workgroups of 64 (see mlp.wgsl for what each grid dimension indexes).
        let grid = [
            ((HIDDEN / 64) as u32, size.div_ceil(4)),
            ((size * c).div_ceil(64), 1),
            (size.div_ceil(64), 1),
            (size.div_ceil(2), 1),
            groups(CLASSES * HIDDEN / 4),
            groups(HIDDEN * FEATURES / 16),
            groups(HIDDEN + CLASSES),
        ];
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("mlp batch"), timestamp_writes: None });
        pass.set_bind_group(0, &self.bind_group, &[b as u32 * self.slot_stride]);
        for (pipeline, (x, y)) in self.train.iter().zip(grid) {
            pass.set_pipeline(pipeline);
            pass.dispatch_workgroups(x, y, 1);
        }
    }

    /// Records the test set's predictions with the current weights into the epoch's record.
    pub fn record_evaluate(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("mlp evaluate"), timestamp_writes: None });
        pass.set_bind_group(0, &self.bind_group, &[self.batches() as u32 * self.slot_stride]);
        pass.set_pipeline(&self.test_hidden);
        pass.dispatch_workgroups((HIDDEN / 64) as u32, self.n_test as u32, 1);
        pass.set_pipeline(&self.evaluate);
        pass.dispatch_workgroups((self.n_test as u32).div_ceil(64), 1, 1);
    }

    /// The epoch's one readback: the mean training loss over the epoch's batches (each sample's
    /// loss as its batch saw it) and the test accuracy in percent after the last `record_evaluate`.
    ///
    /// # Errors
    /// The crate's error for a failed readback.
    pub fn read_record(&self, ctx: &GpuContext) -> Result<(f64, f64), Box<dyn Error>> {
        let record = read_f32(ctx, &self.record, 0, (self.n_train + self.n_test) as u64)?;
        let (losses, right) = record.split_at(self.n_train);
        let loss = losses.iter().map(|&l| f64::from(l)).sum::<f64>() / self.n_train as f64;
        let accuracy = 100.0 * right.iter().map(|&r| f64::from(r)).sum::<f64>() / self.n_test as f64;
        Ok((loss, accuracy))
    }
}
