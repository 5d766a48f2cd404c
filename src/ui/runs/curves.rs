//! The Runs tab's two overlaid curve plots of the selected runs, each of a chosen metric.

use egui::Ui;

use super::{Metric, RunEntry, RunsTab};
use crate::ui::plots::{CurvePlot, Series, XAxis};
use crate::ui::widgets::note;

impl RunsTab {
    pub(super) fn curves_ui(&mut self, ui: &mut Ui, smoothing: &mut f64) {
        let chosen: Vec<&RunEntry> = self.entries.iter().filter(|e| self.selected.contains(&e.dir)).collect();
        if chosen.is_empty() {
            note(ui, "Select runs to overlay their curves.");
            return;
        }
        let class_names: Vec<String> = chosen
            .iter()
            .filter_map(|e| e.state.as_ref()?.history.last().map(|r| r.iou.len()))
            .max()
            .map(|n| crate::data::ClassSet::for_num_classes(n).names)
            .unwrap_or_default();
        let mut metrics = self.metrics;
        ui.horizontal(|ui| {
            for (k, metric) in metrics.iter_mut().enumerate() {
                let label = ui.label(if k == 0 { "left plot" } else { "right plot" });
                egui::ComboBox::from_id_salt(("runs_metric", k))
                    .selected_text(metric.label(&class_names))
                    .show_ui(ui, |ui| {
                        let base = [
                            Metric::TrainLoss,
                            Metric::Ce,
                            Metric::Kd,
                            Metric::Feature,
                            Metric::ValLoss,
                            Metric::Miou,
                            Metric::PixelAccuracy,
                        ];
                        let classes = (0..class_names.len()).map(Metric::ClassIou);
                        for m in base.into_iter().chain(classes) {
                            ui.selectable_value(metric, m, m.label(&class_names));
                        }
                    })
                    .response
                    .labelled_by(label.id);
            }
            ui.separator();
            // The same setting as the Train tab's slider.
            let label = ui.label("smoothing");
            ui.add(egui::Slider::new(smoothing, 0.0..=0.99)).labelled_by(label.id);
        });
        self.metrics = metrics;
        let smoothing = *smoothing;
        let w = ui.available_width() / 2.0 - 8.0;
        let size = egui::vec2(w, ui.available_height().max(160.0));
        ui.horizontal(|ui| {
            for (k, metric) in self.metrics.iter().enumerate() {
                let series: Vec<Series> = chosen
                    .iter()
                    .map(|e| Series::new(e.name.clone(), metric.series(e), self.colors.color(&e.dir)))
                    .collect();
                let label = metric.label(&class_names);
                let plot = CurvePlot {
                    id: if k == 0 { "runs_left" } else { "runs_right" },
                    x: if metric.per_step() { XAxis::Step } else { XAxis::Epoch },
                    y_label: &label,
                    y_range: (!metric.per_step() && *metric != Metric::ValLoss).then_some((0.0, 1.0)),
                    size,
                    smoothing: if metric.per_step() { smoothing } else { 0.0 },
                };
                plot.show(ui, &series);
            }
        });
    }
}
