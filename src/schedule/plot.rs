//! Drawing a schedule to PNG or SVG with `plotters`.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::LrScheduler;
use crate::error::{Error, Result};

/// DejaVu Sans (Debian's `fonts-dejavu-core`, Bitstream Vera license in `assets/`), embedded so
/// that drawing needs no system font library.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

const SIZE: (u32, u32) = (1000, 600);
/// Enough points for a smooth line at the image's width; sharp steps stay within one sample.
const MAX_POINTS: u64 = 4000;
const LR_COLOR: RGBColor = RGBColor(31, 119, 180);
const MOMENTUM_COLOR: RGBColor = RGBColor(214, 39, 40);

/// Draws the learning rate over steps `0..steps` (and the momentum on a right-hand axis when the
/// schedule cycles it), as PNG or SVG by `path`'s extension.
///
/// The x axis is labelled `step`, the y axis `learning rate` (and `momentum`); `title` is the
/// caption, usually [`LrScheduler::name`]. A [`super::ReduceLrOnPlateau`] has no lr ahead of the
/// metrics, so it draws as its current lr, flat.
///
/// ```no_run
/// use std::path::Path;
/// use wgpu_optim::schedule::{from_json, plot_schedule};
/// # fn main() -> wgpu_optim::Result<()> {
/// let sched = from_json(&serde_json::json!({"name": "OneCycleLR", "max_lr": 0.1, "total_steps": 100}), 0.1)?;
/// plot_schedule(&sched, sched.name(), 100, Path::new("onecycle.svg"))?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`Error::Config`] (`what: "plot"`) for an extension other than `png` or `svg`, for `steps` 0,
/// when no step has a finite lr, or for a value too large for an axis (past 1e300 in magnitude);
/// [`Error::Io`] when the file cannot be written.
pub fn plot_schedule(sched: &LrScheduler, title: &str, steps: u64, path: &Path) -> Result<()> {
    let format = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if !matches!(format.as_deref(), Some("png" | "svg")) {
        return Err(plot_error(format!(
            "cannot draw to \"{}\": the file name must end in .png or .svg",
            path.display()
        )));
    }
    if steps == 0 {
        return Err(plot_error("steps must be at least 1".into()));
    }
    register_font()?;
    let series = Series::sample(sched, steps)?;
    let drawn = if format.as_deref() == Some("png") {
        draw(BitMapBackend::new(path, SIZE).into_drawing_area(), title, &series)
    } else {
        draw(SVGBackend::new(path, SIZE).into_drawing_area(), title, &series)
    };
    drawn.map_err(|message| Error::Io { path: path.to_path_buf(), source: std::io::Error::other(message) })
}

fn plot_error(message: String) -> Error {
    Error::Config { what: "plot", message }
}

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(plot_error("the embedded font could not be loaded".into()))
    }
}

/// `(step, value)` pairs.
type Points = Vec<(f64, f64)>;

/// The sampled points and the ranges of the axes.
struct Series {
    last_step: f64,
    lr: Points,
    lr_range: (f64, f64),
    momentum: Option<(Points, (f64, f64))>,
}

impl Series {
    fn sample(sched: &LrScheduler, steps: u64) -> Result<Self> {
        let stride = steps.div_ceil(MAX_POINTS).max(1);
        let mut at: Vec<u64> = (0..steps).step_by(stride as usize).collect();
        if at.last() != Some(&(steps - 1)) {
            at.push(steps - 1);
        }
        // Non-finite values (a NaN from a user's closure) would break the axis ranges.
        let points = |f: &dyn Fn(u64) -> Option<f64>| -> Points {
            at.iter().filter_map(|&t| f(t).filter(|v| v.is_finite()).map(|v| (t as f64, v))).collect()
        };
        // Steps past a schedule's end (OneCycleLR's total_steps) are not drawn.
        let lr = points(&|t| sched.lr(t).ok());
        let lr_range =
            range("learning rate", &lr)?.ok_or_else(|| plot_error("no step has a finite learning rate".into()))?;
        let momentum = points(&|t| sched.momentum(t).ok().flatten());
        let momentum = range("momentum", &momentum)?.map(|r| (momentum, r));
        Ok(Self { last_step: (steps - 1).max(1) as f64, lr, lr_range, momentum })
    }
}

/// The largest magnitude a value on an axis may have. plotters spaces the ticks by a power of ten
/// up to ten times the axis's span; past about 1e307 that power overflows to infinity and its
/// tick loop never ends (a schedule started from `--lr 1e308` hung the command). No schedule
/// worth drawing comes near this.
const AXIS_LIMIT: f64 = 1e300;

/// `(low, high)` with a margin, or `None` for no points.
///
/// # Errors
/// [`Error::Config`] naming the first point of `what` past [`AXIS_LIMIT`] in magnitude.
fn range(what: &str, points: &[(f64, f64)]) -> Result<Option<(f64, f64)>> {
    if let Some(&(step, value)) = points.iter().find(|p| p.1.abs() > AXIS_LIMIT) {
        return Err(plot_error(format!(
            "the {what} reaches {value:e} at step {step}: too large to draw (at most {AXIS_LIMIT:e} in magnitude)"
        )));
    }
    let (Some(lo), Some(hi)) =
        (points.iter().map(|p| p.1).reduce(f64::min), points.iter().map(|p| p.1).reduce(f64::max))
    else {
        return Ok(None);
    };
    let pad = if hi > lo { (hi - lo) * 0.05 } else { hi.abs().max(1e-12) * 0.05 };
    let low = if lo >= 0.0 { (lo - pad).max(0.0) } else { lo - pad };
    Ok(Some((low, hi + pad)))
}

/// Tick labels for an axis over `(lo, hi)`: one style for the whole axis, with enough decimals
/// to tell ticks a tenth of the range apart.
fn ticks((lo, hi): (f64, f64)) -> impl Fn(&f64) -> String {
    let top = lo.abs().max(hi.abs());
    let scientific = top != 0.0 && !(1e-3..1e5).contains(&top);
    let decimals = (-((hi - lo) / 10.0).log10().floor()).clamp(0.0, 12.0) as usize;
    move |v: &f64| {
        if scientific {
            format!("{v:.2e}")
        } else {
            format!("{v:.decimals$}")
        }
    }
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, title: &str, s: &Series) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 26))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .right_y_label_area_size(if s.momentum.is_some() { 80 } else { 0 });
    let chart = builder.build_cartesian_2d(0.0..s.last_step, s.lr_range.0..s.lr_range.1).map_err(err)?;
    let lr_ticks = ticks(s.lr_range);
    let lr_series = LineSeries::new(s.lr.iter().copied(), LR_COLOR.stroke_width(2));
    match &s.momentum {
        None => {
            let mut chart = chart;
            chart
                .configure_mesh()
                .x_desc("step")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_desc("learning rate")
                .y_label_formatter(&lr_ticks)
                .draw()
                .map_err(err)?;
            chart.draw_series(lr_series).map_err(err)?;
        }
        Some((momentum, (lo, hi))) => {
            let mut chart = chart.set_secondary_coord(0.0..s.last_step, *lo..*hi);
            chart
                .configure_mesh()
                .x_desc("step")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_desc("learning rate")
                .y_label_formatter(&lr_ticks)
                .draw()
                .map_err(err)?;
            chart
                .configure_secondary_axes()
                .y_desc("momentum")
                .y_label_formatter(&ticks((*lo, *hi)))
                .draw()
                .map_err(err)?;
            chart
                .draw_series(lr_series)
                .map_err(err)?
                .label("learning rate")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], LR_COLOR.stroke_width(2)));
            chart
                .draw_secondary_series(LineSeries::new(momentum.iter().copied(), MOMENTUM_COLOR.stroke_width(2)))
                .map_err(err)?
                .label("momentum")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MOMENTUM_COLOR.stroke_width(2)));
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(err)?;
        }
    }
    root.present().map_err(err)
}
