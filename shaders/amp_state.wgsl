// What the device decides about a step under loss scaling and gradient clipping, kept in one
// storage buffer (`amp`) between steps; the host never reads it during training. Keep in sync
// with `src/optim/amp.rs` (`AmpHeader`). Words 0-7 are the device's; words 8-19 the host writes
// before each step; `data` holds each class's count of skipped steps, then the step's class
// operations, then the gradient scan's partial norms (two words per workgroup).
struct Amp {
    scale: f32,           // the loss scale the next step's gradients carry (GradScaler's `_scale`)
    growth_tracker: u32,  // steps since the scale last changed, without a non-finite gradient
    found_inf: u32,       // 1 when this step's gradients held an infinity or a NaN: it changes nothing
    skipped: u32,         // steps skipped so far
    inv_scale: f32,       // 1 / scale
    step_inv_scale: f32,  // this step's 1 / scale (before the scale is updated)
    clip_coef: f32,       // this step's min(1, max_norm / (total_norm + 1e-6)), or 1 without clipping
    total_norm: f32,      // this step's norm of the unscaled gradients (NaN or inf if they hold one)
    control: u32,         // AMP_SCALING | AMP_CLIP | AMP_NORM_INF
    growth_interval: u32,
    growth_factor: f32,
    backoff_factor: f32,
    max_norm: f32,
    partial_count: u32,   // partial norms this step
    copies: u32,          // class counters copied this step (a class split by tensors without gradients)
    increments: u32,      // classes that step this step (their counters count a skipped step)
    ops_first: u32,       // where the copies (source, destination pairs) and increments start in `data`
    partials_first: u32,  // where the partial norms start in `data`
    dispatches: u32,      // the step's dispatches (the `correct` pass: one invocation each)
    _pad1: u32,
    data: array<u32>,
}

const AMP_SCALING: u32 = 1u;
const AMP_CLIP: u32 = 2u;
const AMP_NORM_INF: u32 = 4u;
// The partials' flags: an infinity, a NaN.
const AMP_INF: u32 = 1u;
const AMP_NAN: u32 = 2u;

