//! A flat arena of parameters and gradients that the crate allocates and hands out views of.

use crate::context::GpuContext;
use crate::error::{Error, Result};
use crate::optim::ParamBinding;

/// Two buffers, parameters and gradients, holding many tensors back to back at the same offsets.
///
/// Tensors of one group in an arena share one dispatch per step, however many there are. Both
/// buffers have `STORAGE | COPY_DST | COPY_SRC` usage, so the engine can write and read them.
///
/// ```no_run
/// use wgpu_optim::{GpuContext, ParamArena};
/// let ctx = GpuContext::new()?;
/// let arena = ParamArena::new(&ctx, &[768 * 768, 768])?;
/// arena.write_params(&ctx, 1, &vec![0.0; 768])?;
/// assert_eq!(arena.offset(1), 768 * 768);
/// # Ok::<(), wgpu_optim::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ParamArena {
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    offsets: Vec<u64>,
    lens: Vec<u64>,
}

impl ParamArena {
    /// An arena of tensors of the given lengths (in elements), zero-filled.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the total exceeds the device's `max_buffer_size`;
    /// [`Error::Wgpu`] if the device cannot allocate it; [`Error::DeviceLost`].
    pub fn new(ctx: &GpuContext, lens: &[u64]) -> Result<Self> {
        let mut offsets = Vec::with_capacity(lens.len());
        let mut total = 0u64;
        for &len in lens {
            offsets.push(total);
            total = total.saturating_add(len);
        }
        let max = ctx.device.limits().max_buffer_size / 4;
        if total > max {
            return Err(Error::OutOfBounds { what: "parameter arena".into(), offset: 0, end: total, buffer_len: max });
        }
        ctx.check_alive()?;
        let scopes = crate::optim::Scopes::push(&ctx.device);
        let buffer = |label| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (total * 4).max(4),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let (params, grads) = (buffer("wgpu-optim params"), buffer("wgpu-optim grads"));
        scopes.pop("allocating the parameter arena")?;
        Ok(Self { params, grads, offsets, lens: lens.to_vec() })
    }

    /// The parameter buffer.
    pub fn params(&self) -> &wgpu::Buffer {
        &self.params
    }

    /// The gradient buffer: the engine's backward pass writes here.
    pub fn grads(&self) -> &wgpu::Buffer {
        &self.grads
    }

    /// Tensors in the arena.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether the arena holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Tensor `i`'s first element in both buffers. Panics if `i >= self.len()`.
    pub fn offset(&self, i: usize) -> u64 {
        self.offsets[i]
    }

    /// Tensor `i`'s length in elements. Panics if `i >= self.len()`.
    pub fn tensor_len(&self, i: usize) -> u64 {
        self.lens[i]
    }

    /// One binding per tensor, for [`crate::Optimizer::add_params`].
    pub fn bindings(&self) -> Vec<ParamBinding> {
        self.offsets
            .iter()
            .zip(&self.lens)
            .map(|(&offset, &len)| ParamBinding {
                param: self.params.clone(),
                param_offset: offset,
                grad: self.grads.clone(),
                grad_offset: offset,
                len,
            })
            .collect()
    }

    /// Uploads tensor `i`'s parameter values.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] for a tensor index past the end, [`Error::LengthMismatch`] for data
    /// of another length.
    pub fn write_params(&self, ctx: &GpuContext, i: usize, data: &[f32]) -> Result<()> {
        self.write(ctx, &self.params, "parameter", i, data)
    }

    /// Uploads tensor `i`'s gradient (engines usually write gradients on the GPU instead).
    ///
    /// # Errors
    /// As [`ParamArena::write_params`].
    pub fn write_grads(&self, ctx: &GpuContext, i: usize, data: &[f32]) -> Result<()> {
        self.write(ctx, &self.grads, "gradient", i, data)
    }

    fn write(&self, ctx: &GpuContext, buffer: &wgpu::Buffer, what: &str, i: usize, data: &[f32]) -> Result<()> {
        let len = *self.lens.get(i).ok_or_else(|| Error::OutOfBounds {
            what: "arena tensor index".into(),
            offset: i as u64,
            end: i as u64 + 1,
            buffer_len: self.lens.len() as u64,
        })?;
        if data.len() as u64 != len {
            return Err(Error::LengthMismatch { what: format!("{what} {i}"), expected: len as usize, got: data.len() });
        }
        if !data.is_empty() {
            ctx.queue.write_buffer(buffer, self.offsets[i] * 4, bytemuck::cast_slice(data));
        }
        Ok(())
    }
}
