//! `wgpu-optim adapters`: every adapter wgpu sees, with the limits and features that matter to the
//! optimizer kernels.

use serde::Serialize;

use crate::context::enumerate_adapters;
use crate::tools::backend_name;

/// One adapter as `adapters` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterReport {
    /// The adapter's name.
    pub name: String,
    /// `Vulkan`, `Gl`, `Metal`, `Dx12`.
    pub backend: String,
    /// `DiscreteGpu`, `Cpu`, ...
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Largest storage binding, in bytes: tensors past it are split over several dispatches.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Workgroups per grid dimension: larger grids go 2-D.
    pub max_compute_workgroups_per_dimension: u32,
    /// Invocations per workgroup (the kernels use 256).
    pub max_compute_invocations_per_workgroup: u32,
    /// Storage buffers one kernel may bind (Adam binds five).
    pub max_storage_buffers_per_shader_stage: u32,
    /// `SHADER_F16`.
    pub f16: bool,
    /// `SUBGROUP`.
    pub subgroup: bool,
    /// `TIMESTAMP_QUERY`: `bench` reports GPU time where present, wall time otherwise.
    pub timestamp_query: bool,
}

impl AdapterReport {
    /// Describes an adapter.
    pub fn new(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        let driver = match (info.driver.is_empty(), info.driver_info.is_empty()) {
            (false, false) => format!("{} {}", info.driver, info.driver_info),
            (false, true) => info.driver.clone(),
            (true, _) => info.driver_info.clone(),
        };
        Self {
            name: info.name,
            backend: backend_name(info.backend),
            device_type: format!("{:?}", info.device_type),
            driver,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
            f16: features.contains(wgpu::Features::SHADER_F16),
            subgroup: features.contains(wgpu::Features::SUBGROUP),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        }
    }
}

/// Every adapter of the given backends (`None`: `WGPU_BACKEND`, else all).
pub fn list(backends: Option<wgpu::Backends>) -> Vec<AdapterReport> {
    pollster::block_on(enumerate_adapters(backends)).iter().map(AdapterReport::new).collect()
}

/// The reports as a text table, one adapter per block.
pub fn table(reports: &[AdapterReport]) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut out = String::new();
    for (i, r) in reports.iter().enumerate() {
        out += &format!("[{i}] {} ({}, {})\n", r.name, r.backend, r.device_type);
        let rows = [
            ("driver", r.driver.clone()),
            (
                "max_storage_buffer_binding_size",
                format!("{} ({})", r.max_storage_buffer_binding_size, bytes(r.max_storage_buffer_binding_size)),
            ),
            ("max_buffer_size", format!("{} ({})", r.max_buffer_size, bytes(r.max_buffer_size))),
            ("max_compute_workgroups_per_dimension", r.max_compute_workgroups_per_dimension.to_string()),
            ("max_compute_invocations_per_workgroup", r.max_compute_invocations_per_workgroup.to_string()),
            ("max_storage_buffers_per_shader_stage", r.max_storage_buffers_per_shader_stage.to_string()),
            (
                "f16 / subgroup / timestamp_query",
                format!("{} / {} / {}", yes(r.f16), yes(r.subgroup), yes(r.timestamp_query)),
            ),
        ];
        for (key, value) in rows {
            out += &format!("    {key:<38} {value}\n");
        }
    }
    if reports.is_empty() {
        out += "no adapter found\n";
    }
    out
}

/// `134217728` as `128 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
