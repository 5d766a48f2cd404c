//! Drawing of the Runs tab around its table: the runs folder, the toolbar (Refresh, Export
//! report, ONNX), the teacher caches and the baseline pickers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use egui::Ui;

use super::RunsTab;
use crate::diagnostics::teacher_quality::TeacherQuality;
use crate::distill::teacher_cache::manifest::CacheFolder;
use crate::report::table::can_be_baseline;
use crate::ui::commands::{Command, CommandQueue};
use crate::ui::file_dialog::PickKind;
use crate::ui::state::AppState;
use crate::ui::widgets::{error_text, note};
use crate::util::fmt::human_bytes;

impl RunsTab {
    /// Draws the tab.
    /// `teacher`: the Train tab's teacher, when evaluated on its dataset (the table's first row).
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        state: &mut AppState,
        live_run: Option<&Path>,
        teacher: Option<&TeacherQuality>,
        commands: &mut CommandQueue,
    ) {
        self.runs_dir_ui(ui, state, commands);
        self.toolbar_ui(ui, commands);
        if let Some(e) = &self.scan_error {
            error_text(ui, e.clone());
        }
        let queue = self.study_queue.as_ref();
        crate::ui::study::studies_ui(
            ui,
            &self.studies,
            &mut self.new_study,
            queue,
            live_run.is_some(),
            state,
            commands,
        );
        if self.entries.is_empty() {
            note(ui, "No runs yet: start one in the Train tab.");
            return;
        }
        let baselines = self.baselines_ui(ui, state);
        self.table_ui(ui, live_run, teacher, &baselines, commands);
        ui.separator();
        self.curves_ui(ui, &mut state.smoothing);
    }

    /// The runs folder, shown whole and changeable; stored absolute.
    fn runs_dir_ui(&mut self, ui: &mut Ui, state: &AppState, commands: &mut CommandQueue) {
        let text = self.runs_dir_text.get_or_insert_with(|| state.runs_dir.display().to_string());
        ui.horizontal(|ui| {
            ui.label("Runs folder");
            if self.runs_dir_field.ui(ui, "runs_dir", text, PickKind::Folder, "folder holding the run folders", None)
                && !text.trim().is_empty()
            {
                commands.push(Command::SetRunsDir(PathBuf::from(text.trim())));
            }
        });
    }

    fn toolbar_ui(&mut self, ui: &mut Ui, commands: &mut CommandQueue) {
        ui.horizontal(|ui| {
            if ui.add_enabled(self.scan.is_none(), egui::Button::new("Refresh")).clicked() {
                commands.push(Command::RescanRuns);
            }
            if self.scan.is_some() {
                ui.spinner();
                ui.label("reading the runs (a new run's speed is measured once)…");
            }
            ui.separator();
            let can_export = !self.selected.is_empty() && self.report.is_none();
            if ui
                .add_enabled(can_export, egui::Button::new("Export report"))
                .on_hover_text("report.md with the table, curves and overlays of the selected runs")
                .clicked()
            {
                commands.push(Command::ExportReport);
            }
            if let Some(r) = &self.report {
                ui.spinner();
                let stage = r.stage.lock().map(|s| s.clone()).unwrap_or_default();
                ui.label(format!("writing the report: {stage}…"));
            }
            written_ui(ui, "report", self.report_result.as_ref(), commands);
            if self.onnx.is_some() {
                ui.spinner();
                ui.label("writing the ONNX file…");
            }
            written_ui(ui, "ONNX file", self.onnx_result.as_ref(), commands);
        });
        self.caches_ui(ui, commands);
    }

    /// One line on the teacher caches: their size, and the orphaned ones with a button to remove them.
    fn caches_ui(&self, ui: &mut Ui, commands: &mut CommandQueue) {
        if self.caches.is_empty() && self.prune_result.is_none() {
            return;
        }
        ui.horizontal(|ui| {
            let total: u64 = self.caches.iter().map(|c| c.bytes).sum();
            let orphaned: Vec<&CacheFolder> = self.caches.iter().filter(|c| c.orphaned_because().is_some()).collect();
            let orphaned_bytes: u64 = orphaned.iter().map(|c| c.bytes).sum();
            ui.label(format!("teacher caches: {} ({})", self.caches.len(), human_bytes(total)));
            if !orphaned.is_empty() {
                let why: Vec<String> = orphaned
                    .iter()
                    .filter_map(|c| Some(format!("{}: {}", c.dir.display(), c.orphaned_because()?)))
                    .collect();
                ui.label(format!("{} orphaned ({})", orphaned.len(), human_bytes(orphaned_bytes)))
                    .on_hover_text(why.join("\n"));
                if ui
                    .add_enabled(self.prune.is_none(), egui::Button::new("Remove orphaned caches"))
                    .on_hover_text(
                        "their teacher file changed or is gone, or their dataset is gone: no run can use them",
                    )
                    .clicked()
                {
                    commands.push(Command::PruneTeacherCaches);
                }
            }
            if self.prune.is_some() {
                ui.spinner();
            }
            match &self.prune_result {
                Some(Ok(done)) => {
                    ui.label(done);
                }
                Some(Err(e)) => error_text(ui, e.clone()),
                None => {}
            }
        });
    }

    /// One baseline picker per student with candidates; returns model name → baseline run name.
    fn baselines_ui(&self, ui: &mut Ui, state: &mut AppState) -> BTreeMap<String, String> {
        let mut chosen = self.chosen_baselines(state);
        if chosen.is_empty() {
            note(ui, "Δ mIoU needs a completed run without distillation of the same student (a baseline).");
            return chosen;
        }
        ui.horizontal_wrapped(|ui| {
            for (model, current) in chosen.clone() {
                let label = ui.label(format!("Δ baseline for {model}"));
                egui::ComboBox::from_id_salt(("baseline", model.as_str()))
                    .selected_text(current.as_str())
                    .show_ui(ui, |ui| {
                        for e in &self.entries {
                            let Some(r) = e.row.as_ref().filter(|r| r.model == model && can_be_baseline(r)) else {
                                continue;
                            };
                            let text = format!("{} (mIoU {:.4})", e.name, r.miou);
                            if ui.selectable_label(current == e.name, text).clicked() {
                                state.baselines.insert(model.clone(), e.dir.clone());
                                chosen.insert(model.clone(), e.name.clone());
                            }
                        }
                    })
                    .response
                    .labelled_by(label.id)
                    .on_hover_text("completed runs without distillation of this student");
                ui.separator();
            }
        });
        chosen
    }
}

/// "<what> written to <path>" with Open folder, or why it failed.
fn written_ui(ui: &mut Ui, what: &str, result: Option<&Result<PathBuf, String>>, commands: &mut CommandQueue) {
    match result {
        Some(Ok(p)) => {
            note(ui, format!("{what} written to {}", p.display()));
            if let Some(folder) = p.parent()
                && ui.button("Open folder").clicked()
            {
                commands.push(Command::OpenFolder(folder.to_path_buf()));
            }
        }
        Some(Err(e)) => error_text(ui, e.clone()),
        None => {}
    }
}
