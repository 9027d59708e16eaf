//! Where the GPU comes from: a headless device of our own, or the engine's.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// How [`GpuContext::with_options`] picks and opens an adapter.
///
/// Every field left `None` falls back to wgpu's environment variables (`WGPU_BACKEND`,
/// `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF`) and then to wgpu's own default.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Backends to consider, e.g. `wgpu::Backends::VULKAN`.
    pub backends: Option<wgpu::Backends>,
    /// A case-insensitive substring of the adapter's name.
    pub adapter_name: Option<String>,
    /// Ask for a smaller `max_storage_buffer_binding_size` than the adapter offers. Tests use it to
    /// exercise the splitting of large tensors on small data; engines never need it.
    pub max_storage_buffer_binding_size: Option<u64>,
    /// Ask for a smaller `max_compute_workgroups_per_dimension`: tests use it to reach the 2-D
    /// grid on small data.
    pub max_compute_workgroups_per_dimension: Option<u32>,
}

/// A device and queue, with what the optimizer needs to know about them.
///
/// Cloning is cheap: wgpu's handles are reference-counted.
#[derive(Clone, Debug)]
pub struct GpuContext {
    /// The device every buffer and pipeline is created on.
    pub device: wgpu::Device,
    /// The queue steps are submitted to.
    pub queue: wgpu::Queue,
    health: Arc<Health>,
}

/// What wgpu reported through its callbacks, on a device we opened ourselves.
#[derive(Debug, Default)]
struct Health {
    lost: Mutex<Option<String>>,
    uncaptured: Mutex<Vec<String>>,
    /// The buffer [`GpuContext::check_alive`] asks the device with, made on first use.
    probe: Mutex<Option<wgpu::Buffer>>,
}

impl GpuContext {
    /// Opens a headless device on the default adapter, honouring `WGPU_BACKEND` and
    /// `WGPU_ADAPTER_NAME`, with the adapter's own limits (not wgpu's conservative defaults).
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when no adapter is found (the message says how to install one), and
    /// [`Error::RequestDevice`] when the adapter refuses to open a device.
    pub fn new() -> Result<Self> {
        Self::with_options(&ContextOptions::default())
    }

    /// [`GpuContext::new`] with explicit choices.
    ///
    /// # Errors
    /// As [`GpuContext::new`].
    pub fn with_options(options: &ContextOptions) -> Result<Self> {
        pollster::block_on(Self::with_options_async(options))
    }

    /// The async form of [`GpuContext::with_options`], for engines that run an executor.
    ///
    /// # Errors
    /// As [`GpuContext::new`].
    pub async fn with_options_async(options: &ContextOptions) -> Result<Self> {
        let adapter = select_adapter(options).await?;
        let info = adapter.get_info();
        let mut limits = adapter.limits();
        if let Some(cap) = options.max_storage_buffer_binding_size {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(cap);
        }
        if let Some(cap) = options.max_compute_workgroups_per_dimension {
            limits.max_compute_workgroups_per_dimension = limits.max_compute_workgroups_per_dimension.min(cap);
        }
        // Timestamps make `bench` report GPU time; f16 storage needs SHADER_F16 (bf16 does not).
        // Everything else works without them.
        let required_features = adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpu-optim"),
                required_features,
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice { adapter: info.name.clone(), message: e.to_string() })?;
        let health = Arc::new(Health::default());
        // wgpu's default handlers panic; on our own device, faults become errors instead.
        let lost = Arc::clone(&health);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut slot) = lost.lost.lock() {
                *slot = Some(format!("{reason:?}: {message}"));
            }
        });
        let uncaptured = Arc::clone(&health);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            // Said at once, so that nothing fails silently, and kept for take_uncaptured_errors.
            eprintln!("wgpu-optim: uncaptured wgpu error: {error}");
            if let Ok(mut errors) = uncaptured.uncaptured.lock() {
                errors.push(error.to_string());
            }
        }));
        Ok(Self { device, queue, health })
    }

    /// Wraps an engine's existing device and queue. Nothing is reconfigured: the optimizer works
    /// within the limits the engine asked for, and the engine's own device-lost and error handlers
    /// stay in place (so [`GpuContext::lost`] is `None` and wgpu errors outside the optimizer's calls
    /// reach the engine's handler).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        Self { device, queue, health: Arc::default() }
    }

    /// Why the device was lost, if it was: as wgpu reported it on a device [`GpuContext::new`]
    /// opened, or as an optimizer call found out (on any device).
    pub fn lost(&self) -> Option<String> {
        self.health.lost.lock().ok().and_then(|l| l.clone())
    }

    /// wgpu errors raised outside any error scope since the last call (on a device
    /// [`GpuContext::new`] opened, each is also printed to stderr when it happens; wgpu's default
    /// handler would have panicked instead).
    pub fn take_uncaptured_errors(&self) -> Vec<String> {
        self.health.uncaptured.lock().map(|mut e| std::mem::take(&mut *e)).unwrap_or_default()
    }

    /// [`Error::DeviceLost`] if the device is gone, whether or not wgpu has said so yet.
    ///
    /// wgpu reports a loss through the device-lost callback, which an engine's device keeps for
    /// itself, and only once it notices (at a poll, say). A lost device otherwise fails quietly:
    /// what is created on it is invalid, and error scopes report nothing. So the device is asked
    /// directly: wgpu refuses to map a buffer of a lost device at once (a live one only queues
    /// the map, which is then cancelled). The question allocates nothing after the first time,
    /// so every call that touches the device can afford it.
    pub(crate) fn check_alive(&self) -> Result<()> {
        self.check_known_lost()?;
        let Ok(mut probe) = self.health.probe.lock() else {
            return Ok(()); // Another thread panicked while asking; nothing is known.
        };
        let invalid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let buffer = probe.get_or_insert_with(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-optim liveness"),
                size: 4,
                usage: wgpu::BufferUsages::MAP_READ,
                mapped_at_creation: false,
            })
        });
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answer = std::sync::Arc::clone(&refused);
        buffer.map_async(wgpu::MapMode::Read, .., move |result| {
            // Called at once when wgpu refuses; later, with the cancellation, when it did not.
            answer.fetch_or(result.is_err(), std::sync::atomic::Ordering::SeqCst);
        });
        let lost = refused.load(std::sync::atomic::Ordering::SeqCst);
        buffer.unmap();
        let _ = pollster::block_on(invalid.pop());
        if lost {
            let reason = "the device refuses all work (destroyed, or lost by the driver)";
            self.mark_lost(reason);
            return Err(Error::DeviceLost(reason.into()));
        }
        Ok(())
    }

    /// A new buffer holding `contents` (whose length is a multiple of 4, and not 0) with `usage`,
    /// written while mapped at creation: `create_buffer_init` without its panic on a lost device.
    ///
    /// # Errors
    /// [`Error::DeviceLost`] if the buffer cannot be mapped: on a live device a small buffer always
    /// can, so that failure means the device is gone (and is remembered); [`Error::Wgpu`] if the
    /// device refuses the buffer itself (out of memory, or too large).
    pub(crate) fn mapped_buffer(
        &self,
        label: &str,
        contents: &[u8],
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        let out_of_memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: contents.len() as u64,
            usage,
            mapped_at_creation: true,
        });
        let mapped = buffer.slice(..).get_mapped_range_mut().map(|mut view| view.copy_from_slice(contents));
        let refused = [pollster::block_on(invalid.pop()), pollster::block_on(out_of_memory.pop())];
        if let Some(error) = refused.into_iter().flatten().next() {
            return Err(Error::Wgpu(format!("{label}: {error}")));
        }
        if mapped.is_err() {
            // wgpu's own words here only say that the new buffer is invalid.
            let reason = "the device no longer creates buffers (destroyed, or lost by the driver)".to_string();
            self.mark_lost(&reason);
            return Err(Error::DeviceLost(reason));
        }
        buffer.unmap();
        Ok(buffer)
    }

    /// Remembers that the device is gone, when a call found out before wgpu said so.
    pub(crate) fn mark_lost(&self, reason: &str) {
        if let Ok(mut slot) = self.health.lost.lock() {
            slot.get_or_insert_with(|| reason.to_string());
        }
    }

    /// The adapter behind the device.
    pub fn adapter_info(&self) -> wgpu::AdapterInfo {
        self.device.adapter_info()
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// Blocks until the queue has finished everything submitted so far.
    ///
    /// # Errors
    /// [`Error::DeviceLost`] if the wait timed out, or if the device is known to be gone: wgpu
    /// reported it, or an optimizer call found out (a wait on a lost device returns at once).
    pub fn wait(&self) -> Result<()> {
        // Only what is known already: `bench` times waits, and a probe would cost a buffer.
        self.check_known_lost()?;
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::DeviceLost(e.to_string()))?;
        self.check_known_lost()
    }

    /// [`Error::DeviceLost`] if the device is known to be gone, without asking the device.
    pub(crate) fn check_known_lost(&self) -> Result<()> {
        self.lost().map_or(Ok(()), |reason| Err(Error::DeviceLost(reason)))
    }
}

/// Every adapter the given backends (or `WGPU_BACKEND`, or all) offer.
pub async fn enumerate_adapters(backends: Option<wgpu::Backends>) -> Vec<wgpu::Adapter> {
    let backends = backends.unwrap_or_else(|| wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()));
    instance(backends).enumerate_adapters(backends).await
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

async fn select_adapter(options: &ContextOptions) -> Result<wgpu::Adapter> {
    let backends = options.backends.unwrap_or_else(|| wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()));
    let name =
        options.adapter_name.clone().or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok()).filter(|n| !n.is_empty());
    let instance = instance(backends);
    let detail = |what: String| {
        if backends == wgpu::Backends::all() {
            what
        } else {
            format!("{what} on backends {backends:?}")
        }
    };
    match name {
        Some(name) => {
            let wanted = name.to_lowercase();
            let adapters = instance.enumerate_adapters(backends).await;
            let seen: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&wanted)).ok_or_else(|| {
                Error::NoAdapter {
                    detail: detail(format!(" matching \"{name}\" (adapters seen: [{}])", seen.join(", "))),
                }
            })
        }
        None => instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::from_env().unwrap_or(wgpu::PowerPreference::HighPerformance),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter { detail: detail(format!(" ({e})")) }),
    }
}
