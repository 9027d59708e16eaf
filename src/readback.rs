//! Reading buffers back to the host: for checkpoints, tests and the tools, never for a step.

use crate::context::GpuContext;
use crate::error::{Error, Result};

/// Bytes of one staging buffer at most: large copies go through several, so that a readback
/// never asks the device for one buffer as large as the state.
const STAGING_BYTES: u64 = 64 << 20;

/// Copies `len` f32 elements from `buffer`, starting at element `offset`, and waits for them.
/// The buffer needs `BufferUsages::COPY_SRC`.
///
/// # Errors
/// [`Error::BufferUsage`] without `COPY_SRC`, [`Error::OutOfBounds`] for a range past the end,
/// [`Error::DeviceLost`] if the device is gone, [`Error::Wgpu`] if it refuses the copy.
pub fn read_f32(ctx: &GpuContext, buffer: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<f32>> {
    Ok(read_ranges(ctx, &[(buffer, offset, len)])?.pop().unwrap_or_default())
}

/// Copies each range (a buffer, its first f32 element, and a length) back, with one submit and
/// one wait for all of them: the readback a checkpoint of many tensors needs, in a few large
/// copies. Each buffer needs `BufferUsages::COPY_SRC`.
///
/// # Errors
/// As [`read_f32`], for any range; nothing is copied then.
pub fn read_ranges(ctx: &GpuContext, ranges: &[(&wgpu::Buffer, u64, u64)]) -> Result<Vec<Vec<f32>>> {
    for &(buffer, offset, len) in ranges {
        if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(Error::BufferUsage { label: buffer_label(buffer), missing: "COPY_SRC" });
        }
        let buffer_len = buffer.size() / 4;
        let end = offset.saturating_add(len);
        if end > buffer_len {
            return Err(Error::OutOfBounds { what: buffer_label(buffer), offset, end, buffer_len });
        }
    }
    ctx.check_alive()?;
    // Ranges packed in order into staging buffers of at most STAGING_BYTES (or one range each,
    // where a range is larger): (bytes, [(range index, byte offset in the staging buffer)]).
    let mut batches: Vec<(u64, Vec<(usize, u64)>)> = Vec::new();
    for (i, &(_, _, len)) in ranges.iter().enumerate() {
        let bytes = len * 4;
        match batches.last_mut() {
            Some((size, members)) if *size + bytes <= STAGING_BYTES => {
                members.push((i, *size));
                *size += bytes;
            }
            _ => batches.push((bytes, vec![(i, 0)])),
        }
    }
    batches.retain(|(size, _)| *size > 0);

    let device = &ctx.device;
    let scopes = crate::optim::Scopes::push(device);
    let mut encoder =
        device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim readback") });
    let staging: Vec<wgpu::Buffer> = (batches.iter())
        .map(|(size, members)| {
            let staging = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-optim readback"),
                size: *size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            for &(i, at) in members {
                let (buffer, offset, len) = ranges[i];
                if len > 0 {
                    encoder.copy_buffer_to_buffer(buffer, offset * 4, &staging, at, len * 4);
                }
            }
            staging
        })
        .collect();
    ctx.queue.submit([encoder.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    for (k, buffer) in staging.iter().enumerate() {
        let tx = tx.clone();
        buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send((k, r));
        });
    }
    drop(tx);
    let refused = scopes.pop("reading back");
    ctx.wait()?;
    // A lost device refuses quietly (or not at all): ask it before trusting any answer.
    ctx.check_alive()?;
    refused?;
    let mut answered = 0;
    for (_, result) in rx.iter() {
        result.map_err(|e| Error::Wgpu(format!("reading back: {e}")))?;
        answered += 1;
    }
    if answered != staging.len() {
        return Err(Error::DeviceLost("a readback was never answered".into()));
    }

    let mut out: Vec<Vec<f32>> = ranges.iter().map(|_| Vec::new()).collect();
    for ((_, members), buffer) in batches.iter().zip(&staging) {
        let view = buffer.slice(..).get_mapped_range().map_err(|e| Error::Wgpu(format!("reading back: {e}")))?;
        for &(i, at) in members {
            let bytes = &view[at as usize..(at + ranges[i].2 * 4) as usize];
            out[i] = bytemuck::pod_collect_to_vec(bytes);
        }
        drop(view);
        buffer.unmap();
    }
    Ok(out)
}

fn buffer_label(buffer: &wgpu::Buffer) -> String {
    format!("buffer of {} bytes", buffer.size())
}
