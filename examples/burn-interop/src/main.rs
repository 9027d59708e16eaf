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
// kernels; the updates differ in f32 rounding only (burn divides by the bias-corrected sqrt(v)
// plus eps with its corrections in f32; wgpu-optim, as PyTorch, by sqrt(v) / sqrt(bc2) plus eps
// with its corrections in f64). After step 1, from the same weights and gradients, every
// parameter must be within FIRST_ATOL + FIRST_RTOL * |burn's value| (a few f32 ulps; 1e-4 of one
// step's update). From step 2 on, each run's rounding changes its next gradients, and Adam's
// normalised step amplifies that wherever a gradient is near zero (its sign decides a whole
// +-lr step), so the runs drift apart element by element while computing the same thing: after
// the last step the relative L2 difference of all parameters must be at most END_REL_L2, and
// each reported loss within LOSS_RTOL. `--check` holds each run to an f64 reference at every
// step (check.rs), which has no such drift.
const FIRST_ATOL: f32 = 1e-7;
const FIRST_RTOL: f32 = 1e-6;
const END_REL_L2: f64 = 1e-2;
const LOSS_RTOL: f32 = 1e-2;
// Steps at which the losses are reported (1-based), besides the last.
const REPORT_AT: [usize; 2] = [10, 100];

struct Args {
    steps: usize,
    batch: usize,
    warmup: usize,
    seed: u64,
    data: PathBuf,
    /// Pitfall 1, shown: neither sync nor flush burn's device before our submit.
    no_flush: bool,
    /// Each run against an f64 reference fed its own gradients, at every step.
    check: bool,
}

const USAGE: &str = "usage: burn-interop [--steps N] [--batch N] [--warmup N] [--seed N] [--data PATH]
  --steps N    training steps of each run (default 100)
  --batch N    examples per step (default 64)
  --warmup N   first steps left out of the timing table (default 5)
  --seed N     data shuffle and weight initialisation (default 0)
  --data PATH  the UCI digits CSV (default ../../examples/data/digits.csv)
  --check      also hold each run, at every step, to an f64 AdamW fed that run's own gradients
               (reads every gradient and parameter back each step: the timings then include it)
  --no-flush   leave out device.sync() and device.flush() before our submit, to show what
               goes wrong without them (README.md, pitfall 1); the runs should then disagree";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        steps: 100,
        batch: 64,
        warmup: 5,
        seed: 0,
        data: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/data/digits.csv")),
        no_flush: false,
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--no-flush" || flag == "--check" {
            args.no_flush |= flag == "--no-flush";
            args.check |= flag == "--check";
            continue;
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
            _ => return Err(format!("unknown argument {flag:?}\n{USAGE}")),
        }
    }
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
    traj: Vec<Vec<Vec<f32>>>,
    /// `--check`: the report line, and whether every step was within the bound.
    lockstep: Option<(String, bool)>,
}

fn run(args: &Args) -> Result<bool, Box<dyn Error>> {
    let (train, test) = data::load(&args.data, args.seed)?;

    // burn's own device and queue. `init_with_setup` hands back the exact wgpu handles the
    // runtime uses, so wgpu-optim records into the queue burn submits to.
    let (device, setup) = Device::wgpu_options()
        .init_with_setup()
        .map_err(|e| format!("burn could not open a wgpu device: {e}"))?;
    let info = setup.adapter.get_info();
    let ctx = GpuContext::from_device(setup.device.clone(), setup.queue.clone());
    let timestamps = setup.device.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    let autodiff = device.clone().autodiff();
    println!("adapter: {} ({:?})", info.name, info.backend);

    device.seed(args.seed);
    let ours = Net::new(&autodiff);
    // The burn run gets its own copy of every parameter: ours updates its buffers in place.
    let theirs = ours.clone().map(&mut DeepCopy);
    let theirs2 = ours.clone().map(&mut Nudge);
    let (tensors, numel) = count(&ours);
    println!(
        "model: {} Linear layers, {tensors} parameter tensors, {numel} parameters; \
         {} steps of {} examples; AdamW lr {LR:e}, betas {BETAS:?}, eps {EPS:e}, weight_decay {WEIGHT_DECAY}",
        tensors / 2,
        args.steps,
        args.batch
    );

    let a = train_ours(ours, &device, &autodiff, &ctx, timestamps, &train, &test, args)?;
    let b = train_burn(theirs, &device, &autodiff, &train, &test, args)?;
    if std::env::var("TRAJ").is_ok() {
        for (k, (pa, pb)) in a.traj.iter().zip(&b.traj).enumerate() {
            let (mut d2, mut n2, mut maxd, mut worst_t) = (0f64, 0f64, 0f32, 0usize);
            let mut per_t = Vec::new();
            for (t, (x, y)) in pa.iter().zip(pb).enumerate() {
                let mut td = 0f64;
                for (u, v) in x.iter().zip(y) { let d = (u - v).abs(); td += (d as f64).powi(2); n2 += (*v as f64).powi(2); if d > maxd { maxd = d; worst_t = t; } }
                d2 += td; per_t.push(td.sqrt());
            }
            println!("TRAJ step {}: relL2 {:.3e} max {:.3e} (tensor {worst_t})", k + 1, (d2 / n2).sqrt(), maxd);
        }
    }
    if std::env::var("BASELINE").is_ok() {
        let b2 = train_burn(theirs2, &device, &autodiff, &train, &test, args)?;
        println!("BASELINE burn vs burn:");
        compare("burn2", &b2.first, &b.first, FIRST_ATOL, FIRST_RTOL, Gate::Elements);
        compare("burn2 end", &b2.params, &b.params, FIRST_ATOL, FIRST_RTOL, Gate::Norm(END_REL_L2));
        println!("losses {:?} vs {:?}", b2.losses, b.losses);
    }
    Ok(report(&a, &b, args))
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
    let mut places = std::collections::HashSet::new();
    for step in 0..args.steps {
        let start = Instant::now();
        let (x, y) = batch(train, step, args.batch, autodiff);
        let loss = model.loss(x, y, step % 2 == 0);
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if let Some(m) = mirror.as_mut() {
            m.step(&check::grad_values(&model, &grads)?)?;
        }
        if std::env::var("GRADEXP").is_ok() && (step == 0 || step == 1 || step == 20 || step == 50) {
            let g1 = check::grad_values(&model, &grads)?;
            let copy = model.clone().map(&mut DeepCopy);
            let (x2, y2) = batch(train, step, args.batch, autodiff);
            let l2 = copy.loss(x2, y2, step % 2 == 0);
            let grads2 = GradientsParams::from_grads(l2.backward(), &copy);
            let g2 = check::grad_values(&copy, &grads2)?;
            let (mut maxd, mut n, mut signflip) = (0f32, 0usize, 0usize);
            for (a, b) in g1.iter().zip(&g2) { if let (Some(a), Some(b)) = (a, b) { for (x, y) in a.iter().zip(b) { maxd = maxd.max((x-y).abs()); if x != y { n += 1; } if x.signum() != y.signum() && *x != 0.0 { signflip += 1; } } } }
            let (x3, y3) = batch(train, step, args.batch, autodiff);
            let l3 = model.loss(x3, y3, step % 2 == 0);
            let grads3 = GradientsParams::from_grads(l3.backward(), &model);
            let g3 = check::grad_values(&model, &grads3)?;
            let (mut maxd3, mut n3) = (0f32, 0usize);
            for (a, b) in g1.iter().zip(&g3) { if let (Some(a), Some(b)) = (a, b) { for (x, y) in a.iter().zip(b) { maxd3 = maxd3.max((x-y).abs()); if x != y { n3 += 1; } } } }
            println!("GRADEXP step {}: copy vs model: max {maxd:e}, {n} differ, {signflip} sign flips; model again: max {maxd3:e}, {n3} differ", step+1);
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
        // that did not sync above) goes to the queue before our step.
        if !args.no_flush {
            device.flush().map_err(|e| format!("burn's device failed to flush: {e:?}"))?;
        }
        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("wgpu-optim step"),
        });
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
        ctx.wait()?;
        run.done.push(t0.elapsed().as_secs_f64());
        if let Some(t) = &timer {
            run.gpu.push(t.read(ctx)?);
        }
        run.whole.push(start.elapsed().as_secs_f64());
        run.note_loss(step, args.steps, &loss);
        if step == 0 {
            run.first = values(&model)?;
        }
        if let Some(m) = mirror.as_mut() {
            m.compare(step + 1, &values(&model)?);
        }
        if std::env::var("TRAJ").is_ok() { run.traj.push(values(&model)?); }
    }
    run.lockstep = mirror.map(|m| m.verdict());
    println!(
        "wgpu-optim: {} gradient locations seen, {} bind-group plans built in {} steps, {} dispatches per step",
        places.len(),
        opt.plans_built(),
        args.steps,
        opt.dispatch_count()
    );
    run.params = values(&model)?;
    run.accuracy = accuracy(&model, test, device)?;
    run.seconds = began.elapsed().as_secs_f64();
    Ok(run)
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
    let mut optim = burn::optim::AdamWConfig::new()
        .with_beta_1(BETAS.0 as f32)
        .with_beta_2(BETAS.1 as f32)
        .with_epsilon(EPS as f32)
        .with_weight_decay(WEIGHT_DECAY as f32)
        .init();
    let mut mirror = if args.check { Some(check::Mirror::new(CONFIG, &values(&model)?)?) } else { None };
    let mut run = Run::new();
    for step in 0..args.steps {
        let start = Instant::now();
        let (x, y) = batch(train, step, args.batch, autodiff);
        let loss = model.loss(x, y, step % 2 == 0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        if let Some(m) = mirror.as_mut() {
            m.step(&check::grad_values(&model, &grads)?)?;
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
            if let Some(ticks) = read_sync(duration.resolve()) {
                run.gpu.push(ticks.duration().as_secs_f64());
            }
        }
        run.whole.push(start.elapsed().as_secs_f64());
        run.note_loss(step, args.steps, &loss);
        if step == 0 {
            run.first = values(&model)?;
        }
        if let Some(m) = mirror.as_mut() {
            m.compare(step + 1, &values(&model)?);
        }
        if std::env::var("TRAJ").is_ok() { run.traj.push(values(&model)?); }
    }
    run.lockstep = mirror.map(|m| m.verdict());
    run.params = values(&model)?;
    run.accuracy = accuracy(&model, test, device)?;
    run.seconds = began.elapsed().as_secs_f64();
    Ok(run)
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
            traj: Vec::new(),
        }
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

struct Nudge;
impl ModuleMapper for Nudge {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let device = t.device();
            let shape = t.shape();
            let v: Vec<f32> = t.to_data().try_to_vec::<f32>().unwrap();
            let mut k = 0u32;
            let v: Vec<f32> = v.into_iter().map(|x| { k = k.wrapping_mul(1103515245).wrapping_add(12345); if (k >> 16) % 1000 == 0 { f32::from_bits(x.to_bits() + 1) } else { x } }).collect();
            Tensor::from_data(TensorData::new(v, shape), &device).require_grad()
        })
    }
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
fn report(a: &Run, b: &Run, args: &Args) -> bool {
    println!();
    println!("loss            wgpu-optim       burn AdamW      rel. diff");
    let mut agree = true;
    for (&(n, la), &(_, lb)) in a.losses.iter().zip(&b.losses) {
        let rel = (la - lb).abs() / lb.abs().max(f32::MIN_POSITIVE);
        let ok = rel <= LOSS_RTOL;
        agree &= ok;
        println!("  step {n:>4}  {la:>14.6}  {lb:>14.6}   {rel:>10.2e}{}", if ok { "" } else { "  DISAGREE" });
    }

    agree &= compare("after step 1", &a.first, &b.first, FIRST_ATOL, FIRST_RTOL, Gate::Elements);
    let last = format!("after step {}", args.steps);
    agree &= compare(&last, &a.params, &b.params, FIRST_ATOL, FIRST_RTOL, Gate::Norm(END_REL_L2));
    for (who, run) in [("wgpu-optim", a), ("burn AdamW", b)] {
        if let Some((line, ok)) = &run.lockstep {
            println!("--check, {who}: {line}");
            agree &= ok;
        }
    }
    println!("test accuracy (360 digits): wgpu-optim {:.2}%, burn AdamW {:.2}%", a.accuracy * 100.0, b.accuracy * 100.0);

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
    /// ||ours - burn's|| / ||burn's|| (over all parameters) at most this; the elements beyond
    /// `atol + rtol * |burn's value|` are counted, not refused.
    Norm(f64),
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
            beyond += usize::from(!(ratio <= 1.0));
            // NaN compares false: a NaN on one side is the worst of all.
            if !(ratio <= worst) {
                worst = ratio;
                at = Some((t, i, x, y));
            }
        }
    }
    let rel = (diff2 / norm2).sqrt();
    let ok = match gate {
        Gate::Elements => worst <= 1.0,
        Gate::Norm(limit) => rel <= limit,
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
        Gate::Norm(limit) if !ok => println!("    DISAGREE: the relative L2 difference should be at most {limit:e}"),
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
