//! The composition: a kernel's WGSL `update()` plus its Rust declaration give the module that is
//! compiled. Plain string assembly over one fixed skeleton (STYLE.md: no templating engine);
//! `wgpu-optim shader` prints the result, so a reader sees every line that runs.
//!
//! The skeleton, in order: the flags as `const`s and `OFFSETS` and `SPANS` as the pipeline
//! constants;
//! `struct Step` (the uniform, [`super::StepUniform`]'s layout, the scalars named by the
//! declaration); the bindings per storage format; `struct Values` (the parameter and each state
//! array, four elements each); the kernel's own source (`update()` and any helpers); loads and
//! stores per format; and the entry points `main` (one element per invocation, at any offset)
//! and `main4` (four, where every slice starts at a multiple of four elements).

use std::fmt::Write;

use super::{bf16_helpers, f16_helpers, Format, Kernel, Storage, MAX_SCALARS, SPAN_BLOCK};

/// The WGSL module of `kernel` for these storage formats and flag bits (bit `k` is
/// `kernel.flags[k]`). This is exactly the source the optimizer compiles.
pub fn compose(kernel: &Kernel, storage: Storage, flags: u32) -> String {
    compose_variant(kernel, storage, flags, false)
}

/// [`compose`], with `amp` the variant that loss scaling and gradient clipping run (the `amp`
/// binding, `shaders/amp_state.wgsl`): the gradients are unscaled and clipped as they are loaded
/// (by `inv_scale` and `clip_coef` of the uniform, which [`compose_correct`]'s pass fills in), a
/// skipped step returns at once (`skip`), and the entry points `scan` and `scan4` write the
/// invocations' parts of the gradient norm.
pub fn compose_variant(kernel: &Kernel, storage: Storage, flags: u32, amp: bool) -> String {
    let mut out = String::with_capacity(kernel.source.len() + 6000);
    let w = &mut out;
    let on = kernel.flags_on(flags);
    let mut command = match on.is_empty() {
        true => format!("wgpu-optim shader {} --storage {}", kernel.name, storage.name()),
        false => format!("wgpu-optim shader {} --storage {} --flags {}", kernel.name, storage.name(), on.join(",")),
    };
    if amp {
        command.push_str(" --amp");
    }
    let _ = writeln!(
        w,
        "// {name}: composed by wgpu-optim from shaders/{name}.wgsl and the kernel's declaration \
         (src/algorithm/).\n// Storage: param {}, grad {}, state {}{}. `{command}` prints this module.\n",
        storage.param.name(),
        storage.grad.name(),
        storage.state.name(),
        match (storage.master, storage.stochastic()) {
            (true, _) => ", f32 master copy of the parameter",
            (false, true) => ", parameter rounded stochastically",
            (false, false) => "",
        },
        name = kernel.name,
    );
    if storage.uses_f16() {
        w.push_str("enable f16;\n\n");
    }
    w.push_str("const WG: u32 = 256u;\n");
    w.push_str("// The flags of this variant: one module per combination a step uses.\n");
    for (bit, flag) in kernel.flags.iter().enumerate() {
        let _ = writeln!(w, "const {flag}: bool = {};", flags >> bit & 1 == 1);
    }
    w.push_str("// The pipeline constants. OFFSETS: false when every binding starts at its slice.\n");
    w.push_str("override OFFSETS: bool = true;\n");
    w.push_str("// SPANS: true when the dispatch updates only the element ranges listed in `spans` (tensors\n");
    w.push_str("// without a gradient this step are left out, however many there are, in one dispatch).\n");
    w.push_str("override SPANS: bool = false;\n\n");

    step_struct(w, kernel);
    w.push_str("\n@group(0) @binding(0) var<uniform> u: Step;\n");
    storage.param.bindings(w, "param", 1, "read_write", true);
    // Only read, yet bound read-write: an engine's pooled allocator may place a gradient in its
    // parameter's buffer (disjoint ranges), and wgpu refuses one buffer bound read-only and
    // read-write in one dispatch, but not twice read-write.
    storage.grad.bindings(w, "grad", 2, "read_write", false);
    for (k, state) in kernel.states.iter().enumerate() {
        storage.state.bindings(w, state.name, 3 + k as u32, "read_write", true);
    }
    let _ = writeln!(
        w,
        "// With SPANS: this step's [start, end) element ranges within the run, sorted, as pairs\n\
         // from spans[u.span_first]; before them, per block of {SPAN_BLOCK} elements of the run, the first\n\
         // span that ends past the block's start. Element i of the dispatch is u.first + i of the run.\n\
         @group(0) @binding({}) var<storage, read> spans: array<u32>;",
        super::spans_binding(kernel)
    );
    if storage.master {
        w.push_str("// The parameter's f32 master copy (a state array): each step updates it and stores the\n");
        w.push_str("// parameter rounded from it.\n");
        Format::F32.bindings(w, "master", super::master_binding(kernel), "read_write", true);
    }
    if storage.ema {
        w.push_str("// The EMA of the weights (a state array), updated after each step, a skipped one too.\n");
        Format::F32.bindings(w, "ema", super::ema_binding(kernel, storage), "read_write", true);
    }
    if amp {
        let binding = super::amp_binding(kernel, storage);
        let _ = writeln!(w, "@group(0) @binding({binding}) var<storage, read_write> amp: Amp;");
    }

    w.push_str("\n// A parameter and its state, four elements of each.\nstruct Values {\n    param: vec4<f32>,\n");
    for state in kernel.states {
        let _ = writeln!(w, "    {}: vec4<f32>,", state.name);
    }
    w.push_str("}\n\n");
    let _ = writeln!(w, "// ---- shaders/{}.wgsl ----", kernel.name);
    w.push_str(kernel.source.trim_end());
    let _ = writeln!(w, "\n// ---- end of shaders/{}.wgsl ----\n", kernel.name);

    let _ = writeln!(
        w,
        "// Which of the elements e..e+3 of the run lie in this dispatch's spans. The block table\n\
         // says at once where a block lies wholly inside a span (bit 31) or outside them all\n\
         // (bit 30), the first candidate span in the low bits; elsewhere, past the spans that end at\n\
         // or before e (from that candidate), each span that starts before e + 4 is tested.\n\
         fn in_spans4(e: u32) -> vec4<bool> {{\n    \
             let entry = spans[e / {SPAN_BLOCK}u];\n    \
             // The four lanes in one block (a dispatch that starts off a multiple of four may\n    \
             // straddle two), marked wholly inside or outside.\n    \
             if (e % {SPAN_BLOCK}u <= {SPAN_BLOCK}u - 4u && entry >= 0x40000000u) {{\n        \
                 return vec4<bool>(entry >= 0x80000000u);\n    \
             }}\n    \
             let lanes = vec4(e) + vec4(0u, 1u, 2u, 3u);\n    \
             var keep = vec4<bool>(false);\n    \
             var j = entry & 0x3fffffffu;\n    \
             while (j < u.span_count && spans[u.span_first + 2u * j + 1u] <= e) {{\n        \
                 j = j + 1u;\n    \
             }}\n    \
             while (j < u.span_count && spans[u.span_first + 2u * j] < e + 4u) {{\n        \
                 let start = spans[u.span_first + 2u * j];\n        \
                 let end = spans[u.span_first + 2u * j + 1u];\n        \
                 keep = keep | ((lanes >= vec4(start)) & (lanes < vec4(end)));\n        \
                 j = j + 1u;\n    \
             }}\n    \
             return keep;\n\
         }}\n"
    );
    if amp {
        w.push_str(AMP_STATE);
        w.push_str(AMP_SCAN);
    }
    if [storage.param, storage.grad].contains(&Format::BF16) {
        bf16_helpers(w);
    }
    if storage.param == Format::F16 {
        f16_helpers(w);
    }
    storage.param.loads(w, "param", true);
    storage.param.stores(w, "param", storage.stochastic());
    storage.grad.loads(w, "grad", false);
    for state in kernel.states {
        storage.state.loads(w, state.name, true);
        storage.state.stores(w, state.name, false);
    }
    if storage.master {
        Format::F32.loads(w, "master", true);
        Format::F32.stores(w, "master", false);
    }
    if storage.ema {
        Format::F32.loads(w, "ema", true);
        Format::F32.stores(w, "ema", false);
    }
    entry_point(w, kernel, storage, false, amp);
    entry_point(w, kernel, storage, true, amp);
    if amp {
        scan_entry_point(w, false);
        scan_entry_point(w, true);
    }
    if storage.ema {
        swap_entry_point(w, storage, false);
        swap_entry_point(w, storage, true);
    }
    out
}

/// `struct Step`: the layout of [`super::StepUniform`] (keep the two in sync; tests check the
/// size), its scalars named by the kernel's declaration.
fn step_struct(w: &mut String, kernel: &Kernel) {
    w.push_str("struct Step {\n    n: u32,\n    param_off: u32,\n    grad_off: u32,\n    state_off: u32,\n");
    w.push_str("    flags: u32,\n    span_first: u32,\n    span_count: u32,\n    first: u32,\n");
    w.push_str("    t: u32, // the tensors' own step count on the host (from 1)\n");
    w.push_str("    amp_class: u32, // with loss scaling: the tensors' counter of skipped steps in `amp`\n");
    w.push_str("    partial_first: u32, // where this dispatch's gradient scan writes its partial norms\n");
    w.push_str("    clipped: u32, // with clipping: 1 when the tensors' group is clipped\n");
    w.push_str("    seed: u32, // stochastic rounding: a hash of the seed and the tensor's own step\n");
    w.push_str("    ema_weight: f32, // with an EMA of the weights: 1 - decay\n");
    w.push_str("    skip: u32, // under loss scaling: 1 when the step is skipped (the correct pass writes it)\n");
    w.push_str("    inv_scale: f32, // under loss scaling: 1 / scale (the correct pass writes it)\n");
    w.push_str("    clip_coef: f32, // with clipping: the clip coefficient, or 1 (the correct pass writes it)\n");
    w.push_str("    _pad1: u32,\n    _pad2: u32,\n    _pad3: u32,\n");
    for (name, doc) in kernel.scalars.iter().zip(kernel.scalar_docs) {
        let doc = doc.trim();
        if doc.is_empty() {
            let _ = writeln!(w, "    {name}: f32,");
        } else {
            let _ = writeln!(w, "    {name}: f32, // {doc}");
        }
    }
    for pad in kernel.scalars.len()..MAX_SCALARS {
        let _ = writeln!(w, "    _pad{}: f32,", pad + 3);
    }
    w.push_str("}\n");
}

/// The `correct` pass of a kernel under loss scaling or clipping: one invocation per dispatch of
/// the step, after `finish` and before the update (which runs in the next compute pass), writes
/// into the dispatch's slot of the step's slot buffer (`slot_bytes` from one slot to the next)
/// what `finish` decided (`skip`, `inv_scale`, `clip_coef`) and, for a kernel whose scalars depend
/// on the step count ([`super::DeviceStep::Corrected`]), its scalars at the device's own step
/// count where its tensors sat out skipped steps. Once per dispatch, so that the update reads
/// only its uniform: on a CPU adapter a correction inside it (even behind an untaken branch) or
/// reads of storage words cost every invocation.
pub fn compose_correct(kernel: &Kernel, slot_bytes: u64) -> String {
    let mut out = String::with_capacity(8000);
    let w = &mut out;
    let _ = writeln!(
        w,
        "// {}: each dispatch's uniform completed on the device after `finish`, composed by wgpu-optim\n\
         // (src/kernel/compose.rs, `compose_correct`) from the kernel's declaration.\n",
        kernel.name
    );
    step_struct(w, kernel);
    let pad = match (slot_bytes - u64::from(super::UNIFORM_SIZE)) / 16 {
        0 => String::new(),
        n => format!("    _pad: array<vec4<u32>, {n}>,\n"),
    };
    let _ = writeln!(
        w,
        "// One dispatch's slot: its Step, padded to the slot size ({slot_bytes} bytes).\n\
         struct Slot {{\n    s: Step,\n{pad}}}\n\n\
         @group(0) @binding(0) var<storage, read_write> slots: array<Slot>;\n\
         @group(0) @binding(1) var<storage, read_write> amp: Amp;\n"
    );
    w.push_str(AMP_STATE);
    let corrected = match kernel.device_step {
        super::DeviceStep::Corrected(source) => {
            w.push_str(DEVICE_STEP_MATH);
            let _ = writeln!(w, "// ---- the kernel's correction (src/algorithm/{}.rs) ----", kernel.name);
            w.push_str(source.trim_end());
            w.push_str("\n// ---- end of the correction ----\n\n");
            "\x20   // Steps the device skipped do not count for these tensors: their scalars at its count.\n\
             \x20   let skipped = amp.data[s.amp_class];\n\
             \x20   if (skipped != 0u) {\n\
             \x20       s = at_step(s, f32(s.t - skipped), f32(s.t));\n\
             \x20   }\n"
        }
        _ => "",
    };
    let _ = writeln!(
        w,
        "@compute @workgroup_size(64)\n\
         fn correct(@builtin(global_invocation_id) gid: vec3<u32>) {{\n\
         \x20   let d = gid.x;\n\
         \x20   if (d >= amp.dispatches) {{\n        return;\n    }}\n\
         \x20   var s = slots[d].s;\n\
         {corrected}\
         \x20   // What `finish` decided, for the update to read as uniforms.\n\
         \x20   s.skip = amp.found_inf;\n\
         \x20   s.inv_scale = amp.step_inv_scale;\n\
         \x20   s.clip_coef = select(1.0, amp.clip_coef, s.clipped != 0u);\n\
         \x20   slots[d].s = s;\n\
         }}"
    );
    out
}

/// `struct Amp` (keep in sync with `src/optim/amp.rs`): what the device decides about a step
/// under loss scaling and clipping, with the counters and partial norms after it.
const AMP_STATE: &str = include_str!("../../shaders/amp_state.wgsl");

/// `scan_reduce`: a workgroup's partial of the gradient norm.
const AMP_SCAN: &str = include_str!("../../shaders/amp_scan.wgsl");

/// `one_minus_pow`, for the kernels' corrections to the device's step count.
const DEVICE_STEP_MATH: &str = include_str!("../../shaders/device_step.wgsl");

/// `scan` or `scan4`: each invocation's part of the norm of the unscaled gradients (a sum of
/// squares, or a largest magnitude) over the items it strides over ([`super::SCAN_ITEMS`] each)
/// and whether it saw an infinity or a NaN, for `shaders/amp.wgsl` to reduce. No workgroup
/// memory, no barrier.
fn scan_entry_point(w: &mut String, wide: bool) {
    let (name, n, div) = if wide { ("scan4", "u.n / 4u", " / 4u") } else { ("scan", "u.n", "") };
    let _ = writeln!(
        w,
        "\n@compute @workgroup_size(256)\nfn {name}(@builtin(global_invocation_id) gid: vec3<u32>, \
         @builtin(num_workgroups) nwg: vec3<u32>) {{"
    );
    // Lanes in groups of SCAN_LANES walk one block together, each iteration the next SCAN_LANES
    // items side by side: adjacent lanes read adjacent memory (coalesced on a GPU), and a CPU
    // adapter's SIMD chunk reads through its block in order rather than a page further each time.
    let _ = writeln!(
        w,
        "    // One invocation per {SCAN_ITEMS} of the update's items: a group of {SCAN_LANES} lanes walks a block of\n\
         \x20   // {SCAN_LANES} x {SCAN_ITEMS} items together, each lane one of every {SCAN_LANES} side by side.\n\
         \x20   let j = gid.x + gid.y * nwg.x * WG;\n\
         \x20   let first = (j / {SCAN_LANES}u) * {block}u + j % {SCAN_LANES}u;\n\
         \x20   let last = min(first + {span}u, {n});",
        block = SCAN_LANES * super::SCAN_ITEMS,
        span = SCAN_LANES * super::SCAN_ITEMS,
        SCAN_ITEMS = super::SCAN_ITEMS,
    );
    w.push_str(
        "    let inf_norm = (amp.control & AMP_NORM_INF) != 0u;\n    let inv_scale = amp.inv_scale;\n    \
         var acc = ScanPart(vec4(0.0), vec4(0u));\n",
    );
    let _ = writeln!(w, "    for (var i = first; i < last; i = i + {SCAN_LANES}u) {{");
    if wide {
        w.push_str("        var keep = vec4<bool>(true);\n        if (SPANS) {\n            keep = in_spans4(u.first + 4u * i);\n        }\n");
    } else {
        w.push_str("        var keep = vec4<bool>(true, false, false, false);\n        if (SPANS) {\n            keep.x = in_spans4(u.first + i).x;\n        }\n");
    }
    let _ = writeln!(w, "        let ig = select(i, u.grad_off{div} + i, OFFSETS);");
    let load = if wide { "load_grad4(ig)".to_string() } else { "vec4(load_grad(ig), 0.0, 0.0, 0.0)".to_string() };
    let _ = writeln!(w, "        acc = scan_add(acc, select(vec4(0.0), {load}, keep), inv_scale, inf_norm);");
    w.push_str("    }\n    scan_write(acc, j, inf_norm);\n}\n");
}

/// Lanes of the gradient scan that walk a block of items side by side (see `scan_entry_point`).
const SCAN_LANES: u32 = 32;

/// `main` (one element per invocation; `update` computes four lanes and the first is kept) or
/// `main4` (four elements per invocation).
fn entry_point(w: &mut String, kernel: &Kernel, storage: Storage, wide: bool, amp: bool) {
    let (name, n, div, suffix) = if wide { ("main4", "u.n / 4u", " / 4u", "4") } else { ("main", "u.n", "", "") };
    let widen = |expr: String| if wide { expr } else { format!("vec4({expr})") };
    let _ = writeln!(
        w,
        "\n@compute @workgroup_size(256)\nfn {name}(@builtin(global_invocation_id) gid: vec3<u32>, \
         @builtin(num_workgroups) nwg: vec3<u32>) {{"
    );
    if amp && !storage.ema {
        w.push_str("    // Loss scaling: a step with a non-finite gradient anywhere changes nothing.\n");
        w.push_str("    if (u.skip != 0u) {\n        return;\n    }\n");
    }
    w.push_str("    // A 2-D grid reaches past 65,535 workgroups in one dimension.\n");
    w.push_str("    let i = gid.x + gid.y * nwg.x * WG;\n");
    let _ = writeln!(w, "    if (i >= {n}) {{\n        return;\n    }}");
    if wide {
        w.push_str(
            "    // The lanes inside this step's spans; the others keep their values (written back as read).\n\
             \x20   var keep = vec4<bool>(true);\n\
             \x20   if (SPANS) {\n\
             \x20       let e = u.first + 4u * i;\n\
             \x20       keep = in_spans4(e);\n\
             \x20       if (!any(keep)) {\n            return;\n        }\n\
             \x20   }\n",
        );
    } else {
        w.push_str("    if (SPANS && !in_spans4(u.first + i).x) {\n        return;\n    }\n");
    }
    for (var, field) in [("ip", "param_off"), ("ig", "grad_off"), ("is", "state_off")] {
        if var == "is" && kernel.states.is_empty() && !storage.master && !storage.ema {
            continue;
        }
        let _ = writeln!(w, "    let {var} = select(i, u.{field}{div} + i, OFFSETS);");
    }
    w.push_str("    var x: Values;\n");
    if storage.master {
        let _ = writeln!(w, "    x.param = {};", widen(format!("load_master{suffix}(is)")));
    } else {
        let _ = writeln!(w, "    x.param = {};", widen(format!("load_param{suffix}(ip)")));
    }
    for state in kernel.states {
        let load = format!("x.{0} = {1};", state.name, widen(format!("load_{}{suffix}(is)", state.name)));
        guarded(w, state.flag, &load);
    }
    let grad = widen(format!("load_grad{suffix}(ig)"));
    if amp {
        // As PyTorch: unscaled (`scaler.unscale_`), then clipped (`clip_grad_norm_`), each rounded.
        let _ = writeln!(w, "    let g = ({grad} * u.inv_scale) * u.clip_coef;");
        w.push_str("    var y = update(g, x);\n");
    } else {
        let _ = writeln!(w, "    var y = update({grad}, x);");
    }
    if wide {
        w.push_str("    if (SPANS) {\n        y.param = select(x.param, y.param, keep);\n");
        for state in kernel.states {
            let _ = writeln!(w, "        y.{0} = select(x.{0}, y.{0}, keep);", state.name);
        }
        w.push_str("    }\n");
    }
    let lane = if wide { "" } else { ".x" };
    if storage.ema {
        // As `AveragedModel` with `get_ema_multi_avg_fn(decay)`, called after every iteration: a
        // skipped step moves the average toward the unchanged weights.
        w.push_str(
            "    // The EMA of the weights: the first update copies (weight 1), later ones move by 1 - decay.\n",
        );
        let _ = writeln!(w, "    let e0 = {};", widen(format!("load_ema{suffix}(is)")));
        let weights = if amp {
            w.push_str("    let skipped = u.skip != 0u;\n");
            "select(y.param, x.param, skipped)"
        } else {
            "y.param"
        };
        let _ = writeln!(w, "    var e = e0 + select(u.ema_weight, 1.0, u.t == 1u) * ({weights} - e0);");
        if wide {
            w.push_str("    if (SPANS) {\n        e = select(e0, e, keep);\n    }\n");
        }
        let _ = writeln!(w, "    store_ema{suffix}(is, e{lane});");
        if amp {
            w.push_str("    // Loss scaling: a step with a non-finite gradient anywhere changes nothing else.\n");
            w.push_str("    if (skipped) {\n        return;\n    }\n");
        }
    }
    if storage.master {
        let _ = writeln!(w, "    store_master{suffix}(is, y.param{lane});");
    }
    if storage.stochastic() {
        // The random bits come from the element's index within its run.
        let e = if wide { "u.first + 4u * i" } else { "u.first + i" };
        let _ = writeln!(w, "    store_param{suffix}(ip, y.param{lane}, {e});");
    } else {
        let _ = writeln!(w, "    store_param{suffix}(ip, y.param{lane});");
    }
    for state in kernel.states {
        guarded(w, state.flag, &format!("store_{0}{suffix}(is, y.{0}{lane});", state.name));
    }
    w.push_str("}\n");
}

/// `swap` or `swap4`: the EMA of the weights exchanged with the weights (the master copy where
/// there is one, the parameter stored from it rounded to nearest), over whole runs, every tensor.
/// Swapping twice restores both exactly.
fn swap_entry_point(w: &mut String, storage: Storage, wide: bool) {
    let (name, n, div, suffix) = if wide { ("swap4", "u.n / 4u", " / 4u", "4") } else { ("swap", "u.n", "", "") };
    let _ = writeln!(
        w,
        "\n@compute @workgroup_size(256)\nfn {name}(@builtin(global_invocation_id) gid: vec3<u32>, \
         @builtin(num_workgroups) nwg: vec3<u32>) {{"
    );
    w.push_str("    let i = gid.x + gid.y * nwg.x * WG;\n");
    let _ = writeln!(w, "    if (i >= {n}) {{\n        return;\n    }}");
    let _ = writeln!(w, "    let ip = select(i, u.param_off{div} + i, OFFSETS);");
    let _ = writeln!(w, "    let is = select(i, u.state_off{div} + i, OFFSETS);");
    let weights = if storage.master { format!("load_master{suffix}(is)") } else { format!("load_param{suffix}(ip)") };
    let _ = writeln!(w, "    let weights = {weights};\n    let e = load_ema{suffix}(is);");
    let _ = writeln!(w, "    store_ema{suffix}(is, weights);");
    if storage.master {
        let _ = writeln!(w, "    store_master{suffix}(is, e);");
    }
    if storage.stochastic() {
        // Refused by `Optimizer::swap_ema` (a stochastic store would not give the weights back);
        // composed so that every variant of the module compiles.
        let e = if wide { "u.first + 4u * i" } else { "u.first + i" };
        let _ = writeln!(w, "    store_param{suffix}(ip, e, {e});");
    } else {
        let _ = writeln!(w, "    store_param{suffix}(ip, e);");
    }
    w.push_str("}\n");
}

/// `statement`, inside `if (FLAG) { ... }` when the array is used only under a flag.
fn guarded(w: &mut String, flag: Option<&str>, statement: &str) {
    match flag {
        Some(flag) => {
            let _ = writeln!(w, "    if ({flag}) {{\n        {statement}\n    }}");
        }
        None => {
            let _ = writeln!(w, "    {statement}");
        }
    }
}

/// One composed module: a kernel, its storage formats, its flag bits, and whether it is the
/// loss-scaling variant.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    /// The kernel.
    pub kernel: &'static Kernel,
    /// The storage formats.
    pub storage: Storage,
    /// The flag bits (bit `k` is `kernel.flags[k]`).
    pub flags: u32,
    /// The variant loss scaling and clipping run ([`compose_variant`]).
    pub amp: bool,
}

impl Variant {
    /// Every variant the optimizer can compile for `kernel`: each supported storage combination
    /// with each combination of flags, without and with loss scaling.
    pub fn all(kernel: &'static Kernel) -> Vec<Variant> {
        let mut out = Vec::new();
        for amp in [false, true] {
            for storage in Storage::supported() {
                out.extend((0..1u32 << kernel.flags.len()).map(|flags| Variant { kernel, storage, flags, amp }));
            }
        }
        out
    }

    /// The names of the flags that are on.
    pub fn flag_names(&self) -> Vec<&'static str> {
        self.kernel.flags_on(self.flags)
    }

    /// A file name that says what the variant is: `adam.f32-f32-f32.AMSGRAD+MAXIMIZE.wgsl`
    /// (`.none.` without flags; `.amp.wgsl` for the loss-scaling variant).
    pub fn file_name(&self) -> String {
        let flags = self.flag_names();
        let flags = if flags.is_empty() { "none".to_string() } else { flags.join("+") };
        let amp = if self.amp { ".amp" } else { "" };
        format!("{}.{}.{flags}{amp}.wgsl", self.kernel.name, self.storage.name())
    }

    /// The composed module.
    pub fn source(&self) -> String {
        compose_variant(self.kernel, self.storage, self.flags, self.amp)
    }
}
