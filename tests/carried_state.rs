//! Schedules that drive optimizer state as PyTorch's do (issue 11): host-side values carried from
//! step to step (ASGD's eta and mu, NAdam's mu_product), Rprop's step sizes filled at the first
//! step, `cycle_momentum` on SGD and RMSprop configured with momentum 0, and a cycled momentum of
//! exactly 0. PyTorch's own numbers for each are the golden cases listed below; these tests pin
//! the rest: the formulas of the carry, carries per registration step, and carries rebuilt after
//! a checkpoint load or a rewound step.

mod common;

use common::{buffer, gpu, Rng};
use serde_json::json;
use wgpu_optim::algorithm::{Algorithm, AsgdScalars, Carry, NAdamScalars, StepInput};
use wgpu_optim::cpu::CpuOptimizer;
use wgpu_optim::readback::read_f32;
use wgpu_optim::replay::{replay_file, Target};
use wgpu_optim::schedule::{from_json, LrScheduler};
use wgpu_optim::*;

/// The golden cases of this point 2, made by `scripts/goldens.py` from PyTorch 2.15.
const CASES: &[&str] = &[
    "asgd_steplr",
    "rprop_linearlr",
    "sgd_onecycle_cycle_momentum",
    "rmsprop_onecycle_cycle_momentum",
    "nadam_onecycle_cycle_momentum",
    "sgd_cyclic_momentum_zero",
    "rmsprop_cyclic_momentum_zero",
];

fn replay_cases(target: Target<'_>) {
    let failures: Vec<String> = CASES
        .iter()
        .filter_map(|name| match replay_file(&common::data(&format!("{name}.json")), target) {
            Ok(r) if r.passed => None,
            Ok(r) => Some(format!("{name}: {:?}, lr error {:?}", r.worst, r.worst_lr)),
            Err(e) => Some(format!("{name}: {e}")),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_schedule_state_goldens_pass_on_the_cpu_reference() {
    replay_cases(Target::Cpu);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn the_schedule_state_goldens_pass_on_the_gpu() {
    replay_cases(Target::Gpu(&gpu()));
}

fn input(step: u64, lr: f64, momentum: Option<f64>, carry: Carry) -> StepInput {
    StepInput { step, lr, momentum, carry }
}

#[test]
fn asgd_carries_eta_and_mu_computed_with_the_lr_of_the_step_before() {
    let config = AsgdConfig { lambd: 0.01, alpha: 0.75, t0: 2.0, ..Default::default() };
    let first = config.carry_start(&input(1, 0.3, None, Carry::default())).unwrap();
    assert_eq!(first, Carry([0.3, 1.0]), "eta starts at the first step's lr, mu at 1");
    // After step 3 taken with lr 0.2: eta = 0.2 / (1 + 0.01 * 0.2 * 3)^0.75, mu = 1 / max(1, 3 - 2).
    let next = config.carry_next(&input(3, 0.2, None, first));
    assert_eq!(next, Carry([0.2 / (1.0 + 0.01 * 0.2 * 3.0f64).powf(0.75), 1.0]));
    let later = config.carry_next(&input(5, 0.2, None, next));
    assert_eq!(later.0[1], 1.0 / 3.0, "mu = 1 / (t - t0) past t0 + 1");
    // The step uses the carried eta, whatever this step's lr.
    let s = AsgdScalars::new(&config, &input(4, 99.0, None, next));
    assert_eq!((s.eta, s.decay, s.mu), (next.0[0], 1.0 - 0.01 * next.0[0], next.0[1]));

    // The CPU mirror carries it: a schedule's cut shows in eta one step late.
    let mut cpu = CpuOptimizer::new(config.clone().into(), vec![1.0; 3]).unwrap();
    cpu.set_lr(0.3);
    cpu.step(&[1.0; 3]).unwrap();
    cpu.set_lr(0.1);
    cpu.step(&[1.0; 3]).unwrap();
    let eta_2 = 0.3 / (1.0 + 0.01 * 0.3f64).powf(0.75);
    assert_eq!(cpu.carry(), Some(Carry([0.1 / (1.0 + 0.01 * 0.1 * 2.0f64).powf(0.75), 1.0])));
    let expected = {
        let p1 = 1.0 * (1.0 - 0.01 * 0.3) - 0.3;
        p1 * (1.0 - 0.01 * eta_2) - eta_2
    };
    assert_eq!(cpu.param()[0], expected, "step 2 used eta from step 1's lr");
}

#[test]
fn nadam_carries_the_product_of_each_steps_mu() {
    let config = NAdamConfig::default();
    let md = config.momentum_decay;
    let mu = |beta1: f64, t: f64| beta1 * (1.0 - 0.5 * 0.96f64.powf(t * md));
    let start = config.carry_start(&input(1, 0.1, Some(0.95), Carry::default())).unwrap();
    assert_eq!(start, Carry([1.0, 0.0]));
    let after_1 = config.carry_next(&input(1, 0.1, Some(0.95), start));
    let after_2 = config.carry_next(&input(2, 0.1, Some(0.85), after_1));
    assert_eq!(after_2.0[0], mu(0.95, 1.0) * mu(0.85, 2.0), "each step's beta1 enters the product");
    let s = NAdamScalars::new(&config, &input(3, 0.1, Some(0.8), after_2));
    let prod = after_2.0[0] * mu(0.8, 3.0);
    assert_eq!(s.grad_coef, 0.1 * (1.0 - mu(0.8, 3.0)) / (1.0 - prod));
    assert_eq!(s.avg_coef, 0.1 * mu(0.8, 4.0) / (1.0 - prod * mu(0.8, 4.0)));
    assert_eq!(s.one_minus_beta1, 1.0 - 0.8);
}

fn one_cycle() -> LrScheduler {
    from_json(&json!({"name": "OneCycleLR", "max_lr": 0.01, "total_steps": 40}), 0.01).unwrap()
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn cycling_a_momentum_0_config_sets_it_before_registration_and_is_refused_after() {
    let ctx = gpu();
    let (p, g) = (buffer(&ctx, &[1.0; 8]), buffer(&ctx, &[1.0; 8]));
    for config in [OptimizerConfig::from(SgdConfig::default()), RmsPropConfig::default().into()] {
        let name = config.name();
        let mut opt = Optimizer::new(&ctx, config.clone()).unwrap();
        let group = opt.default_group();
        opt.set_schedule(group, one_cycle()).unwrap();
        assert_eq!(opt.group_config(group).unwrap().algorithm().momentum(), Some(0.95), "{name}: max_momentum");
        opt.add_params(group, &[ParamBinding::whole(&p, &g, 8)]).unwrap();
        opt.step().unwrap();
        let buf = opt.read_state(0, "momentum_buffer").unwrap();
        assert!(buf.is_some_and(|b| b.iter().all(|&x| x != 0.0)), "{name}: the buffer exists and was written");

        let mut late = Optimizer::new(&ctx, config).unwrap();
        let group = late.default_group();
        late.add_params(group, &[ParamBinding::whole(&p, &g, 8)]).unwrap();
        let message = late.set_schedule(group, one_cycle()).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "{name} is configured with momentum 0, and its momentum buffer is allocated when tensors are \
                 registered: set a schedule that cycles the momentum before registering group 0's tensors (or \
                 configure a momentum above 0)"
            )
        );
        assert!(late.schedule(group).unwrap().is_none(), "{name}: the refused schedule is not set");
        let message = late.set_momentum(group, Some(0.5)).unwrap_err().to_string();
        assert!(message.starts_with(&format!("{name} must be configured with momentum > 0")), "{message}");
    }
    // A config with momentum keeps its own; an Adam with beta1 0 cycles (it has no buffer to lack).
    let mut sgd = Optimizer::new(&ctx, SgdConfig { momentum: 0.5, ..Default::default() }).unwrap();
    sgd.add_params(sgd.default_group(), &[ParamBinding::whole(&p, &g, 8)]).unwrap();
    sgd.set_schedule(sgd.default_group(), one_cycle()).unwrap();
    assert_eq!(sgd.group_config(sgd.default_group()).unwrap().algorithm().momentum(), Some(0.5));
    let mut adam = Optimizer::new(&ctx, AdamConfig { betas: (0.0, 0.999), ..Default::default() }).unwrap();
    adam.set_schedule(adam.default_group(), one_cycle()).unwrap();
}

#[test]
fn a_momentum_of_exactly_0_is_a_plain_step_that_leaves_the_buffer_alone() {
    for config in [
        OptimizerConfig::from(SgdConfig { lr: 0.1, momentum: 0.9, dampening: 0.5, ..Default::default() }),
        RmsPropConfig { lr: 0.1, momentum: 0.9, ..Default::default() }.into(),
    ] {
        let name = config.name();
        let mut cpu = CpuOptimizer::new(config.clone(), vec![1.0, -2.0]).unwrap();
        cpu.step(&[0.5, 0.25]).unwrap();
        let buffer = cpu.state("momentum_buffer").unwrap().to_vec();
        cpu.set_momentum(Some(0.0));
        let before = cpu.param().to_vec();
        cpu.step(&[0.5, 0.25]).unwrap();
        assert_eq!(cpu.state("momentum_buffer").unwrap(), buffer.as_slice(), "{name}: buffer untouched");
        // The plain step of the same algorithm configured without momentum, from the same state.
        let plain = match &config {
            OptimizerConfig::Sgd(c) => SgdConfig { momentum: 0.0, dampening: 0.0, ..c.clone() }.into(),
            OptimizerConfig::RmsProp(c) => RmsPropConfig { momentum: 0.0, ..c.clone() }.into(),
            _ => unreachable!(),
        };
        let mut reference = CpuOptimizer::new(plain, vec![1.0, -2.0]).unwrap();
        reference.step(&[0.5, 0.25]).unwrap();
        let moved: Vec<f64> = before.iter().zip(cpu.param()).map(|(a, b)| b - a).collect();
        let expected: Vec<f64> = if name == "SGD" {
            vec![-0.1 * 0.5, -0.1 * 0.25]
        } else {
            // RMSprop's second step of the plain run moves by the same rule from the same square_avg.
            let mut twice = reference.clone();
            let p1 = twice.param().to_vec();
            twice.step(&[0.5, 0.25]).unwrap();
            p1.iter().zip(twice.param()).map(|(a, b)| b - a).collect()
        };
        for (m, e) in moved.iter().zip(&expected) {
            assert!((m - e).abs() <= 1e-12, "{name}: moved {m}, a plain step moves {e}");
        }
    }
}

#[test]
fn rprop_fills_its_step_sizes_with_the_lr_of_its_first_step() {
    let mut cpu = CpuOptimizer::new(RpropConfig::default().into(), vec![0.0; 3]).unwrap();
    cpu.set_lr(0.05);
    cpu.step(&[1.0, -1.0, 0.0]).unwrap();
    assert_eq!(cpu.state("step_size").unwrap(), &[0.05; 3]);
    assert_eq!(cpu.param(), &[-0.05, 0.05, 0.0]);
    cpu.set_lr(7.0);
    cpu.step(&[1.0, 1.0, 0.0]).unwrap();
    assert_eq!(cpu.state("step_size").unwrap(), &[0.05 * 1.2, 0.05 * 0.5, 0.05], "later rates change nothing");
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn rprop_on_the_gpu_fills_its_step_sizes_at_the_first_step() {
    let ctx = gpu();
    let (p, g) = (buffer(&ctx, &[0.0; 8]), buffer(&ctx, &[1.0; 8]));
    let mut opt = Optimizer::new(&ctx, RpropConfig::default()).unwrap();
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&p, &g, 8)]).unwrap();
    opt.set_lr(opt.default_group(), 0.05).unwrap();
    opt.step().unwrap();
    assert_eq!(opt.read_state(0, "step_size").unwrap().unwrap(), vec![0.05f32; 8]);
    assert_eq!(read_f32(&ctx, &p, 0, 8).unwrap(), vec![-0.05f32; 8]);
}

/// An engine over two tensors of one group, the second registered after `late` steps, driven by
/// `schedule` (built fresh by the closure).
struct Engine {
    ctx: GpuContext,
    buffers: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    opt: Optimizer,
}

const LENS: [u64; 2] = [67, 33];

fn grad(t: u64, i: usize) -> Vec<f32> {
    Rng::new(100 * t + i as u64).vector(LENS[i] as usize)
}

fn inits() -> Vec<Vec<f32>> {
    let mut rng = Rng::new(9);
    LENS.iter().map(|&n| rng.vector(n as usize)).collect()
}

impl Engine {
    fn new(config: &OptimizerConfig, schedule: &dyn Fn() -> LrScheduler, params: &[Vec<f32>]) -> Self {
        let ctx = gpu();
        let buffers = params.iter().map(|p| (buffer(&ctx, p), buffer(&ctx, &vec![0.0; p.len()]))).collect();
        let mut opt = Optimizer::new(&ctx, config.clone()).unwrap();
        opt.set_schedule(opt.default_group(), schedule()).unwrap();
        Self { ctx, buffers, opt }
    }
    fn add(&mut self, i: usize) {
        let (p, g) = &self.buffers[i];
        self.opt.add_params(self.opt.default_group(), &[ParamBinding::whole(p, g, LENS[i])]).unwrap();
    }
    fn write_grads(&self, t: u64) {
        for (i, (_, g)) in self.buffers.iter().enumerate() {
            self.ctx.queue.write_buffer(g, 0, bytemuck::cast_slice(&grad(t, i)));
        }
    }
    fn step(&mut self, t: u64) {
        self.write_grads(t);
        self.opt.step().unwrap();
    }
    fn params(&self) -> Vec<Vec<f32>> {
        self.buffers.iter().zip(LENS).map(|((p, _), n)| read_f32(&self.ctx, p, 0, n).unwrap()).collect()
    }
    fn bits(&self) -> Vec<u32> {
        let mut bits: Vec<u32> = self.params().concat().iter().map(|x| x.to_bits()).collect();
        for i in 0..LENS.len() {
            for name in self.opt.state_names() {
                if let Some(s) = self.opt.read_state(i, name).unwrap() {
                    bits.extend(s.iter().map(|x| x.to_bits()));
                }
            }
        }
        bits
    }
}

fn carrying_cases() -> Vec<(OptimizerConfig, Box<dyn Fn() -> LrScheduler>)> {
    vec![
        (
            AsgdConfig { lambd: 0.05, ..Default::default() }.into(),
            Box::new(|| from_json(&json!({"name": "StepLR", "step_size": 2, "gamma": 0.5}), 0.01).unwrap()),
        ),
        (
            NAdamConfig::default().into(),
            Box::new(|| {
                from_json(&json!({"name": "OneCycleLR", "max_lr": 0.01, "total_steps": 12, "pct_start": 0.5}), 2e-3)
                    .unwrap()
            }),
        ),
    ]
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_late_tensor_carries_its_own_history_as_the_cpu_mirror_does() {
    for (config, schedule) in carrying_cases() {
        let name = config.name();
        let mut e = Engine::new(&config, &*schedule, &inits());
        e.add(0);
        e.step(0);
        e.step(1);
        e.step(2);
        e.add(1);
        for t in 3..9 {
            e.step(t);
        }
        // Each tensor on the CPU: its own first step, the group's lr and momentum at each global step.
        let sched = schedule();
        for (i, from) in [(0usize, 0u64), (1, 3)] {
            let mut cpu = CpuOptimizer::new(config.clone(), inits()[i].iter().map(|&x| x as f64).collect()).unwrap();
            let mut scale: Vec<f64> = cpu.param().iter().map(|x| x.abs()).collect();
            for t in from..9 {
                cpu.set_lr(sched.lr(t).unwrap());
                cpu.set_momentum(sched.momentum(t).unwrap());
                cpu.step(&grad(t, i).iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
                common::track_scale(&mut scale, cpu.param());
            }
            common::assert_close(&format!("{name} tensor {i}"), &e.params()[i], cpu.param(), &scale);
        }
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn carries_are_rebuilt_after_a_load_and_a_rewound_step_bit_exactly() {
    let dir = std::env::temp_dir().join(format!("wgpu-optim-carried-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (config, schedule) in carrying_cases() {
        let name = config.name();
        let run = |e: &mut Engine| {
            e.add(0);
            e.step(0);
            e.step(1);
            e.add(1);
        };
        let mut straight = Engine::new(&config, &*schedule, &inits());
        run(&mut straight);
        for t in 2..8 {
            straight.step(t);
        }

        // Saved after four steps, loaded into a fresh optimizer, four more.
        let mut first = Engine::new(&config, &*schedule, &inits());
        run(&mut first);
        first.step(2);
        first.step(3);
        let ckpt = dir.join(format!("{name}.safetensors"));
        first.opt.save_state(&ckpt).unwrap();
        let mut second = Engine::new(&config, &*schedule, &first.params());
        second.add(0);
        second.add(1);
        second.opt.load_state(&ckpt).unwrap();
        for t in 4..8 {
            second.step(t);
        }
        assert!(straight.bits() == second.bits(), "{name}: resumed run differs from the uninterrupted one");

        // A step recorded and dropped, rewound with set_step_count: as if never recorded.
        let mut rewound = Engine::new(&config, &*schedule, &inits());
        run(&mut rewound);
        for t in 2..5 {
            rewound.step(t);
        }
        rewound.write_grads(5);
        let mut encoder = rewound.ctx.device.create_command_encoder(&Default::default());
        rewound.opt.record(&mut encoder).unwrap();
        drop(encoder);
        rewound.opt.set_step_count(rewound.opt.steps() - 1).unwrap();
        for t in 5..8 {
            rewound.step(t);
        }
        assert!(straight.bits() == rewound.bits(), "{name}: a rewound step left its carry behind");
    }
}
