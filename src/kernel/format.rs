//! Storage formats: how the composed kernel declares, loads and stores each array, so that
//! `update()` always sees f32 values whatever the buffers hold.
//!
//! A format is a parameter of the composition, not of each kernel: adding f16 or bf16 parameters
//! and gradients (or a quantized state array) means a variant here and its WGSL, in this file
//! only. The host side reads [`Format::element_bytes`] for binding windows and buffer sizes.

use std::fmt::Write;

/// How the elements of one array are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// IEEE binary32, one per element: what the crate takes today.
    #[default]
    F32,
    /// f32 values stored multiplied by `2^-log2_scale` and read back multiplied by it: a
    /// format that exists to prove the composition carries formats (tests only). Scaling by a
    /// power of two is exact, so a kernel on scaled data matches the plain one bit for bit.
    #[doc(hidden)]
    ScaledF32 {
        /// The value is the stored number times `2^log2_scale`.
        log2_scale: i8,
    },
}

impl Format {
    /// Bytes per element in the buffer.
    pub fn element_bytes(self) -> u64 {
        match self {
            Format::F32 | Format::ScaledF32 { .. } => 4,
        }
    }

    /// The format's name as `wgpu-optim shader` and file names spell it.
    pub fn name(self) -> String {
        match self {
            Format::F32 => "f32".into(),
            Format::ScaledF32 { log2_scale } => format!("f32x{}", scale_literal(log2_scale)),
        }
    }

    /// Parses [`Format::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "f32" {
            return Some(Format::F32);
        }
        // `f32x<power of two>`: the test-only scaled format.
        let scale: f32 = name.strip_prefix("f32x")?.parse().ok()?;
        let log2 = scale.log2();
        (log2.fract() == 0.0 && log2.abs() <= 100.0).then_some(Format::ScaledF32 { log2_scale: log2 as i8 })
    }

    /// The WGSL declarations of array `name` at `binding`: a scalar view (`name`, for `main`)
    /// and a four-wide view (`name4`, for `main4`) of the same buffer.
    pub(crate) fn bindings(self, out: &mut String, name: &str, binding: u32, access: &str) {
        match self {
            Format::F32 | Format::ScaledF32 { .. } => {
                let _ = writeln!(out, "@group(0) @binding({binding}) var<storage, {access}> {name}: array<f32>;");
                let _ =
                    writeln!(out, "@group(0) @binding({binding}) var<storage, {access}> {name}4: array<vec4<f32>>;");
            }
        }
    }

    /// `load_<name>(i) -> f32` and `load_<name>4(i) -> vec4<f32>`: element `i` (or the four
    /// elements from `4 * i`) as f32.
    pub(crate) fn loads(self, out: &mut String, name: &str) {
        let (one, four) = match self {
            Format::F32 => (format!("{name}[i]"), format!("{name}4[i]")),
            Format::ScaledF32 { log2_scale } => {
                let s = scale_literal(log2_scale);
                (format!("{name}[i] * {s}"), format!("{name}4[i] * {s}"))
            }
        };
        let _ = writeln!(out, "fn load_{name}(i: u32) -> f32 {{\n    return {one};\n}}");
        let _ = writeln!(out, "fn load_{name}4(i: u32) -> vec4<f32> {{\n    return {four};\n}}");
    }

    /// The stored f32 of `value`: what the host writes where it fills an array itself (a state
    /// array's initial value).
    pub fn encode(self, value: f32) -> f32 {
        match self {
            Format::F32 => value,
            Format::ScaledF32 { log2_scale } => value / 2f32.powi(i32::from(log2_scale)),
        }
    }

    /// `store_<name>(i, v)` and `store_<name>4(i, v)`: the inverse of the loads.
    pub(crate) fn stores(self, out: &mut String, name: &str) {
        let (one, four) = match self {
            Format::F32 => ("v".to_string(), "v".to_string()),
            Format::ScaledF32 { log2_scale } => {
                let s = scale_literal(log2_scale);
                (format!("v / {s}"), format!("v / {s}"))
            }
        };
        let _ = writeln!(out, "fn store_{name}(i: u32, v: f32) {{\n    {name}[i] = {one};\n}}");
        let _ = writeln!(out, "fn store_{name}4(i: u32, v: vec4<f32>) {{\n    {name}4[i] = {four};\n}}");
    }
}

/// `2^log2` as a WGSL f32 literal (exact: a power of two).
fn scale_literal(log2: i8) -> String {
    format!("{:?}", 2f32.powi(i32::from(log2)))
}

/// The storage formats of one kernel variant: parameters, gradients and state arrays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Storage {
    /// The parameters' format (read and written).
    pub param: Format,
    /// The gradients' format (only read).
    pub grad: Format,
    /// Every state array's format.
    pub state: Format,
}

impl Storage {
    /// f32 everywhere: the default, and what every kernel runs today.
    pub const F32: Storage = Storage { param: Format::F32, grad: Format::F32, state: Format::F32 };

    /// The storage combinations an optimizer can be built with (what `wgpu-optim shader --all`
    /// writes and the tests validate). The test-only format is not among them.
    pub fn supported() -> Vec<Storage> {
        vec![Storage::F32]
    }

    /// `param-grad-state` format names, as in file names (`f32-f32-f32`).
    pub fn name(&self) -> String {
        format!("{}-{}-{}", self.param.name(), self.grad.name(), self.state.name())
    }

    /// Parses [`Storage::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        let mut parts = name.split('-').map(Format::from_name);
        let storage = Storage { param: parts.next()??, grad: parts.next()??, state: parts.next()?? };
        parts.next().is_none().then_some(storage)
    }
}
