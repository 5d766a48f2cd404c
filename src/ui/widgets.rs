//! Small widgets shared by the tabs.

use egui::{Color32, RichText, Ui};

use super::file_dialog::{PendingPick, PickKind, dialogs_available};

/// A path text field with a "Browse…" button whose dialog runs off the UI thread.
#[derive(Default)]
pub struct PathField {
    pending: Option<PendingPick>,
}

impl PathField {
    /// Draws the field; returns true when the path changed (typed or picked). `title` names the
    /// dialog; `example`, a file name that would fit, shows on hover.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        id: &str,
        value: &mut String,
        kind: PickKind,
        title: &str,
        example: Option<&str>,
    ) -> bool {
        let mut changed = false;
        if let Some(p) = &self.pending
            && let Some(answer) = p.poll()
        {
            if let Some(path) = answer {
                *value = path.display().to_string();
                changed = true;
            }
            self.pending = None;
        }
        // Right to left: the button first, then the field takes exactly what is left, so the row
        // never overflows (an overflowing row would widen a resizable panel frame after frame).
        let row = egui::vec2(ui.available_width(), ui.spacing().interact_size.y);
        ui.allocate_ui_with_layout(row, egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let enabled = self.pending.is_none() && dialogs_available();
            let button = ui.add_enabled(enabled, egui::Button::new("Browse…"));
            let button = if dialogs_available() {
                button
            } else {
                button.on_disabled_hover_text("no desktop session: type the path")
            };
            if button.clicked() {
                self.pending = PendingPick::open(kind, title, ui.ctx());
            }
            let edit = egui::TextEdit::singleline(value)
                .hint_text(PLACEHOLDER)
                .desired_width(ui.available_width())
                .id_salt(id);
            let edit = ui.add(edit);
            let edit = match example {
                Some(e) => edit.on_hover_text(format!("e.g. {e}")),
                None => edit,
            };
            changed |= edit.changed();
        });
        changed
    }
}

/// The grey text of an empty path field: worded as a hint, so that it never reads as a path
/// already filled in (an example file name there did), and short enough never to be elided.
const PLACEHOLDER: &str = "(none chosen)";

/// A bold section heading.
pub fn section(ui: &mut Ui, title: &str) {
    ui.add_space(6.0);
    ui.label(RichText::new(title).strong());
}

/// Text in the theme's error colour.
pub fn error_text(ui: &mut Ui, text: impl Into<String>) {
    ui.label(RichText::new(text.into()).color(ui.visuals().error_fg_color));
}

/// Text in the weak colour.
pub fn note(ui: &mut Ui, text: impl Into<String>) {
    ui.label(RichText::new(text.into()).weak());
}

/// A little colour square (class legends).
pub fn swatch(ui: &mut Ui, color: [u8; 3]) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
    ui.painter().rect_filled(rect, 2.0, Color32::from_rgb(color[0], color[1], color[2]));
}

/// An RGB image as an egui image.
pub fn color_image(img: &image::RgbImage) -> egui::ColorImage {
    egui::ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw())
}

/// "1h02m", "3m07s", "42 s".
pub fn duration(secs: f64) -> String {
    crate::util::fmt::format_duration(secs)
}
