//! A lost device is `Error::DeviceLost` from every call, on a device of our own and on an
//! engine's (whose default error handler panics), before and after wgpu reports the loss.

mod common;

use common::{buffer, device_with_default_handler, gpu};
use wgpu_optim::readback::read_f32;
use wgpu_optim::{AdamConfig, Error, GpuContext, Optimizer, ParamArena, ParamBinding, Result};

fn lost<T: std::fmt::Debug>(what: &str, result: Result<T>) {
    match result {
        Err(Error::DeviceLost(_)) => {}
        other => panic!("{what}: expected DeviceLost, got {other:?}"),
    }
}

fn every_call_says_lost(name: &str, ctx: GpuContext, polled: bool) {
    let (param, grad) = (buffer(&ctx, &[1.0; 8]), buffer(&ctx, &[0.5; 8]));
    let (param2, grad2) = (buffer(&ctx, &[1.0; 8]), buffer(&ctx, &[0.5; 8]));
    let mut opt = Optimizer::new(&ctx, AdamConfig::default()).unwrap();
    opt.add_params(opt.default_group(), &[ParamBinding::whole(&param, &grad, 8)]).unwrap();
    opt.step().unwrap();
    let dir = std::env::temp_dir().join(format!("wgpu-optim-lost-{}-{name}-{polled}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join("before.ckpt");
    opt.save_state(&saved).unwrap();

    ctx.device.destroy();
    if polled {
        // wgpu notices the loss here (and calls the device-lost callback of a device of ours).
        let _ = ctx.device.poll(wgpu::PollType::wait_indefinitely());
    }
    lost("read_state", opt.read_state(0, "exp_avg"));
    lost("save_state", opt.save_state(dir.join("after.ckpt")));
    assert!(!dir.join("after.ckpt").exists(), "nothing is written from a lost device");
    lost("found_nonfinite", opt.found_nonfinite());
    lost("step", opt.step());
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    lost("record", opt.record(&mut encoder));
    lost("add_params", opt.add_params(opt.default_group(), &[ParamBinding::whole(&param2, &grad2, 8)]));
    lost("load_state", opt.load_state(&saved));
    lost("Optimizer::new", Optimizer::new(&ctx, AdamConfig::default()));
    lost("ParamArena::new", ParamArena::new(&ctx, &[4, 4]));
    lost("read_f32", read_f32(&ctx, &param, 0, 4));
    lost("wait", ctx.wait());
    // Nothing counted or registered after the loss.
    assert_eq!((opt.steps(), opt.param_count()), (1, 1));
    assert!(ctx.lost().is_some(), "the loss is remembered");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_lost_device_of_our_own_is_device_lost_before_and_after_wgpu_says_so() {
    for polled in [false, true] {
        every_call_says_lost("ours", gpu(), polled);
    }
}

#[test]
#[cfg_attr(skip_gpu_tests, ignore = "WGPU_OPTIM_SKIP_GPU_TESTS is set")]
fn a_lost_engine_device_is_device_lost_not_a_panic_before_and_after_wgpu_says_so() {
    for polled in [false, true] {
        every_call_says_lost("engine", device_with_default_handler(), polled);
    }
}
