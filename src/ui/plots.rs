//! The curves of the Train and Runs tabs, drawn one way: the raw series faint behind its
//! smoothed version (as TensorBoard), markers where a series has few points (a single evaluation
//! is visible), sensible axes before any data, integer epoch ticks at any width, and a hover
//! read-out of every series at the cursor. A run keeps one colour everywhere, chosen from its name.

use egui::{Color32, Ui};
use egui_plot::{Bar, BarChart, GridInput, GridMark, Legend, Line, Plot, PlotPoint, Points};

use crate::report::plots::ema;

/// A distinct, readable colour for a run, the same wherever and whenever the run is drawn.
pub fn run_color(name: &str) -> Color32 {
    // Tableau-10: distinguishable on light and dark backgrounds.
    const PALETTE: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    // FNV-1a: stable across starts and platforms (std's hasher is seeded per process).
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    let (r, g, b) = PALETTE[(hash % PALETTE.len() as u64) as usize];
    Color32::from_rgb(r, g, b)
}

/// One named series of (x, y) points, sorted by x.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<[f64; 2]>,
    pub color: Color32,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<[f64; 2]>, color: Color32) -> Self {
        Self { name: name.into(), points, color }
    }

    /// The same series smoothed by an exponential moving average (`smoothing` 0 = raw, as
    /// TensorBoard's slider: weight of the previous value).
    pub fn smoothed(&self, smoothing: f64) -> Series {
        let ys: Vec<f64> = self.points.iter().map(|p| p[1]).collect();
        let smooth = ema(&ys, 1.0 - smoothing.clamp(0.0, 0.999));
        let points = self.points.iter().zip(smooth).map(|(p, y)| [p[0], y]).collect();
        Series { name: self.name.clone(), points, color: self.color }
    }

    /// The y value at the point nearest to `x` (in x), if any.
    pub fn value_near(&self, x: f64) -> Option<[f64; 2]> {
        let i = self.points.partition_point(|p| p[0] < x);
        let candidates = [i.checked_sub(1), Some(i)];
        candidates
            .into_iter()
            .flatten()
            .filter_map(|k| self.points.get(k))
            .min_by(|a, b| (a[0] - x).abs().total_cmp(&(b[0] - x).abs()))
            .copied()
    }
}

/// The x axis of a curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XAxis {
    Step,
    /// Whole epochs: integer ticks only.
    Epoch,
}

impl XAxis {
    fn label(self) -> &'static str {
        match self {
            Self::Step => "step",
            Self::Epoch => "epoch",
        }
    }
}

/// How one plot looks.
pub struct CurvePlot<'a> {
    pub id: &'a str,
    pub x: XAxis,
    pub y_label: &'a str,
    /// The y range a metric lives in (mIoU: 0..1), shown before data and always included.
    pub y_range: Option<(f64, f64)>,
    pub size: egui::Vec2,
    /// Smoothing applied to every series (0 = raw); the raw series stays drawn faint behind.
    pub smoothing: f64,
}

impl CurvePlot<'_> {
    /// Draws the series; hovering shows each one's value at the cursor. Returns the plot's
    /// response (for a context menu).
    pub fn show(&self, ui: &mut Ui, series: &[Series]) -> egui::Response {
        let smoothed: Vec<Series> = series.iter().map(|s| s.smoothed(self.smoothing)).collect();
        let mut plot = Plot::new(self.id)
            .width(self.size.x)
            .height(self.size.y)
            .legend(Legend::default())
            .x_axis_label(self.x.label())
            .y_axis_label(self.y_label)
            .label_formatter(|_| None)
            .include_x(if self.x == XAxis::Epoch { 1.0 } else { 0.0 });
        if self.x == XAxis::Epoch {
            plot = plot.x_grid_spacer(integer_ticks).x_axis_formatter(|m, _| format!("{}", m.value.round() as i64));
        }
        if let Some((lo, hi)) = self.y_range {
            plot = plot.include_y(lo).include_y(hi);
        } else if series.iter().all(|s| s.points.is_empty()) {
            plot = plot.include_y(0.0).include_y(1.0);
        }
        let smoothing = self.smoothing;
        let response = plot.show(ui, |p| {
            for (raw, smooth) in series.iter().zip(&smoothed) {
                if raw.points.is_empty() {
                    continue;
                }
                if smoothing > 0.0 && raw.points.len() > 1 {
                    // Unnamed: kept out of the legend, which shows the series' own colour.
                    let faint = raw.color.gamma_multiply(0.3);
                    p.line(Line::new("", raw.points.clone()).color(faint).allow_hover(false));
                }
                p.line(Line::new(smooth.name.clone(), smooth.points.clone()).color(smooth.color).width(1.5));
                if (self.x == XAxis::Epoch && raw.points.len() <= 60) || raw.points.len() == 1 {
                    // Evaluations: each is visible, a lone one included (markers would only
                    // thicken a long curve).
                    p.points(Points::new(smooth.name.clone(), smooth.points.clone()).color(smooth.color).radius(2.5));
                }
            }
            p.pointer_coordinate()
        });
        let plot_response = response.response.clone();
        if let Some(at) = response.inner
            && response.response.hovered()
        {
            let lines = readout(&smoothed, at, self.x);
            if !lines.is_empty() {
                response.response.on_hover_ui_at_pointer(|ui| {
                    for (color, text) in lines {
                        ui.label(egui::RichText::new(text).color(color));
                    }
                });
            }
        }
        plot_response
    }
}

/// "name: value at x" for each series near the cursor's x.
fn readout(series: &[Series], at: PlotPoint, x: XAxis) -> Vec<(Color32, String)> {
    series
        .iter()
        .filter_map(|s| {
            let [px, py] = s.value_near(at.x)?;
            Some((s.color, format!("{}: {py:.4} ({} {})", s.name, x.label(), px.round() as i64)))
        })
        .collect()
}

/// Grid marks at whole numbers only (1, 2, 5, 10, 20, … apart), far enough apart that each gets
/// its label at any plot width. egui_plot's `base_step_size` spans its minimum grid spacing (8
/// points) and it labels x ticks at least 60 points apart.
fn integer_ticks(input: GridInput) -> Vec<GridMark> {
    const LABEL_POINTS: f64 = 72.0;
    let (lo, hi) = input.bounds;
    let min_step = (input.base_step_size / 8.0 * LABEL_POINTS).max(1.0);
    let step = [1.0, 2.0, 5.0]
        .into_iter()
        .cycle()
        .zip((0..).map(|k| 10f64.powi(k / 3)))
        .map(|(m, p)| m * p)
        .find(|s| *s >= min_step)
        .unwrap_or(min_step.ceil());
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| GridMark { value: k as f64 * step, step_size: step }).collect()
}

/// Per-class IoU bars, each in its class's colour, labelled on hover and (space permitting) on
/// the axis.
pub fn class_bars(ui: &mut Ui, id: &str, size: egui::Vec2, names: &[String], colors: &[[u8; 3]], iou: &[Option<f64>]) {
    let bars: Vec<Bar> = iou
        .iter()
        .enumerate()
        .filter_map(|(c, v)| {
            let v = (*v)?;
            let [r, g, b] = colors.get(c).copied().unwrap_or([128, 128, 128]);
            let name = names.get(c).cloned().unwrap_or_else(|| format!("class {c}"));
            // Outlined: VOC's background class is black, which a dark theme would swallow.
            let outline = egui::Stroke::new(1.0, Color32::from_gray(140));
            Some(Bar::new(c as f64, v).name(format!("{name}: {v:.3}")).fill(Color32::from_rgb(r, g, b)).stroke(outline))
        })
        .collect();
    let labels = names.to_vec();
    // Names on the axis only when each bar has room for a short one.
    let room = size.x / names.len().max(1) as f32 > 28.0;
    Plot::new(id)
        .width(size.x)
        .height(size.y)
        .include_y(0.0)
        .include_y(1.0)
        .y_axis_label("IoU per class (last evaluation)")
        .x_grid_spacer(|input| {
            let (lo, hi) = input.bounds;
            ((lo.ceil() as i64).max(0)..=hi.floor() as i64)
                .map(|k| GridMark { value: k as f64, step_size: 1.0 })
                .collect()
        })
        .x_axis_formatter(move |m, _| {
            let k = m.value.round();
            if !room || (m.value - k).abs() > 1e-6 || k < 0.0 {
                return String::new();
            }
            labels.get(k as usize).map(|n| n.chars().take(6).collect()).unwrap_or_default()
        })
        .label_formatter(|pos| match pos {
            egui_plot::HoverPosition::NearDataPoint { plot_name, .. } => Some((*plot_name).to_string()),
            _ => None,
        })
        .show(ui, |p| p.bar_chart(BarChart::new("IoU", bars).width(0.8)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_keeps_its_colour_and_runs_differ() {
        assert_eq!(run_color("mbv3s-tiny-none"), run_color("mbv3s-tiny-none"));
        let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let distinct: std::collections::HashSet<_> = names.iter().map(|n| run_color(n).to_array()).collect();
        assert!(distinct.len() >= 4, "names spread over the palette: {distinct:?}");
    }

    #[test]
    fn the_value_at_the_cursor_is_the_nearest_point() {
        let s = Series::new("mIoU", vec![[1.0, 0.1], [2.0, 0.2], [4.0, 0.4]], Color32::RED);
        assert_eq!(s.value_near(2.9), Some([2.0, 0.2]));
        assert_eq!(s.value_near(3.1), Some([4.0, 0.4]));
        assert_eq!(s.value_near(-5.0), Some([1.0, 0.1]));
        assert_eq!(Series::new("x", vec![], Color32::RED).value_near(1.0), None);
        let smooth = s.smoothed(0.0);
        assert_eq!(smooth.points, s.points, "no smoothing keeps the raw values");
    }

    #[test]
    fn epoch_ticks_are_whole_numbers_at_any_width() {
        for (lo, hi, base) in [(0.7, 1.3, 0.001), (0.0, 3.0, 0.01), (0.0, 47.0, 0.5), (1.0, 300.0, 3.0)] {
            let marks = integer_ticks(GridInput { bounds: (lo, hi), base_step_size: base });
            assert!(!marks.is_empty(), "{lo}..{hi}");
            assert!(marks.iter().all(|m| m.value.fract() == 0.0), "{lo}..{hi}");
            // Far enough apart (in points: base/8 per unit) for egui_plot to label each one.
            let points_apart = marks[0].step_size / (base / 8.0);
            assert!(points_apart >= 60.0 || marks[0].step_size == 1.0, "{lo}..{hi}: {points_apart}");
        }
        let marks = integer_ticks(GridInput { bounds: (0.0, 47.0), base_step_size: 0.5 });
        assert_eq!(marks[1].value - marks[0].value, 5.0, "a 270-point plot of 47 epochs: every 5th");
    }
}
