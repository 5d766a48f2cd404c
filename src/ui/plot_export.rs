//! The Train tab's live plots written out, from a right-click on a plot: **Export CSV…** (the
//! plotted series: one row per step or epoch, one column per series, and with smoothing on the
//! smoothed values beside the raw ones) and **Export PNG…** (the same curves drawn with plotters,
//! as the report draws its charts). The file is picked in a save dialog off the UI thread and
//! written atomically; the data is what the plot showed when the export was asked for.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::commands::{Command, CommandQueue};
use super::file_dialog::PendingPick;
use super::plots::{Series, XAxis};
use super::train::LivePlot;
use crate::report::plots::{Band, band_chart, ema, register_fonts};

/// What a plot is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Png,
    Csv,
}

impl ExportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Csv => "csv",
        }
    }
}

/// A plot's series as they were on screen, ready to write.
#[derive(Clone, Debug)]
pub struct PlotData {
    pub y_label: String,
    pub x: XAxis,
    pub series: Vec<Series>,
    /// The smoothing the plot applied (0: raw values only).
    pub smoothing: f64,
}

impl PlotData {
    pub fn of(plot: LivePlot, series: Vec<Series>, smoothing: f64) -> Self {
        let smoothing = if plot.smoothed() { smoothing.clamp(0.0, 0.999) } else { 0.0 };
        Self { y_label: plot.y_label().to_string(), x: plot.x(), series, smoothing }
    }

    /// The columns written: each series raw, then (with smoothing) each smoothed as drawn.
    fn columns(&self) -> Vec<(String, Vec<[f64; 2]>)> {
        let raw = self.series.iter().map(|s| (s.name.clone(), s.points.clone()));
        let smooth = self
            .series
            .iter()
            .filter(|_| self.smoothing > 0.0)
            .map(|s| (format!("{} (smoothed {:.2})", s.name, self.smoothing), s.smoothed(self.smoothing).points));
        raw.chain(smooth).collect()
    }

    /// The CSV text: a header (`step` or `epoch`, then the series' names), one row per x value
    /// any series has, a cell left empty where a series has no value at that x.
    pub fn csv(&self) -> String {
        let columns = self.columns();
        let mut xs: Vec<f64> = columns.iter().flat_map(|(_, p)| p.iter().map(|p| p[0])).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let mut out = String::from(x_name(self.x));
        for (name, _) in &columns {
            out.push(',');
            out.push_str(&csv_field(name));
        }
        out.push('\n');
        // Each column's values by x (bit pattern: the x values are copied, never computed), so a
        // long run's thousands of steps are written in one pass.
        let by_x: Vec<std::collections::HashMap<u64, f64>> =
            columns.iter().map(|(_, points)| points.iter().map(|p| (p[0].to_bits(), p[1])).collect()).collect();
        for x in xs {
            out.push_str(&format!("{x}"));
            for values in &by_x {
                out.push(',');
                if let Some(y) = values.get(&x.to_bits()) {
                    out.push_str(&format!("{y}"));
                }
            }
            out.push('\n');
        }
        out
    }

    /// Draws the curves (smoothed where the plot smoothed them) into a PNG at `path`.
    pub fn png(&self, path: &Path) -> anyhow::Result<()> {
        register_fonts();
        // The report's band chart with no spread: each band is its line.
        let bands: Vec<Band> = self
            .series
            .iter()
            .filter(|s| !s.points.is_empty())
            .map(|s| {
                let ys: Vec<f64> = s.points.iter().map(|p| p[1]).collect();
                let ys = if self.smoothing > 0.0 { ema(&ys, 1.0 - self.smoothing) } else { ys };
                Band { name: s.name.clone(), points: s.points.iter().zip(ys).map(|(p, y)| (p[0], y, 0.0)).collect() }
            })
            .collect();
        let title = match self.smoothing > 0.0 {
            true => format!("{} (smoothed {:.2})", self.y_label, self.smoothing),
            false => self.y_label.clone(),
        };
        band_chart(path, &title, x_name(self.x), &self.y_label, &bands)
    }

    /// Writes the plot in `format` to `path` (atomically: a failed write leaves no half file).
    pub fn write(&self, format: ExportFormat, path: &Path) -> anyhow::Result<()> {
        match format {
            ExportFormat::Csv => crate::util::fs::write_atomic(path, self.csv().as_bytes())
                .with_context(|| format!("cannot write {}: choose another folder", path.display())),
            ExportFormat::Png => self.png(path).context("choose another folder"),
        }
    }
}

fn x_name(x: XAxis) -> &'static str {
    match x {
        XAxis::Step => "step",
        XAxis::Epoch => "epoch",
    }
}

/// A CSV cell, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

/// The right-click menu of a curve plot: its exports, as commands. The plot is also named for
/// assistive technology (and tests), as "<y label> plot".
pub fn context_menu(response: &egui::Response, plot: LivePlot, commands: &mut CommandQueue) {
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Figure, true, format!("{} plot", plot.y_label())));
    response.context_menu(|ui| {
        for (format, label) in [(ExportFormat::Png, "Export PNG…"), (ExportFormat::Csv, "Export CSV…")] {
            if ui.button(label).clicked() {
                commands.push(Command::ExportPlot(plot, format));
                ui.close();
            }
        }
    });
}

/// Where exports go.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Destination {
    /// A save dialog asks (without a desktop session, the suggested folder is used).
    #[default]
    Ask,
    /// Into this folder under the suggested name, without asking (tests, scripted sessions).
    Folder(PathBuf),
}

/// The exports in flight and the last one's outcome.
#[derive(Default)]
pub struct PlotExports {
    pub destination: Destination,
    /// A save dialog open for this plot data.
    pending: Option<(PendingPick, PlotData, ExportFormat)>,
    /// The last export: the file written, or why not.
    pub outcome: Option<Result<PathBuf, String>>,
}

impl PlotExports {
    /// Exports `data` as `file_name` (suggested in `dir`): asks where, or writes at once.
    pub fn start(&mut self, ctx: &egui::Context, data: PlotData, format: ExportFormat, dir: &Path, file_name: &str) {
        if self.pending.is_some() {
            // One dialog at a time: the open one is answered first.
            return;
        }
        self.outcome = None;
        if let Destination::Folder(folder) = &self.destination {
            let path = folder.join(file_name);
            self.outcome = Some(data.write(format, &path).map(|()| path).map_err(|e| format!("{e:#}")));
            return;
        }
        let title = format!("Export the plot as {}", format.extension().to_uppercase());
        match PendingPick::save(&title, dir, file_name, ctx) {
            Some(pick) => self.pending = Some((pick, data, format)),
            None => {
                // No desktop session to ask in: the suggested place, said in the outcome.
                let path = dir.join(file_name);
                self.outcome = Some(data.write(format, &path).map(|()| path).map_err(|e| format!("{e:#}")));
            }
        }
    }

    /// Writes the export whose dialog was answered; call once per frame (never blocks).
    pub fn update(&mut self) {
        let Some(answer) = self.pending.as_ref().and_then(|(pick, ..)| pick.poll()) else { return };
        let Some((_, data, format)) = self.pending.take() else { return };
        if let Some(path) = answer {
            self.outcome = Some(data.write(format, &path).map(|()| path).map_err(|e| format!("{e:#}")));
        }
    }

    /// The last export's outcome, under the Train tab's controls.
    pub fn outcome_ui(&self, ui: &mut egui::Ui) {
        match &self.outcome {
            Some(Ok(path)) => super::widgets::note(ui, format!("plot written to {}", path.display())),
            Some(Err(e)) => super::widgets::error_text(ui, e.clone()),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui::Color32;

    fn loss_data(smoothing: f64) -> PlotData {
        let series = vec![
            Series::new("total", vec![[1.0, 2.0], [2.0, 1.0], [3.0, 0.5]], Color32::RED),
            Series::new("KD, soft", vec![[2.0, 0.25], [3.0, 0.125]], Color32::GREEN),
        ];
        PlotData::of(LivePlot::Loss, series, smoothing)
    }

    #[test]
    fn the_csv_has_one_row_per_x_and_one_column_per_series() {
        let csv = loss_data(0.0).csv();
        assert_eq!(csv, "step,total,\"KD, soft\"\n1,2,\n2,1,0.25\n3,0.5,0.125\n");
    }

    #[test]
    fn with_smoothing_the_csv_adds_the_smoothed_values_as_drawn() {
        let csv = loss_data(0.5).csv();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("step,total,\"KD, soft\",total (smoothed 0.50),\"KD, soft (smoothed 0.50)\""));
        // EMA with weight 0.5 on the previous value: 2, 1.5, 1.0.
        assert_eq!(lines.next(), Some("1,2,,2,"));
        assert_eq!(lines.next(), Some("2,1,0.25,1.5,0.25"));
        assert_eq!(lines.next(), Some("3,0.5,0.125,1,0.1875"));
    }

    #[test]
    fn per_epoch_plots_are_written_raw() {
        let data = PlotData::of(LivePlot::Miou, vec![Series::new("mIoU", vec![[1.0, 0.5]], Color32::RED)], 0.9);
        assert_eq!(data.csv(), "epoch,mIoU\n1,0.5\n");
    }

    #[test]
    fn png_and_csv_land_where_asked_and_a_bad_folder_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let data = loss_data(0.6);
        let png = dir.path().join("loss.png");
        data.write(ExportFormat::Png, &png).unwrap();
        let img = image::open(&png).unwrap();
        assert!(img.width() > 100 && img.height() > 100);
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"x").unwrap();
        let e = data.write(ExportFormat::Csv, &blocked.join("loss.csv")).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("loss.csv") && e.contains("choose another folder"), "{e}");
    }
}
