//! Drawing of the studies in the Runs tab: each study's grid and summary table, and the New
//! study form with the command it makes.

use egui::{Color32, RichText, Ui};

use super::{NewStudyForm, StudyQueue, StudyView, method_choices};
use crate::report::study::{BASELINE, Progress, SummaryRow};
use crate::ui::app::run_name;
use crate::ui::commands::{Command, CommandQueue};
use crate::ui::state::AppState;
use crate::ui::widgets::{error_text, note};

/// The Studies section: every study found under the runs folder, and the New study form.
pub fn studies_ui(
    ui: &mut Ui,
    studies: &[StudyView],
    form: &mut NewStudyForm,
    queue: Option<&StudyQueue>,
    training: bool,
    state: &AppState,
    commands: &mut CommandQueue,
) {
    let title = format!("Studies ({})", studies.len());
    egui::CollapsingHeader::new(title).id_salt("studies").default_open(true).show(ui, |ui| {
        ui.horizontal(|ui| {
            if ui.selectable_label(form.open, "New study…").clicked() {
                form.open = !form.open;
            }
            if let Some(queue) = queue {
                ui.spinner();
                ui.label(format!(
                    "training study {}: run {} of the {} left to train ({} in the grid)",
                    run_name(&queue.dir),
                    queue.started,
                    queue.started + queue.remaining(),
                    queue.total
                ));
                if ui.button("Stop study").on_hover_text("the run stops with a checkpoint").clicked() {
                    commands.push(Command::StopStudy);
                }
            }
        });
        if form.open {
            form_ui(ui, form, queue.is_none() && !training, state, commands);
        }
        if studies.is_empty() {
            note(ui, "No study yet: a study folder holds `<method>-seed<k>` runs (segdistill study).");
        }
        for study in studies {
            ui.separator();
            study_ui(ui, study, commands);
        }
    });
}

fn study_ui(ui: &mut Ui, study: &StudyView, commands: &mut CommandQueue) {
    let (done, total) = study.completed();
    ui.horizontal(|ui| {
        ui.strong(format!("Study {}", study.name));
        ui.label(format!("{done}/{total} runs completed"));
        if ui.button("Open folder").clicked() {
            commands.push(Command::OpenFolder(study.dir.clone()));
        }
    });
    ui.columns(2, |cols| {
        grid_ui(&mut cols[0], study);
        summary_ui(&mut cols[1], study);
    });
}

/// Methods × seeds, each cell where its run stands.
fn grid_ui(ui: &mut Ui, study: &StudyView) {
    egui::Grid::new(("study-grid", &study.dir)).striped(true).show(ui, |ui| {
        ui.strong("method");
        for seed in &study.seeds {
            ui.strong(format!("seed {seed}"));
        }
        ui.end_row();
        for cell in study.cells.keys() {
            ui.label(cell);
            for &seed in &study.seeds {
                let progress = study.progress(cell, seed);
                ui.label(RichText::new(progress.label()).color(progress_color(progress)));
            }
            ui.end_row();
        }
    });
}

fn progress_color(progress: Progress) -> Color32 {
    match progress {
        Progress::Completed => Color32::from_rgb(60, 160, 80),
        Progress::Training => Color32::from_rgb(70, 130, 220),
        Progress::Stopped => Color32::from_rgb(210, 150, 40),
        Progress::NotStarted => Color32::GRAY,
    }
}

/// The summary: the same rows as study.md.
fn summary_ui(ui: &mut Ui, study: &StudyView) {
    egui::Grid::new(("study-summary", &study.dir)).striped(true).show(ui, |ui| {
        for head in ["method", "runs", "best val mIoU (mean ± sd)", "Δ vs none", "p (Welch)"] {
            ui.strong(head);
        }
        ui.end_row();
        for row in &study.rows {
            for (i, text) in summary_cells(row).into_iter().enumerate() {
                if i == 3 && row.significant() {
                    ui.label(RichText::new(text).strong()).on_hover_text("significant (p < 0.05)");
                } else {
                    ui.label(text);
                }
            }
            ui.end_row();
        }
    });
    match &study.resolution {
        Some(r) => note(
            ui,
            format!(
                "pooled seed-to-seed sd {:.4} over cells of {} runs: about {:.4} mIoU is the smallest \
                 difference this study detects",
                r.pooled_sd, r.runs, r.detectable
            ),
        ),
        None => note(ui, "the spread shows once a method has two completed runs"),
    }
    if !study.cells.contains_key(BASELINE) {
        note(ui, "no `none` runs: Δ needs the baseline");
    }
}

/// A summary row's cells as shown (the same formats as study.md).
pub fn summary_cells(row: &SummaryRow) -> [String; 5] {
    let runs = if row.unfinished == 0 {
        row.runs.to_string()
    } else {
        format!("{} (+{} unfinished)", row.runs, row.unfinished)
    };
    [
        row.name.clone(),
        runs,
        row.mean_sd.map_or("—".into(), |(m, sd)| format!("{m:.4} ± {sd:.4}")),
        row.delta.map_or("—".into(), |d| format!("{d:+.4}{}", if row.significant() { " *" } else { "" })),
        row.p.map_or("—".into(), |p| format!("{p:.3}")),
    ]
}

/// Name, seeds and methods; the command for the Train form's settings, or why there is none.
fn form_ui(ui: &mut Ui, form: &mut NewStudyForm, can_start: bool, state: &AppState, commands: &mut CommandQueue) {
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.horizontal(|ui| {
            let label = ui.label("Study folder");
            ui.text_edit_singleline(&mut form.name).labelled_by(label.id);
            let label = ui.label("Seeds");
            ui.add(egui::DragValue::new(&mut form.seeds).range(1..=20)).labelled_by(label.id);
        });
        ui.label("Methods (none, the baseline, always runs):");
        ui.horizontal_wrapped(|ui| {
            for choice in method_choices() {
                let mut on = form.methods.contains(&choice.method);
                if ui.checkbox(&mut on, choice.label.as_str()).changed() {
                    if on {
                        form.methods.insert(choice.method.clone());
                    } else {
                        form.methods.remove(&choice.method);
                    }
                }
            }
        });
        let mut config = state.train.to_config(
            state.data_path().unwrap_or_default(),
            None,
            state.runs_dir.clone(),
            form.name.trim().to_string(),
        );
        // The form's distillation may be none; the study's methods need its teacher all the same.
        config.teacher_weights = state.train.teacher_path();
        if let Some(problem) = form.problem(&config, &state.runs_dir) {
            error_text(ui, problem);
            return;
        }
        note(ui, "Every other setting is the Train tab's; completed runs are kept, stopped ones resume.");
        if ui
            .add_enabled(can_start, egui::Button::new("Start study"))
            .on_hover_text("trains the grid here, one run after another (the baseline first)")
            .clicked()
        {
            commands.push(Command::StartStudy);
        }
        note(ui, "or, in a terminal (the grid below fills all the same):");
        let mut command = form.command_line(&config, &state.runs_dir);
        ui.add(egui::TextEdit::multiline(&mut command).code_editor().desired_rows(2).desired_width(f32::INFINITY));
        if ui.button("Copy command").clicked() {
            ui.ctx().copy_text(command);
        }
    });
}
