//! The registered tensors: their checks, their pieces (chunks small enough for one binding), and
//! where each piece's state lies.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::ops::Range;

use crate::algorithm::Carry;
use crate::context::GpuContext;
use crate::error::{Error, Result};
use crate::kernel::{Format, Storage};

use super::store::{Request, Slot, StateStore};
use super::F32;

/// Where one parameter tensor and its gradient live: ranges of elements in the engine's buffers,
/// in the formats of its group's [`crate::kernel::Storage`] (f32 by default; offsets and lengths
/// count elements of each buffer's own format). Both buffers need `BufferUsages::STORAGE` and must
/// be distinct; a parameter whose group keeps an f32 master copy also needs `COPY_SRC` (the copy
/// is read from it at registration).
#[derive(Clone, Debug)]
pub struct ParamBinding {
    /// The parameter's buffer, updated in place.
    pub param: wgpu::Buffer,
    /// The parameter's first element in `param`.
    pub param_offset: u64,
    /// The gradient's buffer, only read.
    pub grad: wgpu::Buffer,
    /// The gradient's first element in `grad`.
    pub grad_offset: u64,
    /// Elements in the tensor.
    pub len: u64,
}

impl ParamBinding {
    /// A tensor that fills `param` and `grad` from their first element.
    pub fn whole(param: &wgpu::Buffer, grad: &wgpu::Buffer, len: u64) -> Self {
        Self { param: param.clone(), param_offset: 0, grad: grad.clone(), grad_offset: 0, len }
    }
}

/// Where each tensor's gradient lies (buffer, first element), in index order.
pub(super) type GradLocations = Vec<(wgpu::Buffer, u64)>;

/// What the optimizer keeps of one registered tensor, for checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TensorInfo {
    /// Its group's index.
    pub group: usize,
    /// Elements.
    pub len: u64,
    /// The optimizer's step count when it was registered: its own step count is the optimizer's
    /// less this and [`TensorInfo::skipped`], as PyTorch keeps `state["step"]` per tensor.
    pub added_at: u64,
    /// Steps since registration in which the tensor had no gradient (PyTorch's `p.grad is None`):
    /// they left it, its state and its own step count alone.
    pub skipped: u64,
}

impl TensorInfo {
    /// The optimizer step count at which the tensor's own count was 0: its registration step
    /// plus the steps it sat out. Tensors with the same value (in one group) take the same
    /// scalars.
    pub fn origin(&self) -> u64 {
        self.added_at + self.skipped
    }
}

#[derive(Debug)]
struct Param {
    binding: ParamBinding,
    /// Bytes per gradient element (its group's gradient format).
    grad_bytes: u64,
    info: TensorInfo,
    /// Whether the next step has a gradient for it (see `Optimizer::set_has_grad`).
    has_grad: bool,
    /// What its last step handed to its next ([`Carry`]), for an algorithm that carries
    /// something; `None` before its first step (or after a checkpoint that lacked it).
    carry: Option<Carry>,
    /// Its chunks, in order.
    chunks: Range<usize>,
    /// With loss scaling: its class, whose counter in the `amp` buffer holds the steps the device
    /// skipped since it was registered (see `amp.rs`).
    amp_class: u32,
}

#[derive(Clone, Copy, Debug)]
struct Chunk {
    param: usize,
    /// First element within the tensor.
    start: u64,
    len: u64,
    slot: Slot,
}

/// Elements of one tensor in the engine's buffers, and what decides whether they can share a
/// dispatch with the elements before them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Span<'a> {
    /// The tensor's group.
    pub group: usize,
    /// The tensor's [`TensorInfo::added_at`].
    pub added_at: u64,
    /// The parameter buffer.
    pub param: &'a wgpu::Buffer,
    /// The first element in `param`.
    pub param_start: u64,
    /// The gradient buffer.
    pub grad: &'a wgpu::Buffer,
    /// The first element in `grad`.
    pub grad_start: u64,
    /// Elements.
    pub len: u64,
}

impl Span<'_> {
    /// Whether this span continues `prev` (one span, or several merged): the same group and step
    /// count, and the next elements of the same parameter and gradient buffers. Registration lays
    /// out the state of such a span right after `prev`'s, and the plan merges the two into one
    /// dispatch.
    pub fn continues(&self, prev: &Span<'_>) -> bool {
        self.group == prev.group
            && self.added_at == prev.added_at
            && self.param == prev.param
            && prev.param_start + prev.len == self.param_start
            && self.grad == prev.grad
            && prev.grad_start + prev.len == self.grad_start
    }
}

/// What tensors must share to share a dispatch in a step: their own step counts (through their
/// origin) and what their last steps carried (bit for bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct StepKey {
    /// [`TensorInfo::origin`].
    pub origin: u64,
    /// The bits of the tensor's [`Carry`], if it has one.
    pub carry: Option<[u64; Carry::LEN]>,
    /// With loss scaling, its class (its count of skipped steps lives on the device); else 0.
    pub amp_class: u32,
}

impl StepKey {
    /// The carry the key was made from.
    pub fn carry(&self) -> Option<Carry> {
        self.carry.map(|bits| Carry(bits.map(f64::from_bits)))
    }
}

/// One piece of a registered tensor (a chunk small enough for one binding) and where its state lies.
#[derive(Clone, Copy, Debug)]
pub(super) struct Piece<'a> {
    /// Its tensor's index.
    pub param: usize,
    /// The piece's first element within its tensor.
    pub start: u64,
    /// Its elements in the engine's buffers.
    pub span: Span<'a>,
    /// Where its state lies.
    pub slot: Slot,
}

/// Every registered tensor, in registration order.
#[derive(Debug)]
pub(super) struct Tensors {
    params: Vec<Param>,
    chunks: Vec<Chunk>,
    /// Elements in one chunk at most: what one binding, one grid and a u32 index can reach.
    max_chunk: u64,
    /// Each non-empty tensor's parameter range, `(buffer, first element) -> (end, index)`, kept
    /// sorted so that a registration checks overlaps against its neighbours only: O(log n) per
    /// tensor, rather than sorting every range again on each call. In bytes: groups may store
    /// parameters in formats of different sizes.
    ranges: BTreeMap<(wgpu::Buffer, u64), (u64, usize)>,
    /// Each group's last chunk, which a new chunk of the group may continue.
    last_chunk: Vec<Option<usize>>,
    /// Whether step keys tell loss-scaling classes apart.
    amp_keys: bool,
}

impl Tensors {
    /// No tensors; chunks of at most `max_chunk` elements.
    pub fn new(max_chunk: u64) -> Self {
        Self {
            params: Vec::new(),
            chunks: Vec::new(),
            max_chunk,
            ranges: BTreeMap::new(),
            last_chunk: Vec::new(),
            amp_keys: false,
        }
    }

    /// Elements in one chunk at most.
    pub fn max_chunk(&self) -> u64 {
        self.max_chunk
    }

    /// Tensors registered.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether no tensor is registered.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Tensor `i`'s group, length and step count at registration.
    pub fn info(&self, i: usize) -> Option<TensorInfo> {
        self.params.get(i).map(|p| p.info)
    }

    /// Replaces each tensor's registration step and skipped steps (a checkpoint's), one pair per
    /// tensor.
    pub fn set_counts(&mut self, counts: &[(u64, u64)]) {
        for (p, &(added_at, skipped)) in self.params.iter_mut().zip(counts) {
            p.info.added_at = added_at;
            p.info.skipped = skipped;
        }
    }

    /// Whether tensor `i` has a gradient in the next step (`None` for an index never registered).
    pub fn has_grad(&self, i: usize) -> Option<bool> {
        self.params.get(i).map(|p| p.has_grad)
    }

    /// Marks whether tensor `i` has a gradient in the next steps; `false` if `i` was never
    /// registered.
    pub fn set_has_grad(&mut self, i: usize, present: bool) -> bool {
        match self.params.get_mut(i) {
            Some(p) => {
                p.has_grad = present;
                true
            }
            None => false,
        }
    }

    /// What decides tensor `i`'s scalars in the next step: `None` if it has no gradient (it sits
    /// the step out), else its [`TensorInfo::origin`] and its carry.
    pub fn step_key(&self, i: usize) -> Option<StepKey> {
        let p = &self.params[i];
        p.has_grad.then(|| StepKey {
            origin: p.info.origin(),
            carry: p.carry.map(|c| c.0.map(f64::to_bits)),
            amp_class: if self.amp_keys { p.amp_class } else { 0 },
        })
    }

    /// Whether step keys tell loss-scaling classes apart (with loss scaling); every tensor starts
    /// in class 0 again (a new loss-scaling state starts its counters from zero).
    pub fn set_amp_keys(&mut self, on: bool) {
        self.amp_keys = on;
        for p in &mut self.params {
            p.amp_class = 0;
        }
    }

    /// Tensor `i`'s loss-scaling class.
    pub fn amp_class(&self, i: usize) -> u32 {
        self.params[i].amp_class
    }

    /// Sets tensor `i`'s loss-scaling class.
    pub fn set_amp_class(&mut self, i: usize, class: u32) {
        self.params[i].amp_class = class;
    }

    /// Tensor `i`'s carry (see [`Carry`]).
    pub fn carry(&self, i: usize) -> Option<Carry> {
        self.params.get(i).and_then(|p| p.carry)
    }

    /// Sets tensor `i`'s carry.
    pub fn set_carry(&mut self, i: usize, carry: Option<Carry>) {
        self.params[i].carry = carry;
    }

    /// Counts a step as sat out by every tensor without a gradient; returns them.
    pub fn count_skipped(&mut self) -> Vec<usize> {
        let mut skipped = Vec::new();
        for (i, p) in self.params.iter_mut().enumerate().filter(|(_, p)| !p.has_grad) {
            p.info.skipped += 1;
            skipped.push(i);
        }
        skipped
    }

    /// Counts a step as sat out by these tensors again (an undone [`Tensors::uncount_skipped`]).
    pub fn recount_skipped(&mut self, skipped: &[usize]) {
        for &i in skipped {
            self.params[i].info.skipped += 1;
        }
    }

    /// Takes back [`Tensors::count_skipped`] for these tensors (a step that did not happen).
    pub fn uncount_skipped(&mut self, skipped: &[usize]) {
        for &i in skipped {
            self.params[i].info.skipped -= 1;
        }
    }

    /// Every piece, in registration order.
    pub fn pieces(&self) -> impl Iterator<Item = Piece<'_>> + '_ {
        self.chunks.iter().map(|c| self.piece(c))
    }

    /// Tensor `i`'s pieces, in order.
    pub fn pieces_of(&self, i: usize) -> impl Iterator<Item = Piece<'_>> + '_ {
        self.chunks[self.params[i].chunks.clone()].iter().map(|c| self.piece(c))
    }

    fn piece(&self, c: &Chunk) -> Piece<'_> {
        let p = &self.params[c.param];
        let span = Span {
            group: p.info.group,
            added_at: p.info.added_at,
            param: &p.binding.param,
            param_start: p.binding.param_offset + c.start,
            grad: &p.binding.grad,
            grad_start: p.binding.grad_offset + c.start,
            len: c.len,
        };
        Piece { param: c.param, start: c.start, span, slot: c.slot }
    }

    /// Checks `bindings` (in the formats of `storage`), then registers them in `group` at step
    /// `added_at` and lays out their state in `store` (array `k` starting at `init[k]`, not kept
    /// where `None`; with `storage.master`, the array before the last is the master copy, read
    /// from the parameters; the last is the EMA of the weights). Returns their indices.
    ///
    /// # Errors
    /// Checked before anything changes: [`Error::BufferUsage`], [`Error::GradOverlapsParam`],
    /// [`Error::OutOfBounds`], [`Error::ForeignBuffer`] and [`Error::Overlap`] (with each other or
    /// with tensors already registered); [`Error::Wgpu`] if the device cannot allocate the state,
    /// in which case nothing is registered either.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        ctx: &GpuContext,
        store: &mut StateStore,
        group: usize,
        storage: Storage,
        added_at: u64,
        init: &[Option<f32>],
        bindings: &[ParamBinding],
    ) -> Result<Range<usize>> {
        let first = self.params.len();
        for (i, b) in bindings.iter().enumerate() {
            check_binding(first + i, b, storage)?;
            // Buffer identity is only meaningful on one device, so that is checked first.
            check_device(&ctx.device, first + i, b)?;
        }
        let param_bytes = storage.param.element_bytes();
        self.check_overlaps(bindings, param_bytes)?;
        self.check_grads_clear(bindings, storage)?;
        // The master copies' start values, read before anything changes.
        let masters = match storage.master {
            true => Some(read_params(ctx, storage.param, bindings)?),
            false => None,
        };

        // Cut each tensor into chunks; each follows its group's previous chunk where it continues it.
        let last = self.last_chunk.get(group).copied().flatten();
        let mut prev = last.map(|c| self.piece(&self.chunks[c]).span);
        let mut pieces = Vec::new();
        let mut counts = Vec::with_capacity(bindings.len());
        for (i, b) in bindings.iter().enumerate() {
            let before = pieces.len();
            let mut start = 0;
            while start < b.len {
                let len = (b.len - start).min(self.max_chunk);
                let span = Span {
                    group,
                    added_at,
                    param: &b.param,
                    param_start: b.param_offset + start,
                    grad: &b.grad,
                    grad_start: b.grad_offset + start,
                    len,
                };
                let continues = prev.is_some_and(|prev| span.continues(&prev));
                pieces.push((first + i, start, Request { len, continues }));
                prev = Some(span);
                start += len;
            }
            counts.push(pieces.len() - before);
        }
        let requests: Vec<Request> = pieces.iter().map(|&(_, _, r)| r).collect();
        let slots = store.reserve(ctx, group, init, &requests)?;

        let mut chunk_index = self.chunks.len();
        for (b, n) in bindings.iter().zip(counts) {
            self.params.push(Param {
                binding: b.clone(),
                grad_bytes: storage.grad.element_bytes(),
                info: TensorInfo { group, len: b.len, added_at, skipped: 0 },
                has_grad: true,
                carry: None,
                chunks: chunk_index..chunk_index + n,
                amp_class: 0,
            });
            chunk_index += n;
        }
        let added_chunks = !pieces.is_empty();
        for ((param, start, r), slot) in pieces.into_iter().zip(slots) {
            self.chunks.push(Chunk { param, start, len: r.len, slot });
        }
        if let Some(masters) = masters {
            // After the kernel's arrays, before the EMA (the store's last).
            let k = init.len() - 2;
            for c in &self.chunks[self.chunks.len() - requests.len()..] {
                let values = &masters[c.param - first][c.start as usize..(c.start + c.len) as usize];
                if let (Some(buffer), false) = (store.buffer(c.slot.block, k), values.is_empty()) {
                    ctx.queue.write_buffer(buffer, c.slot.offset * F32, bytemuck::cast_slice(values));
                }
            }
        }
        if added_chunks {
            if self.last_chunk.len() <= group {
                self.last_chunk.resize(group + 1, None);
            }
            self.last_chunk[group] = Some(self.chunks.len() - 1);
        }
        for (i, b) in bindings.iter().enumerate().filter(|(_, b)| b.len > 0) {
            let (start, end) = (b.param_offset * param_bytes, (b.param_offset + b.len) * param_bytes);
            self.ranges.insert((b.param.clone(), start), (end, first + i));
        }
        Ok(first..self.params.len())
    }

    /// Whether the parameter ranges of `new` overlap each other or a registered tensor's: the new
    /// ranges sorted among themselves, and each looked up between its registered neighbours.
    /// A gradient may lie in a parameter's buffer (pooled allocators place them so), never on a
    /// parameter's elements, which the step writes while it reads the gradient: each of `new`'s
    /// gradients against every parameter (registered and new), and each new parameter against
    /// the registered gradients. In bytes, as formats differ.
    fn check_grads_clear(&self, new: &[ParamBinding], storage: Storage) -> Result<()> {
        let first = self.params.len();
        let (param_bytes, grad_bytes) = (storage.param.element_bytes(), storage.grad.element_bytes());
        let bytes = |offset: u64, len: u64, size: u64| (offset * size, (offset + len) * size);
        for (i, b) in new.iter().enumerate().filter(|(_, b)| b.len > 0) {
            let (start, end) = bytes(b.grad_offset, b.len, grad_bytes);
            let new_params = new.iter().enumerate().map(|(j, p)| {
                let (s, e) = bytes(p.param_offset, p.len, param_bytes);
                (&p.param, s, e, first + j)
            });
            if let Some(param) = self.param_under(&b.grad, start, end, new_params) {
                return Err(Error::GradOverlapsParam { index: first + i, param });
            }
        }
        for (i, b) in new.iter().enumerate().filter(|(_, b)| b.len > 0) {
            let (start, end) = bytes(b.param_offset, b.len, param_bytes);
            for (j, p) in self.params.iter().enumerate().filter(|(_, p)| p.info.len > 0) {
                let (s, e) = bytes(p.binding.grad_offset, p.info.len, p.grad_bytes);
                if p.binding.grad == b.param && s < end && start < e {
                    return Err(Error::GradOverlapsParam { index: j, param: first + i });
                }
            }
        }
        Ok(())
    }

    /// The first parameter, registered or among `others` (buffer, byte range, index), that
    /// holds bytes of `buffer`'s range `start..end`.
    fn param_under<'a>(
        &self,
        buffer: &wgpu::Buffer,
        start: u64,
        end: u64,
        others: impl Iterator<Item = (&'a wgpu::Buffer, u64, u64, usize)>,
    ) -> Option<usize> {
        // Registered ranges do not overlap each other: only the last one starting before `end`
        // can reach into the range.
        let registered = self.ranges.range(..(buffer.clone(), end)).next_back();
        if let Some(((b, _), &(e, j))) = registered {
            if b == buffer && e > start {
                return Some(j);
            }
        }
        others.filter(|&(b, s, e, _)| b == buffer && s < e && s < end && start < e).map(|o| o.3).next()
    }

    /// Moves tensor `i`'s gradient to element `offset` of `grad` (in `storage`'s gradient
    /// format), checked as registration checks it, but for the device: a buffer of another
    /// device is refused when the next step binds it. Returns whether the location changed.
    ///
    /// # Errors
    /// [`Error::BufferUsage`], [`Error::OutOfBounds`] or [`Error::GradOverlapsParam`]; nothing
    /// changes then.
    pub fn set_grad(&mut self, i: usize, grad: &wgpu::Buffer, offset: u64, storage: Storage) -> Result<bool> {
        let p = &self.params[i];
        if p.binding.grad == *grad && p.binding.grad_offset == offset {
            return Ok(false);
        }
        let moved = ParamBinding { grad: grad.clone(), grad_offset: offset, ..p.binding.clone() };
        check_binding(i, &moved, storage)?;
        if moved.len > 0 {
            let size = storage.grad.element_bytes();
            let (start, end) = (offset * size, (offset + moved.len) * size);
            if let Some(param) = self.param_under(grad, start, end, std::iter::empty()) {
                return Err(Error::GradOverlapsParam { index: i, param });
            }
        }
        self.params[i].binding = moved;
        Ok(true)
    }

    /// Where each tensor's gradient lies now (buffer, first element), in index order: what a
    /// plan's bind groups were built for.
    pub fn grad_locations(&self) -> GradLocations {
        self.params.iter().map(|p| (p.binding.grad.clone(), p.binding.grad_offset)).collect()
    }

    fn check_overlaps(&self, new: &[ParamBinding], param_bytes: u64) -> Result<()> {
        let first = self.params.len();
        let overlap = |a: usize, b: usize| Error::Overlap { what: "param", a: a.min(b), b: a.max(b) };
        let mut ranges: Vec<(&wgpu::Buffer, u64, u64, usize)> = (new.iter().enumerate())
            .filter(|(_, b)| b.len > 0)
            .map(|(i, b)| (&b.param, b.param_offset * param_bytes, (b.param_offset + b.len) * param_bytes, first + i))
            .collect();
        ranges.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for w in ranges.windows(2) {
            let ((buf_a, _, end_a, a), (buf_b, start_b, _, b)) = (w[0], w[1]);
            if buf_a == buf_b && start_b < end_a {
                return Err(overlap(a, b));
            }
        }
        for &(buffer, start, end, i) in &ranges {
            let key = (buffer.clone(), start);
            let before = self.ranges.range(..=key.clone()).next_back();
            if let Some((_, &(_, j))) = before.filter(|((b, _), (e, _))| b == buffer && *e > start) {
                return Err(overlap(i, j));
            }
            let after = self.ranges.range(key..).next();
            if let Some((_, &(_, j))) = after.filter(|((b, s), _)| b == buffer && *s < end) {
                return Err(overlap(i, j));
            }
        }
        Ok(())
    }
}

/// The values of each tensor's parameter, as f32 (a master copy's start).
fn read_params(ctx: &GpuContext, format: Format, bindings: &[ParamBinding]) -> Result<Vec<Vec<f32>>> {
    let bytes = format.element_bytes();
    // The 32-bit words that hold each tensor's elements.
    let words: Vec<(&wgpu::Buffer, u64, u64)> = (bindings.iter())
        .map(|b| {
            let (start, end) = (b.param_offset * bytes / F32, ((b.param_offset + b.len) * bytes).div_ceil(F32));
            (&b.param, start, if b.len == 0 { 0 } else { end - start })
        })
        .collect();
    let read = crate::readback::read_ranges(ctx, &words)?;
    Ok((bindings.iter().zip(read))
        .map(|(b, w)| format.decode(&w, b.param_offset * bytes % F32 / bytes, b.len))
        .collect())
}

fn check_binding(index: usize, b: &ParamBinding, storage: Storage) -> Result<()> {
    for (role, buffer) in [("param", &b.param), ("grad", &b.grad)] {
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::BufferUsage { label: format!("{role} {index}"), missing: "STORAGE" });
        }
    }
    if storage.master && !b.param.usage().contains(wgpu::BufferUsages::COPY_SRC) {
        return Err(Error::BufferUsage {
            label: format!("param {index} (its master copy is read from it)"),
            missing: "COPY_SRC",
        });
    }
    let roles = [
        ("param", &b.param, b.param_offset, storage.param.element_bytes()),
        ("grad", &b.grad, b.grad_offset, storage.grad.element_bytes()),
    ];
    for (role, buffer, offset, bytes) in roles {
        // Bindings cover whole 4-byte words: a 16-bit element in a buffer's last two bytes of an
        // odd word could not be bound.
        let buffer_len = buffer.size() / F32 * F32 / bytes;
        let end = offset.saturating_add(b.len);
        if end > buffer_len {
            return Err(Error::OutOfBounds { what: format!("{role} {index}"), offset, end, buffer_len });
        }
    }
    Ok(())
}

/// Binds the tensor's buffers once, inside an error scope: a buffer of another device (or one
/// already destroyed) is refused here, by name, rather than when a step first binds it.
fn check_device(device: &wgpu::Device, index: usize, b: &ParamBinding) -> Result<()> {
    for (role, buffer, read_only) in [("param", &b.param, false), ("grad", &b.grad, false)] {
        if buffer.size() < F32 {
            continue; // Never bound: only a zero-length tensor fits in it.
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: None,
            entries: &[crate::kernel::storage_layout_entry(0, read_only)],
        });
        let _ = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: 0,
                    size: NonZeroU64::new(F32),
                }),
            }],
        });
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::ForeignBuffer { label: format!("{role} {index}"), message: error.to_string() });
        }
    }
    Ok(())
}
