// The gradient scan's reduction within a workgroup: each invocation's part of the norm of the
// unscaled gradients (as `scaler.unscale_` leaves them: g * inv_scale, rounded) and its flags,
// reduced to one partial per workgroup, written where the host placed this dispatch's partials.
var<workgroup> scan_part: array<f32, 256>;
var<workgroup> scan_flags: array<u32, 256>;

fn scan_reduce(g: vec4<f32>, lid: u32, workgroup: u32) {
    let x = g * amp.inv_scale;
    let a = abs(x);
    var part = dot(x, x);
    if ((amp.control & AMP_NORM_INF) != 0u) {
        part = max(max(a.x, a.y), max(a.z, a.w));
    }
    // Groups outside the clipped ones count for the non-finite check only.
    scan_part[lid] = select(0.0, part, u.clipped != 0u);
    // Non-finite anywhere skips the step; in a clipped group it also makes the norm non-finite.
    let nonfinite = amp_nonfinite(g);
    scan_flags[lid] = nonfinite | select(0u, nonfinite << 2u, u.clipped != 0u);
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            let other = scan_part[lid + s];
            if ((amp.control & AMP_NORM_INF) != 0u) {
                scan_part[lid] = max(scan_part[lid], other);
            } else {
                scan_part[lid] = scan_part[lid] + other;
            }
            scan_flags[lid] = scan_flags[lid] | scan_flags[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let at = amp.partials_first + 2u * (u.partial_first + workgroup);
        amp.data[at] = bitcast<u32>(scan_part[0]);
        amp.data[at + 1u] = scan_flags[0];
    }
}
