//! The tools behind the `wgpu-optim` command line: [`adapters`] (what wgpu sees), [`validate`]
//! (every kernel and flag combination against the CPU reference) and [`bench`](mod@bench) (ms/step and GB/s
//! against the adapter's own ceiling).
//!
//! They are library code so that tests and criterion benches call the same functions as the
//! command line; the command line only parses flags and prints.

pub mod adapters;
pub mod bench;
pub mod browser;
mod cases;
mod ceiling;
mod program;
mod progress;
mod unfused;
pub mod validate;

use crate::context::{enumerate_adapters, ContextOptions, GpuContext};
use crate::error::{Error, Result};

/// Which adapters a tool runs on: wgpu's default (honouring `WGPU_BACKEND` and
/// `WGPU_ADAPTER_NAME`), one picked by name and backend, or every adapter.
#[derive(Clone, Debug, Default)]
pub struct AdapterChoice {
    /// A case-insensitive substring of the adapter's name.
    pub adapter: Option<String>,
    /// Backends to consider (`None`: `WGPU_BACKEND`, else all).
    pub backends: Option<wgpu::Backends>,
    /// Every adapter of the chosen backends, instead of the first.
    pub all: bool,
}

/// An adapter a tool was asked to run on: its description, and its device if it opened.
#[derive(Debug)]
pub struct Target {
    /// The adapter's name, backend, device type and driver.
    pub info: wgpu::AdapterInfo,
    /// The device, or why it could not be opened.
    pub context: Result<GpuContext>,
}

/// Opens the chosen adapters. With `all`, an adapter that refuses to open a device is returned
/// with its error (so a table can say so) instead of failing the whole run.
///
/// # Errors
/// [`Error::NoAdapter`] when nothing matches the choice.
pub fn open(choice: &AdapterChoice) -> Result<Vec<Target>> {
    if !choice.all {
        let context = GpuContext::with_options(&ContextOptions {
            backends: choice.backends,
            adapter_name: choice.adapter.clone(),
            ..Default::default()
        })?;
        let info = context.adapter_info();
        return Ok(vec![Target { info, context: Ok(context) }]);
    }
    let mut seen = Vec::new();
    for adapter in pollster::block_on(enumerate_adapters(choice.backends)) {
        let info = adapter.get_info();
        let wanted = choice.adapter.as_deref().map(str::to_lowercase);
        if wanted.is_some_and(|w| !info.name.to_lowercase().contains(&w)) {
            continue;
        }
        if !seen.iter().any(|s: &wgpu::AdapterInfo| s.backend == info.backend && s.name == info.name) {
            seen.push(info);
        }
    }
    if seen.is_empty() {
        return Err(Error::NoAdapter {
            detail: choice.adapter.as_ref().map(|name| format!(" matching \"{name}\"")).unwrap_or_default(),
        });
    }
    Ok(seen
        .into_iter()
        .map(|info| {
            let context = GpuContext::with_options(&ContextOptions {
                backends: Some(info.backend.into()),
                adapter_name: Some(info.name.clone()),
                ..Default::default()
            });
            Target { info, context }
        })
        .collect())
}

/// `"Vulkan"`, `"Gl"`, ...: a backend as the tables and JSON records name it.
pub fn backend_name(backend: wgpu::Backend) -> String {
    format!("{backend:?}")
}

/// `MemAvailable` from `/proc/meminfo`, where there is one: what `validate` and `bench` compare
/// their needs with before allocating.
pub(crate) fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// splitmix64, and f32 values spread over magnitudes 2^-10 .. 2^4 with both signs and some exact
/// zeros: cheap enough for 40M elements per step.
pub(crate) struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn vector(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let r = self.next();
                if r & 63 == 0 {
                    return 0.0;
                }
                let sign = ((r >> 6) & 1) as u32;
                let exponent = 117 + ((r >> 7) % 14) as u32;
                let mantissa = ((r >> 16) as u32) & 0x7f_ffff;
                f32::from_bits(sign << 31 | exponent << 23 | mantissa)
            })
            .collect()
    }
}
