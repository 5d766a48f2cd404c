//! The Runs table: sortable header, the teacher's row, one row per run with its buttons.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use egui::Ui;

use super::columns::{Shown, cell_text, teacher_cells, to_csv};
use super::{Column, RunEntry, RunsTab};
use crate::diagnostics::teacher_quality::TeacherQuality;
use crate::report::table::{Row, fill_deltas};
use crate::ui::commands::{Command, CommandQueue};
use crate::ui::plots::run_color;

impl RunsTab {
    /// The column titles; a click sorts by that column (`sort`: column and direction).
    fn header_ui(sort: &mut (Column, bool), ui: &mut Ui) {
        ui.label("");
        for column in Column::ALL {
            let (current, ascending) = *sort;
            let arrow = if current != column {
                ""
            } else if ascending {
                " ▲"
            } else {
                " ▼"
            };
            let text = egui::RichText::new(format!("{}{arrow}", column.title())).strong();
            let clicked = ui
                .add(egui::Button::new(text).frame(false))
                .on_hover_text(format!("{} — click to sort", column.tooltip()))
                .clicked();
            if clicked {
                // Numbers sort best-first on the first click (highest mIoU, smallest time…).
                let first = !matches!(column, Column::Miou | Column::Delta | Column::Score);
                *sort = (column, if current == column { !ascending } else { first });
            }
        }
        ui.label("");
        ui.end_row();
    }

    pub(super) fn table_ui(
        &mut self,
        ui: &mut Ui,
        live_run: Option<&Path>,
        teacher: Option<&TeacherQuality>,
        baselines: &BTreeMap<String, String>,
        commands: &mut CommandQueue,
    ) {
        let mut rows: Vec<Row> = self.entries.iter().filter_map(|e| e.row.clone()).collect();
        fill_deltas(&mut rows, baselines);
        // Each run's row with its Δ against the chosen baseline, by folder.
        let filled: BTreeMap<PathBuf, Row> = self
            .entries
            .iter()
            .filter_map(|e| {
                let name = &e.row.as_ref()?.label;
                Some((e.dir.clone(), rows.iter().find(|r| &r.label == name)?.clone()))
            })
            .collect();
        let deltas: BTreeMap<PathBuf, f64> = filled.iter().filter_map(|(d, r)| Some((d.clone(), r.delta?))).collect();
        let order: Vec<PathBuf> = self.sorted(&deltas).iter().map(|e| e.dir.clone()).collect();
        let shown = |e: &RunEntry| Shown {
            running: live_run == Some(e.dir.as_path()),
            row: filled.get(&e.dir),
            is_baseline: baselines.get(e.config.model.name()) == Some(&e.name),
        };
        let entries = &self.entries;
        let in_order = || order.iter().filter_map(|d| entries.iter().find(|e| &e.dir == d));
        let csv = || {
            let runs =
                in_order().map(|e| Column::ALL.iter().map(|c| cell_text(*c, e, &shown(e))).collect::<Vec<String>>());
            to_csv(teacher.map(teacher_cells).into_iter().chain(runs))
        };
        self.table_actions.ui(ui, csv);
        let mut toggled = Vec::new();
        egui::ScrollArea::both().id_salt("runs_table_scroll").max_height(ui.available_height() * 0.45).show(ui, |ui| {
            egui::Grid::new("runs_table").striped(true).num_columns(13).show(ui, |ui| {
                Self::header_ui(&mut self.sort, ui);
                if let Some(t) = teacher {
                    teacher_row_ui(ui, t);
                }
                for e in in_order() {
                    let mut on = self.selected.contains(&e.dir);
                    if ui.checkbox(&mut on, "").on_hover_text("overlay its curves; include it in the report").changed()
                    {
                        toggled.push((e.dir.clone(), on));
                    }
                    entry_row_ui(ui, e, &shown(e), commands);
                }
            });
        });
        for (dir, on) in toggled {
            if on {
                self.selected.insert(dir);
            } else {
                self.selected.remove(&dir);
            }
        }
    }
}

/// One run's row after its checkbox.
fn entry_row_ui(ui: &mut Ui, e: &RunEntry, shown: &Shown<'_>, commands: &mut CommandQueue) {
    let text = |c: Column| cell_text(c, e, shown);
    ui.horizontal(|ui| {
        let c = run_color(&e.name);
        crate::ui::widgets::swatch(ui, [c.r(), c.g(), c.b()]);
        ui.label(text(Column::Run));
    });
    ui.label(text(Column::Model));
    ui.label(text(Column::Mode));
    ui.horizontal(|ui| {
        ui.label(text(Column::Status));
        if e.resumable
            && !shown.running
            && ui.small_button("Resume").on_hover_text("continue from the last checkpoint").clicked()
        {
            commands.push(Command::ResumeRun(e.dir.clone()));
        }
    });
    ui.label(text(Column::Miou));
    let delta = ui.label(text(Column::Delta));
    match shown.row.and_then(|r| r.delta_caveat.as_deref()) {
        _ if shown.is_baseline => {
            delta.on_hover_text("the other runs of this student are compared with this one");
        }
        Some(caveat) => {
            delta.on_hover_text(caveat);
        }
        None => {}
    }
    let why_missing = if e.has_student {
        "speed and size are measured once no training runs (times taken during training would be wrong)"
    } else {
        "no evaluated student yet"
    };
    for column in [Column::Params, Column::Macs, Column::Ms, Column::TrainTime, Column::Score] {
        let cell = ui.label(text(column));
        match shown.row {
            None => {
                cell.on_hover_text(why_missing);
            }
            Some(r) if column == Column::Ms => {
                let mut hover = r.ms_range.map_or(String::new(), |(lo, hi)| {
                    format!("fastest {lo:.2} ms, slowest {hi:.2} ms of the timed passes")
                });
                if let Some(busy) = &r.ms_busy {
                    hover.push_str(&format!("\nnot to be trusted: {busy}; press Measure again on an idle machine"));
                }
                if !hover.is_empty() {
                    cell.on_hover_text(hover);
                }
            }
            Some(_) => {}
        }
    }
    ui.horizontal(|ui| {
        if shown.row.is_some() && ui.small_button("Browse").on_hover_text("its predictions, image by image").clicked() {
            commands.push(Command::BrowseRun(e.dir.clone()));
        }
        let onnx_hover = "the best student as an ONNX file (exports/ in the runs folder; dynamic input, logits out; \
                          `segdistill export` has more options)";
        if shown.row.is_some() && ui.small_button("ONNX").on_hover_text(onnx_hover).clicked() {
            commands.push(Command::ExportOnnx(e.dir.clone()));
        }
        if ui.small_button("Folder").on_hover_text(e.dir.display().to_string()).clicked() {
            commands.push(Command::OpenFolder(e.dir.clone()));
        }
    });
    ui.end_row();
}

/// The teacher's row: its evaluated quality (Train tab's Evaluate, cached), no training columns.
fn teacher_row_ui(ui: &mut Ui, t: &TeacherQuality) {
    ui.label("");
    for (column, text) in Column::ALL.into_iter().zip(teacher_cells(t)) {
        match column {
            Column::Run => ui.label(egui::RichText::new(text).strong()),
            Column::Status => {
                ui.label(text).on_hover_text(format!("{} val images; pixel accuracy {:.4}", t.images, t.pixel_accuracy))
            }
            _ => ui.label(text),
        };
    }
    ui.label(egui::RichText::new(t.key.weights.display().to_string()).weak().small());
    ui.end_row();
}
