//! The curves of the Train and Runs tabs, drawn one way: the raw series faint behind its
//! smoothed version (as TensorBoard), markers where a series has few points (a single evaluation
//! is visible), sensible axes before any data, integer epoch ticks at any width, and a hover
//! read-out of every series at the cursor, and a legend above the plot, never over its data (a
//! click on an entry hides or shows its series). A run keeps one colour everywhere, chosen from
//! its name. Per-class bars carry their class names where a name fits.

use std::collections::BTreeSet;

use egui::{Color32, Ui};
use egui_plot::{Bar, BarChart, GridInput, GridMark, Line, Plot, PlotPoint, PlotTransform, Points};

use crate::report::plots::ema;

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
    /// Draws the legend above the plot, then the series; hovering shows each one's value at the
    /// cursor. Returns the data area (the legend lies outside it).
    pub fn show(&self, ui: &mut Ui, series: &[Series]) -> egui::Rect {
        self.show_plot(ui, series).0
    }

    /// As [`Self::show`], with the plot's response too (for a context menu).
    pub fn show_plot(&self, ui: &mut Ui, series: &[Series]) -> (egui::Rect, egui::Response) {
        let hidden_id = egui::Id::unique((self.id, "hidden series"));
        let mut hidden: BTreeSet<String> = ui.data(|d| d.get_temp(hidden_id)).unwrap_or_default();
        let top = ui.cursor().min.y;
        ui.vertical(|ui| {
            ui.set_width(self.size.x);
            legend_ui(ui, series, &mut hidden);
            ui.data_mut(|d| d.insert_temp(hidden_id, hidden.clone()));
            let height = (self.size.y - (ui.cursor().min.y - top)).max(60.0);
            let shown: Vec<Series> = series.iter().filter(|s| !hidden.contains(&s.name)).cloned().collect();
            self.plot_ui(ui, &shown, height)
        })
        .inner
    }

    fn plot_ui(&self, ui: &mut Ui, series: &[Series], height: f32) -> (egui::Rect, egui::Response) {
        let smoothed: Vec<Series> = series.iter().map(|s| s.smoothed(self.smoothing)).collect();
        let mut plot = Plot::new(self.id)
            .width(self.size.x)
            .height(height)
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
        let frame = *response.transform.frame();
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
        (frame, plot_response)
    }
}

/// One entry per series with points, in its colour; a click hides or shows the series.
fn legend_ui(ui: &mut Ui, series: &[Series], hidden: &mut BTreeSet<String>) {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 4.0;
        for s in series.iter().filter(|s| !s.points.is_empty() && !s.name.is_empty()) {
            let shown = !hidden.contains(&s.name);
            let color = if shown { s.color } else { s.color.gamma_multiply(0.35) };
            crate::ui::widgets::swatch(ui, [color.r(), color.g(), color.b()]);
            let text = egui::RichText::new(&s.name).small().color(if shown {
                ui.visuals().text_color()
            } else {
                ui.visuals().weak_text_color()
            });
            let entry = ui.add(egui::Label::new(text).sense(egui::Sense::click()));
            if entry.on_hover_text("click to hide or show this series").clicked() {
                if shown {
                    hidden.insert(s.name.clone());
                } else {
                    hidden.remove(&s.name);
                }
            }
            ui.add_space(6.0);
        }
    });
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

/// The width of a class bar, in class units (the rest of each unit is the gap between bars).
const BAR_WIDTH: f64 = 0.8;

/// The font size of the names written along bars whose classes are `class_px` apart; `None`
/// when a readable name would not fit (ADE20K's 150 classes in a narrow plot: names stay on
/// hover). A line of text is about 1.3 font sizes high: it may spill into the gap between bars.
fn bar_name_size(class_px: f32) -> Option<f32> {
    const SMALLEST: f32 = 8.0;
    let size = (class_px * 0.75).min(12.0);
    (size >= SMALLEST).then_some(size)
}

/// Per-class IoU bars, each in its class's colour, with its class name written along it where
/// the name fits (above the bar, or inside a tall one), and on hover.
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
    let response = Plot::new(id)
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
        // The names are on the bars; class numbers on the axis.
        .x_axis_formatter(|m, _| {
            let k = m.value.round();
            if (m.value - k).abs() > 1e-6 || k < 0.0 { String::new() } else { format!("{k}") }
        })
        .label_formatter(|pos| match pos {
            egui_plot::HoverPosition::NearDataPoint { plot_name, .. } => Some((*plot_name).to_string()),
            _ => None,
        })
        .show(ui, |p| p.bar_chart(BarChart::new("IoU", bars).width(BAR_WIDTH)));
    bar_names_ui(ui, &response.transform, names, colors, iou);
}

/// Writes each class name upwards along its bar: above it where there is room, else inside it
/// (in black or white, whichever reads on the bar's colour), cut with "…" where it is too long.
fn bar_names_ui(ui: &Ui, transform: &PlotTransform, names: &[String], colors: &[[u8; 3]], iou: &[Option<f64>]) {
    let frame = *transform.frame();
    let class_px = (transform.position_from_point_x(1.0) - transform.position_from_point_x(0.0)).abs();
    let Some(font_size) = bar_name_size(class_px) else { return };
    let painter = ui.painter_at(frame);
    let font = egui::FontId::proportional(font_size);
    for (c, v) in iou.iter().enumerate() {
        let (Some(v), Some(name)) = (*v, names.get(c)) else { continue };
        let x = transform.position_from_point_x(c as f64);
        let base = transform.position_from_point_y(0.0).min(frame.bottom());
        let top = transform.position_from_point_y(v).max(frame.top());
        let room_above = top - frame.top() - 2.0;
        let room_inside = base - top - 2.0;
        let (from, room, color) = if room_above >= room_inside {
            (top - 2.0, room_above, ui.visuals().text_color())
        } else {
            let [r, g, b] = colors.get(c).copied().unwrap_or([128, 128, 128]);
            let light = 0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32 > 140.0;
            (base - 2.0, room_inside, if light { Color32::BLACK } else { Color32::WHITE })
        };
        if room < font_size * 2.0 {
            continue;
        }
        let mut job = egui::text::LayoutJob::simple_singleline(name.clone(), font.clone(), color);
        job.wrap = egui::text::TextWrapping {
            max_width: room,
            max_rows: 1,
            break_anywhere: true,
            overflow_character: Some('…'),
        };
        let galley = painter.layout_job(job);
        // Turned a quarter to the left, the text runs up from `from`; its height spans the bar.
        let anchor = egui::pos2(x - galley.size().y / 2.0, from);
        painter.add(egui::epaint::TextShape::new(anchor, galley, color).with_angle(-std::f32::consts::FRAC_PI_2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_fit_on_bars_of_a_narrow_plot_but_not_on_slivers() {
        // The Train tab's bars: VOC's 21 classes in a third of a 1280-point window.
        assert!(bar_name_size(360.0 / 21.0).is_some_and(|s| s >= 8.0));
        // ADE20K's 150 classes in the same plot: names on hover only.
        assert_eq!(bar_name_size(360.0 / 150.0), None);
        assert_eq!(bar_name_size(40.0), Some(12.0), "never larger than the text");
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
