//! The crate's error type.
//!
//! Every fallible public function returns [`Result`]. Messages for invalid hyperparameters are
//! PyTorch's own (`"Invalid learning rate: -1.0"`), so an error reads the same whichever library a
//! user came from; floats in messages print as Python prints them ([`py_float`]).

use std::path::PathBuf;

/// Everything that can go wrong, by cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter matched, or the machine has none at all.
    #[error(
        "no GPU adapter found{detail}. On a machine without a GPU, install Mesa's software Vulkan \
         driver (lavapipe): `apt-get install mesa-vulkan-drivers libvulkan1` on Debian or Ubuntu"
    )]
    NoAdapter {
        /// What was asked for (backend, adapter name), or empty.
        detail: String,
    },

    /// The adapter was found but refused to open a device.
    #[error("could not open a device on adapter \"{adapter}\": {message}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason.
        message: String,
    },

    /// A combination the crate does not run (yet), named with the reason: loss scaling with an
    /// algorithm whose scalars depend on the step count and have no device-side correction, or
    /// taking a step back under loss scaling.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A device whose limits the optimizer cannot work within.
    #[error("unsupported device: {0}")]
    UnsupportedDevice(String),

    /// A storage combination the optimizer does not run (see `kernel::Storage::check`).
    #[error("unsupported storage {storage}: {reason}")]
    UnsupportedStorage {
        /// The storage's name (`bf16-f32-f32-master`).
        storage: String,
        /// Why not.
        reason: String,
    },

    /// f16 parameters or gradients on a device without `wgpu::Features::SHADER_F16`.
    #[error(
        "storage {storage} uses f16, but the device lacks wgpu::Features::SHADER_F16 (the adapter does not \
         support it, or the device was opened without it); bf16 works on every adapter"
    )]
    ShaderF16Unsupported {
        /// The storage's name (`f16-f16-f32`).
        storage: String,
    },

    /// A hyperparameter out of its domain. The message is PyTorch's.
    #[error("{message}")]
    InvalidHyperparameter {
        /// The argument's name (`lr`, `betas`, `eps`, ...).
        name: String,
        /// PyTorch's message, e.g. `Invalid learning rate: -1.0`.
        message: String,
    },

    /// An optimizer name that is not one of ours.
    #[error("unknown optimizer \"{name}\" (known: {known})")]
    UnknownOptimizer {
        /// The name given.
        name: String,
        /// The names we know, comma-separated.
        known: String,
    },

    /// A schedule stepped past its end: PyTorch's `OneCycleLR` raises `ValueError` there, and an
    /// optimizer step that would use such a rate fails with this instead.
    #[error("Tried to step {step} times. The specified number of total steps is {total_steps}")]
    ScheduleEnded {
        /// The step asked (PyTorch's `last_epoch`).
        step: u64,
        /// The schedule's `total_steps`.
        total_steps: u64,
    },

    /// A scheduler name that is not implemented.
    #[error("unsupported scheduler: {0}")]
    UnsupportedScheduler(String),

    /// A configuration that does not parse: an unknown key, a wrong type, a missing field.
    #[error("invalid {what} config: {message}")]
    Config {
        /// `optimizer` or `scheduler`.
        what: &'static str,
        /// What is wrong, naming the key.
        message: String,
    },

    /// Two lengths that must agree do not.
    #[error("{what}: expected {expected} elements, got {got}")]
    LengthMismatch {
        /// What was measured.
        what: String,
        /// The length required.
        expected: usize,
        /// The length given.
        got: usize,
    },

    /// A range that runs past the end of its buffer, or is not 4-byte addressable.
    #[error("{what}: elements {offset}..{end} do not fit in a buffer of {buffer_len} elements")]
    OutOfBounds {
        /// Which buffer.
        what: String,
        /// First element.
        offset: u64,
        /// One past the last element.
        end: u64,
        /// Elements in the buffer.
        buffer_len: u64,
    },

    /// Two registered parameters share elements of the same buffer.
    #[error("{what}: parameter {a} and parameter {b} overlap in the same buffer")]
    Overlap {
        /// `param` or `grad`.
        what: &'static str,
        /// Index of the first.
        a: usize,
        /// Index of the second.
        b: usize,
    },

    /// A buffer lacks a usage the optimizer needs.
    #[error("buffer \"{label}\" lacks usage {missing}: create it with `BufferUsages::{missing}`")]
    BufferUsage {
        /// The buffer's role and index, e.g. `param 3`.
        label: String,
        /// The missing usage flag.
        missing: &'static str,
    },

    /// A gradient on a parameter's elements (its own or another tensor's): the step would
    /// overwrite what it reads. A gradient elsewhere in a parameter's buffer is fine.
    #[error(
        "parameter {index}'s gradient overlaps parameter {param}'s elements in the same buffer: the step \
         writes the parameter while it reads the gradient; place them in disjoint ranges"
    )]
    GradOverlapsParam {
        /// The tensor whose gradient it is.
        index: usize,
        /// The tensor whose parameter it overlaps.
        param: usize,
    },

    /// A buffer the optimizer's device cannot use: created on another device, or destroyed.
    #[error(
        "buffer \"{label}\" cannot be used on the optimizer's device (from another device, or destroyed): {message}"
    )]
    ForeignBuffer {
        /// The buffer's role and index, e.g. `param 3`.
        label: String,
        /// wgpu's reason.
        message: String,
    },

    /// A checkpoint that cannot be loaded into this optimizer: not a checkpoint, damaged, of
    /// another algorithm, shapes or group layout, or of a newer format.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the mismatch.
        message: String,
    },

    /// A parameter group index that was never created.
    #[error("unknown parameter group {0}")]
    UnknownGroup(usize),

    /// A group config of another algorithm than the optimizer's.
    #[error("parameter group config is {got}, but the optimizer is {expected}")]
    GroupAlgorithm {
        /// The optimizer's algorithm.
        expected: &'static str,
        /// The group's.
        got: &'static str,
    },

    /// `step` or `record` with no parameter registered.
    #[error("the optimizer has no parameters: register some with `add_params` before stepping")]
    NoParameters,

    /// wgpu reported a validation or out-of-memory error.
    #[error("wgpu error: {0}")]
    Wgpu(String),

    /// The device was lost (driver reset, GPU removed).
    #[error("device lost: {0}")]
    DeviceLost(String),

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// A file that was read but does not hold what it should.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// `std::result::Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::InvalidHyperparameter`] with PyTorch's message.
    pub(crate) fn invalid(name: &str, message: String) -> Self {
        Error::InvalidHyperparameter { name: name.to_string(), message }
    }
}

/// Formats a float as Python's `repr` (and so an f-string, and so PyTorch's messages) prints it:
/// the shortest decimal that reads back to the same float, `.0` on integral values, exponent
/// notation with a signed exponent of at least two digits below 1e-4 and from 1e16 (`1.0`, `-1.0`,
/// `0.001`, `0.0001`, `1e-05`, `1.5e+20`, `nan`, `inf`, `-inf`).
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `{:e}` and `{}` are both the shortest round-trip digits; Python picks between the two
    // forms by the decimal exponent of those digits.
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let plain = format!("{x}");
        if plain.contains('.') {
            plain
        } else {
            plain + ".0"
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::py_float;

    #[test]
    fn floats_read_like_python() {
        // Each against Python 3.11's `repr`.
        assert_eq!(py_float(-1.0), "-1.0");
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.0), "0.0");
        assert_eq!(py_float(-0.0), "-0.0");
        assert_eq!(py_float(50.0), "50.0");
        assert_eq!(py_float(1e15), "1000000000000000.0");
        assert_eq!(py_float(9999999999999998.0), "9999999999999998.0");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(1.5e-300), "1.5e-300");
        assert_eq!(py_float(f64::INFINITY), "inf");
        assert_eq!(py_float(f64::NEG_INFINITY), "-inf");
        assert_eq!(py_float(1.5), "1.5");
        assert_eq!(py_float(-1e-8), "-1e-08");
        assert_eq!(py_float(0.001), "0.001");
        assert_eq!(py_float(1e-4), "0.0001");
        assert_eq!(py_float(1.5e20), "1.5e+20");
        assert_eq!(py_float(-0.1), "-0.1");
        assert_eq!(py_float(f64::NAN), "nan");
    }
}
