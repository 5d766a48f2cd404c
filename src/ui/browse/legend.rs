//! The class legend of the detail view: a colour, a toggle and an "only" button per class, a
//! search over the names, and "all" / "none" for every class at once. Usable with ADE20K's 150
//! classes: it lists the classes in the open image's masks (or every class), filtered by the
//! search, in a list of bounded height.

use egui::Ui;

use crate::data::ClassSet;
use crate::ui::widgets::{note, swatch};

/// What the legend keeps between frames.
#[derive(Clone, Debug, Default)]
pub(super) struct Legend {
    pub(super) search: String,
    /// List every class, not only those in the open image's masks.
    pub(super) every_class: bool,
}

/// The classes a search keeps (case-insensitive substring of the name), among `candidates`.
pub(super) fn matching(classes: &ClassSet, candidates: impl Iterator<Item = usize>, search: &str) -> Vec<usize> {
    let needle = search.trim().to_lowercase();
    candidates.filter(|&c| needle.is_empty() || classes.names[c].to_lowercase().contains(&needle)).collect()
}

impl Legend {
    /// Draws the legend; `present[c]` says whether class `c` is in a mask of the open image,
    /// `shown[c]` whether it is drawn. Returns whether `shown` changed.
    pub(super) fn ui(&mut self, ui: &mut Ui, classes: &ClassSet, present: &[bool], shown: &mut [bool]) -> bool {
        let mut changed = false;
        let n = classes.len().min(shown.len());
        ui.horizontal(|ui| {
            let label = ui.label("classes");
            ui.add(egui::TextEdit::singleline(&mut self.search).hint_text("search").desired_width(120.0))
                .labelled_by(label.id);
            if ui.button("all").on_hover_text("show every class").clicked() {
                shown.iter_mut().for_each(|s| *s = true);
                changed = true;
            }
            if ui.button("none").on_hover_text("hide every class").clicked() {
                shown.iter_mut().for_each(|s| *s = false);
                changed = true;
            }
            ui.checkbox(&mut self.every_class, "list every class")
                .on_hover_text("also the classes that are in none of this image's masks");
        });
        let candidates = (0..n).filter(|&c| self.every_class || present.get(c).copied().unwrap_or(false));
        let listed = matching(classes, candidates, &self.search);
        if listed.is_empty() {
            note(ui, "no class matches");
        }
        egui::ScrollArea::vertical().id_salt("legend").max_height(84.0).show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                for c in listed {
                    // Swatch, box, name and "only" wrap as one.
                    ui.horizontal(|ui| {
                        swatch(ui, classes.colors[c]);
                        changed |= ui.checkbox(&mut shown[c], &classes.names[c]).changed();
                        let only = ui.small_button("only").on_hover_text(format!("show {} alone", classes.names[c]));
                        if only.clicked() {
                            shown.iter_mut().enumerate().for_each(|(k, s)| *s = k == c);
                            changed = true;
                        }
                    });
                }
            });
        });
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_is_a_case_insensitive_substring() {
        let ade = ClassSet::ade20k();
        let found = matching(&ade, 0..ade.len(), " TABLE");
        let names: Vec<&str> = found.iter().map(|&c| ade.names[c].as_str()).collect();
        assert_eq!(names, ["table", "pool table", "coffee table"]);
        assert_eq!(matching(&ade, 0..ade.len(), "").len(), 150);
        assert!(matching(&ade, [0, 1].into_iter(), "sky").is_empty(), "only among the candidates");
    }
}
