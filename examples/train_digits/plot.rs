//! The pictures of a `--sweep`: the learning curves of every optimizer x schedule cell, and a
//! heatmap of their final test accuracies.
//!
//! A cell is one (optimizer, schedule) pair; its curve is the mean over the cell's runs (its seeds,
//! and its learning rates if it has several), because a single seed's noise would decide the ranking.
//! Each picture is written as PNG, for a quick look, and SVG, for documents, by one drawing function
//! that is generic over the `plotters` backend.

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// DejaVu Sans (the file `wgpu_optim::schedule::plot_schedule` draws with), embedded so that
/// drawing needs no system font library.
static FONT: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/DejaVuSans.ttf"));
const FONT_FAMILY: &str = "sans-serif";
/// What was trained, for the titles.
const SUBJECT: &str = "UCI digits MLP";

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// One training run's per-epoch record.
#[derive(Clone, Debug)]
pub struct RunCurve {
    /// The optimizer's name, e.g. "AdamW".
    pub optimizer: String,
    /// The learning-rate schedule's name, e.g. "warmup-cosine".
    pub schedule: String,
    /// The base learning rate.
    pub lr: f64,
    /// The seed of the initial weights and the batch order.
    pub seed: u64,
    /// Per epoch: mean training loss over the epoch's mini-batches.
    pub train_loss: Vec<f64>,
    /// Per epoch: test accuracy in percent (0-100).
    pub test_accuracy: Vec<f64>,
}

/// Writes `sweep_curves.{png,svg}` and `sweep_heatmap.{png,svg}` into `dir` (created if missing)
/// and returns their paths.
///
/// - `sweep_curves`: test accuracy (left) and training loss on a log scale (right) per epoch. Every
///   cell is a thin grey line, so the spread of the sweep shows without drowning the winners; the
///   best five cells by mean final test accuracy (ties: lower mean final loss) are coloured, with
///   their accuracy in the legend. The accuracy axis starts a little below the 10th percentile of
///   the cells' final accuracies, so that the differences between the good cells stay visible.
/// - `sweep_heatmap`: optimizers as rows, schedules as columns (both in order of first appearance
///   in `runs`), each cell coloured and labelled by its mean final test accuracy, the best cell
///   outlined. Cells with no runs stay blank.
///
/// A diverged run (a NaN loss) makes its cell's mean undefined from that epoch on: the line stops
/// there rather than average the survivors and hide the divergence, and a cell whose final
/// accuracy is not finite ranks last.
///
/// # Errors
/// When `runs` is empty, a run has no epochs or its two vectors differ in length, or a file
/// cannot be written.
pub fn plot_sweep(runs: &[RunCurve], dir: &Path) -> BoxResult<Vec<PathBuf>> {
    check_runs(runs)?;
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let sweep = Sweep::new(runs);
    let mut paths = write_curves(&sweep, dir)?;
    paths.extend(write_heatmap(&sweep, dir)?);
    Ok(paths)
}

fn check_runs(runs: &[RunCurve]) -> BoxResult<()> {
    if runs.is_empty() {
        return Err("the sweep has no runs to plot".into());
    }
    for (i, run) in runs.iter().enumerate() {
        let name = format!("run {i} ({} + {}, lr {}, seed {})", run.optimizer, run.schedule, run.lr, run.seed);
        if run.train_loss.is_empty() {
            return Err(format!("{name} has no epochs").into());
        }
        if run.train_loss.len() != run.test_accuracy.len() {
            return Err(format!(
                "{name} has {} epochs of training loss but {} of test accuracy",
                run.train_loss.len(),
                run.test_accuracy.len()
            )
            .into());
        }
    }
    Ok(())
}

fn register_font() -> BoxResult<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err("the embedded font could not be loaded".into())
    }
}

// ---------------------------------------------------------------------------------------------
// The numbers drawn: cells, their ranking and the axis ranges.
// ---------------------------------------------------------------------------------------------

/// One (optimizer, schedule) pair, averaged over its runs.
struct Cell {
    optimizer: String,
    schedule: String,
    runs: usize,
    /// Whether two runs share a seed (they differ in lr), so the title says "runs", not "seeds".
    repeats_a_seed: bool,
    /// Per epoch, the mean over the runs that reached that epoch.
    accuracy: Vec<f64>,
    loss: Vec<f64>,
    /// The mean of each run's last epoch, so a run that stopped early still counts.
    final_accuracy: f64,
    final_loss: f64,
}

impl Cell {
    fn new(members: &[&RunCurve]) -> Self {
        let accuracies: Vec<&[f64]> = members.iter().map(|r| r.test_accuracy.as_slice()).collect();
        let losses: Vec<&[f64]> = members.iter().map(|r| r.train_loss.as_slice()).collect();
        let last = |curve: &[f64]| curve.last().copied().unwrap_or(f64::NAN);
        let mut seeds: Vec<u64> = members.iter().map(|r| r.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        Self {
            optimizer: members[0].optimizer.clone(),
            schedule: members[0].schedule.clone(),
            runs: members.len(),
            repeats_a_seed: seeds.len() < members.len(),
            accuracy: mean_per_epoch(&accuracies),
            loss: mean_per_epoch(&losses),
            final_accuracy: mean(accuracies.iter().map(|c| last(c))),
            final_loss: mean(losses.iter().map(|c| last(c))),
        }
    }

    fn label(&self) -> String {
        format!("{} + {}", self.optimizer, self.schedule)
    }

    fn accuracy_text(&self) -> String {
        if self.final_accuracy.is_finite() {
            format!("{:.1}", self.final_accuracy)
        } else {
            "n/a".into()
        }
    }
}

/// NaN stays NaN: a diverged run must show in its cell's mean.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(sum, count), v| (sum + v, count + 1));
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

fn mean_per_epoch(curves: &[&[f64]]) -> Vec<f64> {
    let epochs = curves.iter().map(|c| c.len()).max().unwrap_or(0);
    (0..epochs).map(|e| mean(curves.iter().filter_map(|c| c.get(e).copied()))).collect()
}

/// Everything both pictures need, computed once.
struct Sweep {
    /// In order of first appearance in the runs.
    cells: Vec<Cell>,
    optimizers: Vec<String>,
    schedules: Vec<String>,
    /// Indices into `cells`, best first.
    ranking: Vec<usize>,
    epochs: usize,
    /// The lower end of the accuracy axis and of the heatmap's colour scale.
    accuracy_floor: f64,
}

impl Sweep {
    fn new(runs: &[RunCurve]) -> Self {
        let cells: Vec<Cell> = group_by_cell(runs).iter().map(|members| Cell::new(members)).collect();
        let finals: Vec<f64> = cells.iter().map(|c| c.final_accuracy).collect();
        Self {
            optimizers: first_appearances(cells.iter().map(|c| c.optimizer.as_str())),
            schedules: first_appearances(cells.iter().map(|c| c.schedule.as_str())),
            ranking: rank(&cells),
            epochs: cells.iter().map(|c| c.accuracy.len()).max().unwrap_or(0),
            accuracy_floor: accuracy_floor(&finals),
            cells,
        }
    }

    fn best(&self) -> Option<&Cell> {
        self.ranking.first().map(|&i| &self.cells[i]).filter(|c| c.final_accuracy.is_finite())
    }

    fn cell(&self, optimizer: &str, schedule: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.optimizer == optimizer && c.schedule == schedule)
    }

    /// "mean of 3 seeds per cell", or "mean of 2-6 runs per cell" when the cells differ or mix lrs.
    fn averaging(&self) -> String {
        let fewest = self.cells.iter().map(|c| c.runs).min().unwrap_or(0);
        let most = self.cells.iter().map(|c| c.runs).max().unwrap_or(0);
        let count = if fewest == most { most.to_string() } else { format!("{fewest}-{most}") };
        let noun = if self.cells.iter().any(|c| c.repeats_a_seed) { "run" } else { "seed" };
        let plural = if most == 1 { "" } else { "s" };
        format!("mean of {count} {noun}{plural} per cell")
    }
}

fn group_by_cell(runs: &[RunCurve]) -> Vec<Vec<&RunCurve>> {
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut groups: Vec<Vec<&RunCurve>> = Vec::new();
    for run in runs {
        let i = *index.entry((&run.optimizer, &run.schedule)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(run);
    }
    groups
}

fn first_appearances<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for name in names {
        if !seen.iter().any(|s| s == name) {
            seen.push(name.to_string());
        }
    }
    seen
}

/// Best first: higher final accuracy, then lower final loss; a non-finite value ranks last. The
/// sort is stable, so full ties keep the order of the runs.
fn rank(cells: &[Cell]) -> Vec<usize> {
    let or = |v: f64, fallback: f64| if v.is_finite() { v } else { fallback };
    let mut order: Vec<usize> = (0..cells.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&cells[a], &cells[b]);
        let by_accuracy = or(b.final_accuracy, f64::NEG_INFINITY).total_cmp(&or(a.final_accuracy, f64::NEG_INFINITY));
        by_accuracy.then(or(a.final_loss, f64::INFINITY).total_cmp(&or(b.final_loss, f64::INFINITY)))
    });
    order
}

/// 5 points below the 10th percentile of the final accuracies, on a multiple of 5: a few failed
/// cells (a diverged optimizer sits at 10%) would otherwise squeeze the good ones into a line.
fn accuracy_floor(finals: &[f64]) -> f64 {
    let mut finite: Vec<f64> = finals.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return 0.0;
    }
    finite.sort_by(f64::total_cmp);
    let tenth = finite[(finite.len() - 1) / 10];
    (((tenth - 5.0) / 5.0).floor() * 5.0).clamp(0.0, 95.0)
}

/// The loss axis (log scale): every finite positive mean, but at most [`LOSS_CEILING`] times the
/// median first-epoch loss, with a little room above and below.
fn loss_range(cells: &[Cell]) -> (f64, f64) {
    let positive = || cells.iter().flat_map(|c| c.loss.iter().copied()).filter(|v| v.is_finite() && *v > 0.0);
    let (Some(lo), Some(hi)) = (positive().reduce(f64::min), positive().reduce(f64::max)) else {
        return (0.1, 10.0);
    };
    let mut first: Vec<f64> = cells.iter().filter_map(|c| c.loss.first().copied()).filter(|v| v.is_finite()).collect();
    first.sort_by(f64::total_cmp);
    let hi = match first.get(first.len() / 2) {
        Some(&median) if median > 0.0 => hi.min(LOSS_CEILING * median).max(lo),
        _ => hi,
    };
    with_two_decades(lo / 1.25, hi * 1.25)
}

/// plotters labels a log axis only at powers of ten, so a range holding fewer than two of them
/// widens to the powers of ten around it.
fn with_two_decades(lo: f64, hi: f64) -> (f64, f64) {
    let (low_power, high_power) = (lo.log10().ceil(), hi.log10().floor());
    if high_power > low_power {
        (lo, hi)
    } else {
        (10f64.powf(lo.log10().floor()).min(lo), 10f64.powf(hi.log10().ceil()).max(hi))
    }
}

/// A loss this many times the typical starting loss has diverged, and how far past it does not
/// matter: drawing a run that reached 1e8 would squeeze every other curve into the bottom fifth.
const LOSS_CEILING: f64 = 10.0;

/// The drawable stretches of a per-epoch curve (epoch 1 at x = 1), cut where a value is not
/// finite and clipped to `lo..=hi` in y.
///
/// plotters clamps points outside a chart to its edge, which would draw a line along the axis,
/// so segments leaving the range end where they cross its bound.
fn visible_segments(values: &[f64], (lo, hi): (f64, f64)) -> Vec<Vec<(f64, f64)>> {
    let points: Vec<Option<(f64, f64)>> =
        values.iter().enumerate().map(|(i, &y)| y.is_finite().then_some(((i + 1) as f64, y))).collect();
    if let [Some(only)] = points[..] {
        return if (lo..=hi).contains(&only.1) { vec![vec![only]] } else { Vec::new() };
    }
    let mut segments = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    for pair in points.windows(2) {
        let clipped = match (pair[0], pair[1]) {
            (Some(p), Some(q)) => clip(p, q, lo, hi),
            _ => None,
        };
        match clipped {
            Some((a, b)) => {
                if current.last() != Some(&a) {
                    segments.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
                    current.push(a);
                }
                current.push(b);
            }
            None => segments.extend((!current.is_empty()).then(|| std::mem::take(&mut current))),
        }
    }
    segments.extend((!current.is_empty()).then_some(current));
    segments
}

/// The part of the segment `p`-`q` with y in `lo..=hi`; an end that is inside is returned exactly,
/// so consecutive segments join.
fn clip(p: (f64, f64), q: (f64, f64), lo: f64, hi: f64) -> Option<((f64, f64), (f64, f64))> {
    let inside = |y: f64| (lo..=hi).contains(&y);
    if p.1 == q.1 {
        return inside(p.1).then_some((p, q));
    }
    let at = |t: f64| (p.0 + t * (q.0 - p.0), p.1 + t * (q.1 - p.1));
    let (t_lo, t_hi) = ((lo - p.1) / (q.1 - p.1), (hi - p.1) / (q.1 - p.1));
    let (enter, leave) = (t_lo.min(t_hi).max(0.0), t_lo.max(t_hi).min(1.0));
    if enter > leave {
        return None;
    }
    let a = if inside(p.1) { p } else { at(enter) };
    let b = if inside(q.1) { q } else { at(leave) };
    Some((a, b))
}

// ---------------------------------------------------------------------------------------------
// sweep_curves: accuracy and loss per epoch, the best cells highlighted.
// ---------------------------------------------------------------------------------------------

const CURVES_SIZE: (u32, u32) = (1400, 560);
const HIGHLIGHTED: usize = 5;
/// matplotlib's tab10, first five: told apart easily, and none is grey.
const HIGHLIGHT_COLORS: [RGBColor; HIGHLIGHTED] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];
/// Light enough that 50 overlapping lines read as a band behind the coloured ones.
const OTHER_COLOR: RGBColor = RGBColor(200, 200, 200);

fn write_curves(sweep: &Sweep, dir: &Path) -> BoxResult<Vec<PathBuf>> {
    let png = dir.join("sweep_curves.png");
    draw_curves(BitMapBackend::new(&png, CURVES_SIZE).into_drawing_area(), sweep).map_err(|e| failed(&png, e))?;
    let svg = dir.join("sweep_curves.svg");
    draw_curves(SVGBackend::new(&svg, CURVES_SIZE).into_drawing_area(), sweep).map_err(|e| failed(&svg, e))?;
    Ok(vec![png, svg])
}

fn failed(path: &Path, e: Box<dyn Error>) -> Box<dyn Error> {
    format!("cannot draw {}: {e}", path.display()).into()
}

fn draw_curves<DB>(root: DrawingArea<DB, Shift>, sweep: &Sweep) -> BoxResult<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let title = format!("{SUBJECT}: {} optimizer x schedule cells, {}", sweep.cells.len(), sweep.averaging());
    let body = root.titled(&title, (FONT_FAMILY, 24))?;
    let (left, right) = body.split_horizontally(body.dim_in_pixel().0 / 2);
    draw_accuracy_panel(&left, sweep)?;
    draw_loss_panel(&right, sweep)?;
    root.present()?;
    Ok(())
}

fn draw_accuracy_panel<DB>(area: &DrawingArea<DB, Shift>, sweep: &Sweep) -> BoxResult<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let range = (sweep.accuracy_floor, 100.0);
    let mut chart = ChartBuilder::on(area)
        .caption("test accuracy (%) per epoch", (FONT_FAMILY, 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(52)
        .build_cartesian_2d(1.0..last_epoch(sweep), range.0..range.1)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&epoch_tick)
        .y_desc("test accuracy (%)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.08))
        .label_style((FONT_FAMILY, 14))
        .draw()?;
    draw_cells(&mut chart, sweep, |c| visible_segments(&c.accuracy, range))?;
    draw_legend(&mut chart, sweep)
}

fn draw_loss_panel<DB>(area: &DrawingArea<DB, Shift>, sweep: &Sweep) -> BoxResult<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let range = loss_range(&sweep.cells);
    let mut chart = ChartBuilder::on(area)
        .caption("training loss per epoch (log scale)", (FONT_FAMILY, 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(62)
        .build_cartesian_2d(1.0..last_epoch(sweep), (range.0..range.1).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&epoch_tick)
        .y_desc("training loss")
        .y_label_formatter(&loss_tick)
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.08))
        .label_style((FONT_FAMILY, 14))
        .draw()?;
    draw_cells(&mut chart, sweep, |c| visible_segments(&c.loss, range))
}

/// At least 2, so that a one-epoch sweep still has an x axis.
fn last_epoch(sweep: &Sweep) -> f64 {
    sweep.epochs.max(2) as f64
}

/// Epochs are whole; a fractional tick (on a short sweep) stays unlabelled.
fn epoch_tick(x: &f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

/// Plain decimals where they are short, powers of ten beyond.
fn loss_tick(v: &f64) -> String {
    if (1e-3..1e4).contains(&v.abs()) {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.0e}")
    }
}

/// Every cell in grey, then the best ones in colour, the best drawn last so that it lies on top.
fn draw_cells<DB, Y>(
    chart: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, Y>>,
    sweep: &Sweep,
    segments: impl Fn(&Cell) -> Vec<Vec<(f64, f64)>>,
) -> BoxResult<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64>,
{
    let highlighted = &sweep.ranking[..HIGHLIGHTED.min(sweep.ranking.len())];
    for (i, cell) in sweep.cells.iter().enumerate() {
        if !highlighted.contains(&i) {
            draw_line(chart, segments(cell), OTHER_COLOR.stroke_width(1))?;
        }
    }
    for (rank, &i) in highlighted.iter().enumerate().rev() {
        draw_line(chart, segments(&sweep.cells[i]), HIGHLIGHT_COLORS[rank].stroke_width(3))?;
    }
    Ok(())
}

fn draw_line<DB, Y>(
    chart: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, Y>>,
    segments: Vec<Vec<(f64, f64)>>,
    style: ShapeStyle,
) -> BoxResult<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64>,
{
    for segment in segments {
        // A lone point (a one-epoch sweep, or an epoch between two NaNs) has no line to draw.
        if let [point] = segment[..] {
            chart.draw_series(std::iter::once(Circle::new(point, 3, style.filled())))?;
        } else {
            chart.draw_series(LineSeries::new(segment, style))?;
        }
    }
    Ok(())
}

/// Drawn apart from the lines, so that the legend lists the cells best first while the lines are
/// drawn best last.
fn draw_legend<'a, DB>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    sweep: &Sweep,
) -> BoxResult<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
{
    let highlighted = &sweep.ranking[..HIGHLIGHTED.min(sweep.ranking.len())];
    for (rank, &i) in highlighted.iter().enumerate() {
        let cell = &sweep.cells[i];
        let color = HIGHLIGHT_COLORS[rank];
        let label = if cell.final_accuracy.is_finite() {
            format!("{}: {:.1}%", cell.label(), cell.final_accuracy)
        } else {
            format!("{}: n/a", cell.label())
        };
        legend_entry(chart, label, color.stroke_width(3))?;
    }
    let others = sweep.cells.len() - highlighted.len();
    if others > 0 {
        let noun = if others == 1 { "cell" } else { "cells" };
        legend_entry(chart, format!("the other {others} {noun}"), OTHER_COLOR.stroke_width(2))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT_FAMILY, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .margin(12)
        .draw()?;
    Ok(())
}

/// An empty series that carries only a label and its legend swatch.
fn legend_entry<DB>(
    chart: &mut ChartContext<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    label: String,
    style: ShapeStyle,
) -> BoxResult<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    chart
        .draw_series(LineSeries::new(std::iter::empty::<(f64, f64)>(), style))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// sweep_heatmap: final accuracy per optimizer (row) and schedule (column).
// ---------------------------------------------------------------------------------------------

const MARGIN: i32 = 20;
const TITLE_HEIGHT: i32 = 48;
const HEADER_HEIGHT: i32 = 34;
const CELL_HEIGHT: i32 = 40;
const MIN_CELL_WIDTH: i32 = 80;
/// Room between a column label and its neighbours.
const CELL_PADDING: i32 = 18;
const LABEL_FONT: u32 = 16;
/// The colour bar's width, its gap to the grid, and the room for its labels.
const BAR_WIDTH: i32 = 18;
const BAR_GAP: i32 = 24;
const BAR_LABELS: i32 = 90;
/// Below that height the bar's top and bottom labels would touch.
const MIN_BAR_HEIGHT: i32 = 120;
const OUTLINE_COLOR: RGBColor = RGBColor(220, 20, 60);
const EMPTY_BORDER: RGBColor = RGBColor(225, 225, 225);
const UNDEFINED_FILL: RGBColor = RGBColor(235, 235, 235);

fn write_heatmap(sweep: &Sweep, dir: &Path) -> BoxResult<Vec<PathBuf>> {
    let layout = Layout::new(sweep)?;
    let png = dir.join("sweep_heatmap.png");
    draw_heatmap(BitMapBackend::new(&png, layout.size).into_drawing_area(), sweep, &layout)
        .map_err(|e| failed(&png, e))?;
    let svg = dir.join("sweep_heatmap.svg");
    draw_heatmap(SVGBackend::new(&svg, layout.size).into_drawing_area(), sweep, &layout)
        .map_err(|e| failed(&svg, e))?;
    Ok(vec![png, svg])
}

/// Pixel positions, sized from the labels so that the longest schedule name fits its column.
struct Layout {
    title: String,
    size: (u32, u32),
    /// The grid's top-left corner.
    grid: (i32, i32),
    cell_width: i32,
    bar_x: i32,
    bar_height: i32,
}

impl Layout {
    fn new(sweep: &Sweep) -> BoxResult<Self> {
        let font = (FONT_FAMILY, LABEL_FONT).into_font();
        let width_of =
            |text: &str| -> BoxResult<i32> { Ok(font.box_size(text).map_err(|e| format!("{e:?}"))?.0 as i32) };
        let widest = |names: &[String]| -> BoxResult<i32> {
            names.iter().map(|n| width_of(n)).try_fold(0, |w, n| Ok::<_, Box<dyn Error>>(w.max(n?)))
        };
        let row_labels = widest(&sweep.optimizers)? + CELL_PADDING;
        let cell_width = (widest(&sweep.schedules)? + CELL_PADDING).max(MIN_CELL_WIDTH);
        let grid = (MARGIN + row_labels, MARGIN + TITLE_HEIGHT + HEADER_HEIGHT);
        let grid_height = CELL_HEIGHT * sweep.optimizers.len() as i32;
        let bar_x = grid.0 + cell_width * sweep.schedules.len() as i32 + BAR_GAP;
        let bar_height = grid_height.max(MIN_BAR_HEIGHT);
        let title = format!("{SUBJECT}: final test accuracy (%), {}; best outlined", sweep.averaging());
        let title_width = (FONT_FAMILY, 22).into_font().box_size(&title).map_err(|e| format!("{e:?}"))?.0 as i32;
        let width = (bar_x + BAR_WIDTH + BAR_LABELS + MARGIN).max(title_width + 2 * MARGIN);
        // The bar's "min" line hangs below it when the colour scale is clamped.
        let height = grid.1 + bar_height + MARGIN + 24;
        Ok(Self { title, size: (width as u32, height as u32), grid, cell_width, bar_x, bar_height })
    }

    fn cell_corners(&self, row: usize, column: usize) -> [(i32, i32); 2] {
        let x = self.grid.0 + self.cell_width * column as i32;
        let y = self.grid.1 + CELL_HEIGHT * row as i32;
        [(x, y), (x + self.cell_width, y + CELL_HEIGHT)]
    }
}

/// A colour per accuracy: viridis from the sweep's accuracy floor (darkest; everything below
/// clamps to it) to its best cell (brightest). Starting at the floor rather than the worst cell
/// keeps a single failed cell from washing the good ones into one colour; the numbers in the
/// cells stay exact either way.
struct ColorScale {
    lo: f64,
    hi: f64,
    /// The worst finite cell, shown under the bar when it is below `lo`.
    min: f64,
}

/// viridis at nine evenly spaced stops: perceptually uniform, readable in grey and by most
/// colour-blind readers.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 45, 123),
    (59, 82, 139),
    (44, 114, 142),
    (33, 145, 140),
    (40, 174, 128),
    (94, 201, 98),
    (173, 220, 48),
    (253, 231, 37),
];

impl ColorScale {
    fn new(sweep: &Sweep) -> Option<Self> {
        let finite = || sweep.cells.iter().map(|c| c.final_accuracy).filter(|v| v.is_finite());
        let (min, hi) = (finite().reduce(f64::min)?, finite().reduce(f64::max)?);
        Some(Self { lo: sweep.accuracy_floor.max(min).min(hi), hi, min })
    }

    fn color(&self, value: f64) -> RGBColor {
        let t = if self.hi > self.lo { ((value - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0) } else { 1.0 };
        let position = t * (VIRIDIS.len() - 1) as f64;
        let below = (position.floor() as usize).min(VIRIDIS.len() - 2);
        let f = position - below as f64;
        let mix = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
        let (a, b) = (VIRIDIS[below], VIRIDIS[below + 1]);
        RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }
}

/// Black on the light end of the scale, white on the dark end.
fn text_color_on(fill: RGBColor) -> RGBColor {
    let luma = 0.299 * fill.0 as f64 + 0.587 * fill.1 as f64 + 0.114 * fill.2 as f64;
    if luma > 140.0 {
        BLACK
    } else {
        WHITE
    }
}

fn centered(size: u32, color: RGBColor) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&color).pos(Pos::new(HPos::Center, VPos::Center))
}

fn draw_heatmap<DB>(root: DrawingArea<DB, Shift>, sweep: &Sweep, layout: &Layout) -> BoxResult<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let title_at = (layout.size.0 as i32 / 2, MARGIN + TITLE_HEIGHT / 2 - 6);
    root.draw(&Text::new(layout.title.as_str(), title_at, centered(22, BLACK)))?;
    draw_axis_labels(&root, sweep, layout)?;
    let scale = ColorScale::new(sweep);
    draw_grid(&root, sweep, layout, scale.as_ref())?;
    if let Some(scale) = &scale {
        draw_color_bar(&root, layout, scale)?;
    }
    root.present()?;
    Ok(())
}

fn draw_axis_labels<DB>(root: &DrawingArea<DB, Shift>, sweep: &Sweep, layout: &Layout) -> BoxResult<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let right_aligned = (FONT_FAMILY, LABEL_FONT).into_font().color(&BLACK).pos(Pos::new(HPos::Right, VPos::Center));
    for (row, optimizer) in sweep.optimizers.iter().enumerate() {
        let [(x, y0), (_, y1)] = layout.cell_corners(row, 0);
        root.draw(&Text::new(optimizer.as_str(), (x - CELL_PADDING / 2, (y0 + y1) / 2), right_aligned.clone()))?;
    }
    for (column, schedule) in sweep.schedules.iter().enumerate() {
        let [(x0, y), (x1, _)] = layout.cell_corners(0, column);
        root.draw(&Text::new(schedule.as_str(), ((x0 + x1) / 2, y - HEADER_HEIGHT / 2), centered(LABEL_FONT, BLACK)))?;
    }
    Ok(())
}

/// Every position gets a faint border so that an empty cell reads as empty, not as missing grid.
fn draw_grid<DB>(
    root: &DrawingArea<DB, Shift>,
    sweep: &Sweep,
    layout: &Layout,
    scale: Option<&ColorScale>,
) -> BoxResult<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    for (row, optimizer) in sweep.optimizers.iter().enumerate() {
        for (column, schedule) in sweep.schedules.iter().enumerate() {
            let corners = layout.cell_corners(row, column);
            root.draw(&Rectangle::new(corners, EMPTY_BORDER.stroke_width(1)))?;
            if let Some(cell) = sweep.cell(optimizer, schedule) {
                draw_cell(root, cell, corners, scale)?;
            }
        }
    }
    // Outlined after every fill, so that no neighbour paints over the outline.
    if let Some(best) = sweep.best() {
        let row = sweep.optimizers.iter().position(|o| *o == best.optimizer);
        let column = sweep.schedules.iter().position(|s| *s == best.schedule);
        if let (Some(row), Some(column)) = (row, column) {
            let [(x0, y0), (x1, y1)] = layout.cell_corners(row, column);
            root.draw(&Rectangle::new([(x0 + 1, y0 + 1), (x1 - 1, y1 - 1)], OUTLINE_COLOR.stroke_width(3)))?;
        }
    }
    Ok(())
}

fn draw_cell<DB>(
    root: &DrawingArea<DB, Shift>,
    cell: &Cell,
    [(x0, y0), (x1, y1)]: [(i32, i32); 2],
    scale: Option<&ColorScale>,
) -> BoxResult<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let fill = match scale {
        Some(scale) if cell.final_accuracy.is_finite() => scale.color(cell.final_accuracy),
        _ => UNDEFINED_FILL,
    };
    // One pixel inside the border, so that neighbouring cells stay apart.
    root.draw(&Rectangle::new([(x0 + 1, y0 + 1), (x1 - 1, y1 - 1)], fill.filled()))?;
    let center = ((x0 + x1) / 2, (y0 + y1) / 2);
    root.draw(&Text::new(cell.accuracy_text(), center, centered(LABEL_FONT, text_color_on(fill))))?;
    Ok(())
}

/// A vertical gradient with the top (best) and bottom of the scale written beside it.
fn draw_color_bar<DB>(root: &DrawingArea<DB, Shift>, layout: &Layout, scale: &ColorScale) -> BoxResult<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let (x, top, height) = (layout.bar_x, layout.grid.1, layout.bar_height);
    for dy in 0..height {
        let t = 1.0 - dy as f64 / (height - 1).max(1) as f64;
        let color = scale.color(scale.lo + t * (scale.hi - scale.lo));
        root.draw(&Rectangle::new([(x, top + dy), (x + BAR_WIDTH, top + dy + 1)], color.filled()))?;
    }
    root.draw(&Rectangle::new([(x, top), (x + BAR_WIDTH, top + height)], BLACK.mix(0.5).stroke_width(1)))?;
    let beside = (FONT_FAMILY, 14).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    let text_x = x + BAR_WIDTH + 6;
    root.draw(&Text::new(format!("{:.1} max", scale.hi), (text_x, top), beside.clone()))?;
    if scale.min < scale.lo {
        root.draw(&Text::new(format!("≤ {:.1}", scale.lo), (text_x, top + height), beside.clone()))?;
        root.draw(&Text::new(format!("min {:.1}", scale.min), (x, top + height + 16), beside))?;
    } else {
        root.draw(&Text::new(format!("{:.1} min", scale.lo), (text_x, top + height), beside))?;
    }
    Ok(())
}
