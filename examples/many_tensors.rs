//! How the optimizer scales with the number of tensors: registers N small tensors one
//! `add_params` call each (as an engine with one call per module does), then steps, saves and
//! loads, and prints the time of each. The tensors lie in one arena (`--layout arena`, the
//! default) or each in buffers of its own (`--layout buffers`).
//!
//! ```sh
//! cargo run --release --example many_tensors -- 100000
//! cargo run --release --example many_tensors -- 100000 --layout buffers
//! ```

use std::time::Instant;

use wgpu::util::DeviceExt;
use wgpu_optim::{AdamConfig, GpuContext, Optimizer, ParamArena, ParamBinding};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let buffers = match args.iter().position(|a| a == "--layout").and_then(|i| args.get(i + 1)) {
        None => false,
        Some(l) if l == "arena" => false,
        Some(l) if l == "buffers" => true,
        Some(l) => return Err(format!("--layout is arena or buffers, not {l}").into()),
    };
    let ctx = GpuContext::new()?;
    // Lengths 1..=64, so that tensors start both on and off multiples of four.
    let lens: Vec<u64> = (0..n as u64).map(|i| 1 + (i * 37) % 64).collect();
    let elements: u64 = lens.iter().sum();
    println!(
        "{n} tensors, {elements} elements, Adam, {} on {} ({:?})",
        if buffers { "a buffer pair per tensor" } else { "one arena" },
        ctx.adapter_info().name,
        ctx.adapter_info().backend
    );

    let made = Instant::now();
    let bindings: Vec<ParamBinding> = if buffers {
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let buffer = |len: u64, value: f32| {
            ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(&vec![value; len as usize]),
                usage,
            })
        };
        lens.iter().map(|&len| ParamBinding::whole(&buffer(len, 1.0), &buffer(len, 0.5), len)).collect()
    } else {
        let arena = ParamArena::new(&ctx, &lens)?;
        arena.bindings()
    };
    println!("  buffers made:         {:>8.2} s", made.elapsed().as_secs_f64());

    let mut opt = Optimizer::new(&ctx, AdamConfig::default())?;
    let time = |what: &str, started: Instant| println!("  {what:<22}{:>8.2} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    for b in &bindings {
        opt.add_params(opt.default_group(), std::slice::from_ref(b))?;
    }
    time("register (n calls):", started);
    println!("  dispatches per step:  {:>8}", opt.dispatch_count());

    let started = Instant::now();
    opt.step()?;
    ctx.wait()?;
    time("first step:", started);
    let started = Instant::now();
    for _ in 0..5 {
        opt.step()?;
    }
    ctx.wait()?;
    println!("  next steps:           {:>8.2} s each", started.elapsed().as_secs_f64() / 5.0);

    let path = std::env::temp_dir().join(format!("wgpu-optim-many-{}.safetensors", std::process::id()));
    let started = Instant::now();
    opt.save_state(&path)?;
    time("save_state:", started);
    let started = Instant::now();
    opt.load_state(&path)?;
    ctx.wait()?;
    time("load_state:", started);
    println!("  checkpoint:           {:>8.1} MB", std::fs::metadata(&path)?.len() as f64 / 1e6);
    std::fs::remove_file(&path)?;
    Ok(())
}
