// The gradient scan's part of one invocation: the norm of the unscaled gradients it reads (as
// `scaler.unscale_` leaves them: g * inv_scale, rounded; a sum of squares, or a largest magnitude)
// and whether it saw an infinity or a NaN, accumulated over the items it strides over, then
// written where the host placed this dispatch's partials: one per invocation, so that no
// workgroup barrier is needed (`finish` reduces them).
//
// Per item the scan does as little as it can, since it reads the gradients a second time: four
// lanes of squares (or magnitudes) and the largest magnitude's bit pattern, reduced across the
// lanes once at the end. The bits tell what WGSL's float comparisons cannot (compilers may assume
// finite floats): |g| = 0x7f800000 is an infinity, anything above a NaN.
struct ScanPart {
    part: vec4<f32>,
    top: vec4<u32>,
}

fn scan_add(acc: ScanPart, g: vec4<f32>, inv_scale: f32, inf_norm: bool) -> ScanPart {
    let x = g * inv_scale;
    var r = acc;
    if (inf_norm) {
        r.part = max(r.part, abs(x));
    } else {
        r.part = r.part + x * x;
    }
    r.top = max(r.top, bitcast<vec4<u32>>(g) & vec4(0x7fffffffu));
    return r;
}

fn scan_write(acc: ScanPart, invocation: u32, inf_norm: bool) {
    let p = acc.part;
    let part = select((p.x + p.y) + (p.z + p.w), max(max(p.x, p.y), max(p.z, p.w)), inf_norm);
    let top = max(max(acc.top.x, acc.top.y), max(acc.top.z, acc.top.w));
    // A NaN anywhere makes the norm NaN whatever else was seen, so one flag is enough here.
    let flags = select(0u, AMP_INF, top == 0x7f800000u) | select(0u, AMP_NAN, top > 0x7f800000u);
    let at = amp.partials_first + 2u * (u.partial_first + invocation);
    // Groups outside the clipped ones count for the non-finite check only.
    amp.data[at] = bitcast<u32>(select(0.0, part, u.clipped != 0u));
    // Non-finite anywhere skips the step; in a clipped group it also makes the norm non-finite.
    amp.data[at + 1u] = flags | select(0u, flags << 2u, u.clipped != 0u);
}
