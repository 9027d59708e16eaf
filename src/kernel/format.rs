//! Storage formats: how the composed kernel declares, loads and stores each array, so that
//! `update()` always sees f32 values whatever the buffers hold.
//!
//! A format is a parameter of the composition, not of each kernel: f32, f16 and bf16 parameters
//! and gradients are variants here with their WGSL, in this file only (a quantized state array
//! would be one more). The host side reads [`Format::element_bytes`] for binding windows, buffer
//! bounds and the uniform's element offsets (in elements of each role's format).
//!
//! [`Storage`] picks a format per role and, for a low-precision parameter, how precision is kept:
//! an f32 master copy in the state (the kernel loads the parameter from it and stores both, the
//! parameter rounded to nearest even) or, for bf16 without one, stochastic rounding
//! ([`Rounding::Stochastic`]: `truncate(bits + r)`, `r` the top 16 bits of
//! `pcg_hash(step_seed ^ pcg_hash(e))`, `step_seed` = [`Rounding::step_seed`] of the seed and the
//! tensor's own step, `e` the element's index within its run). [`Format::round`],
//! [`Format::bf16_stochastic`] and [`sr_bits`] are the same roundings on the host, for the CPU
//! mirror.

use std::fmt::Write;

/// How the elements of one array are stored.
///
/// `update()` always computes in f32: a load widens the stored element to f32, a store narrows
/// the f32 result back.
///
/// ```text
/// F32   one f32 per element (4 bytes).
/// BF16  the high 16 bits of an f32 (2 bytes), two per u32, element 2k in the low half:
///         load(h)  = bitcast<f32>(h << 16)                                   (exact)
///         store(v) = (bits(v) + 0x7fff + ((bits(v) >> 16) & 1)) >> 16        (round to nearest even)
///                    NaN stays NaN (quiet bit set)
///       stochastic rounding (Rounding::Stochastic, no master copy):
///         store(v) = (bits(v) + r) >> 16,  r = 16 random bits of (seed, step, element)
/// F16   IEEE binary16 (2 bytes), WGSL `f16` (needs the adapter's SHADER_F16): load exact,
///       store rounded to nearest even by the bits (`f16_nearest`: subnormals kept, past 65504
///       to infinity, NaN stays NaN) and then converted exactly, not by WGSL's conversion alone,
///       whose rounding direction is the device's.
/// ```
/// One-wide bf16 stores of a parameter (`main`) touch only their own half of a u32, through
/// `atomicAnd` and `atomicOr` on an `array<atomic<u32>>` view of the same binding, so that two
/// invocations that share a word never race; `main4` writes whole words (four elements).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// IEEE binary32, one per element: the default.
    #[default]
    F32,
    /// IEEE binary16 (WGSL `f16`): needs `wgpu::Features::SHADER_F16` on the device.
    F16,
    /// bfloat16, the high half of an f32, stored two per `u32`: works on every adapter.
    BF16,
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
            Format::F16 | Format::BF16 => 2,
        }
    }

    /// Whether the format is narrower than f32 (a parameter in it can keep an f32 master copy).
    pub fn is_low_precision(self) -> bool {
        matches!(self, Format::F16 | Format::BF16)
    }

    /// The format's name as `wgpu-optim shader` and file names spell it.
    pub fn name(self) -> String {
        match self {
            Format::F32 => "f32".into(),
            Format::F16 => "f16".into(),
            Format::BF16 => "bf16".into(),
            Format::ScaledF32 { log2_scale } => format!("f32x{}", scale_literal(log2_scale)),
        }
    }

    /// Parses [`Format::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "f32" => return Some(Format::F32),
            "f16" => return Some(Format::F16),
            "bf16" => return Some(Format::BF16),
            _ => {}
        }
        // `f32x<power of two>`: the test-only scaled format.
        let scale: f32 = name.strip_prefix("f32x")?.parse().ok()?;
        let log2 = scale.log2();
        (log2.fract() == 0.0 && log2.abs() <= 100.0).then_some(Format::ScaledF32 { log2_scale: log2 as i8 })
    }

    /// The WGSL declarations of array `name` at `binding`: a scalar view (`name`, for `main`)
    /// and a four-wide view (`name4`, for `main4`) of the same buffer. `stored`: the kernel
    /// stores into it, so a bf16 array's scalar view is atomic (see [`Format::BF16`]); an array
    /// only read may still be declared `read_write` (the gradients: see `compose`).
    pub(crate) fn bindings(self, out: &mut String, name: &str, binding: u32, access: &str, stored: bool) {
        let (one, four) = match self {
            Format::F32 | Format::ScaledF32 { .. } => ("array<f32>", "array<vec4<f32>>"),
            Format::F16 => ("array<f16>", "array<vec4<f16>>"),
            Format::BF16 if !stored => ("array<u32>", "array<vec2<u32>>"),
            Format::BF16 => ("array<atomic<u32>>", "array<vec2<u32>>"),
        };
        let _ = writeln!(out, "@group(0) @binding({binding}) var<storage, {access}> {name}: {one};");
        let _ = writeln!(out, "@group(0) @binding({binding}) var<storage, {access}> {name}4: {four};");
    }

    /// `load_<name>(i) -> f32` and `load_<name>4(i) -> vec4<f32>`: element `i` (or the four
    /// elements from `4 * i`) as f32. `writable`: the array's scalar view is the atomic one.
    pub(crate) fn loads(self, out: &mut String, name: &str, writable: bool) {
        let (one, four) = match self {
            Format::F32 => (format!("{name}[i]"), format!("{name}4[i]")),
            Format::ScaledF32 { log2_scale } => {
                let s = scale_literal(log2_scale);
                (format!("{name}[i] * {s}"), format!("{name}4[i] * {s}"))
            }
            Format::F16 => (format!("f32({name}[i])"), format!("vec4<f32>({name}4[i])")),
            Format::BF16 => {
                let word = if writable { format!("atomicLoad(&{name}[i / 2u])") } else { format!("{name}[i / 2u]") };
                (
                    format!("bitcast<f32>(({word} >> (16u * (i % 2u))) << 16u)"),
                    // `w`: the two words, loaded once (below).
                    "bitcast<vec4<f32>>(vec4(w.x << 16u, w.x & 0xffff0000u, w.y << 16u, w.y & 0xffff0000u))"
                        .to_string(),
                )
            }
        };
        let _ = writeln!(out, "fn load_{name}(i: u32) -> f32 {{\n    return {one};\n}}");
        match self {
            // The two words loaded once: lavapipe loads each `{name}4[i]` of an expression anew.
            Format::BF16 => {
                let _ = writeln!(
                    out,
                    "fn load_{name}4(i: u32) -> vec4<f32> {{\n    let w = {name}4[i];\n    return {four};\n}}"
                );
            }
            _ => {
                let _ = writeln!(out, "fn load_{name}4(i: u32) -> vec4<f32> {{\n    return {four};\n}}");
            }
        }
    }

    /// The stored f32 of `value`: what the host writes where it fills an array itself (a state
    /// array's initial value; state arrays are f32 or the test-only format, and
    /// [`Format::encode_all`] gives the bytes of any format).
    pub fn encode(self, value: f32) -> f32 {
        match self {
            Format::F32 | Format::F16 | Format::BF16 => value,
            Format::ScaledF32 { log2_scale } => value / 2f32.powi(i32::from(log2_scale)),
        }
    }

    /// `store_<name>(i, v)` and `store_<name>4(i, v)`: the inverse of the loads, rounding to
    /// nearest even where the format is narrower. With stochastic rounding (bf16 only) they take
    /// a third argument, the run element `e` of the (first) value, and round with the bits of
    /// `sr_bits(u.seed, e)`.
    pub(crate) fn stores(self, out: &mut String, name: &str, stochastic: bool) {
        match self {
            Format::F32 | Format::ScaledF32 { .. } | Format::F16 => {
                let (one, four) = match self {
                    Format::F32 => ("v".to_string(), "v".to_string()),
                    // Rounded by the bits (`f16_exact`), then converted exactly: WGSL leaves the
                    // rounding direction of `f16(v)` to the device.
                    Format::F16 => (
                        "f16(f16_exact(v))".to_string(),
                        "vec4<f16>(vec4(f16_exact(v.x), f16_exact(v.y), f16_exact(v.z), f16_exact(v.w)))".to_string(),
                    ),
                    Format::ScaledF32 { log2_scale } => {
                        let s = scale_literal(log2_scale);
                        (format!("v / {s}"), format!("v / {s}"))
                    }
                    Format::BF16 => unreachable!(),
                };
                let _ = writeln!(out, "fn store_{name}(i: u32, v: f32) {{\n    {name}[i] = {one};\n}}");
                let _ = writeln!(out, "fn store_{name}4(i: u32, v: vec4<f32>) {{\n    {name}4[i] = {four};\n}}");
            }
            Format::BF16 => {
                let (arg, one, four) = match stochastic {
                    false => ("", "bf16_nearest(v)".to_string(), "bf16_nearest4(v)".to_string()),
                    true => (
                        ", e: u32",
                        "bf16_stochastic(v, sr_bits(u.seed, e))".to_string(),
                        "bf16_stochastic4(v, vec4(sr_bits(u.seed, e), sr_bits(u.seed, e + 1u), \
                         sr_bits(u.seed, e + 2u), sr_bits(u.seed, e + 3u)))"
                            .to_string(),
                    ),
                };
                let _ = writeln!(
                    out,
                    "// Only this element's half of the word changes: the other half belongs to another\n\
                     // invocation, which changes only its own (atomics, so that neither write is lost).\n\
                     fn store_{name}(i: u32, v: f32{arg}) {{\n    \
                         let shift = 16u * (i % 2u);\n    \
                         atomicAnd(&{name}[i / 2u], ~(0xffffu << shift));\n    \
                         atomicOr(&{name}[i / 2u], {one} << shift);\n\
                     }}\n\
                     fn store_{name}4(i: u32, v: vec4<f32>{arg}) {{\n    \
                         let h = {four};\n    \
                         {name}4[i] = vec2(h.x | (h.y << 16u), h.z | (h.w << 16u));\n\
                     }}"
                );
            }
        }
    }

    /// The f32 values of `n` elements stored in `words` (the buffer's 32-bit words, read as f32),
    /// from element `first` of the words.
    pub fn decode(self, words: &[f32], first: u64, n: u64) -> Vec<f32> {
        let half = |e: u64| (words[(e / 2) as usize].to_bits() >> (16 * (e % 2))) as u16;
        let range = first..first + n;
        match self {
            Format::F32 => words[first as usize..(first + n) as usize].to_vec(),
            Format::ScaledF32 { log2_scale } => {
                let s = 2f32.powi(i32::from(log2_scale));
                words[first as usize..(first + n) as usize].iter().map(|v| v * s).collect()
            }
            Format::BF16 => range.map(|e| f32::from_bits(u32::from(half(e)) << 16)).collect(),
            Format::F16 => range.map(|e| f16_to_f32(half(e))).collect(),
        }
    }

    /// The bytes of `values` stored in this format, rounded to nearest even.
    pub fn encode_all(self, values: &[f32]) -> Vec<u8> {
        match self {
            Format::F32 | Format::ScaledF32 { .. } => {
                values.iter().flat_map(|&v| self.encode(v).to_le_bytes()).collect()
            }
            Format::BF16 => values.iter().flat_map(|&v| (bf16_nearest(v) as u16).to_le_bytes()).collect(),
            Format::F16 => values.iter().flat_map(|&v| f32_to_f16(v).to_le_bytes()).collect(),
        }
    }

    /// `value` rounded to this format (to nearest even; NaN stays NaN), as f32: what a store
    /// followed by a load gives. The CPU mirror rounds with it.
    pub fn round(self, value: f32) -> f32 {
        match self {
            Format::F32 | Format::ScaledF32 { .. } => value,
            Format::BF16 => f32::from_bits(bf16_nearest(value) << 16),
            Format::F16 => f16_to_f32(f32_to_f16(value)),
        }
    }

    /// `value` rounded to bf16 with the 16 random bits `r` (low bits of the argument): the
    /// stochastic store of [`Format::BF16`].
    pub fn bf16_stochastic(value: f32, r: u32) -> f32 {
        let b = value.to_bits();
        if b & 0x7fff_ffff > 0x7f80_0000 {
            return f32::from_bits((b | 0x0040_0000) & 0xffff_0000);
        }
        f32::from_bits(b.wrapping_add(r & 0xffff) & 0xffff_0000)
    }
}

/// The bf16 (in the low 16 bits) nearest `value`, ties to even; NaN stays NaN.
fn bf16_nearest(value: f32) -> u32 {
    let b = value.to_bits();
    if b & 0x7fff_ffff > 0x7f80_0000 {
        return (b >> 16) | 0x40;
    }
    b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16
}

/// IEEE binary16 bits of `value`, round to nearest even (subnormals and overflow to infinity
/// included); NaN stays NaN.
fn f32_to_f16(value: f32) -> u16 {
    let b = value.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    // The value's magnitude as a fixed-point number of f16 units in the last place.
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    let (mantissa, shift) = if e <= 0 {
        // Subnormal (or zero) in f16: the implicit bit joins the mantissa.
        if e < -10 {
            return sign;
        }
        (man | 0x80_0000, (14 - e) as u32)
    } else {
        (man, 13)
    };
    let half = mantissa >> shift;
    let rest = mantissa & ((1 << shift) - 1);
    let mid = 1 << (shift - 1);
    let round_up = rest > mid || (rest == mid && half & 1 == 1);
    let bits = if e <= 0 { half } else { ((e as u32) << 10) | half };
    sign | (bits + u32::from(round_up)) as u16
}

/// The f32 of IEEE binary16 bits (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match exp {
        0 if man == 0 => sign,
        0 => return f32::from_bits(sign) + if sign != 0 { -1.0 } else { 1.0 } * man as f32 * 2f32.powi(-24),
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// The WGSL helpers the bf16 stores call, and the hash of stochastic rounding: written once into
/// a module whose storage uses bf16. Keep `sr_bits` in sync with [`sr_bits`].
pub(crate) fn bf16_helpers(out: &mut String) {
    out.push_str(
        "// bf16: the high half of an f32, rounded to nearest even (NaN stays NaN, quiet).\n\
         fn bf16_nearest(v: f32) -> u32 {\n    \
             let b = bitcast<u32>(v);\n    \
             return select((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u, (b >> 16u) | 0x40u, (b & 0x7fffffffu) > 0x7f800000u);\n\
         }\n\
         fn bf16_nearest4(v: vec4<f32>) -> vec4<u32> {\n    \
             let b = bitcast<vec4<u32>>(v);\n    \
             return select((b + 0x7fffu + ((b >> vec4(16u)) & vec4(1u))) >> vec4(16u), (b >> vec4(16u)) | vec4(0x40u), \
             (b & vec4(0x7fffffffu)) > vec4(0x7f800000u));\n\
         }\n\
         // Stochastic rounding: the 16 random bits r added below the kept half, then truncated; the\n\
         // result rounds up with probability (the dropped bits) / 2^16, so its mean is the value.\n\
         fn bf16_stochastic(v: f32, r: u32) -> u32 {\n    \
             let b = bitcast<u32>(v);\n    \
             return select((b + (r & 0xffffu)) >> 16u, (b >> 16u) | 0x40u, (b & 0x7fffffffu) > 0x7f800000u);\n\
         }\n\
         fn bf16_stochastic4(v: vec4<f32>, r: vec4<u32>) -> vec4<u32> {\n    \
             let b = bitcast<vec4<u32>>(v);\n    \
             return select((b + (r & vec4(0xffffu))) >> vec4(16u), (b >> vec4(16u)) | vec4(0x40u), \
             (b & vec4(0x7fffffffu)) > vec4(0x7f800000u));\n\
         }\n\
         // PCG's output hash (Jarzynski and Olano, 2020).\n\
         fn pcg_hash(x: u32) -> u32 {\n    \
             let state = x * 747796405u + 2891336453u;\n    \
             let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;\n    \
             return (word >> 22u) ^ word;\n\
         }\n\
         // The 16 random bits of run element e in a step whose seed is `seed` (see StepUniform).\n\
         fn sr_bits(seed: u32, e: u32) -> u32 {\n    \
             return pcg_hash(seed ^ pcg_hash(e)) >> 16u;\n\
         }\n",
    );
}

/// The WGSL of `f16_nearest(v: f32) -> u32`, the f16 bits (in the low half) nearest `v`, ties to
/// even, and `f16_exact(v: f32) -> f32`, the same value as an f32: written once into a module
/// whose parameters are f16. Keep in sync with `f32_to_f16`.
pub(crate) fn f16_helpers(out: &mut String) {
    out.push_str(
        "// f16: the bits of the f16 nearest v, ties to even; subnormals kept, overflow to infinity,\n\
         // NaN stays NaN (the mirror of f32_to_f16 in src/kernel/format.rs).\n\
         fn f16_nearest(v: f32) -> u32 {\n    \
             let b = bitcast<u32>(v);\n    \
             let sign = (b >> 16u) & 0x8000u;\n    \
             let a = b & 0x7fffffffu;\n    \
             if (a > 0x7f800000u) {\n        return sign | 0x7e00u;\n    }\n    \
             // From 65520 (halfway past the largest f16) up: infinity.\n    \
             if (a >= 0x477ff000u) {\n        return sign | 0x7c00u;\n    }\n    \
             // Normal in f16 (from 2^-14): the exponent rebiased, the mantissa rounded.\n    \
             if (a >= 0x38800000u) {\n        \
                 let r = a - 0x38000000u;\n        \
                 return sign | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);\n    \
             }\n    \
             // Below half the smallest subnormal (2^-25 itself ties to zero): zero.\n    \
             if (a <= 0x33000000u) {\n        return sign;\n    }\n    \
             // Subnormal: the mantissa with its implicit bit, in units of 2^-24.\n    \
             let m = (a & 0x7fffffu) | 0x800000u;\n    \
             let shift = 126u - (a >> 23u);\n    \
             let half = m >> shift;\n    \
             let rest = m & ((1u << shift) - 1u);\n    \
             let mid = 1u << (shift - 1u);\n    \
             return sign | (half + select(0u, 1u, rest > mid || (rest == mid && (half & 1u) == 1u)));\n\
         }\n\
         // The f32 that is exactly the f16 nearest v: its conversion to f16 cannot round.\n\
         fn f16_exact(v: f32) -> f32 {\n    \
             let h = f16_nearest(v);\n    \
             let sign = (h & 0x8000u) << 16u;\n    \
             let e = (h >> 10u) & 0x1fu;\n    \
             let m = h & 0x3ffu;\n    \
             if (e == 0x1fu) {\n        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));\n    }\n    \
             if (e == 0u) {\n        \
                 // m units of 2^-24 (exact).\n        \
                 return bitcast<f32>(sign | bitcast<u32>(f32(m) * bitcast<f32>(0x33800000u)));\n    \
             }\n    \
             return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));\n\
         }\n",
    );
}

/// PCG's output hash, as the WGSL `pcg_hash`.
pub fn pcg_hash(x: u32) -> u32 {
    let state = x.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The 16 random bits stochastic rounding adds to element `e` (its index within its run: within
/// its tensor for a tensor registered on its own) in a step whose seed is `step_seed`
/// ([`Rounding::step_seed`]), as the WGSL `sr_bits`.
pub fn sr_bits(step_seed: u32, e: u32) -> u32 {
    pcg_hash(step_seed ^ pcg_hash(e)) >> 16
}

/// How a low-precision parameter without a master copy is rounded when stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// To nearest, ties to even.
    #[default]
    Nearest,
    /// Stochastic rounding (bf16 parameters without a master copy): the stored value is
    /// `truncate(bits + r)`, `r` 16 random bits of a hash of (`seed`, the tensor's own step count,
    /// the element's index within its run), so runs with the same seed are identical and the
    /// rounding is unbiased (torchao's `bf16_stochastic_round`).
    Stochastic {
        /// The seed of the random bits.
        seed: u64,
    },
}

impl Rounding {
    /// The per-dispatch seed of step `t` (the tensor's own step count, from 1) uploaded in the
    /// uniform: a hash of the seed and the step. 0 for round to nearest.
    pub fn step_seed(self, t: u64) -> u32 {
        match self {
            Rounding::Nearest => 0,
            Rounding::Stochastic { seed } => {
                let s = pcg_hash(pcg_hash(seed as u32) ^ (seed >> 32) as u32);
                pcg_hash(s ^ pcg_hash(t as u32) ^ (t >> 32) as u32)
            }
        }
    }
}

/// `2^log2` as a WGSL f32 literal (exact: a power of two).
fn scale_literal(log2: i8) -> String {
    format!("{:?}", 2f32.powi(i32::from(log2)))
}

/// The storage formats of one kernel variant: parameters, gradients and state arrays, whether a
/// low-precision parameter keeps an f32 master copy, and how it is rounded without one.
///
/// ```
/// use wgpu_optim::kernel::{Format, Rounding, Storage};
/// // bf16 parameters and gradients, with an f32 master copy in the optimizer's state.
/// let master = Storage { param: Format::BF16, grad: Format::BF16, master: true, ..Storage::F32 };
/// // bf16 parameters without one, rounded stochastically; f32 gradients.
/// let sr = Storage { param: Format::BF16, rounding: Rounding::Stochastic { seed: 7 }, ..Storage::F32 };
/// assert_eq!(master.name(), "bf16-bf16-f32-master");
/// assert_eq!(sr.name(), "bf16-f32-f32-sr");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Storage {
    /// The parameters' format (read and written).
    pub param: Format,
    /// The gradients' format (only read).
    pub grad: Format,
    /// Every state array's format.
    pub state: Format,
    /// With a low-precision parameter: an f32 copy of it (the state array `master`, initialized
    /// from the parameter at registration) that each step updates, writing the parameter rounded
    /// to nearest even in the same pass.
    pub master: bool,
    /// How a bf16 parameter without a master copy is rounded ([`Rounding::Nearest`] otherwise).
    pub rounding: Rounding,
    /// An exponential moving average of the weights (the master copy where there is one), the
    /// f32 state array `ema`, updated in the same pass as each step. Set by `Optimizer::set_ema`
    /// (with its decay); the optimizer's constructors and `add_group_with_storage` take it from
    /// there, not from the storage given.
    pub ema: bool,
}

impl Storage {
    /// f32 everywhere: the default, and what every kernel runs today.
    pub const F32: Storage = Storage {
        param: Format::F32,
        grad: Format::F32,
        state: Format::F32,
        master: false,
        rounding: Rounding::Nearest,
        ema: false,
    };

    /// The storage combinations `wgpu-optim shader --all` writes and the tests validate: f32;
    /// f32 parameters with bf16 or f16 gradients; bf16 parameters (with bf16 or f32 gradients)
    /// with a master copy, rounded to nearest or stochastically without one; f16 parameters and
    /// gradients with a master copy or without. Other combinations of these formats compose as
    /// well (see [`Storage::check`]). The test-only format is not among them.
    pub fn supported() -> Vec<Storage> {
        use Format::{BF16, F16, F32};
        let s = |param, grad, master, rounding| Storage { param, grad, state: F32, master, rounding, ema: false };
        let sr = Rounding::Stochastic { seed: 0 };
        vec![
            Storage::F32,
            s(F32, BF16, false, Rounding::Nearest),
            s(F32, F16, false, Rounding::Nearest),
            s(BF16, BF16, false, Rounding::Nearest),
            s(BF16, BF16, true, Rounding::Nearest),
            s(BF16, F32, true, Rounding::Nearest),
            s(BF16, BF16, false, sr),
            s(F16, F16, false, Rounding::Nearest),
            s(F16, F16, true, Rounding::Nearest),
        ]
    }

    /// Whether any role uses f16 (the module then starts with `enable f16;`, and the device
    /// needs `wgpu::Features::SHADER_F16`).
    pub fn uses_f16(&self) -> bool {
        [self.param, self.grad, self.state].contains(&Format::F16)
    }

    /// Whether the kernel rounds the parameter stochastically.
    pub fn stochastic(&self) -> bool {
        matches!(self.rounding, Rounding::Stochastic { .. })
    }

    /// The same storage with the seed left out: what the compiled module depends on.
    pub fn variant(&self) -> Storage {
        match self.rounding {
            Rounding::Stochastic { .. } => Storage { rounding: Rounding::Stochastic { seed: 0 }, ..*self },
            Rounding::Nearest => *self,
        }
    }

    /// Whether the combination is one the optimizer runs: state arrays in f32 (or the test-only
    /// format), a master copy only of a low-precision parameter, stochastic rounding only of a
    /// bf16 parameter without a master copy. Returns why not.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.state.is_low_precision() {
            return Err(format!("state arrays are kept in f32, not {}", self.state.name()));
        }
        if self.master && !self.param.is_low_precision() {
            return Err(format!("a master copy needs a low-precision parameter, not {}", self.param.name()));
        }
        if self.stochastic() && (self.param != Format::BF16 || self.master) {
            return Err("stochastic rounding is for bf16 parameters without a master copy".into());
        }
        Ok(())
    }

    /// Checks the storage for a device with `features`: [`Storage::check`], and f16 only where
    /// the device has `SHADER_F16`.
    ///
    /// # Errors
    /// [`crate::Error::UnsupportedStorage`] or [`crate::Error::ShaderF16Unsupported`].
    pub fn check_features(&self, features: wgpu::Features) -> crate::Result<()> {
        self.check().map_err(|reason| crate::Error::UnsupportedStorage { storage: self.name(), reason })?;
        if self.uses_f16() && !features.contains(wgpu::Features::SHADER_F16) {
            return Err(crate::Error::ShaderF16Unsupported { storage: self.name() });
        }
        Ok(())
    }

    /// `param-grad-state` format names, as in file names (`f32-f32-f32`), then `-master` with a
    /// master copy or `-sr` with stochastic rounding.
    pub fn name(&self) -> String {
        let suffix = match (self.master, self.rounding) {
            (true, _) => "-master",
            (false, Rounding::Stochastic { .. }) => "-sr",
            (false, Rounding::Nearest) => "",
        };
        let ema = if self.ema { "-ema" } else { "" };
        format!("{}-{}-{}{suffix}{ema}", self.param.name(), self.grad.name(), self.state.name())
    }

    /// Parses [`Storage::name`] (stochastic rounding with seed 0).
    pub fn from_name(name: &str) -> Option<Self> {
        let (name, ema) = match name.strip_suffix("-ema") {
            Some(name) => (name, true),
            None => (name, false),
        };
        let (name, master, rounding) = if let Some(name) = name.strip_suffix("-master") {
            (name, true, Rounding::Nearest)
        } else if let Some(name) = name.strip_suffix("-sr") {
            (name, false, Rounding::Stochastic { seed: 0 })
        } else {
            (name, false, Rounding::Nearest)
        };
        let mut parts = name.split('-').map(Format::from_name);
        let storage =
            Storage { param: parts.next()??, grad: parts.next()??, state: parts.next()??, master, rounding, ema };
        (parts.next().is_none() && storage.check().is_ok()).then_some(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        let bf = |bits: u32| f32::from_bits(bits);
        // Exactly halfway: ties go to the even neighbour.
        assert_eq!(Format::BF16.round(bf(0x3f80_8000)).to_bits(), 0x3f80_0000);
        assert_eq!(Format::BF16.round(bf(0x3f81_8000)).to_bits(), 0x3f82_0000);
        assert_eq!(Format::BF16.round(bf(0x3f80_8001)).to_bits(), 0x3f81_0000);
        assert!(Format::BF16.round(f32::NAN).is_nan());
        assert!(Format::BF16.round(bf(0x7f80_0001)).is_nan(), "a NaN whose payload is in the low half");
        assert_eq!(Format::BF16.round(f32::INFINITY), f32::INFINITY);
        assert_eq!(Format::BF16.round(f32::MAX), f32::INFINITY);
    }

    #[test]
    fn f16_rounds_to_nearest_even() {
        for (v, h) in [(1.0f32, 0x3c00u16), (65504.0, 0x7bff), (65520.0, 0x7c00), (-2.0, 0xc000), (5.960_464_5e-8, 1)] {
            assert_eq!(f32_to_f16(v), h, "{v}");
            assert_eq!(f16_to_f32(h), if h == 0x7c00 { f32::INFINITY } else { v }, "{h:#x}");
        }
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: to even (1).
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        // Half the smallest subnormal rounds to zero (even), a bit more rounds up.
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0);
        assert_eq!(f32_to_f16(2f32.powi(-25) * 1.5), 1);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        for h in 0..0x7c00u16 {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#x} round trip");
        }
    }

    #[test]
    fn stochastic_rounding_rounds_between_the_neighbours() {
        let v = f32::from_bits(0x3f80_4000); // a quarter of the way from 1 to the next bf16
        assert_eq!(Format::bf16_stochastic(v, 0).to_bits(), 0x3f80_0000);
        assert_eq!(Format::bf16_stochastic(v, 0xbfff).to_bits(), 0x3f80_0000);
        assert_eq!(Format::bf16_stochastic(v, 0xc000).to_bits(), 0x3f81_0000);
        assert!(Format::bf16_stochastic(f32::NAN, 0xffff).is_nan());
        assert_ne!(Rounding::Stochastic { seed: 1 }.step_seed(1), Rounding::Stochastic { seed: 1 }.step_seed(2));
    }
}
