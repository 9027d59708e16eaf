//! The device memory of the optimizer state: blocks of buffers, one buffer per state array a
//! group keeps, that grow as tensors are registered.
//!
//! Each group fills its last block. A chunk that continues its group's previous chunk (see
//! [`super::registration`]) is laid out right after it, so that the two can share a dispatch; any
//! other chunk starts at the next multiple of four elements, so that `main4` can run it. A block
//! grows (to twice its capacity, within `max_buffer_size`) by copying its state into larger
//! buffers, so tensors registered one call at a time lie exactly as they would had they come in
//! one call. [`StateStore::compact`] gives the slack back before the next step.

use crate::context::GpuContext;
use crate::error::Result;
use crate::kernel::Kernel;

use super::{Scopes, F32};

/// Where one chunk's state lies: a block, and the chunk's first element in each of its buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    /// The block's index.
    pub block: usize,
    /// The first element, the same in every buffer of the block.
    pub offset: u64,
}

/// A chunk of state to lay out.
#[derive(Clone, Copy, Debug)]
pub(super) struct Request {
    /// Elements.
    pub len: u64,
    /// Whether it follows its group's previous chunk (and so must lie right after its state).
    pub continues: bool,
}

#[derive(Debug)]
struct Block {
    group: usize,
    /// One buffer per kernel state array; `None` where the group does not keep that array.
    buffers: Vec<Option<wgpu::Buffer>>,
    /// Elements laid out (the end of the last chunk).
    len: u64,
    /// Elements each buffer holds.
    capacity: u64,
}

/// Every block of state of one optimizer.
#[derive(Debug)]
pub(super) struct StateStore {
    blocks: Vec<Block>,
    /// The state arrays' names (buffer labels).
    names: Vec<&'static str>,
    /// Elements in one buffer at most (`max_buffer_size / 4`).
    max_elements: u64,
}

/// The name of the state array that holds a low-precision parameter's f32 master copy: the
/// store's last array, after the kernel's own.
pub(crate) const MASTER: &str = "master";

/// The name of the state array that holds the EMA of the weights: the store's last array, after
/// the master copy.
pub(crate) const EMA: &str = "ema";

/// The state buffers' usage: bound by steps, read back and written by checkpoints, copied on growth.
const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

/// Elements written per `write_buffer` call when a state array starts at a value other than zero.
const FILL_BLOCK: usize = 1 << 18;

impl StateStore {
    /// No state yet, for `kernel`'s arrays and a parameter's f32 master copy (array
    /// `kernel.states.len()`, see [`MASTER`]) on a device whose buffers hold `max_buffer_size`
    /// bytes.
    pub fn new(kernel: &Kernel, max_buffer_size: u64) -> Self {
        let names = kernel.state_names().chain([MASTER, EMA]).collect();
        Self { blocks: Vec::new(), names, max_elements: max_buffer_size / F32 }
    }

    /// The buffer of state array `k` of a block; `None` where its group does not keep that array.
    pub fn buffer(&self, block: usize, k: usize) -> Option<&wgpu::Buffer> {
        self.blocks[block].buffers[k].as_ref()
    }

    /// Whether a block keeps any state array at all (plain SGD keeps none).
    pub fn keeps_state(&self, block: usize) -> bool {
        self.blocks[block].buffers.iter().any(Option::is_some)
    }

    /// Lays out `requests`, chunks of `group` in order, and allocates their state: array `k` of each
    /// starts at `init[k]`, or is not kept where `init[k]` is `None` (`init` is the same for every
    /// call of a group). Returns each chunk's slot.
    ///
    /// Runs on the device at once (growth copies, the start values) inside error scopes.
    ///
    /// # Errors
    /// [`crate::Error::Wgpu`] if the device cannot allocate the state: then nothing changed.
    pub fn reserve(
        &mut self,
        ctx: &GpuContext,
        group: usize,
        init: &[Option<f32>],
        requests: &[Request],
    ) -> Result<Vec<Slot>> {
        // The layout first, on the side: lengths of the group's last block and of new blocks.
        let mut open = self.blocks.iter().rposition(|b| b.group == group);
        let mut lens: Vec<u64> = self.blocks.iter().map(|b| b.len).collect();
        let mut slots = Vec::with_capacity(requests.len());
        for r in requests {
            let place = open.and_then(|b| {
                let offset = if r.continues { lens[b] } else { lens[b].next_multiple_of(4) };
                (offset + r.len <= self.max_elements).then_some((b, offset))
            });
            let (block, offset) = place.unwrap_or_else(|| {
                lens.push(0);
                (lens.len() - 1, 0)
            });
            lens[block] = offset + r.len;
            open = Some(block);
            slots.push(Slot { block, offset });
        }

        // Then the device work: larger buffers where a block outgrows its own, the start values.
        // wgpu hands out buffers zeroed, and a block's elements past its length were never
        // written, so zero start values need nothing: a registration that neither grows a block
        // nor starts at another value touches no device at all (10^5 calls stay cheap).
        let grows = lens.iter().enumerate().any(|(b, &len)| self.blocks.get(b).is_none_or(|old| len > old.capacity));
        let fills = init.iter().flatten().any(|v| v.to_bits() != 0);
        if !grows && !fills {
            for (block, len) in self.blocks.iter_mut().zip(lens) {
                block.len = len;
            }
            return Ok(slots);
        }
        let device = &ctx.device;
        let scopes = Scopes::push(device);
        let mut encoder =
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim state") });
        let mut grown: Vec<(usize, u64, Vec<Option<wgpu::Buffer>>)> = Vec::new();
        for (b, &len) in lens.iter().enumerate() {
            match self.blocks.get(b) {
                None => {
                    let buffers =
                        init.iter().enumerate().map(|(k, v)| v.map(|_| self.create(device, k, len))).collect();
                    grown.push((b, len, buffers));
                }
                Some(old) if len > old.capacity => {
                    // Doubling, so that registering tensors one at a time copies each element a
                    // bounded number of times.
                    let capacity = len.max(old.capacity.saturating_mul(2)).min(self.max_elements);
                    grown.push((b, capacity, self.copy(device, &mut encoder, old, capacity)));
                }
                Some(_) => {}
            }
        }
        let buffer_of = |block: usize, k: usize| match grown.iter().find(|(b, _, _)| *b == block) {
            Some((_, _, buffers)) => buffers[k].as_ref(),
            None => self.blocks[block].buffers[k].as_ref(),
        };
        for (slot, r) in slots.iter().zip(requests) {
            for (k, value) in init.iter().enumerate() {
                if let (Some(value), Some(buffer)) = (value, buffer_of(slot.block, k)) {
                    fill(ctx, buffer, slot.offset, r.len, *value);
                }
            }
        }
        ctx.queue.submit([encoder.finish()]);
        scopes.pop("allocating optimizer state")?;

        // Nothing below can fail.
        for (b, capacity, buffers) in grown {
            match self.blocks.get_mut(b) {
                Some(block) => {
                    block.capacity = capacity;
                    block.buffers = buffers;
                }
                None => self.blocks.push(Block { group, buffers, len: 0, capacity }),
            }
        }
        for (block, len) in self.blocks.iter_mut().zip(lens) {
            block.len = len;
        }
        Ok(slots)
    }

    /// Copies every block whose buffers hold more than it lays out into buffers of its size, so
    /// that growth costs no memory once registration is over. A block the device cannot copy now
    /// keeps its buffers: nothing is lost but the memory.
    pub fn compact(&mut self, ctx: &GpuContext) {
        let device = &ctx.device;
        for b in 0..self.blocks.len() {
            let block = &self.blocks[b];
            if block.capacity <= block.len || !self.keeps_state(b) {
                continue;
            }
            let scopes = Scopes::push(device);
            let mut encoder =
                device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpu-optim state") });
            let buffers = self.copy(device, &mut encoder, block, block.len);
            ctx.queue.submit([encoder.finish()]);
            if scopes.pop("compacting optimizer state").is_ok() {
                let block = &mut self.blocks[b];
                block.capacity = block.len;
                block.buffers = buffers;
            }
        }
    }

    /// New buffers of `capacity` elements for each array `block` keeps, its state copied in.
    fn copy(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        block: &Block,
        capacity: u64,
    ) -> Vec<Option<wgpu::Buffer>> {
        (block.buffers.iter().enumerate())
            .map(|(k, old)| {
                old.as_ref().map(|old| {
                    let buffer = self.create(device, k, capacity);
                    encoder.copy_buffer_to_buffer(old, 0, &buffer, 0, block.len * F32);
                    buffer
                })
            })
            .collect()
    }

    fn create(&self, device: &wgpu::Device, k: usize, elements: u64) -> wgpu::Buffer {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(self.names[k]),
            // wgpu rejects empty bindings; a block of nothing but empty chunks still gets a buffer.
            size: (elements * F32).max(F32),
            usage: USAGE,
            mapped_at_creation: false,
        })
    }
}

/// Sets `len` elements of `buffer` from element `offset`, never written before, to `value`:
/// nothing for zero, uploads in blocks otherwise.
fn fill(ctx: &GpuContext, buffer: &wgpu::Buffer, offset: u64, len: u64, value: f32) {
    if value.to_bits() == 0 {
        return; // Never written since wgpu zeroed it.
    }
    let block = vec![value; FILL_BLOCK.min(len as usize)];
    let mut start = 0;
    while start < len {
        let n = (len - start).min(block.len() as u64);
        ctx.queue.write_buffer(buffer, (offset + start) * F32, bytemuck::cast_slice(&block[..n as usize]));
        start += n;
    }
}
