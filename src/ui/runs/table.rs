//! The Runs table: sortable header, the teacher's row, one row per run with its buttons.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use egui::Ui;

use super::{Column, RunEntry, RunsTab};
use crate::diagnostics::teacher_quality::TeacherQuality;
use crate::model::format_params;
use crate::report::table::{Row, fill_deltas, format_macs, train_time};
use crate::ui::commands::{Command, CommandQueue};

impl RunsTab {
    fn header_ui(&mut self, ui: &mut Ui) {
        ui.label("");
        for column in Column::ALL {
            let (current, ascending) = self.sort;
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
                self.sort = (column, if current == column { !ascending } else { first });
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
        let deltas: BTreeMap<PathBuf, f64> = self
            .entries
            .iter()
            .filter_map(|e| {
                let name = &e.row.as_ref()?.label;
                Some((e.dir.clone(), rows.iter().find(|r| &r.label == name)?.delta?))
            })
            .collect();
        let order: Vec<PathBuf> = self.sorted(&deltas).iter().map(|e| e.dir.clone()).collect();
        egui::ScrollArea::both().id_salt("runs_table_scroll").max_height(ui.available_height() * 0.45).show(ui, |ui| {
            egui::Grid::new("runs_table").striped(true).num_columns(13).show(ui, |ui| {
                self.header_ui(ui);
                if let Some(t) = teacher {
                    teacher_row_ui(ui, t);
                }
                for dir in &order {
                    let Some(e) = self.entries.iter().find(|e| &e.dir == dir) else { continue };
                    let mut on = self.selected.contains(&e.dir);
                    let changed = ui
                        .checkbox(&mut on, "")
                        .on_hover_text("overlay its curves; include it in the report")
                        .changed();
                    let is_baseline = baselines.get(e.config.model.name()) == Some(&e.name);
                    entry_row_ui(
                        ui,
                        e,
                        self.colors.color(&e.dir),
                        live_run == Some(e.dir.as_path()),
                        deltas.get(&e.dir).copied(),
                        is_baseline,
                        commands,
                    );
                    if changed {
                        if on {
                            self.selected.insert(e.dir.clone());
                        } else {
                            self.selected.remove(&e.dir);
                        }
                    }
                }
            });
        });
    }
}

/// One run's row after its checkbox.
fn entry_row_ui(
    ui: &mut Ui,
    e: &RunEntry,
    color: egui::Color32,
    running: bool,
    delta: Option<f64>,
    is_baseline: bool,
    commands: &mut CommandQueue,
) {
    ui.horizontal(|ui| {
        crate::ui::widgets::swatch(ui, [color.r(), color.g(), color.b()]);
        ui.label(&e.name);
    });
    ui.label(e.config.model.name());
    ui.label(e.config.distill.name());
    ui.horizontal(|ui| {
        ui.label(if running { "running" } else { e.status.as_str() });
        if e.resumable
            && !running
            && ui.small_button("Resume").on_hover_text("continue from the last checkpoint").clicked()
        {
            commands.push(Command::ResumeRun(e.dir.clone()));
        }
    });
    let best = e.state.as_ref().and_then(|s| s.best.as_ref()).map(|b| b.miou);
    ui.label(best.map_or("—".into(), |m| format!("{m:.4}")));
    if is_baseline {
        ui.label("baseline").on_hover_text("the other runs of this student are compared with this one");
    } else {
        ui.label(delta.map_or("—".into(), |d| format!("{d:+.4}")));
    }
    match &e.row {
        Some(r) => {
            ui.label(format_params(r.params));
            ui.label(format!("{} @ {}", format_macs(r.gmacs), r.eval_size));
            let ms = ui.label(format!("{:.2}", r.ms_per_image));
            if let Some((lo, hi)) = r.ms_range {
                ms.on_hover_text(format!("fastest {lo:.2} ms, slowest {hi:.2} ms of 10 passes"));
            }
            ui.label(train_time(r));
            ui.label(format!("{:.4}", r.score()));
        }
        None => {
            let why = if e.has_student {
                "speed and size are measured once no training runs (times taken during training would be wrong)"
            } else {
                "no evaluated student yet"
            };
            for _ in 0..5 {
                ui.label("—").on_hover_text(why);
            }
        }
    }
    ui.horizontal(|ui| {
        if e.row.is_some() && ui.small_button("Browse").on_hover_text("its predictions, image by image").clicked() {
            commands.push(Command::BrowseRun(e.dir.clone()));
        }
        let onnx_hover = "the best student as an ONNX file (exports/ in the runs folder; dynamic input, logits out; \
                          `segdistill export` has more options)";
        if e.row.is_some() && ui.small_button("ONNX").on_hover_text(onnx_hover).clicked() {
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
    ui.label(egui::RichText::new("teacher").strong());
    ui.label(t.key.model.name());
    ui.label("—");
    ui.label(if t.near_chance() { "near chance" } else { "evaluated" })
        .on_hover_text(format!("{} val images; pixel accuracy {:.4}", t.images, t.pixel_accuracy));
    ui.label(format!("{:.4}", t.miou));
    for _ in 0..6 {
        ui.label("—");
    }
    ui.label(egui::RichText::new(t.key.weights.display().to_string()).weak().small());
    ui.end_row();
}
