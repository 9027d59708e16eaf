// Sets `found` if any of elements `off .. off + n` is NaN or infinite: f32 elements, or 16-bit
// ones (bf16 or f16) two per u32, element 2k in the low half. Used by
// `Optimizer::found_nonfinite` over the gradients; mirrored by `f32::is_finite` on the CPU.

const WG: u32 = 256u;
const EXPONENT: u32 = 0x7f800000u;

// Keep in sync with `RangeUniform` in src/optim/nonfinite.rs.
struct Range {
    n: u32,
    off: u32,
    // The exponent bits of the format: 0x7f800000 (f32), 0x7f80 (bf16) or 0x7c00 (f16), whose
    // elements are 16 bits wide.
    exponent: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> r: Range;
@group(0) @binding(1) var<storage, read> values: array<u32>;
@group(0) @binding(2) var<storage, read_write> found: atomic<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= r.n) {
        return;
    }
    // WGSL has no isnan/isinf and lets compilers assume finite floats: test the bits instead.
    // All exponent bits set is an infinity or a NaN.
    let e = r.off + i;
    var bits = values[e];
    if (r.exponent != EXPONENT) {
        bits = (values[e / 2u] >> (16u * (e % 2u))) & 0xffffu;
    }
    if ((bits & r.exponent) == r.exponent) {
        atomicOr(&found, 1u);
    }
}
