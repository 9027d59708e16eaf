// The gradient scan's part of one invocation: the norm of the unscaled gradients it reads (as
// `scaler.unscale_` leaves them: g * inv_scale, rounded; a sum of squares, or a largest magnitude)
// and whether it saw an infinity or a NaN, accumulated over the items it strides over, then
// written where the host placed this dispatch's partials: one per invocation, so that no
// workgroup barrier is needed (`finish` reduces them).
struct ScanPart {
    part: f32,
    flags: u32,
}

fn scan_add(acc: ScanPart, g: vec4<f32>, inf_norm: bool) -> ScanPart {
    let x = g * amp.inv_scale;
    let a = abs(x);
    var r = acc;
    if (inf_norm) {
        r.part = max(r.part, max(max(a.x, a.y), max(a.z, a.w)));
    } else {
        r.part = r.part + dot(x, x);
    }
    r.flags = r.flags | amp_nonfinite(g);
    return r;
}

fn scan_write(acc: ScanPart, invocation: u32) {
    let at = amp.partials_first + 2u * (u.partial_first + invocation);
    // Groups outside the clipped ones count for the non-finite check only.
    amp.data[at] = bitcast<u32>(select(0.0, acc.part, u.clipped != 0u));
    // Non-finite anywhere skips the step; in a clipped group it also makes the norm non-finite.
    amp.data[at + 1u] = acc.flags | select(0u, acc.flags << 2u, u.clipped != 0u);
}
