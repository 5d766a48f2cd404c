//! The Browse tab's controls (run, split), filters and thumbnail grid.

use egui::{TextureHandle, TextureOptions, Ui};

use super::BrowseTab;
use super::order::SortKey;
use crate::data::ClassSet;
use crate::data::overlay::overlay;
use crate::ui::data_panel::DataPanel;
use crate::ui::runs::RunEntry;
use crate::ui::state::AppState;
use crate::ui::widgets::{color_image, note};

impl BrowseTab {
    pub(super) fn controls_ui(&mut self, ui: &mut Ui, state: &mut AppState, data: &DataPanel, runs: &[RunEntry]) {
        ui.horizontal(|ui| {
            let run_label = ui.label("Student run");
            let with_student: Vec<&RunEntry> = runs.iter().filter(|r| r.has_student).collect();
            let current =
                state.browse.run.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
            egui::ComboBox::from_id_salt("browse_run")
                .selected_text(current.unwrap_or_else(|| "choose…".into()))
                .show_ui(ui, |ui| {
                    for r in &with_student {
                        let label = format!("{} ({}, {})", r.name, r.config.model, r.config.distill.name());
                        ui.selectable_value(&mut state.browse.run, Some(r.dir.clone()), label);
                    }
                })
                .response
                .labelled_by(run_label.id);
            let label = ui.label("split");
            ui.add(egui::TextEdit::singleline(&mut state.browse.split).desired_width(60.0)).labelled_by(label.id);
            if self.is_loading() {
                ui.spinner();
            }
            ui.label(format!("{}/{} images", self.items.len(), self.total));
        });
        if data.usable().is_none() {
            note(ui, "Choose a dataset in the Train tab first.");
        } else if state.browse.run.is_none() {
            note(ui, "Choose a trained run to browse its student's predictions.");
        } else if state.train.teacher_path().is_none_or(|p| !p.is_file()) {
            note(ui, "No teacher weights set in the Train tab: the teacher column stays empty.");
        }
    }

    fn filters_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            let sort_label = ui.label("sort");
            let mut sort = self.sort_key();
            egui::ComboBox::from_id_salt("browse_sort")
                .selected_text(sort.label())
                .show_ui(ui, |ui| {
                    for k in SortKey::ALL {
                        ui.selectable_value(&mut sort, k, k.label());
                    }
                })
                .response
                .labelled_by(sort_label.id);
            self.sort = Some(sort);
            let class_label = ui.label("class");
            let names = self.classes.as_ref().map(|c| c.names.clone()).unwrap_or_default();
            let current =
                self.class_filter.map_or("any".to_string(), |c| names.get(c as usize).cloned().unwrap_or_default());
            egui::ComboBox::from_id_salt("browse_class")
                .selected_text(current)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.class_filter, None, "any");
                    for (c, n) in names.iter().enumerate() {
                        ui.selectable_value(&mut self.class_filter, Some(c as u8), n);
                    }
                })
                .response
                .labelled_by(class_label.id);
            if let Some((source, t, p)) = self.confusion_filter {
                let n = |c: u8| names.get(c as usize).cloned().unwrap_or_default();
                if ui
                    .button(format!("× {}: {} → {}", source.name(), n(t), n(p)))
                    .on_hover_text(format!(
                        "images where the {} predicted {} pixels as {}; click to clear",
                        source.name(),
                        n(t),
                        n(p)
                    ))
                    .clicked()
                {
                    self.confusion_filter = None;
                }
            }
        });
    }

    pub(super) fn grid_ui(&mut self, ui: &mut Ui, state: &AppState) {
        self.filters_ui(ui);
        let visible = self.visible();
        note(ui, format!("{} images shown", visible.len()));
        if visible.is_empty() && !self.items.is_empty() {
            let names = self.classes.as_ref().map(|c| c.names.clone()).unwrap_or_default();
            let n = |c: u8| names.get(c as usize).cloned().unwrap_or_default();
            match self.confusion_filter {
                Some((source, t, p)) => note(
                    ui,
                    format!(
                        "no image has the {} predicting {} as {}{}: clear the filter or pick another cell",
                        source.name(),
                        n(t),
                        n(p),
                        self.class_filter.map(|c| format!(" among images with {}", n(c))).unwrap_or_default()
                    ),
                ),
                None => note(ui, "no image matches the class filter"),
            }
        }
        let classes = self.classes.clone().unwrap_or_else(ClassSet::voc);
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                for i in visible {
                    let tex = self.thumbnail(ui.ctx(), i, &classes, state.browse.opacity);
                    let item = &self.items[i];
                    let s = item.student.as_ref().map_or("—".into(), |v| format!("{:.2}", v.miou));
                    let t = item.teacher.as_ref().map_or("—".into(), |v| format!("{:.2}", v.miou));
                    let label = format!("{}\nS {s} · T {t}", item.id);
                    let size = tex.size_vec2();
                    let button = egui::Button::image_and_text(egui::Image::new((tex.id(), size)), label);
                    if ui.add(button).clicked() {
                        self.open_request = Some(i);
                    }
                }
            });
        });
    }

    fn thumbnail(&mut self, ctx: &egui::Context, i: usize, classes: &ClassSet, opacity: f32) -> TextureHandle {
        if let Some(t) = self.thumbs.get(&i) {
            return t.clone();
        }
        let item = &self.items[i];
        let (w, h) = item.thumbnail.dimensions();
        let img = match item.student.as_ref().and_then(|v| v.mask.unpack()) {
            Some(m) => overlay(
                &item.thumbnail,
                &crate::data::transforms::resize_mask_nearest(&m, w, h),
                classes,
                opacity,
                classes.dataset == "voc",
            ),
            None => item.thumbnail.clone(),
        };
        let tex = ctx.load_texture(format!("thumb-{}", item.id), color_image(&img), TextureOptions::LINEAR);
        self.thumbs.insert(i, tex.clone());
        tex
    }
}
