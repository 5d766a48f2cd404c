//! The Train tab: dataset, model, distillation and hyper-parameters on the left; controls,
//! progress and live curves (loss with its parts, validation loss, mIoU, per-class IoU) on the
//! right. The engine runs on its own thread; this panel drains its events once per frame.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use egui::Ui;
use egui_plot::{Bar, BarChart, Legend, Line, Plot};

use super::data_panel::DataPanel;
use super::jobs::{Job, Poll};
use super::state::AppState;
use super::widgets::{duration, error_text, note, section};
use crate::distill::{DistillMode, KdForm};
use crate::model::{ModelKind, build_trainable, format_params};
use crate::report::plots::ema;
use crate::train::config::{OptimizerKind, ScheduleKind};
use crate::train::events::{EndReason, EvalMetrics, RunInfo, StepMetrics, Summary, TrainEvent};
use crate::train::{TrainHandle, start};
use crate::util::device::{CUDA_BUILT, DeviceChoice};

/// Where the run on screen stands.
#[derive(Clone, Debug, PartialEq)]
pub enum RunStatus {
    Idle,
    Starting,
    Running,
    Paused,
    Finished(Summary),
    Failed(String),
}

/// What the engine said so far about the run on screen.
#[derive(Default)]
pub struct LiveRun {
    pub info: Option<RunInfo>,
    pub steps: Vec<StepMetrics>,
    pub evals: Vec<EvalMetrics>,
    pub messages: Vec<String>,
    /// Work before the first step (the teacher cache), while it runs.
    pub preparing: Option<Preparing>,
}

#[derive(Clone, Debug)]
pub struct Preparing {
    pub what: String,
    pub done: usize,
    pub total: usize,
    pub started: Instant,
    /// Items already done when this session began (a resumed cache build), left out of the ETA.
    pub done_at_start: usize,
}

pub struct TrainTab {
    handle: Option<TrainHandle>,
    pub status: RunStatus,
    pub live: LiveRun,
    /// TensorBoard-style smoothing of the loss curves (0 = raw).
    smoothing: f64,
    params: HashMap<ModelKind, usize>,
    params_job: Option<Job<Vec<(ModelKind, usize)>>>,
    start_error: Option<String>,
    /// The run in progress trains a teacher of this architecture: when it completes, the
    /// teacher field points at it.
    training_teacher: Option<ModelKind>,
    /// A teacher run that completed, for the app to put in the teacher field.
    trained_teacher: Option<(ModelKind, PathBuf)>,
}

impl Default for TrainTab {
    fn default() -> Self {
        Self {
            handle: None,
            status: RunStatus::Idle,
            live: LiveRun::default(),
            smoothing: 0.6,
            params: HashMap::new(),
            params_job: None,
            start_error: None,
            training_teacher: None,
            trained_teacher: None,
        }
    }
}

/// A run name not yet taken in `runs_dir`: `base`, `base-2`, `base-3`, ….
pub fn unique_run_name(runs_dir: &std::path::Path, base: &str) -> String {
    (1..)
        .map(|i| if i == 1 { base.to_string() } else { format!("{base}-{i}") })
        .find(|n| !runs_dir.join(n).exists())
        .unwrap_or_default()
}

impl TrainTab {
    /// Whether the students' parameter counts (computed in the background) are known.
    pub fn has_parameter_counts(&self) -> bool {
        !self.params.is_empty()
    }

    pub fn is_running(&self) -> bool {
        matches!(self.status, RunStatus::Starting | RunStatus::Running | RunStatus::Paused)
    }

    /// Drains engine events; call once per frame (never blocks).
    pub fn update(&mut self, ctx: &egui::Context) {
        if self.params.is_empty() && self.params_job.is_none() {
            self.params_job = Some(Job::spawn("parameter counts", ctx, |_| {
                ModelKind::STUDENTS
                    .iter()
                    .filter_map(|&k| {
                        build_trainable(k, 21, 0, &candle_core::Device::Cpu).ok().map(|t| (k, t.num_params))
                    })
                    .collect()
            }));
        }
        if let Some(job) = &mut self.params_job
            && let Poll::Done(v) = job.poll()
        {
            self.params.extend(v);
        }
        let Some(handle) = &self.handle else { return };
        for event in handle.events.try_iter() {
            match event {
                TrainEvent::Started(info) => {
                    self.live.info = Some(info);
                    self.status = RunStatus::Running;
                }
                TrainEvent::Message(m) => self.live.messages.push(m),
                TrainEvent::Preparing { what, done, total } => {
                    let started = self.live.preparing.as_ref().map_or_else(Instant::now, |p| p.started);
                    let done_at_start = self.live.preparing.as_ref().map_or(done, |p| p.done_at_start);
                    self.live.preparing = Some(Preparing { what, done, total, started, done_at_start });
                }
                TrainEvent::Step(s) => self.live.steps.push(s),
                TrainEvent::Evaluated(e) => self.live.evals.push(e),
                TrainEvent::CheckpointSaved { .. } => {}
                TrainEvent::Paused => self.status = RunStatus::Paused,
                TrainEvent::Resumed => self.status = RunStatus::Running,
                TrainEvent::Finished(s) => {
                    if let Some(model) = self.training_teacher.take()
                        && s.reason == EndReason::Completed
                    {
                        self.trained_teacher = Some((model, crate::train::checkpoint::student_path(&s.run_dir)));
                    }
                    self.status = RunStatus::Finished(s);
                }
                TrainEvent::Failed { message, .. } => {
                    self.training_teacher = None;
                    self.status = RunStatus::Failed(message);
                }
            }
        }
        if self.is_running() {
            // Curves grow while training: refresh at 10 Hz without busy-looping.
            ctx.request_repaint_after(Duration::from_millis(100));
        } else if handle.is_finished() {
            self.handle = None;
        }
    }

    /// Stops a run in progress and waits for its checkpoint (window closing).
    pub fn shutdown(&mut self) {
        if let Some(mut h) = self.handle.take() {
            h.resume();
            h.stop();
            h.join();
        }
    }

    /// The teacher a completed "Train a teacher" run produced (once), for the teacher field.
    pub fn take_trained_teacher(&mut self) -> Option<(ModelKind, PathBuf)> {
        self.trained_teacher.take()
    }

    fn start(&mut self, state: &AppState, data: &DataPanel) {
        self.start_error = None;
        let Some(info) = data.usable() else {
            self.start_error = Some("choose a dataset with train and val images first".into());
            return;
        };
        let form = &state.train;
        if form.mode.needs_teacher() && !form.teacher_path().is_some_and(|p| p.is_file()) {
            self.start_error = Some(format!("distillation mode `{}` needs the teacher weights file", form.mode.name()));
            return;
        }
        let base = if form.name.trim().is_empty() {
            format!("{}-{}", form.model, form.mode.name())
        } else {
            form.name.trim().to_string()
        };
        let name = unique_run_name(&state.runs_dir, &base);
        let config = form.to_config(info.root.clone(), Some(info.kind), state.runs_dir.clone(), name);
        self.start_config(config, None);
    }

    /// "Train a teacher for this dataset": the teacher recipe on the chosen dataset, shown live
    /// like any run; when it completes, the teacher field points at its weights.
    fn start_teacher_training(&mut self, state: &AppState, data: &DataPanel) {
        self.start_error = None;
        let Some(info) = data.usable() else { return };
        let form_config =
            state.train.to_config(info.root.clone(), Some(info.kind), state.runs_dir.clone(), String::new());
        let mut config = form_config.teacher_recipe();
        config.name = unique_run_name(&state.runs_dir, &format!("teacher-{}", config.model));
        let model = config.model;
        self.start_config(config, Some(model));
    }

    fn start_config(&mut self, config: crate::train::TrainConfig, teacher: Option<ModelKind>) {
        if let Err(e) = config.validate() {
            self.start_error = Some(format!("{e:#}"));
            return;
        }
        self.live = LiveRun::default();
        self.status = RunStatus::Starting;
        self.training_teacher = teacher;
        self.handle = Some(start(config, false));
    }

    pub fn ui(&mut self, ui: &mut Ui, state: &mut AppState, data: &mut DataPanel) {
        egui::Panel::left("train_form").resizable(true).default_size(330.0).show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| self.form_ui(ui, state, data));
        });
        egui::CentralPanel::default().show(ui, |ui| self.live_ui(ui, state, data));
    }

    fn form_ui(&mut self, ui: &mut Ui, state: &mut AppState, data: &mut DataPanel) {
        let editable = !self.is_running();
        section(ui, "Data");
        ui.add_enabled_ui(editable, |ui| data.ui(ui, state));
        section(ui, "Weights");
        let teacher_needed = state.train.mode.needs_teacher();
        ui.add_enabled_ui(editable, |ui| data.weights_ui(ui, state, teacher_needed));
        self.train_teacher_ui(ui, state, data, editable);
        ui.add_enabled_ui(editable, |ui| {
            let f = &mut state.train;
            section(ui, "Student");
            ui.horizontal(|ui| {
                let label = ui.label("model");
                egui::ComboBox::from_id_salt("model")
                    .selected_text(f.model.name())
                    .show_ui(ui, |ui| {
                        for k in ModelKind::STUDENTS {
                            ui.selectable_value(&mut f.model, k, k.name());
                        }
                    })
                    .response
                    .labelled_by(label.id);
                if let Some(n) = self.params.get(&f.model) {
                    ui.label(format!("{} parameters", format_params(*n)));
                }
            });

            section(ui, "Distillation");
            ui.horizontal(|ui| {
                for m in [DistillMode::None, DistillMode::Response, DistillMode::Feature, DistillMode::Combined] {
                    ui.selectable_value(&mut f.mode, m, m.name());
                }
            });
            egui::Grid::new("loss_grid").num_columns(2).show(ui, |ui| {
                let label = ui.label("α (CE)");
                ui.add(egui::DragValue::new(&mut f.alpha).speed(0.01).range(0.0..=10.0)).labelled_by(label.id);
                ui.end_row();
                let label = ui.add_enabled(f.mode.uses_logits(), egui::Label::new("β (KD)"));
                ui.add_enabled(f.mode.uses_logits(), egui::DragValue::new(&mut f.beta).speed(0.01).range(0.0..=10.0))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.add_enabled(f.mode.uses_logits(), egui::Label::new("τ"));
                ui.add_enabled(f.mode.uses_logits(), egui::DragValue::new(&mut f.tau).speed(0.05).range(0.1..=20.0))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.add_enabled(f.mode.uses_features(), egui::Label::new("γ (features)"));
                ui.add_enabled(
                    f.mode.uses_features(),
                    egui::DragValue::new(&mut f.gamma).speed(0.01).range(0.0..=10.0),
                )
                .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("KD form");
                egui::ComboBox::from_id_salt("kd_form")
                    .selected_text(match f.kd_form {
                        KdForm::SoftCrossEntropy => "soft CE (lab)",
                        KdForm::KlDivergence => "τ²·KL (Hinton)",
                    })
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut f.kd_form, KdForm::SoftCrossEntropy, "soft CE (lab)");
                        ui.selectable_value(&mut f.kd_form, KdForm::KlDivergence, "τ²·KL (Hinton)");
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
            });

            section(ui, "Optimisation");
            egui::Grid::new("optim_grid").num_columns(2).show(ui, |ui| {
                let label = ui.label("epochs");
                ui.add(egui::DragValue::new(&mut f.epochs).range(1..=1000)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("batch");
                ui.add(egui::DragValue::new(&mut f.batch).range(1..=256)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("crop size");
                ui.add(egui::DragValue::new(&mut f.size).range(32..=1024).speed(8)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("learning rate");
                ui.add(egui::DragValue::new(&mut f.lr).speed(1e-4).range(1e-6..=1.0).max_decimals(6))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("optimiser");
                egui::ComboBox::from_id_salt("optimizer")
                    .selected_text(format!("{:?}", f.optimizer))
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut f.optimizer, OptimizerKind::Adamw, "Adamw");
                        ui.selectable_value(&mut f.optimizer, OptimizerKind::Sgd, "Sgd");
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("schedule");
                egui::ComboBox::from_id_salt("schedule")
                    .selected_text(format!("{:?}", f.schedule))
                    .show_ui(ui, |ui| {
                        for s in [
                            ScheduleKind::Poly,
                            ScheduleKind::Cosine,
                            ScheduleKind::Step,
                            ScheduleKind::Plateau,
                            ScheduleKind::Constant,
                        ] {
                            ui.selectable_value(&mut f.schedule, s, format!("{s:?}"));
                        }
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("seed");
                ui.add(egui::DragValue::new(&mut f.seed)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("device");
                egui::ComboBox::from_id_salt("device")
                    .selected_text(format!("{:?}", f.device))
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut f.device, DeviceChoice::Auto, "Auto");
                        ui.selectable_value(&mut f.device, DeviceChoice::Cpu, "Cpu");
                        ui.add_enabled_ui(CUDA_BUILT, |ui| {
                            ui.selectable_value(&mut f.device, DeviceChoice::Cuda, "Cuda")
                        })
                        .response
                        .on_disabled_hover_text("built without CUDA (cargo build --features cuda)");
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
            });
            ui.checkbox(&mut f.class_weights, "class-weighted cross-entropy");
            if f.mode.needs_teacher() {
                ui.checkbox(&mut f.teacher_cache, "cache teacher outputs").on_hover_text(
                    "Run the teacher once per training image before the first step and reuse its outputs (cut to \
                     each augmented crop) every epoch: distillation then costs about what training without it costs.",
                );
            }
            ui.horizontal(|ui| {
                let label = ui.label("run name");
                ui.add(egui::TextEdit::singleline(&mut f.name).hint_text("auto").desired_width(160.0))
                    .labelled_by(label.id);
            });
        });
    }

    /// Offered where a dataset has no competent teacher yet: the demo dataset, or a teacher that
    /// scores near chance.
    fn train_teacher_ui(&mut self, ui: &mut Ui, state: &AppState, data: &DataPanel, editable: bool) {
        let Some(info) = data.usable() else { return };
        let weak_teacher = data.teacher_panel.quality().is_some_and(|q| q.near_chance());
        let no_teacher = !state.train.teacher_path().is_some_and(|p| p.is_file());
        if !(info.is_demo || weak_teacher || no_teacher && state.train.mode.needs_teacher()) {
            return;
        }
        let recipe = crate::train::TrainConfig::default().teacher_recipe();
        let hover = format!(
            "trains {} ({} epochs, lr {}, crop {}) on this dataset's labels, then points the teacher field at it",
            recipe.model, recipe.epochs, recipe.optimizer.lr, state.train.size
        );
        if ui
            .add_enabled(editable, egui::Button::new("Train a teacher for this dataset"))
            .on_hover_text(hover)
            .clicked()
        {
            self.start_teacher_training(state, data);
        }
    }

    fn controls_ui(&mut self, ui: &mut Ui, state: &AppState, data: &DataPanel) {
        ui.horizontal(|ui| {
            let running = self.is_running();
            if ui.add_enabled(!running, egui::Button::new("Start")).clicked() {
                self.start(state, data);
            }
            let paused = self.status == RunStatus::Paused;
            if ui.add_enabled(running && !paused, egui::Button::new("Pause")).clicked()
                && let Some(h) = &self.handle
            {
                h.pause();
            }
            if ui.add_enabled(paused, egui::Button::new("Resume")).clicked()
                && let Some(h) = &self.handle
            {
                h.resume();
            }
            if ui.add_enabled(running, egui::Button::new("Stop")).clicked()
                && let Some(h) = &self.handle
            {
                h.resume();
                h.stop();
            }
            ui.separator();
            ui.label(match &self.status {
                RunStatus::Idle => "idle".to_string(),
                RunStatus::Starting => "starting…".into(),
                RunStatus::Running => "training".into(),
                RunStatus::Paused => "paused".into(),
                RunStatus::Finished(s) => match s.reason {
                    EndReason::Completed => format!("finished: best mIoU {:.4}", s.best_miou.unwrap_or(f64::NAN)),
                    EndReason::Stopped => "stopped (checkpoint saved)".into(),
                },
                RunStatus::Failed(_) => "failed".into(),
            });
        });
    }

    fn live_ui(&mut self, ui: &mut Ui, state: &AppState, data: &DataPanel) {
        self.controls_ui(ui, state, data);
        if let Some(e) = &self.start_error {
            error_text(ui, e.clone());
        }
        if let RunStatus::Failed(m) = &self.status {
            error_text(ui, m.clone());
        }
        if let Some(info) = &self.live.info {
            note(
                ui,
                format!(
                    "{} ({}), {} distillation{} on {}: {} train / {} val images, saved in {}",
                    info.model,
                    format_params(info.params),
                    info.mode,
                    info.teacher.as_ref().map(|t| format!(" from {t}")).unwrap_or_default(),
                    info.device,
                    info.train_images,
                    info.val_images,
                    info.run_dir.display()
                ),
            );
        }
        for m in self.live.messages.iter().rev().take(2) {
            note(ui, m.clone());
        }
        self.progress_ui(ui);
        ui.horizontal(|ui| {
            let label = ui.label("smoothing");
            ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99)).labelled_by(label.id);
        });
        self.charts_ui(ui);
    }

    fn progress_ui(&self, ui: &mut Ui) {
        if let Some(p) = &self.live.preparing
            && self.live.steps.is_empty()
            && self.is_running()
        {
            let fresh = p.done.saturating_sub(p.done_at_start);
            let eta = (fresh > 0).then(|| p.started.elapsed().as_secs_f64() / fresh as f64 * (p.total - p.done) as f64);
            let text = format!(
                "building the {}: {}/{} images · ETA {}",
                p.what,
                p.done,
                p.total,
                eta.map_or_else(|| "…".into(), duration)
            );
            ui.add(egui::ProgressBar::new(p.done as f32 / p.total.max(1) as f32).text(text));
            return;
        }
        let Some(last) = self.live.steps.last() else {
            if self.status == RunStatus::Starting {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("loading data and models…");
                });
            }
            return;
        };
        let epochs = last.total_steps / last.steps_per_epoch.max(1);
        let text = format!(
            "epoch {}/{} · step {}/{} · loss {:.4} · {:.1} img/s · ETA {}",
            last.epoch + 1,
            epochs,
            last.step,
            last.total_steps,
            last.loss,
            last.images_per_sec,
            duration(last.eta_secs)
        );
        ui.add(egui::ProgressBar::new(last.step as f32 / last.total_steps.max(1) as f32).text(text));
    }

    fn charts_ui(&self, ui: &mut Ui) {
        if self.live.steps.is_empty() {
            ui.add_space(40.0);
            ui.vertical_centered(|ui| {
                note(ui, "The loss, validation loss, mIoU and per-class IoU curves grow here while a run trains.");
                note(ui, "Pick a dataset (or the demo dataset), a student and a distillation mode, then press Start.");
            });
            return;
        }
        let alpha = 1.0 - self.smoothing;
        let steps = &self.live.steps;
        let series = |f: &dyn Fn(&StepMetrics) -> Option<f64>| -> Vec<[f64; 2]> {
            let pts: Vec<(f64, f64)> = steps.iter().filter_map(|s| f(s).map(|v| (s.step as f64, v))).collect();
            let smooth = ema(&pts.iter().map(|p| p.1).collect::<Vec<_>>(), alpha);
            pts.iter().zip(smooth).map(|(p, v)| [p.0, v]).collect()
        };
        let lines = [
            ("total", series(&|s| Some(s.loss))),
            ("CE", series(&|s| Some(s.ce))),
            ("KD", series(&|s| s.kd)),
            ("feature", series(&|s| s.feature)),
        ];
        let h = (ui.available_height() / 2.0 - 20.0).max(140.0);
        Plot::new("loss_plot")
            .legend(Legend::default())
            .height(h)
            .x_axis_label("step")
            .y_axis_label("training loss")
            .show(ui, |p| {
                for (name, pts) in lines {
                    if !pts.is_empty() {
                        p.line(Line::new(name, pts));
                    }
                }
            });
        let evals = &self.live.evals;
        let val_loss: Vec<[f64; 2]> = evals.iter().map(|e| [(e.epoch + 1) as f64, e.val_loss]).collect();
        let miou: Vec<[f64; 2]> = evals.iter().map(|e| [(e.epoch + 1) as f64, e.miou]).collect();
        let class_names = self.live.info.as_ref().map(|i| i.class_names.clone()).unwrap_or_default();
        let bars: Vec<Bar> = evals
            .last()
            .map(|e| {
                e.iou
                    .iter()
                    .enumerate()
                    .filter_map(|(c, v)| {
                        v.map(|v| Bar::new(c as f64, v).name(class_names.get(c).cloned().unwrap_or_default()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let w = ui.available_width() / 3.0 - 8.0;
        let h = ui.available_height().max(120.0);
        ui.horizontal(|ui| {
            Plot::new("val_loss_plot").width(w).height(h).x_axis_label("epoch").y_axis_label("val loss").show(
                ui,
                |p| {
                    p.line(Line::new("val loss", val_loss));
                },
            );
            Plot::new("miou_plot")
                .width(w)
                .height(h)
                .x_axis_label("epoch")
                .y_axis_label("val mIoU")
                .include_y(0.0)
                .show(ui, |p| {
                    p.line(Line::new("mIoU", miou));
                });
            let names = class_names.clone();
            Plot::new("iou_plot")
                .width(w)
                .height(h)
                .include_y(0.0)
                .include_y(1.0)
                .y_axis_label("IoU per class (last eval)")
                .x_axis_formatter(move |m, _| names.get(m.value.round() as usize).cloned().unwrap_or_default())
                .show(ui, |p| p.bar_chart(BarChart::new("IoU", bars).width(0.7)));
        });
    }
}

/// The folder a run on screen writes to.
pub fn live_run_dir(tab: &TrainTab) -> Option<PathBuf> {
    tab.live.info.as_ref().map(|i| i.run_dir.clone())
}
