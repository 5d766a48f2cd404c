//! The Browse tab's confusion matrix: a model's predictions against the ground truth over the
//! images; a click on a cell filters the grid to that confusion.

use egui::{Color32, Rect, Sense, Ui, pos2, vec2};

use super::BrowseTab;
use super::order::{Source, confusion_matrix};
use crate::data::ClassSet;
use crate::ui::widgets::note;

impl BrowseTab {
    pub(super) fn confusion_ui(&mut self, ui: &mut Ui) {
        let classes = self.classes.clone().unwrap_or_else(ClassSet::voc);
        let n = classes.len();
        ui.horizontal(|ui| {
            ui.label("Confusion matrix of");
            let mut s = self.source.unwrap_or(Source::Student);
            ui.selectable_value(&mut s, Source::Student, "student");
            ui.selectable_value(&mut s, Source::Teacher, "teacher");
            self.source = Some(s);
        });
        let source = self.source.unwrap_or(Source::Student);
        let cm = confusion_matrix(&self.items, source, n);
        note(ui, "rows: ground truth · columns: prediction · click a cell to list its images");
        // Class names left of the rows and above the columns (rotated), in a small font.
        let font = egui::FontId::proportional(10.0);
        let text_color = ui.visuals().text_color();
        let label_room = classes
            .names
            .iter()
            .map(|name| ui.fonts_mut(|f| f.layout_no_wrap(name.clone(), font.clone(), text_color).size().x))
            .fold(0.0f32, f32::max)
            + 4.0;
        let cell = ((ui.available_width() - label_room - 8.0) / n as f32).clamp(6.0, 18.0);
        let grid = cell * n as f32;
        let (outer, response) = ui.allocate_exact_size(vec2(label_room + grid, label_room + grid), Sense::click());
        let rect = Rect::from_min_size(outer.min + vec2(label_room, label_room), vec2(grid, grid));
        {
            let painter = ui.painter_at(outer);
            let show_names = cell >= 9.0;
            for (c, name) in classes.names.iter().enumerate().take(n).filter(|_| show_names) {
                let y = rect.min.y + (c as f32 + 0.5) * cell;
                painter.text(pos2(rect.min.x - 3.0, y), egui::Align2::RIGHT_CENTER, name, font.clone(), text_color);
                let galley = painter.layout_no_wrap(name.clone(), font.clone(), text_color);
                let x = rect.min.x + (c as f32 + 0.5) * cell - galley.size().y / 2.0;
                let at = pos2(x, rect.min.y - 3.0);
                painter
                    .add(egui::epaint::TextShape::new(at, galley, text_color).with_angle(-std::f32::consts::FRAC_PI_2));
            }
        }
        let painter = ui.painter_at(rect);
        for t in 0..n {
            let row: u64 = cm[t * n..(t + 1) * n].iter().sum();
            for p in 0..n {
                let v = if row > 0 { cm[t * n + p] as f32 / row as f32 } else { 0.0 };
                let shade = (255.0 * (1.0 - v.sqrt())) as u8;
                let color =
                    if t == p { Color32::from_rgb(shade, 255, shade) } else { Color32::from_rgb(255, shade, shade) };
                let r = Rect::from_min_size(
                    pos2(rect.min.x + p as f32 * cell, rect.min.y + t as f32 * cell),
                    vec2(cell - 1.0, cell - 1.0),
                );
                painter.rect_filled(r, 0.0, color);
            }
        }
        if let Some(pos) = response.hover_pos() {
            let (p, t) = (((pos.x - rect.min.x) / cell) as usize, ((pos.y - rect.min.y) / cell) as usize);
            if t < n && p < n {
                let text = format!("{} predicted as {}: {} px", classes.names[t], classes.names[p], cm[t * n + p]);
                response.clone().on_hover_text(text);
                if response.clicked() {
                    self.confusion_filter = Some((source, t as u8, p as u8));
                }
            }
        }
    }
}
