//! The Browse tab's per-class IoU bars over the browsed images, worst first: the worst N (or all
//! of them, in a scrolling list, for ADE20K's 150 classes); a click on a bar filters the grid to
//! images holding that class.

use egui::{Color32, Rect, Sense, Ui, vec2};

use super::BrowseTab;
use super::order::{Source, confusion_matrix};
use crate::data::ClassSet;
use crate::metrics::ConfusionMatrix;
use crate::ui::widgets::{note, swatch};

/// Bars shown unless the user asks for all.
pub(super) const DEFAULT_WORST: usize = 12;
const BAR_WIDTH: f32 = 110.0;

/// (class, IoU) of every class present in the ground truth or the predictions, worst first.
pub(super) fn worst_first(cm: ConfusionMatrix) -> Vec<(usize, f64)> {
    let mut bars: Vec<(usize, f64)> =
        cm.iou_per_class().into_iter().enumerate().filter_map(|(c, iou)| iou.map(|v| (c, v))).collect();
    bars.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    bars
}

impl BrowseTab {
    pub(super) fn class_iou_ui(&mut self, ui: &mut Ui) {
        let classes = self.classes.clone().unwrap_or_else(ClassSet::voc);
        let n = classes.len();
        let source = self.source.unwrap_or(Source::Student);
        let cm = ConfusionMatrix::from_counts(n, confusion_matrix(&self.items, source, n));
        let bars = worst_first(cm);
        ui.horizontal(|ui| {
            ui.label(format!("Per-class IoU of the {}", source.name()));
            ui.checkbox(&mut self.iou_all, "all").on_hover_text("every class, in a scrolling list");
            if !self.iou_all {
                let label = ui.label("worst");
                ui.add(egui::DragValue::new(&mut self.iou_worst).range(1..=n.max(1))).labelled_by(label.id);
            }
        });
        if bars.is_empty() {
            note(ui, "no predictions yet");
            return;
        }
        let shown = if self.iou_all { bars.len() } else { self.iou_worst.min(bars.len()) };
        note(ui, format!("{shown} of {} classes present, worst first · click a class to list its images", bars.len()));
        egui::ScrollArea::vertical().id_salt("class_iou").max_height(260.0).show(ui, |ui| {
            for &(c, iou) in &bars[..shown] {
                ui.horizontal(|ui| {
                    swatch(ui, classes.colors[c]);
                    let (rect, response) = ui.allocate_exact_size(vec2(BAR_WIDTH, 12.0), Sense::click());
                    let painter = ui.painter_at(rect);
                    painter.rect_filled(rect, 0.0, ui.visuals().faint_bg_color);
                    let filled = Rect::from_min_size(rect.min, vec2(BAR_WIDTH * iou as f32, rect.height()));
                    painter.rect_filled(filled, 0.0, Color32::from_rgb(90, 140, 200));
                    let name = &classes.names[c];
                    let clicked = response.on_hover_text(format!("{name}: IoU {iou:.3}")).clicked()
                        | ui.selectable_label(self.class_filter == Some(c as u8), format!("{iou:.2} {name}")).clicked();
                    if clicked {
                        self.class_filter = Some(c as u8);
                    }
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_worst_first_and_skip_absent_classes() {
        // Class 0: IoU 50/(50+20+30) = 0.5; class 1: 40/(40+30+20) ≈ 0.44; class 2 absent.
        let cm = ConfusionMatrix::from_counts(3, vec![50, 20, 0, 30, 40, 0, 0, 0, 0]);
        let bars = worst_first(cm);
        assert_eq!(bars.iter().map(|b| b.0).collect::<Vec<_>>(), vec![1, 0]);
        assert!((bars[1].1 - 0.5).abs() < 1e-12);
    }
}
