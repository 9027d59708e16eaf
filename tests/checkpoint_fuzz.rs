//! A damaged checkpoint is refused and changes nothing: every single-bit flip of a small
//! checkpoint in turn (the "done when"), and proptest over flips, overwrites, truncations
//! and extensions (128 cases by default; set `PROPTEST_CASES` for a longer run). A load either
//! refuses and leaves the optimizer exactly as it was, or takes exactly the checkpoint's state.

mod common;

use std::cell::RefCell;
use std::path::PathBuf;

use common::{buffer, gpu, Rng};
use proptest::prelude::*;
use wgpu_optim::schedule::{ReduceLrOnPlateau, ReduceLrOnPlateauConfig, SchedulerState};
use wgpu_optim::*;

/// Small tensors, so that the header is most of the file and every bit can be flipped.
const LENS: &[u64] = &[5, 3, 4];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-optim-ckpt-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// An engine's view of the optimizer: Adam with AMSGrad in two groups, a plateau schedule on
/// the first.
struct Engine {
    ctx: GpuContext,
    grads: Vec<wgpu::Buffer>,
    _params: Vec<wgpu::Buffer>,
    opt: Optimizer,
    groups: [GroupId; 2],
}

/// Everything a load can change: every state array (as bits), the step count, each group's
/// config, lr, momentum and schedule state.
#[derive(Debug, PartialEq)]
struct Snapshot {
    states: Vec<Option<Vec<u32>>>,
    steps: u64,
    groups: Vec<(serde_json::Value, u64, Option<u64>, Option<SchedulerState>)>,
}

impl Engine {
    fn new(steps: u64) -> Self {
        let ctx = gpu();
        let config: OptimizerConfig = AdamConfig { lr: 0.01, amsgrad: true, ..Default::default() }.into();
        let mut rng = Rng::new(7);
        let params: Vec<_> = LENS.iter().map(|&n| buffer(&ctx, &rng.vector(n as usize))).collect();
        let grads: Vec<_> = LENS.iter().map(|&n| buffer(&ctx, &vec![0.0; n as usize])).collect();
        let mut opt = Optimizer::new(&ctx, config.clone()).unwrap();
        let second = opt.add_group(AdamConfig { lr: 0.02, amsgrad: true, ..Default::default() }).unwrap();
        for (i, ((p, g), &n)) in params.iter().zip(&grads).zip(LENS).enumerate() {
            let group = if i == 1 { second } else { opt.default_group() };
            opt.add_params(group, &[ParamBinding::whole(p, g, n)]).unwrap();
        }
        let plateau = ReduceLrOnPlateauConfig { patience: 1, cooldown: 1, factor: 0.5, ..Default::default() };
        opt.set_schedule(opt.default_group(), ReduceLrOnPlateau::new(0.01, plateau).unwrap().into()).unwrap();
        let groups = [opt.default_group(), second];
        let mut engine = Self { ctx, grads, _params: params, opt, groups };
        for t in 0..steps {
            for (i, g) in engine.grads.iter().enumerate() {
                let grad = Rng::new(100 * t + i as u64).vector(LENS[i] as usize);
                engine.ctx.queue.write_buffer(g, 0, bytemuck::cast_slice(&grad));
            }
            engine.opt.step().unwrap();
            engine.opt.observe([1.0, 0.9, 0.95, 0.97, 0.96][t as usize % 5]);
        }
        engine
    }

    fn snapshot(&self) -> Snapshot {
        let mut states = Vec::new();
        for i in 0..LENS.len() {
            for name in self.opt.state_names() {
                let state = self.opt.read_state(i, name).unwrap();
                states.push(state.map(|s| s.iter().map(|x| x.to_bits()).collect()));
            }
        }
        let groups = (self.groups.into_iter())
            .map(|g| {
                (
                    self.opt.group_config(g).unwrap().to_json(),
                    self.opt.lr(g).unwrap().to_bits(),
                    self.opt.momentum(g).unwrap().map(f64::to_bits),
                    self.opt.schedule(g).unwrap().map(|s| s.state()),
                )
            })
            .collect();
        Snapshot { states, steps: self.opt.steps(), groups }
    }
}

/// The optimizer loads into (at 2 steps, its own state), the checkpoint (of a run at 7 steps)
/// and both states.
struct Fixture {
    target: Engine,
    before: Snapshot,
    before_file: PathBuf,
    good: Vec<u8>,
    saved: Snapshot,
}

fn fixture() -> Fixture {
    let source = Engine::new(7);
    let path = scratch("good.safetensors");
    source.opt.save_state(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let target = Engine::new(2);
    let before_file = scratch("before.safetensors");
    target.opt.save_state(&before_file).unwrap();
    let (before, saved) = (target.snapshot(), source.snapshot());
    assert!(before != saved, "the two states must differ for the test to tell them apart");
    Fixture { target, before, before_file, good, saved }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn every_single_bit_flip_is_refused_and_changes_nothing() {
    let mut f = fixture();
    let path = scratch("flipped.safetensors");
    let mut loaded = Vec::new();
    let mut bytes = f.good.clone();
    for bit in 0..bytes.len() * 8 {
        bytes[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&path, &bytes).unwrap();
        if f.target.opt.load_state(&path).is_ok() {
            loaded.push(bit);
            f.target.opt.load_state(&f.before_file).unwrap();
        }
        bytes[bit / 8] ^= 1 << (bit % 8);
    }
    assert!(
        loaded.is_empty(),
        "{} of {} single-bit flips loaded; the first at bytes {:?}",
        loaded.len(),
        bytes.len() * 8,
        loaded.iter().take(8).map(|b| b / 8).collect::<Vec<_>>()
    );
    assert!(f.target.snapshot() == f.before, "a refused checkpoint changed the optimizer");
    // The file itself was fine.
    f.target.opt.load_state(scratch("good.safetensors")).unwrap();
    assert!(f.target.snapshot() == f.saved);
}

#[derive(Clone, Debug)]
enum Damage {
    /// XOR one byte with a non-zero mask.
    Flip(prop::sample::Index, u8),
    /// Overwrite bytes from an index on.
    Overwrite(prop::sample::Index, Vec<u8>),
    /// Keep a prefix.
    Truncate(prop::sample::Index),
    /// Append bytes.
    Extend(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(at, mask)| Damage::Flip(at, mask)),
        2 => (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Damage::Overwrite(at, bytes)),
        1 => any::<prop::sample::Index>().prop_map(Damage::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(Damage::Extend),
    ]
}

fn apply(bytes: &mut Vec<u8>, damage: &Damage) {
    if bytes.is_empty() {
        bytes.extend(b"x");
    }
    match damage {
        Damage::Flip(at, mask) => {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        Damage::Overwrite(at, new) => {
            let i = at.index(bytes.len());
            let end = (i + new.len()).min(bytes.len());
            bytes[i..end].copy_from_slice(&new[..end - i]);
        }
        Damage::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        Damage::Extend(more) => bytes.extend(more),
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(128)
}

#[cfg(not(skip_gpu_tests))]
proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn a_damaged_checkpoint_is_refused_or_loads_exactly(damages in prop::collection::vec(damage(), 1..4)) {
        thread_local!(static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) });
        FIXTURE.with(|cell| {
            let mut cell = cell.borrow_mut();
            let f = cell.get_or_insert_with(fixture);
            let mut bytes = f.good.clone();
            for d in &damages {
                apply(&mut bytes, d);
            }
            let path = scratch("damaged.safetensors");
            std::fs::write(&path, &bytes).unwrap();
            match f.target.opt.load_state(&path) {
                Err(_) => prop_assert!(f.target.snapshot() == f.before, "a refused checkpoint changed the optimizer"),
                Ok(()) => {
                    // Only a damage that undid itself (a byte overwritten with its own value) can load.
                    prop_assert!(bytes == f.good, "a damaged checkpoint loaded");
                    prop_assert!(f.target.snapshot() == f.saved, "a load took another state than the checkpoint's");
                    f.target.opt.load_state(&f.before_file).unwrap();
                }
            }
            Ok(())
        })?;
    }
}
