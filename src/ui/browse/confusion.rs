//! The Browse tab's confusion matrix: a model's predictions against the ground truth over the
//! images; a click on a cell filters the grid to that confusion. With many classes (ADE20K's
//! 150) the matrix zooms to the classes most involved in confusions and sums the rest into one
//! "other classes" row and column; beside it, the largest confusions as a list.

use egui::{Color32, Rect, Sense, Ui, pos2, vec2};

use super::BrowseTab;
use super::order::{Source, confusion_matrix};
use crate::data::ClassSet;
use crate::ui::widgets::note;

/// Up to this many classes the matrix shows every class.
pub(super) const FULL_MATRIX_MAX: usize = 30;
/// Classes shown when zoomed, unless the user picks another number.
pub(super) const DEFAULT_ZOOM: usize = 16;
/// Entries of the largest-confusions list.
const TOP_CONFUSIONS: usize = 10;
const OTHER: &str = "other classes";

/// The rows and columns shown: `Some(class)`, or `None` for the sum of every class left out.
struct Zoomed {
    labels: Vec<Option<usize>>,
    /// Row-major `labels.len()²` counts.
    cells: Vec<u64>,
}

/// The `keep` classes with the most confused pixels (as ground truth or as prediction; ties by
/// their pixel count), in class order, plus one row and column summing the others; the whole
/// matrix when `keep >= n`.
fn zoomed(cm: &[u64], n: usize, keep: usize) -> Zoomed {
    if keep >= n {
        return Zoomed { labels: (0..n).map(Some).collect(), cells: cm.to_vec() };
    }
    let confused = |c: usize| -> (u64, u64) {
        let off: u64 = (0..n).filter(|&o| o != c).map(|o| cm[c * n + o] + cm[o * n + c]).sum();
        let pixels: u64 = cm[c * n..(c + 1) * n].iter().sum();
        (off, pixels)
    };
    let mut ranked: Vec<usize> = (0..n).collect();
    ranked.sort_by_key(|&c| std::cmp::Reverse(confused(c)));
    let mut kept: Vec<usize> = ranked[..keep].to_vec();
    kept.sort();
    let mut slot = vec![keep; n]; // the "other" slot unless kept
    for (i, &c) in kept.iter().enumerate() {
        slot[c] = i;
    }
    let m = keep + 1;
    let mut cells = vec![0u64; m * m];
    for t in 0..n {
        for p in 0..n {
            cells[slot[t] * m + slot[p]] += cm[t * n + p];
        }
    }
    let labels = kept.into_iter().map(Some).chain(std::iter::once(None)).collect();
    Zoomed { labels, cells }
}

/// The largest off-diagonal cells: (ground truth, prediction, pixels), largest first.
fn top_confusions(cm: &[u64], n: usize, k: usize) -> Vec<(usize, usize, u64)> {
    let mut cells: Vec<(usize, usize, u64)> = (0..n)
        .flat_map(|t| (0..n).map(move |p| (t, p)))
        .filter(|&(t, p)| t != p && cm[t * n + p] > 0)
        .map(|(t, p)| (t, p, cm[t * n + p]))
        .collect();
    cells.sort_by_key(|&(t, p, c)| (std::cmp::Reverse(c), t, p));
    cells.truncate(k);
    cells
}

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
        let keep = if n > FULL_MATRIX_MAX {
            ui.horizontal(|ui| {
                let label = ui.label("classes shown");
                ui.add(egui::DragValue::new(&mut self.zoom_classes).range(2..=FULL_MATRIX_MAX)).labelled_by(label.id);
                note(ui, format!("of {n}: the most confused, the rest summed as '{OTHER}'"));
            });
            self.zoom_classes.clamp(2, FULL_MATRIX_MAX)
        } else {
            n
        };
        let view = zoomed(&cm, n, keep);
        let name = |l: Option<usize>| l.map_or(OTHER, |c| classes.names[c].as_str()).to_string();
        note(ui, "rows: ground truth · columns: prediction · click a cell to list its images");
        let m = view.labels.len();
        // Class names left of the rows and above the columns (rotated), in a small font.
        let font = egui::FontId::proportional(10.0);
        let text_color = ui.visuals().text_color();
        let label_room = view
            .labels
            .iter()
            .map(|&l| ui.fonts_mut(|f| f.layout_no_wrap(name(l), font.clone(), text_color).size().x))
            .fold(0.0f32, f32::max)
            + 4.0;
        let cell = ((ui.available_width() - label_room - 8.0) / m as f32).clamp(6.0, 18.0);
        let grid = cell * m as f32;
        let (outer, response) = ui.allocate_exact_size(vec2(label_room + grid, label_room + grid), Sense::click());
        let rect = Rect::from_min_size(outer.min + vec2(label_room, label_room), vec2(grid, grid));
        {
            let painter = ui.painter_at(outer);
            let show_names = cell >= 9.0;
            for (c, &l) in view.labels.iter().enumerate().filter(|_| show_names) {
                let y = rect.min.y + (c as f32 + 0.5) * cell;
                painter.text(pos2(rect.min.x - 3.0, y), egui::Align2::RIGHT_CENTER, name(l), font.clone(), text_color);
                let galley = painter.layout_no_wrap(name(l), font.clone(), text_color);
                let x = rect.min.x + (c as f32 + 0.5) * cell - galley.size().y / 2.0;
                let at = pos2(x, rect.min.y - 3.0);
                painter
                    .add(egui::epaint::TextShape::new(at, galley, text_color).with_angle(-std::f32::consts::FRAC_PI_2));
            }
        }
        let painter = ui.painter_at(rect);
        for t in 0..m {
            let row: u64 = view.cells[t * m..(t + 1) * m].iter().sum();
            for p in 0..m {
                let v = if row > 0 { view.cells[t * m + p] as f32 / row as f32 } else { 0.0 };
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
            if t < m && p < m {
                let (lt, lp) = (view.labels[t], view.labels[p]);
                let text = format!("{} predicted as {}: {} px", name(lt), name(lp), view.cells[t * m + p]);
                response.clone().on_hover_text(text);
                if response.clicked()
                    && let (Some(t), Some(p)) = (lt, lp)
                {
                    self.confusion_filter = Some((source, t as u8, p as u8));
                }
            }
        }
        self.top_confusions_ui(ui, &cm, &classes, source);
    }

    /// The largest confusions as buttons that filter the grid to them.
    fn top_confusions_ui(&mut self, ui: &mut Ui, cm: &[u64], classes: &ClassSet, source: Source) {
        let n = classes.len();
        let top = top_confusions(cm, n, TOP_CONFUSIONS);
        ui.label("Largest confusions");
        if top.is_empty() {
            note(ui, "none yet");
        }
        for (t, p, px) in top {
            let row: u64 = cm[t * n..(t + 1) * n].iter().sum();
            let share = 100.0 * px as f64 / row.max(1) as f64;
            let text = format!("{} → {}  {share:.1} %", classes.names[t], classes.names[p]);
            let hover =
                format!("{px} px of {} predicted as {}; click to list the images", classes.names[t], classes.names[p]);
            if ui.small_button(text).on_hover_text(hover).clicked() {
                self.confusion_filter = Some((source, t as u8, p as u8));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 classes: 0↔1 confused a lot, 2 a little, 3 never.
    fn matrix() -> Vec<u64> {
        #[rustfmt::skip]
        let cm = vec![
            50, 20,  0, 0,
            30, 40,  1, 0,
             0,  0, 60, 0,
             0,  0,  0, 90,
        ];
        cm
    }

    #[test]
    fn zooming_keeps_the_most_confused_classes_and_sums_the_rest() {
        let z = zoomed(&matrix(), 4, 2);
        assert_eq!(z.labels, vec![Some(0), Some(1), None]);
        #[rustfmt::skip]
        let expected = vec![
            50, 20, 0,
            30, 40, 1,
             0,  0, 150,
        ];
        assert_eq!(z.cells, expected);
        assert_eq!(z.cells.iter().sum::<u64>(), matrix().iter().sum::<u64>(), "no pixel is lost");
        let all = zoomed(&matrix(), 4, 4);
        assert_eq!((all.labels.len(), all.cells), (4, matrix()));
    }

    #[test]
    fn top_confusions_are_the_largest_off_diagonal_cells() {
        assert_eq!(top_confusions(&matrix(), 4, 2), vec![(1, 0, 30), (0, 1, 20)]);
        assert_eq!(top_confusions(&matrix(), 4, 10).len(), 3);
    }
}
