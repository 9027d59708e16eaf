// The step's decision under loss scaling and clipping, one workgroup after the gradient scan and
// before the update (`struct Amp` is composed in front): the total norm from the scan's partials,
// whether the step is skipped, the clip coefficient, the skipped-step counters of the classes that
// step, and GradScaler's update of the scale for the next step.
//
//   total_norm = sqrt(sum of g^2) (or max |g|) over the unscaled gradients of the clipped groups
//   found_inf  = any gradient is an infinity or a NaN                     (with loss scaling)
//   clip_coef  = min(1, max_norm / (total_norm + 1e-6))                   (with clipping)
//   scale      = scale * backoff_factor, growth_tracker = 0               if found_inf
//              = scale * growth_factor (if finite), growth_tracker = 0    if growth_tracker + 1 == growth_interval
//              growth_tracker = growth_tracker + 1                        otherwise

@group(0) @binding(0) var<storage, read_write> amp: Amp;

var<workgroup> part: array<f32, 256>;
var<workgroup> flags: array<u32, 256>;

@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_index) lid: u32) {
    let inf_norm = (amp.control & AMP_NORM_INF) != 0u;
    var acc = 0.0;
    var seen = 0u;
    for (var k = lid; k < amp.partial_count; k = k + 256u) {
        let v = bitcast<f32>(amp.data[amp.partials_first + 2u * k]);
        acc = select(acc + v, max(acc, v), inf_norm);
        seen = seen | amp.data[amp.partials_first + 2u * k + 1u];
    }
    part[lid] = acc;
    flags[lid] = seen;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            part[lid] = select(part[lid] + part[lid + s], max(part[lid], part[lid + s]), inf_norm);
            flags[lid] = flags[lid] | flags[lid + s];
        }
        workgroupBarrier();
    }
    if (lid != 0u) {
        return;
    }
    var total = select(sqrt(part[0]), part[0], inf_norm);
    // As PyTorch's norms: a NaN anywhere gives NaN, else an infinity gives infinity.
    // (The flags of the clipped groups' gradients are the ones two bits up.)
    if ((flags[0] & (AMP_NAN << 2u)) != 0u) {
        total = bitcast<f32>(0x7fc00000u);
    } else if ((flags[0] & (AMP_INF << 2u)) != 0u) {
        total = bitcast<f32>(0x7f800000u);
    }
    amp.total_norm = total;
    let scaling = (amp.control & AMP_SCALING) != 0u;
    let skip = scaling && (flags[0] & (AMP_INF | AMP_NAN)) != 0u;
    amp.found_inf = select(0u, 1u, skip);
    var coef = 1.0;
    if ((amp.control & AMP_CLIP) != 0u) {
        coef = min(amp.max_norm / (total + 1e-6), 1.0);
    }
    amp.clip_coef = coef;
    amp.step_inv_scale = amp.inv_scale;
    // A class split by tensors without a gradient: the new class starts from the old one's count.
    for (var k = 0u; k < amp.copies; k = k + 1u) {
        let source = amp.data[amp.ops_first + 2u * k];
        amp.data[amp.data[amp.ops_first + 2u * k + 1u]] = amp.data[source];
    }
    if (skip) {
        amp.skipped = amp.skipped + 1u;
        for (var k = 0u; k < amp.increments; k = k + 1u) {
            let c = amp.data[amp.ops_first + 2u * amp.copies + k];
            amp.data[c] = amp.data[c] + 1u;
        }
    }
    if (scaling) {
        if (skip) {
            amp.scale = amp.scale * amp.backoff_factor;
            amp.growth_tracker = 0u;
        } else {
            let successful = amp.growth_tracker + 1u;
            if (successful == amp.growth_interval) {
                let grown = amp.scale * amp.growth_factor;
                // Not past f32's range to infinity (PyTorch).
                if ((bitcast<u32>(grown) & 0x7f800000u) != 0x7f800000u) {
                    amp.scale = grown;
                }
                amp.growth_tracker = 0u;
            } else {
                amp.growth_tracker = successful;
            }
        }
        amp.inv_scale = 1.0 / amp.scale;
    }
}
