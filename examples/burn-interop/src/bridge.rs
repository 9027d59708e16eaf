//! From burn tensors to the `wgpu::Buffer` ranges wgpu-optim updates: the parameters once (and
//! pinned for the whole run), the gradients at every step (wherever burn's allocator put them).
//!
//! The road, all public API of burn 0.22.1 / cubecl 0.11 (features `extension` and `cubecl`):
//!
//! ```text
//! Tensor<D> (autodiff)  --.inner()-->  Tensor<D> (wgpu, fusion)
//!   --.try_into_primitive::<burn::backend::Cube>()-->  FusionTensor     (burn's `extension`)
//!   --fusion.client.resolve_tensor_float::<CubeBackend>(fusion)-->  CubeTensor   (runs what is queued)
//!   --cube.client.get_resource::<WgpuServer<AutoCompiler>>(cube.handle)-->  ManagedResource<WgpuResource>
//!   --.resource()-->  WgpuResource { buffer: wgpu::Buffer, offset: bytes, size: bytes }
//! ```
//!
//! See README.md for what an engine must keep to (flush, pin, lifetimes, layout, one thread).

use std::any::Any;
use std::fmt;

use burn::backend::wgpu::{CubeBackend, CubeTensor};
use burn::backend::Cube;
use burn::cubecl::wgpu::{AutoCompiler, WgpuServer};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Tensor};
use wgpu_optim::{GroupId, Optimizer, ParamBinding};

/// Why a tensor could not be handed to wgpu-optim. Each names the tensor.
#[derive(Debug)]
pub enum BridgeError {
    /// Not a tensor of burn's cubecl backend with fusion (another backend, or burn built
    /// without the `fusion` feature, whose primitive is a `CubeTensor` already).
    Backend { tensor: String, reason: String },
    /// Not on a wgpu device (CUDA, say): there is no `wgpu::Buffer` to bind.
    NotWgpu { tensor: String, reason: String },
    /// Not f32: wgpu-optim's f32 groups read 4-byte elements.
    DType { tensor: String, dtype: DType },
    /// Not laid out row-major and dense. An elementwise update pairs the n-th element of the
    /// parameter with the n-th element of the gradient; a transposed view (burn's
    /// `LinearLayout::Col`, a `swap_dims` that was never copied) would pair the wrong ones.
    Layout { tensor: String, shape: Vec<usize>, strides: Vec<usize> },
    /// The resource burn handed back is smaller than the tensor, or not on a 4-byte boundary.
    Range { tensor: String, offset: u64, size: u64, len: u64 },
    /// A gradient whose shape is not its parameter's.
    Shape { tensor: String, param: Vec<usize>, grad: Vec<usize> },
    /// A parameter of a rank this bridge does not visit (1 to 4 are).
    Rank { tensor: String, rank: usize },
    /// wgpu-optim refused the tensor.
    Optimizer { tensor: String, error: wgpu_optim::Error },
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Backend { tensor, reason } => write!(
                f,
                "{tensor}: not a tensor of burn's cubecl backend with fusion ({reason}); \
                 build burn with the `wgpu`, `fusion` and `extension` features and create it on \
                 the device that `Device::wgpu_options()` returned"
            ),
            Self::NotWgpu { tensor, reason } => {
                write!(f, "{tensor}: not on a wgpu device, so it has no wgpu::Buffer ({reason})")
            }
            Self::DType { tensor, dtype } => {
                write!(f, "{tensor}: dtype {dtype:?}; this bridge registers f32 tensors only")
            }
            Self::Layout { tensor, shape, strides } => write!(
                f,
                "{tensor}: shape {shape:?} with strides {strides:?} is not row-major and dense; \
                 an elementwise update would pair the wrong elements of parameter and gradient \
                 (use LinearLayout::Row, or make the tensor contiguous first)"
            ),
            Self::Range { tensor, offset, size, len } => write!(
                f,
                "{tensor}: burn's resource (byte offset {offset}, {size} bytes) cannot hold \
                 {len} f32 elements on a 4-byte boundary"
            ),
            Self::Shape { tensor, param, grad } => {
                write!(f, "{tensor}: gradient of shape {grad:?} for a parameter of shape {param:?}")
            }
            Self::Rank { tensor, rank } => write!(f, "{tensor}: rank {rank} (this bridge handles 1 to 4)"),
            Self::Optimizer { tensor, error } => write!(f, "{tensor}: wgpu-optim refused it: {error}"),
        }
    }
}

impl std::error::Error for BridgeError {}

/// One tensor's elements in a `wgpu::Buffer`, kept in place for as long as this lives.
pub struct Located {
    pub buffer: wgpu::Buffer,
    /// First element (f32) in `buffer`.
    pub offset: u64,
    /// Elements.
    pub len: u64,
    pub shape: Vec<usize>,
    /// The resolved tensor holds a reference to burn's allocation: it stays allocated, and,
    /// since burn writes in place only into a handle nobody else holds (`can_mut`), burn never
    /// reuses a parameter's memory for the output of an operation.
    _tensor: CubeTensor,
    /// cubecl's `ManagedResource<WgpuResource>`: while it lives the allocation is never freed,
    /// handed out again or moved (cubecl's own words), so the buffer and offset stay valid.
    /// Held as `Any` only to keep it alive: its type lives in `cubecl-runtime`, a crate this
    /// example would otherwise have to name and pin to burn's exact version.
    _pin: Box<dyn Any>,
}

/// Where `tensor`'s elements are. Runs burn's queued work that produces the tensor (the fusion
/// client's resolve drains the thread's stream into cubecl, and cubecl 0.11's `get_resource`
/// submits that stream), so call it after the backward pass, on the thread that ran it.
pub fn locate<const D: usize>(tensor: Tensor<D>, name: &str) -> Result<Located, BridgeError> {
    let tensor = tensor.inner(); // Off the autodiff graph: the same memory.
    let fusion = tensor
        .try_into_primitive::<Cube>()
        .map_err(|e| BridgeError::Backend { tensor: name.into(), reason: format!("{e:?}") })?;
    let client = fusion.client.clone();
    // Consumes this clone of the fusion tensor: a parameter (held by the module too) comes back
    // as one more reference to the same memory; a gradient (held by nobody else once removed
    // from `GradientsParams`) is handed over, and lives as long as the returned `Located`.
    let cube: CubeTensor = client.resolve_tensor_float::<CubeBackend>(fusion);
    if cube.dtype != DType::F32 {
        return Err(BridgeError::DType { tensor: name.into(), dtype: cube.dtype });
    }
    let shape: Vec<usize> = cube.meta.shape().iter().copied().collect();
    if !cube.is_contiguous() {
        let strides = cube.meta.strides().iter().copied().collect();
        return Err(BridgeError::Layout { tensor: name.into(), shape, strides });
    }
    let len = shape.iter().product::<usize>() as u64;
    let managed = cube
        .client
        .get_resource::<WgpuServer<AutoCompiler>>(cube.handle.clone())
        .map_err(|e| BridgeError::NotWgpu { tensor: name.into(), reason: e.to_string() })?;
    let resource = managed.resource();
    let (offset, size) = (resource.offset, resource.size);
    if offset % 4 != 0 || size < len * 4 {
        return Err(BridgeError::Range { tensor: name.into(), offset, size, len });
    }
    Ok(Located {
        buffer: resource.buffer.clone(),
        offset: offset / 4,
        len,
        shape,
        _tensor: cube,
        _pin: Box::new(managed),
    })
}

/// A module's float parameters, in visiting order, located and pinned.
pub struct BurnParams {
    pub names: Vec<String>,
    ids: Vec<ParamId>,
    ranks: Vec<usize>,
    pub located: Vec<Located>,
}

impl BurnParams {
    /// Locates every float parameter of `module` (and initialises lazy ones).
    pub fn collect<M: Module>(module: &M) -> Result<Self, BridgeError> {
        let mut visitor = Collect { path: Vec::new(), out: Self::empty(), error: None };
        module.visit(&mut visitor);
        match visitor.error {
            Some(error) => Err(error),
            None => Ok(visitor.out),
        }
    }

    fn empty() -> Self {
        Self { names: Vec::new(), ids: Vec::new(), ranks: Vec::new(), located: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Registers every parameter in `group`, with `placeholder` (zeros, as long as the longest
    /// tensor) as its gradient until a step says where the real one is: wgpu-optim wants a
    /// gradient location at registration, and burn's gradients exist only after a backward
    /// pass, at places that change every step. Returns the first parameter index.
    pub fn register(
        &self,
        opt: &mut Optimizer,
        group: GroupId,
        placeholder: &wgpu::Buffer,
    ) -> Result<usize, BridgeError> {
        let bindings: Vec<ParamBinding> = self
            .located
            .iter()
            .map(|p| ParamBinding {
                param: p.buffer.clone(),
                param_offset: p.offset,
                grad: placeholder.clone(),
                grad_offset: 0,
                len: p.len,
            })
            .collect();
        let added = opt
            .add_params(group, &bindings)
            .map_err(|error| BridgeError::Optimizer { tensor: "the model's parameters".into(), error })?;
        Ok(added.start)
    }

    /// Takes this step's gradients out of `grads` and tells `opt` where each one is
    /// (`set_grad`), or that there is none (`set_has_grad(i, false)`). `first` is the index
    /// `register` returned. The returned gradients must live until the step that reads them is
    /// submitted: dropping one hands its memory back to burn's pool.
    pub fn locate_grads(
        &self,
        grads: &mut GradientsParams,
        opt: &mut Optimizer,
        first: usize,
    ) -> Result<Vec<Located>, BridgeError> {
        let mut held = Vec::with_capacity(self.len());
        for (k, (&id, &rank)) in self.ids.iter().zip(&self.ranks).enumerate() {
            let name = &self.names[k];
            let grad = match rank {
                1 => grads.remove::<1>(id).map(|g| locate(g, name)),
                2 => grads.remove::<2>(id).map(|g| locate(g, name)),
                3 => grads.remove::<3>(id).map(|g| locate(g, name)),
                4 => grads.remove::<4>(id).map(|g| locate(g, name)),
                rank => return Err(BridgeError::Rank { tensor: name.clone(), rank }),
            };
            let i = first + k;
            let optimizer = |error| BridgeError::Optimizer { tensor: name.clone(), error };
            match grad.transpose()? {
                Some(g) => {
                    if g.shape != self.located[k].shape {
                        let (param, grad) = (self.located[k].shape.clone(), g.shape.clone());
                        return Err(BridgeError::Shape { tensor: name.clone(), param, grad });
                    }
                    opt.set_grad(i, &g.buffer, g.offset).map_err(optimizer)?;
                    opt.set_has_grad(i, true).map_err(optimizer)?;
                    held.push(g);
                }
                None => opt.set_has_grad(i, false).map_err(optimizer)?,
            }
        }
        Ok(held)
    }
}

struct Collect {
    path: Vec<String>,
    out: BurnParams,
    error: Option<BridgeError>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.error.is_some() {
            return;
        }
        let name = match self.path.is_empty() {
            true => format!("parameter {}", self.out.len()),
            false => self.path.join("."),
        };
        if !(1..=4).contains(&D) {
            self.error = Some(BridgeError::Rank { tensor: name, rank: D });
            return;
        }
        match locate(param.val(), &name) {
            Ok(located) => {
                self.out.names.push(name);
                self.out.ids.push(param.id);
                self.out.ranks.push(D);
                self.out.located.push(located);
            }
            Err(error) => self.error = Some(error),
        }
    }
}
