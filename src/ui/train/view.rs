//! The Train tab's drawing: the form beside the run on screen (controls, progress, curves).

use egui::Ui;

use super::{LivePlot, RunStatus, TrainTab};
use crate::data::ClassSet;
use crate::model::format_params;
use crate::train::events::EndReason;
use crate::ui::commands::{Command, CommandQueue};
use crate::ui::data_panel::DataPanel;
use crate::ui::plot_export;
use crate::ui::plots::{CurvePlot, class_bars};
use crate::ui::state::AppState;
use crate::ui::widgets::{duration, error_text, note};

/// The Train tab's form panel, in points: its widest row (a term with weight and τ) with room
/// to spare.
const TRAIN_FORM_WIDTH: f32 = 380.0;

impl TrainTab {
    pub fn ui(&mut self, ui: &mut Ui, state: &mut AppState, data: &mut DataPanel, commands: &mut CommandQueue) {
        // A fixed width: a resizable panel widens to whatever its content asks for, frame after
        // frame (a long path, a transient message), and then keeps that width for good.
        egui::Panel::left("train_form").resizable(false).exact_size(TRAIN_FORM_WIDTH).show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| self.form_ui(ui, state, data, commands));
        });
        egui::CentralPanel::default().show(ui, |ui| self.live_ui(ui, state, data, commands));
    }

    fn controls_ui(&mut self, ui: &mut Ui, commands: &mut CommandQueue) {
        ui.horizontal(|ui| {
            let running = self.is_running();
            if ui.add_enabled(!running, egui::Button::new("Start")).clicked() {
                commands.push(Command::StartRun);
            }
            let paused = self.live.status == RunStatus::Paused;
            if ui.add_enabled(running && !paused, egui::Button::new("Pause")).clicked() {
                commands.push(Command::PauseRun);
            }
            // Resume continues a paused run, or a stopped/interrupted one from its checkpoint.
            let resumable = self.resumable_run();
            let resume = ui.add_enabled(paused || resumable.is_some(), egui::Button::new("Resume"));
            let resume = match &resumable {
                Some(dir) => resume.on_hover_text(format!("continue {} from its last checkpoint", dir.display())),
                None => resume,
            };
            if resume.clicked() {
                match resumable {
                    Some(dir) => commands.push(Command::ResumeRun(dir)),
                    None => commands.push(Command::UnpauseRun),
                }
            }
            if ui
                .add_enabled(running, egui::Button::new("Stop"))
                .on_hover_text("stops after the current step and keeps a checkpoint")
                .clicked()
            {
                commands.push(Command::StopRun);
            }
            ui.separator();
            let status = match &self.live.status {
                RunStatus::Idle => "idle".to_string(),
                RunStatus::Starting => "starting…".into(),
                RunStatus::Running => "training".into(),
                RunStatus::Paused => "paused".into(),
                RunStatus::Finished(s) => match s.reason {
                    EndReason::Completed => format!("finished: best mIoU {:.4}", s.best_miou.unwrap_or(f64::NAN)),
                    EndReason::Stopped => {
                        format!("stopped after epoch {} (checkpoint saved; Resume continues it)", s.epochs_done)
                    }
                },
                RunStatus::Failed(_) => "failed".into(),
            };
            // Elided to the space beside the buttons (a narrow window or a wide form panel would
            // otherwise cut it off mid-word); the whole text shows on hover.
            ui.add(egui::Label::new(status).truncate());
        });
    }

    fn live_ui(&mut self, ui: &mut Ui, state: &mut AppState, data: &DataPanel, commands: &mut CommandQueue) {
        self.controls_ui(ui, commands);
        let data_root = data.usable().map(|i| i.root.clone());
        if let Some(e) = &self.start_error {
            // Shown until the user changes what it was about.
            if e.form == state.train && e.data == data_root {
                error_text(ui, e.message.clone());
            }
        }
        if let RunStatus::Failed(m) = &self.live.status {
            error_text(ui, m.clone());
        }
        self.plot_exports.outcome_ui(ui);
        match &self.live.info {
            Some(info) => note(
                ui,
                format!(
                    "{} ({}), {} on {}: {}, saved in {}",
                    info.model,
                    format_params(info.params),
                    info.distillation_in_words(),
                    info.device,
                    info.images_in_words(),
                    info.run_dir.display()
                ),
            ),
            None => {
                if let Some(dir) = &self.live.run_dir
                    && !self.is_running()
                {
                    note(ui, format!("{} (read from its folder)", dir.display()));
                }
            }
        }
        if self.is_running() {
            for m in self.live.messages.iter().rev().take(2) {
                note(ui, m.clone());
            }
        }
        self.progress_ui(ui);
        ui.horizontal(|ui| {
            let label = ui.label("smoothing");
            ui.add(egui::Slider::new(&mut state.smoothing, 0.0..=0.99)).labelled_by(label.id);
        });
        self.charts_ui(ui, state.smoothing, commands);
    }

    fn progress_ui(&self, ui: &mut Ui) {
        if !self.is_running() {
            return;
        }
        if let Some(p) = &self.live.preparing
            && self.live.steps.iter().all(|s| s.total_steps == 0)
        {
            let fresh = p.done.saturating_sub(p.done_at_start);
            let paused = self.live.status == RunStatus::Paused;
            let eta = (fresh > 0 && !paused)
                .then(|| p.started.elapsed().as_secs_f64() / fresh as f64 * (p.total - p.done) as f64);
            let text = format!(
                "building the {}: {}/{} images · {}",
                p.what,
                p.done,
                p.total,
                if paused {
                    "paused".to_string()
                } else {
                    format!("ETA {}", eta.map_or_else(|| "…".into(), duration))
                }
            );
            ui.add(egui::ProgressBar::new(p.done as f32 / p.total.max(1) as f32).text(text));
            return;
        }
        let Some(last) = self.live.steps.last().filter(|s| s.total_steps > 0) else {
            ui.horizontal(|ui| {
                if self.live.status == RunStatus::Starting {
                    ui.spinner();
                }
                ui.label(if self.live.status == RunStatus::Paused { "paused" } else { "loading data and models…" });
            });
            return;
        };
        let epochs = last.total_steps / last.steps_per_epoch.max(1);
        // Paused: the ETA is frozen at its last value and says so.
        let eta = match self.live.status {
            RunStatus::Paused => "paused".to_string(),
            _ => format!("ETA {}", duration(last.eta_secs)),
        };
        let text = format!(
            "epoch {}/{} · step {}/{} · loss {:.4} · {:.1} img/s · {eta}",
            last.epoch + 1,
            epochs,
            last.step,
            last.total_steps,
            last.loss,
            last.images_per_sec,
        );
        ui.add(egui::ProgressBar::new(last.step as f32 / last.total_steps.max(1) as f32).text(text));
    }

    fn charts_ui(&self, ui: &mut Ui, smoothing: f64, commands: &mut CommandQueue) {
        if self.live.run_dir.is_none() {
            ui.add_space(40.0);
            ui.vertical_centered(|ui| {
                note(ui, "The loss, validation loss, mIoU and per-class IoU curves grow here while a run trains.");
                note(ui, "Pick a dataset (or the demo dataset), a student and a distillation mode, then press Start.");
            });
            return;
        }
        if self.live.steps.is_empty()
            && let Some(p) = &self.live.preparing
            && self.is_running()
        {
            note(ui, format!("building the {} before the first step: the curves start when training does", p.what));
        }
        let h = (ui.available_height() / 2.0 - 20.0).max(140.0);
        let size = egui::vec2(ui.available_width(), h);
        self.curve_plot(ui, LivePlot::Loss, size, smoothing, commands);
        let w = ui.available_width() / 3.0 - 8.0;
        let size = egui::vec2(w, ui.available_height().max(120.0));
        let names = self.live.class_names.clone();
        let colors = ClassSet::for_num_classes(names.len().max(1)).colors;
        ui.horizontal(|ui| {
            self.curve_plot(ui, LivePlot::ValLoss, size, smoothing, commands);
            self.curve_plot(ui, LivePlot::Miou, size, smoothing, commands);
            let last = self.live.evals.last().map(|e| e.iou.clone()).unwrap_or_default();
            class_bars(ui, "iou_plot", size, &names, &colors, &last);
        });
    }

    /// One of the curve plots, with its export menu on a right-click.
    fn curve_plot(&self, ui: &mut Ui, plot: LivePlot, size: egui::Vec2, smoothing: f64, commands: &mut CommandQueue) {
        let y_range = (plot == LivePlot::Miou).then_some((0.0, 1.0));
        let smoothing = if plot.smoothed() { smoothing } else { 0.0 };
        let id = format!("{}_plot", plot.file_stem());
        let curve = CurvePlot { id: &id, x: plot.x(), y_label: plot.y_label(), y_range, size, smoothing };
        let (_, response) = curve.show_plot(ui, &self.live.series(plot));
        plot_export::context_menu(&response, plot, commands);
    }
}
