//! Trains a burn model on burn's wgpu backend twice from the same initial weights: once with
//! wgpu-optim's AdamW updating burn's own parameter buffers in place (gradients from burn's
//! backward pass, located every step), once with burn's AdamW. Prints the losses, whether the
//! parameters agree, test accuracy and a timing table; exits non-zero if the runs disagree.
//!
//! ```sh
//! cd examples/burn-interop && cargo run --release            # 100 steps
//! cargo run --release -- --steps 12                          # a short run (CI)
//! ```

mod bridge;
mod check;
mod data;
mod model;

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{read_sync, Device, Int, ProfileOptions, Tensor, TensorData, TimingMethod};
use wgpu_optim::{AdamWConfig, GpuContext, Optimizer};

use bridge::BurnParams;
use data::{Split, PIXELS};
use model::Net;

// The same hyperparameters on both sides. burn's AdamW defaults differ from PyTorch's (eps 1e-5,
// weight decay 1e-4), so both are set here; its update is PyTorch's (see README.md).
const LR: f64 = 1e-3;
const CONFIG: AdamWConfig =
    AdamWConfig { lr: LR, betas: BETAS, eps: EPS, weight_decay: WEIGHT_DECAY, amsgrad: false, maximize: false };
const BETAS: (f64, f64) = (0.9, 0.999);
const EPS: f64 = 1e-8;
const WEIGHT_DECAY: f64 = 0.01;

// When the two runs agree. Both compute the same forward and backward passes with the same
// (deterministic) kernels; the updates differ in f32 rounding only (burn divides by the
// bias-corrected sqrt(v) plus eps, with beta^t and the corrections in f32; wgpu-optim, as
// PyTorch, by sqrt(v) / sqrt(bc2) plus eps, with its scalars in f64). So:
// - after step 1, from the same weights and gradients, every parameter is within FIRST_ATOL +
//   FIRST_RTOL * |burn's value| (a few f32 ulps; 1e-4 of one step's update);
// - at every step, each run is within f32 rounding of an f64 AdamW fed that run's own
//   gradients (check.rs; `--no-check` skips it);
// - burn's AdamW fed our run's gradients (`fed_to_burn`) is within twice the lockstep bound of
//   our parameters after the REPORT_AT steps and the last (up to FED_STEPS);
// - the losses at the steps in REPORT_AT are within LOSS_RTOL.
// From step 2 on, each run's rounding changes its next gradients. Adam is scale-invariant: an
// element whose gradients are tiny (rounding noise) still takes steps of about lr, in the
// direction that noise says, so the two runs drift apart element by element (about 1e-2 relative
// L2 after 100 steps here, while two runs of burn's optimizer are bit-identical). That drift
// between the two runs is printed, not held to a bound; the same gradients fed to both
// optimizers hold them to one.
const FIRST_ATOL: f32 = 1e-7;
const FIRST_RTOL: f32 = 1e-6;
const LOSS_RTOL: f32 = 1e-2;
// Steps at which the losses are reported (1-based), besides the last.
const REPORT_AT: [usize; 2] = [10, 100];
// Steps of wgpu-optim's run whose gradients are kept for `fed_to_burn` (1.4 MB each).
const FED_STEPS: usize = 100;

struct Args {
    steps: usize,
    batch: usize,
    warmup: usize,
    seed: u64,
    data: PathBuf,
    /// Neither sync nor flush burn's device before our submit (README.md, (d)).
    no_flush: bool,
    /// Each run against an f64 reference fed its own gradients, at every step (on by default).
    check: bool,
}

const USAGE: &str = "usage: burn-interop [--steps N] [--batch N] [--warmup N] [--seed N] [--data PATH]
                    [--no-check] [--no-flush]
  --steps N    training steps of each run (default 100)
  --batch N    examples per step (default 64)
  --warmup N   forward and backward passes run before the two runs (at least 2: both heads),
               and first steps of each run left out of the timing table (default 5)
  --seed N     data shuffle and weight initialisation (default 0)
  --data PATH  the UCI digits CSV (default ../../examples/data/digits.csv)
  --no-check   skip holding each run, at every step, to an f64 AdamW fed that run's own
               gradients (it reads every gradient and parameter back at each step, outside the
               timings)
  --no-flush   leave out device.sync() and device.flush() before our submit, to see whether
               this burn needs them (0.22.1 does not: locating the gradients already submits
               burn's queued work; README.md, (d)); implies --no-check, whose readbacks flush";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        steps: 100,
        batch: 64,
        warmup: 5,
        seed: 0,
        data: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/data/digits.csv")),
        no_flush: false,
        check: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--no-flush" || flag == "--no-check" {
            args.no_flush |= flag == "--no-flush";
            args.check &= flag != "--no-check";
            continue;
        }
        if !["--steps", "--batch", "--warmup", "--seed", "--data"].contains(&flag.as_str()) {
            return Err(format!("unknown argument {flag:?}\n{USAGE}"));
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |what: &str| {
            value.parse::<u64>().map_err(|_| format!("{what} must be a non-negative integer, got {value:?}"))
        };
        match flag.as_str() {
            "--steps" => args.steps = number("--steps")? as usize,
            "--batch" => args.batch = number("--batch")? as usize,
            "--warmup" => args.warmup = number("--warmup")? as usize,
            "--seed" => args.seed = number("--seed")?,
            "--data" => args.data = PathBuf::from(&value),
            _ => unreachable!("checked above"),
        }
    }
    // The check reads every gradient back through burn, which runs and submits burn's queued
    // work: it would hide what --no-flush is there to find out.
    args.check &= !args.no_flush;
    if args.steps == 0 {
        return Err("--steps must be at least 1".into());
    }
    if args.batch == 0 || args.batch > data::TRAIN {
        return Err(format!("--batch must be between 1 and {} (the training rows), got {}", data::TRAIN, args.batch));
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// What one training run measured.
struct Run {
    /// (1-based step, loss) at the report steps and the last.
    losses: Vec<(usize, f32)>,
    /// Per step, seconds: the optimizer step from gradients in hand to submitted (host), to
    /// finished on the device (host, waiting), and on the device alone (when timed).
    enqueue: Vec<f64>,
    done: Vec<f64>,
    gpu: Vec<f64>,
    /// Per step, seconds: batch upload, forward, backward and optimizer step, finished.
    whole: Vec<f64>,
    /// Every parameter after the first step, and at the end.
    first: Vec<Vec<f32>>,
    params: Vec<Vec<f32>>,
    accuracy: f64,
    /// Seconds the whole run took, set-up, readbacks and evaluation included.
    seconds: f64,
    /// The lockstep check: the report line, and whether every step was within the bound.
    lockstep: Option<(String, bool)>,
    /// When checking, wgpu-optim's run only: its gradients (host copies) of the first FED_STEPS
    /// steps, and its parameters after the REPORT_AT steps and the last among those, for
    /// `fed_to_burn`.
    grads: Vec<Vec<Option<Vec<f32>>>>,
    kept: Vec<(usize, Vec<Vec<f32>>)>,
}

fn run(args: &Args) -> Result<bool, Box<dyn Error>> {
    let (train, test) = data::load(&args.data, args.seed)?;

    // burn's own device and queue. `init_with_setup` hands back the exact wgpu handles the
    // runtime uses, so wgpu-optim records into the queue burn submits to.
    let (device, setup) =
        Device::wgpu_options().init_with_setup().map_err(|e| format!("burn could not open a wgpu device: {e}"))?;
    let info = setup.adapter.get_info();
    let ctx = GpuContext::from_device(setup.device.clone(), setup.queue.clone());
    let timestamps = setup.device.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    let autodiff = device.clone().autodiff();
    println!("adapter: {} ({:?})", info.name, info.backend);

    device.seed(args.seed);
    let ours = Net::new(&autodiff);
    // The burn run gets its own copy of every parameter: ours updates its buffers in place.
    let theirs = ours.clone().map(&mut DeepCopy);
    let (tensors, numel) = count(&ours);
    println!(
        "model: {} Linear layers, {tensors} parameter tensors, {numel} parameters; \
         {} steps of {} examples; AdamW lr {LR:e}, betas {BETAS:?}, eps {EPS:e}, weight_decay {WEIGHT_DECAY}",
        tensors / 2,
        args.steps,
        args.batch
    );

    // burn compiles and autotunes its forward and backward kernels the first times they run: on
    // a throwaway copy here, or the run that goes first would pay for both.
    let began = Instant::now();
    let scratch = ours.clone().map(&mut DeepCopy);
    for step in 0..args.warmup.max(2) {
        let (x, y) = batch(&train, step, args.batch, &autodiff);
        let _ = GradientsParams::from_grads(scratch.loss(x, y, step % 2 == 0).backward(), &scratch);
        device.sync().map_err(|e| format!("burn's device failed: {e:?}"))?;
    }
    drop(scratch);
    println!(
        "warm-up: {} forward and backward passes on a copy, {:.1} s",
        args.warmup.max(2),
        began.elapsed().as_secs_f64()
    );

    // For `fed_to_burn`, made now: memory taken during a run would move burn's allocations.
    let start = if args.check { Some(ours.clone().map(&mut DeepCopy)) } else { None };
    let a = train_ours(ours, &device, &autodiff, &ctx, timestamps, &train, &test, args)?;
    let b = train_burn(theirs, &device, &autodiff, &train, &test, args)?;
    let fed = match start {
        Some(start) => fed_to_burn(start, &a, &device)?,
        None => Vec::new(),
    };
    Ok(report(&a, &b, &fed, args))
}

/// wgpu-optim's AdamW on burn's parameter buffers.
#[allow(clippy::too_many_arguments)]
fn train_ours(
    model: Net,
    device: &Device,
    autodiff: &Device,
    ctx: &GpuContext,
    timestamps: bool,
    train: &Split,
    test: &Split,
    args: &Args,
) -> Result<Run, Box<dyn Error>> {
    let began = Instant::now();
    let params = BurnParams::collect(&model)?;
    let mut opt = Optimizer::new(ctx, CONFIG)?;
    let longest = params.located.iter().map(|p| p.len).max().unwrap_or(1).max(1);
    // wgpu zero-initialises buffers: a placeholder gradient until the first step says where
    // the real ones are.
    let placeholder = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("burn-interop placeholder gradient"),
        size: longest * 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let group = opt.default_group();
    let first = params.register(&mut opt, group, &placeholder)?;
    let timer = if timestamps { Some(GpuTimer::new(ctx)) } else { None };
    let mut mirror = if args.check { Some(check::Mirror::new(CONFIG, &values(&model)?)?) } else { None };

    let mut run = Run::new();
    #[allow(clippy::mutable_key_type, reason = "a wgpu::Buffer hashes by its id, which never changes")]
    let mut places = std::collections::HashSet::new();
    for step in 0..args.steps {
        let start = Instant::now();
        let (x, y) = batch(train, step, args.batch, autodiff);
        let loss = model.loss(x, y, step % 2 == 0);
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        // Time spent on the check and on reading timestamps, left out of the whole step's time.
        let mut aside = 0.0;
        if let Some(m) = mirror.as_mut() {
            let c = Instant::now();
            let g = check::grad_values(&model, &grads)?;
            m.step(&g)?;
            if step < FED_STEPS {
                run.grads.push(g);
            }
            aside += c.elapsed().as_secs_f64();
        }
        // Only so that the timing below holds the optimizer step alone: an engine skips this.
        if !args.no_flush {
            device.sync().map_err(|e| format!("burn's device failed: {e:?}"))?;
        }

        let t0 = Instant::now();
        let held = params.locate_grads(&mut grads, &mut opt, first)?;
        for g in &held {
            places.insert((g.buffer.clone(), g.offset));
        }
        // Whatever burn has queued (the backward pass that wrote the gradients, in an engine
        // that did not sync above) goes to the queue before our step. burn 0.22.1's lookups in
        // `locate_grads` already submit it, but that is not their documented job (README.md, (d)).
        if !args.no_flush {
            device.flush().map_err(|e| format!("burn's device failed to flush: {e:?}"))?;
        }
        let mut encoder =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim step") });
        match &timer {
            Some(t) => {
                opt.record_timed(&mut encoder, Some(t.writes()))?;
                t.resolve(&mut encoder);
            }
            None => opt.record(&mut encoder)?,
        }
        ctx.queue.submit([encoder.finish()]);
        // The gradients go back to burn's pool only now: anything burn writes there later is
        // submitted after our step, on the same queue.
        drop(held);
        run.enqueue.push(t0.elapsed().as_secs_f64());
        // For the timing only: an engine goes on to its next forward pass without waiting.
        ctx.wait()?;
        run.done.push(t0.elapsed().as_secs_f64());
        if let Some(t) = &timer {
            let c = Instant::now();
            run.gpu.push(t.read(ctx)?);
            aside += c.elapsed().as_secs_f64();
        }
        run.end_step(step, args.steps, &loss, &model, mirror.as_mut(), start.elapsed().as_secs_f64() - aside)?;
        if args.check && step < FED_STEPS && (REPORT_AT.contains(&(step + 1)) || step + 1 == args.steps) {
            run.kept.push((step + 1, values(&model)?));
        }
    }
    println!(
        "wgpu-optim: {} gradient locations seen, {} bind-group plans built in {} steps, {} dispatches per step",
        places.len(),
        opt.plans_built(),
        args.steps,
        opt.dispatch_count()
    );
    run.finish(&model, mirror, test, device, began)
}

/// burn's AdamW fed the gradients of wgpu-optim's run (host copies), from the same starting
/// weights (`start`: a copy with the same parameter ids): the two optimizers on the very same
/// gradients, without the drift between two runs (see FIRST_ATOL). Done after both runs, so that
/// its allocations do not move where burn puts the runs' gradients. The parameters after each
/// step in `run.kept`.
fn fed_to_burn(mut model: Net, run: &Run, device: &Device) -> Result<Vec<Vec<Vec<f32>>>, Box<dyn Error>> {
    let mut optim = burn_adamw();
    let mut kept = Vec::new();
    for (step, g) in run.grads.iter().enumerate() {
        let grads = check::grads_from_values(&model, g, device);
        model = optim.step(LR, model, grads);
        if run.kept.iter().any(|&(n, _)| n == step + 1) {
            kept.push(values(&model)?);
        }
    }
    Ok(kept)
}

/// burn's AdamW with the hyperparameters of `CONFIG`.
fn burn_adamw() -> burn::optim::ModuleOptimizer {
    burn::optim::AdamWConfig::new()
        .with_beta_1(BETAS.0 as f32)
        .with_beta_2(BETAS.1 as f32)
        .with_epsilon(EPS as f32)
        .with_weight_decay(WEIGHT_DECAY as f32)
        .init()
}

/// burn's own AdamW.
fn train_burn(
    mut model: Net,
    device: &Device,
    autodiff: &Device,
    train: &Split,
    test: &Split,
    args: &Args,
) -> Result<Run, Box<dyn Error>> {
    let began = Instant::now();
    let mut optim = burn_adamw();
    let mut mirror = if args.check { Some(check::Mirror::new(CONFIG, &values(&model)?)?) } else { None };
    let mut run = Run::new();
    for step in 0..args.steps {
        let start = Instant::now();
        let (x, y) = batch(train, step, args.batch, autodiff);
        let loss = model.loss(x, y, step % 2 == 0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // Time spent on the check and on reading timestamps, left out of the whole step's time.
        let mut aside = 0.0;
        if let Some(m) = mirror.as_mut() {
            let c = Instant::now();
            m.step(&check::grad_values(&model, &grads)?)?;
            aside += c.elapsed().as_secs_f64();
        }
        device.sync().map_err(|e| format!("burn's device failed: {e:?}"))?;

        let t0 = Instant::now();
        // The window flushes fusion's queue at its end, as our submit ends our step.
        let (updated, duration) = device
            .profile_with(ProfileOptions::default().flush(), || optim.step(LR, model, grads))
            .map_err(|e| format!("burn could not profile the step: {e:?}"))?;
        model = updated;
        run.enqueue.push(t0.elapsed().as_secs_f64());
        device.sync().map_err(|e| format!("burn's device failed: {e:?}"))?;
        run.done.push(t0.elapsed().as_secs_f64());
        if duration.timing_method() == TimingMethod::Device {
            let c = Instant::now();
            if let Some(ticks) = read_sync(duration.resolve()) {
                run.gpu.push(ticks.duration().as_secs_f64());
            }
            aside += c.elapsed().as_secs_f64();
        }
        run.end_step(step, args.steps, &loss, &model, mirror.as_mut(), start.elapsed().as_secs_f64() - aside)?;
    }
    run.finish(&model, mirror, test, device, began)
}

impl Run {
    fn new() -> Self {
        Self {
            losses: Vec::new(),
            enqueue: Vec::new(),
            done: Vec::new(),
            gpu: Vec::new(),
            whole: Vec::new(),
            first: Vec::new(),
            params: Vec::new(),
            accuracy: 0.0,
            seconds: 0.0,
            lockstep: None,
            grads: Vec::new(),
            kept: Vec::new(),
        }
    }

    /// What both trainers record after a step: its whole time (`whole`, without the check and
    /// the timestamp reads), the loss where reported, the parameters after the first step, and
    /// the lockstep check against the f64 mirror.
    fn end_step(
        &mut self,
        step: usize,
        steps: usize,
        loss: &Tensor<1>,
        model: &Net,
        mirror: Option<&mut check::Mirror>,
        whole: f64,
    ) -> Result<(), Box<dyn Error>> {
        self.whole.push(whole);
        self.note_loss(step, steps, loss);
        if step == 0 {
            self.first = values(model)?;
        }
        if let Some(m) = mirror {
            m.compare(step + 1, &values(model)?);
        }
        Ok(())
    }

    /// What both trainers record after the last step: the mirror's verdict, the parameters,
    /// the test accuracy and the run's time.
    fn finish(
        mut self,
        model: &Net,
        mirror: Option<check::Mirror>,
        test: &Split,
        device: &Device,
        began: Instant,
    ) -> Result<Self, Box<dyn Error>> {
        self.lockstep = mirror.map(|m| m.verdict());
        self.params = values(model)?;
        self.accuracy = accuracy(model, test, device)?;
        self.seconds = began.elapsed().as_secs_f64();
        Ok(self)
    }

    /// Reads the loss at the report steps and the last (a read waits for the device, so not
    /// at every step).
    fn note_loss(&mut self, step: usize, steps: usize, loss: &Tensor<1>) {
        let n = step + 1;
        if REPORT_AT.contains(&n) || n == steps {
            self.losses.push((n, loss.clone().into_scalar::<f32>()));
        }
    }
}

/// Step `step`'s mini-batch: `batch` rows from `step * batch` on, wrapping around.
fn batch(train: &Split, step: usize, batch: usize, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let (x, y) = train.batch(step * batch, batch);
    (
        Tensor::from_data(TensorData::new(x, [batch, PIXELS]), device),
        Tensor::from_data(TensorData::new(y, [batch]), device),
    )
}

/// Fraction of `test` classified right.
fn accuracy(model: &Net, test: &Split, device: &Device) -> Result<f64, Box<dyn Error>> {
    let model = model.valid();
    let x = Tensor::<2>::from_data(TensorData::new(test.x.clone(), [test.len(), PIXELS]), device);
    let predicted = model.forward(x).argmax(1).into_data_as::<i64>();
    let predicted = predicted.try_to_vec::<i64>().map_err(|e| format!("reading predictions: {e:?}"))?;
    let right = predicted.iter().zip(&test.y).filter(|(p, y)| p == y).count();
    Ok(right as f64 / test.len() as f64)
}

/// A copy of every float parameter in new memory, with the same ids.
struct DeepCopy;

impl ModuleMapper for DeepCopy {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let device = t.device();
            Tensor::from_data(t.to_data(), &device).require_grad()
        })
    }
}

/// Every float parameter's values, in visiting order.
fn values<M: Module>(module: &M) -> Result<Vec<Vec<f32>>, Box<dyn Error>> {
    struct Read(Vec<Result<Vec<f32>, String>>);
    impl ModuleVisitor for Read {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().to_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}")));
        }
    }
    let mut read = Read(Vec::new());
    module.visit(&mut read);
    Ok(read.0.into_iter().collect::<Result<_, _>>()?)
}

/// Parameter tensors and elements.
fn count<M: Module>(module: &M) -> (usize, usize) {
    struct Count(usize, usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 += 1;
            self.1 += param.shape().num_elements();
        }
    }
    let mut c = Count(0, 0);
    module.visit(&mut c);
    (c.0, c.1)
}

/// Timestamps at the beginning and end of wgpu-optim's compute pass.
struct GpuTimer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    period_ns: f64,
}

impl GpuTimer {
    fn new(ctx: &GpuContext) -> Self {
        let buffer = |usage| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("burn-interop timestamps"),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        Self {
            set: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("burn-interop timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            read: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            period_ns: ctx.queue.get_timestamp_period() as f64,
        }
    }

    fn writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.set, 0..2, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, 16);
    }

    /// Seconds between the two timestamps of the step submitted last (after it finished).
    fn read(&self, ctx: &GpuContext) -> Result<f64, Box<dyn Error>> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.read.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        ctx.wait()?;
        rx.recv().map_err(|_| "the timestamp readback was never answered")??;
        let ticks = {
            let view = self.read.slice(..).get_mapped_range().map_err(|e| format!("reading timestamps: {e}"))?;
            // Copied out by value: the mapped bytes are not promised to be 8-aligned.
            let tick = |i: usize| u64::from_le_bytes(view[i * 8..i * 8 + 8].try_into().expect("16 bytes mapped"));
            [tick(0), tick(1)]
        };
        self.read.unmap();
        Ok(ticks[1].saturating_sub(ticks[0]) as f64 * self.period_ns * 1e-9)
    }
}

/// Prints the comparison and the timing table; true when the runs agree.
fn report(a: &Run, b: &Run, fed: &[Vec<Vec<f32>>], args: &Args) -> bool {
    println!();
    println!("loss            wgpu-optim       burn AdamW      rel. diff");
    let mut agree = true;
    for (&(n, la), &(_, lb)) in a.losses.iter().zip(&b.losses) {
        let rel = (la - lb).abs() / lb.abs().max(f32::MIN_POSITIVE);
        // Held to the bound at the REPORT_AT steps; past them the drift grows (see above).
        let ok = rel <= LOSS_RTOL || !REPORT_AT.contains(&n);
        agree &= ok;
        println!("  step {n:>4}  {la:>14.6}  {lb:>14.6}   {rel:>10.2e}{}", if ok { "" } else { "  DISAGREE" });
    }

    agree &= compare("after step 1", &a.first, &b.first, FIRST_ATOL, FIRST_RTOL, Gate::Elements);
    let last = format!("after step {}", args.steps);
    compare(&last, &a.params, &b.params, FIRST_ATOL, FIRST_RTOL, Gate::Drift);
    // The same gradients into both optimizers: each within k * (ATOL + RTOL * |p|) of the f64
    // AdamW fed them after step k (the lockstep bound), so within twice that of each other.
    for ((n, ours), burns) in a.kept.iter().zip(fed) {
        let k = *n as f64;
        let (atol, rtol) = ((2.0 * k * check::ATOL) as f32, (2.0 * k * check::RTOL) as f32);
        let when = format!("after step {n}, burn's AdamW fed our gradients");
        agree &= compare(&when, ours, burns, atol, rtol, Gate::Elements);
    }
    for (who, run) in [("wgpu-optim", a), ("burn AdamW", b)] {
        if let Some((line, ok)) = &run.lockstep {
            println!("lockstep, {who}: {line}");
            agree &= ok;
        }
    }
    println!(
        "test accuracy (360 digits): wgpu-optim {:.2}%, burn AdamW {:.2}%",
        a.accuracy * 100.0,
        b.accuracy * 100.0
    );

    let skip = if args.steps > args.warmup { args.warmup } else { 0 };
    let measured = args.steps - skip;
    println!();
    println!("optimizer step, steps {}..{} ({measured} samples), ms:   median      p90", skip + 1, args.steps);
    let row = |who: &str, what: &str, v: &[f64]| match v.len() > skip {
        true => {
            let (m, p) = median_p90(&v[skip..]);
            println!("  {who:<11} {what:<34} {:>8.3} {:>8.3}", m * 1e3, p * 1e3);
        }
        false => println!("  {who:<11} {what:<34}      n/a      n/a"),
    };
    row("wgpu-optim", "host: locate grads, record, submit", &a.enqueue);
    row("", "host: until the device is done", &a.done);
    row("", "GPU: timestamps around the pass", &a.gpu);
    row("burn AdamW", "host: optim.step (lazy, flushed)", &b.enqueue);
    row("", "host: until the device is done", &b.done);
    row("", "GPU: device.profile", &b.gpu);
    let rate = |v: &[f64]| measured as f64 / v[skip..].iter().sum::<f64>();
    println!(
        "whole training steps (upload, forward, backward, step, synced): wgpu-optim {:.1}/s, burn AdamW {:.1}/s",
        rate(&a.whole),
        rate(&b.whole)
    );
    println!("run time, set-up and evaluation included: wgpu-optim {:.1} s, burn AdamW {:.1} s", a.seconds, b.seconds);
    if !agree {
        println!("\nthe two runs DISAGREE");
    }
    agree
}

/// How two runs' parameters must agree.
enum Gate {
    /// Every element within `atol + rtol * |burn's value|`.
    Elements,
    /// Printed only: the runs drift apart after step 1 (see FIRST_ATOL's comment).
    Drift,
}

/// Compares every parameter element of two runs and prints what it found. True when they pass
/// `gate`.
fn compare(when: &str, a: &[Vec<f32>], b: &[Vec<f32>], atol: f32, rtol: f32, gate: Gate) -> bool {
    let (mut worst, mut at) = (0.0f32, None);
    let (mut max_abs, mut beyond, mut total) = (0.0f32, 0usize, 0usize);
    let (mut diff2, mut norm2) = (0.0f64, 0.0f64);
    for (t, (pa, pb)) in a.iter().zip(b).enumerate() {
        for (i, (&x, &y)) in pa.iter().zip(pb).enumerate() {
            let d = (x - y).abs();
            max_abs = max_abs.max(d);
            diff2 += f64::from(d) * f64::from(d);
            norm2 += f64::from(y) * f64::from(y);
            total += 1;
            let ratio = d / (atol + rtol * y.abs());
            beyond += usize::from(!check::at_most(ratio, 1.0));
            // NaN compares false: a NaN on one side is the worst of all.
            if !check::at_most(ratio, worst) {
                worst = ratio;
                at = Some((t, i, x, y));
            }
        }
    }
    let rel = (diff2 / norm2).sqrt();
    let ok = match gate {
        Gate::Elements => worst <= 1.0,
        Gate::Drift => true,
    };
    println!(
        "parameters {when}: max |ours - burn| {max_abs:.3e}, relative L2 difference {rel:.3e}, \
         {beyond} of {total} elements beyond {atol:e} + {rtol:e} * |burn|"
    );
    if let Some((t, i, x, y)) = at.filter(|_| worst > 0.0) {
        println!("    the farthest: tensor {t}, element {i}: ours {x}, burn {y}");
    }
    match gate {
        Gate::Elements if !ok => println!("    DISAGREE: every element should be within the bound"),
        Gate::Drift => println!("    (drift, not a disagreement: see the lockstep lines for each run's own updates)"),
        _ => {}
    }
    ok
}

fn median_p90(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}
