//! The f64 mirror of loss scaling and clipping (`src/optim/amp.rs`, `shaders/amp.wgsl`,
//! `shaders/amp_scan.wgsl`): one step over several tensors, as the device decides it.

use super::CpuOptimizer;
use crate::error::Result;
use crate::optim::{ClipGradNorm, GradScalerConfig, NormType};

/// A loss scaler and clipping over several [`CpuOptimizer`]s.
///
/// ```
/// use wgpu_optim::{cpu::{CpuAmp, CpuOptimizer}, GradScalerConfig, SgdConfig};
/// let mut amp = CpuAmp::new(Some(GradScalerConfig { init_scale: 4.0, ..Default::default() }), None);
/// let mut t = vec![CpuOptimizer::new(SgdConfig { lr: 1.0, ..Default::default() }.into(), vec![0.0])?];
/// assert!(!amp.step(&mut t, &[0], &[Some(vec![8.0])])?);     // unscaled: 2.0
/// assert_eq!(t[0].param(), &[-2.0]);
/// assert!(amp.step(&mut t, &[0], &[Some(vec![f64::NAN])])?);  // skipped
/// assert_eq!((t[0].param(), amp.scale), (&[-2.0][..], 2.0));
/// # Ok::<(), wgpu_optim::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CpuAmp {
    /// Loss scaling, if on.
    pub scaler: Option<GradScalerConfig>,
    /// Clipping, if on.
    pub clip: Option<ClipGradNorm>,
    /// The scale the next step's gradients carry (an f32 value, as on the device).
    pub scale: f64,
    /// Steps in a row without a non-finite gradient since the scale last changed.
    pub growth_tracker: u32,
    /// Whether the last step was skipped.
    pub found_inf: bool,
    /// The last step's norm of the clipped groups' unscaled gradients.
    pub total_norm: f64,
}

impl CpuAmp {
    /// Scale `init_scale` (1 without loss scaling).
    pub fn new(scaler: Option<GradScalerConfig>, clip: Option<ClipGradNorm>) -> Self {
        let scale = scaler.as_ref().map_or(1.0, |s| f64::from(s.init_scale as f32));
        Self { scaler, clip, scale, growth_tracker: 0, found_inf: false, total_norm: 0.0 }
    }

    /// One step: `grads[i]` is tensor `i`'s gradient as the engine wrote it (scaled), or `None`
    /// (it sits the step out); `groups[i]` its group. Returns whether the step was skipped.
    ///
    /// ```text
    /// g          = grad / scale
    /// total_norm = sqrt(sum of g^2) (or max |g|) over the clipped groups
    /// skipped    = scaling and some g is an infinity or a NaN   (then nothing steps)
    /// g          = g * min(1, max_norm / (total_norm + 1e-6))     in the clipped groups
    /// ```
    /// then the scale's update as [`GradScalerConfig`] says.
    ///
    /// # Errors
    /// A tensor's [`CpuOptimizer::step`] error (a gradient of the wrong length).
    pub fn step(&mut self, tensors: &mut [CpuOptimizer], groups: &[usize], grads: &[Option<Vec<f64>>]) -> Result<bool> {
        let inv = 1.0 / self.scale;
        let (mut nonfinite, mut has_nan, mut has_inf) = (false, false, false);
        let (mut sum, mut max) = (0.0f64, 0.0f64);
        let clipped = |g: usize| self.clip.as_ref().is_some_and(|c| c.clips(g));
        for (grad, &group) in grads.iter().zip(groups) {
            let Some(grad) = grad else { continue };
            nonfinite |= grad.iter().any(|g| !g.is_finite());
            if clipped(group) {
                has_nan |= grad.iter().any(|g| g.is_nan());
                has_inf |= grad.iter().any(|g| g.is_infinite());
                for &g in grad {
                    sum += (g * inv) * (g * inv);
                    max = max.max((g * inv).abs());
                }
            }
        }
        let inf_norm = self.clip.as_ref().is_some_and(|c| c.norm_type == NormType::Inf);
        self.total_norm = if inf_norm { max } else { sum.sqrt() };
        // As PyTorch's norms (and the device's): a NaN anywhere gives NaN, else an infinity gives
        // infinity (`f64::max` would pass a NaN over).
        if has_nan {
            self.total_norm = f64::NAN;
        } else if has_inf {
            self.total_norm = f64::INFINITY;
        }
        let coef = self.clip.as_ref().map_or(1.0, |c| (c.max_norm / (self.total_norm + 1e-6)).min(1.0));
        self.found_inf = self.scaler.is_some() && nonfinite;
        if !self.found_inf {
            for ((t, grad), &group) in tensors.iter_mut().zip(grads).zip(groups) {
                if let Some(grad) = grad {
                    let c = if clipped(group) { coef } else { 1.0 };
                    let g: Vec<f64> = grad.iter().map(|&g| g * inv * c).collect();
                    t.step(&g)?;
                }
            }
        }
        if let Some(s) = &self.scaler {
            if self.found_inf {
                self.scale = f64::from((self.scale * s.backoff_factor) as f32);
                self.growth_tracker = 0;
            } else if self.growth_tracker + 1 == s.growth_interval {
                let grown = (self.scale * s.growth_factor) as f32;
                if grown.is_finite() {
                    self.scale = f64::from(grown);
                }
                self.growth_tracker = 0;
            } else {
                self.growth_tracker += 1;
            }
        }
        Ok(self.found_inf)
    }
}
