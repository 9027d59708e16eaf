//! Reading buffers back to the host: for checkpoints, tests and the tools, never for a step.

use crate::context::GpuContext;
use crate::error::{Error, Result};

/// Copies `len` f32 elements from `buffer`, starting at element `offset`, and waits for them.
/// The buffer needs `BufferUsages::COPY_SRC`.
///
/// # Errors
/// [`Error::BufferUsage`] without `COPY_SRC`, [`Error::OutOfBounds`] for a range past the end,
/// [`Error::DeviceLost`] or [`Error::Wgpu`] if the device fails.
pub fn read_f32(ctx: &GpuContext, buffer: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<f32>> {
    if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
        return Err(Error::BufferUsage { label: buffer_label(buffer), missing: "COPY_SRC" });
    }
    let buffer_len = buffer.size() / 4;
    let end = offset.saturating_add(len);
    if end > buffer_len {
        return Err(Error::OutOfBounds { what: buffer_label(buffer), offset, end, buffer_len });
    }
    if len == 0 {
        return Ok(Vec::new());
    }
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgpu-optim readback"),
        size: len * 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, offset * 4, &staging, 0, len * 4);
    ctx.queue.submit([encoder.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait()?;
    rx.recv()
        .map_err(|_| Error::DeviceLost("the readback was never answered".into()))?
        .map_err(|e| Error::Wgpu(e.to_string()))?;
    let view = staging.slice(..).get_mapped_range().map_err(|e| Error::Wgpu(e.to_string()))?;
    let out = bytemuck::cast_slice(&view).to_vec();
    drop(view);
    staging.unmap();
    Ok(out)
}

fn buffer_label(buffer: &wgpu::Buffer) -> String {
    format!("buffer of {} bytes", buffer.size())
}
