//! The Train tab: dataset, model, distillation and hyper-parameters on the left; controls,
//! progress and live curves (loss with its parts, validation loss, mIoU, per-class IoU) on the
//! right. The engine runs on its own thread; this panel drains its events once per frame, and
//! its buttons push [`Command`]s that the app applies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::{Color32, Ui};

use super::commands::{Command, CommandQueue, Question};
use super::data_panel::DataPanel;
use super::jobs::{Job, Poll};
use super::plots::{CurvePlot, Series, XAxis, class_bars};
use super::state::{AppState, TrainForm};
use super::widgets::{duration, error_text, note, section};
use crate::data::ClassSet;
use crate::distill::{DistillMode, KdForm};
use crate::model::{ModelKind, build_trainable, format_params};
use crate::train::checkpoint::{self, CheckpointState};
use crate::train::config::{LIMITS, OptimizerKind, ScheduleKind};
use crate::train::events::{EndReason, EvalMetrics, RunInfo, StepMetrics, Summary, TrainEvent};
use crate::train::{TrainConfig, TrainHandle, start};
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

/// What is known about the run on screen: live from the engine, or read back from its folder.
#[derive(Default)]
pub struct LiveRun {
    /// The run's folder (known before the engine starts it, and for a run read from disk).
    pub run_dir: Option<PathBuf>,
    pub info: Option<RunInfo>,
    pub steps: Vec<StepMetrics>,
    pub evals: Vec<EvalMetrics>,
    /// Engine messages of the current session (cleared when a run starts).
    pub messages: Vec<String>,
    /// Work before the first step (the teacher cache), while it runs.
    pub preparing: Option<Preparing>,
    /// Class names of the run's dataset (from the engine, or from the run's evaluations).
    pub class_names: Vec<String>,
}

impl LiveRun {
    /// A run's curves and status as its folder holds them (metrics.csv and the last checkpoint):
    /// what the app shows again after a restart, and the history a resumed run continues.
    pub fn from_folder(dir: &Path) -> Option<(LiveRun, RunStatus)> {
        let config = crate::train::run_folder::read_config(dir)?;
        let saved = checkpoint::load_state(&checkpoint::last_path(dir)).ok();
        let steps = crate::report::runs::saved_steps(dir, saved.as_ref().map_or(0, |s| s.step));
        let evals: Vec<EvalMetrics> = saved
            .iter()
            .flat_map(|s| &s.history)
            .map(|r| EvalMetrics {
                epoch: r.epoch,
                step: r.step,
                val_loss: r.val_loss,
                miou: r.miou,
                pixel_acc: r.pixel_acc,
                iou: r.iou.clone(),
                ms_per_image: r.ms_per_image,
            })
            .collect();
        let classes = evals.last().map_or(0, |e| e.iou.len());
        let class_names = if classes > 0 { ClassSet::for_num_classes(classes).names } else { Vec::new() };
        let status = match &saved {
            Some(s) => RunStatus::Finished(saved_summary(dir, s, &config)),
            None => RunStatus::Idle,
        };
        let live = LiveRun { run_dir: Some(dir.to_path_buf()), steps, evals, class_names, ..Default::default() };
        Some((live, status))
    }
}

fn saved_summary(dir: &Path, s: &CheckpointState, config: &TrainConfig) -> Summary {
    Summary {
        reason: if s.epoch >= config.epochs { EndReason::Completed } else { EndReason::Stopped },
        run_dir: dir.to_path_buf(),
        epochs_done: s.epoch,
        steps_done: s.step,
        best_miou: s.best.as_ref().map(|b| b.miou),
        best_epoch: s.best.as_ref().map(|b| b.epoch),
        train_seconds: s.train_seconds,
        skipped_samples: Vec::new(),
    }
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

/// What pressing Start leads to.
pub enum StartPlan {
    Start(Box<TrainConfig>),
    /// The run name is taken: the user chooses.
    Ask(Question),
    /// The form cannot start (the reason is shown under the controls).
    Refused,
}

/// Why Start refused, shown until the form or the dataset changes.
struct StartError {
    message: String,
    form: TrainForm,
    data: Option<PathBuf>,
}

pub struct TrainTab {
    handle: Option<TrainHandle>,
    pub status: RunStatus,
    pub live: LiveRun,
    params: HashMap<ModelKind, usize>,
    params_job: Option<Job<Vec<(ModelKind, usize)>>>,
    start_error: Option<StartError>,
    /// The run in progress trains a teacher of this architecture: when it completes, the
    /// teacher field points at it.
    training_teacher: Option<ModelKind>,
    /// A teacher run that completed, for the app to put in the teacher field.
    trained_teacher: Option<(ModelKind, PathBuf)>,
    /// The run on screen, when it is stopped with a checkpoint (see `refresh_resumable`).
    resumable: Option<PathBuf>,
}

impl Default for TrainTab {
    fn default() -> Self {
        Self {
            handle: None,
            status: RunStatus::Idle,
            live: LiveRun::default(),
            params: HashMap::new(),
            params_job: None,
            start_error: None,
            training_teacher: None,
            trained_teacher: None,
            resumable: None,
        }
    }
}

/// A run name not yet taken in `runs_dir`: `base`, `base-2`, `base-3`, ….
pub fn unique_run_name(runs_dir: &Path, base: &str) -> String {
    (1..)
        .map(|i| if i == 1 { base.to_string() } else { format!("{base}-{i}") })
        .find(|n| !runs_dir.join(n).exists())
        .unwrap_or_default()
}

/// How a run folder stands, in words, and whether it can be resumed.
pub fn describe_run(dir: &Path) -> (String, bool) {
    let Some(config) = crate::train::run_folder::read_config(dir) else {
        return ("a folder that is not a run".into(), false);
    };
    describe_state(&config, checkpoint::load_state(&checkpoint::last_path(dir)).ok().as_ref())
}

/// [`describe_run`] from a run's config and last checkpoint, already read.
pub fn describe_state(config: &TrainConfig, last: Option<&CheckpointState>) -> (String, bool) {
    match last {
        Some(s) if s.epoch >= config.epochs => (format!("completed ({} epochs)", s.epoch), false),
        Some(s) => (format!("stopped after epoch {}/{} (step {})", s.epoch, config.epochs, s.step), true),
        None => ("a run without a checkpoint yet (stopped before its first)".into(), false),
    }
}

impl TrainTab {
    /// Whether the students' parameter counts (computed in the background) are known.
    pub fn has_parameter_counts(&self) -> bool {
        !self.params.is_empty()
    }

    pub fn is_running(&self) -> bool {
        matches!(self.status, RunStatus::Starting | RunStatus::Running | RunStatus::Paused)
    }

    /// Running and not paused: the spinner turns only then.
    pub fn is_training_now(&self) -> bool {
        matches!(self.status, RunStatus::Starting | RunStatus::Running)
    }

    /// "training mbv3s-tiny-none · epoch 3/30" for the top bar, while a run is on screen.
    pub fn top_bar_status(&self) -> Option<String> {
        let name = self.live.run_dir.as_deref().map(super::app::run_name)?;
        let epoch = self
            .live
            .steps
            .last()
            .filter(|s| s.steps_per_epoch > 0)
            .map(|s| format!(" · epoch {}/{}", s.epoch + 1, s.total_steps / s.steps_per_epoch.max(1)));
        Some(match &self.status {
            RunStatus::Idle => return None,
            RunStatus::Starting => format!("starting {name}"),
            RunStatus::Running if self.live.steps.is_empty() && self.live.preparing.is_some() => {
                format!("{name}: building the teacher cache")
            }
            RunStatus::Running => format!("training {name}{}", epoch.unwrap_or_default()),
            RunStatus::Paused => format!("paused: {name}{}", epoch.unwrap_or_default()),
            RunStatus::Finished(s) if s.reason == EndReason::Completed => format!("{name}: completed"),
            RunStatus::Finished(s) => format!("{name}: stopped after epoch {}", s.epochs_done),
            RunStatus::Failed(_) => format!("{name}: failed"),
        })
    }

    /// The run on screen when it can be continued from its checkpoint (stopped, interrupted or
    /// failed after a checkpoint).
    pub fn resumable_run(&self) -> Option<PathBuf> {
        self.resumable.clone().filter(|_| !self.is_running())
    }

    /// Reads whether the run on screen can be resumed from its folder: when its status changes,
    /// not every frame (it reads the run's config and checkpoint).
    fn refresh_resumable(&mut self) {
        let completed = matches!(&self.status, RunStatus::Finished(s) if s.reason == EndReason::Completed);
        self.resumable =
            self.live.run_dir.clone().filter(|dir| !self.is_running() && !completed && describe_run(dir).1);
    }

    /// Shows a run's curves and status as its folder holds them.
    pub fn show_saved_run(&mut self, dir: &Path) {
        if let Some((live, status)) = LiveRun::from_folder(dir) {
            self.live = live;
            self.status = status;
        }
        self.refresh_resumable();
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
        let mut ended = false;
        for event in handle.events.try_iter() {
            match event {
                TrainEvent::Started(info) => {
                    self.live.class_names = info.class_names.clone();
                    self.live.run_dir = Some(info.run_dir.clone());
                    self.live.info = Some(info);
                    self.status = RunStatus::Running;
                }
                TrainEvent::Message(m) => self.live.messages.push(m),
                TrainEvent::Preparing { what, done, total } => {
                    let started = self.live.preparing.as_ref().map_or_else(Instant::now, |p| p.started);
                    let done_at_start = self.live.preparing.as_ref().map_or(done, |p| p.done_at_start);
                    self.live.preparing = Some(Preparing { what, done, total, started, done_at_start });
                }
                TrainEvent::Step(s) => {
                    // A resumed run replays nothing: drop saved rows this session trains again.
                    self.live.steps.retain(|old| old.step < s.step);
                    self.live.preparing = None;
                    self.live.steps.push(s);
                }
                TrainEvent::Evaluated(e) => {
                    self.live.evals.retain(|old| old.epoch < e.epoch);
                    self.live.evals.push(e);
                }
                TrainEvent::CheckpointSaved { .. } => {}
                TrainEvent::Paused => self.status = RunStatus::Paused,
                TrainEvent::Resumed => self.status = RunStatus::Running,
                TrainEvent::Finished(s) => {
                    if let Some(model) = self.training_teacher.take()
                        && s.reason == EndReason::Completed
                    {
                        self.trained_teacher = Some((model, checkpoint::student_path(&s.run_dir)));
                    }
                    self.live.preparing = None;
                    self.status = RunStatus::Finished(s);
                    ended = true;
                }
                TrainEvent::Failed { message, .. } => {
                    self.training_teacher = None;
                    self.live.preparing = None;
                    self.status = RunStatus::Failed(message);
                    ended = true;
                }
            }
        }
        if self.is_running() {
            // Curves grow while training: refresh at 10 Hz without busy-looping.
            ctx.request_repaint_after(Duration::from_millis(100));
        } else if handle.is_finished() {
            self.handle = None;
        }
        if ended {
            self.refresh_resumable();
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

    pub fn pause(&self) {
        if let Some(h) = &self.handle {
            h.pause();
        }
    }

    pub fn unpause(&self) {
        if let Some(h) = &self.handle {
            h.resume();
        }
    }

    /// Stops the run after its current step; it writes a checkpoint and can be resumed.
    pub fn stop(&self) {
        if let Some(h) = &self.handle {
            h.resume();
            h.stop();
        }
    }

    /// The teacher a completed "Train a teacher" run produced (once), for the teacher field.
    pub fn take_trained_teacher(&mut self) -> Option<(ModelKind, PathBuf)> {
        self.trained_teacher.take()
    }

    fn refuse(&mut self, message: String, state: &AppState, data: &DataPanel) -> StartPlan {
        let data = data.usable().map(|i| i.root.clone());
        self.start_error = Some(StartError { message, form: state.train.clone(), data });
        StartPlan::Refused
    }

    /// What Start does with the form as it stands: start, ask about a taken name, or refuse.
    pub fn plan_start(&mut self, state: &AppState, data: &DataPanel) -> StartPlan {
        self.start_error = None;
        if data.usable().is_none() {
            return self.refuse("choose a dataset with train and val images first".into(), state, data);
        }
        let form = &state.train;
        if form.mode.needs_teacher() && !form.teacher_path().is_some_and(|p| p.is_file()) {
            let message = format!("distillation mode `{}` needs the teacher weights file", form.mode.name());
            return self.refuse(message, state, data);
        }
        let typed = !form.name.trim().is_empty();
        let base = if typed { form.name.trim().to_string() } else { format!("{}-{}", form.model, form.mode.name()) };
        let existing = state.runs_dir.join(&base);
        if !existing.exists() {
            return self.config_named(state, data, base).map_or(StartPlan::Refused, |c| StartPlan::Start(Box::new(c)));
        }
        let (status, resumable) = describe_run(&existing);
        let fresh = unique_run_name(&state.runs_dir, &base);
        if typed || resumable {
            return StartPlan::Ask(Question::NameTaken {
                name: base,
                status,
                resumable: resumable.then_some(existing),
                fresh,
            });
        }
        // An automatic name whose run is complete: the next free automatic name, as asked.
        self.config_named(state, data, fresh).map_or(StartPlan::Refused, |c| StartPlan::Start(Box::new(c)))
    }

    /// The form's run under `name`, validated (a refusal is shown under the controls).
    pub fn config_named(&mut self, state: &AppState, data: &DataPanel, name: String) -> Option<TrainConfig> {
        let info = data.usable()?;
        let config = state.train.to_config(info.root.clone(), Some(info.kind), state.runs_dir.clone(), name);
        match config.validate() {
            Ok(()) => Some(config),
            Err(e) => {
                self.refuse(format!("{e:#}"), state, data);
                None
            }
        }
    }

    /// "Train a teacher for this dataset": the teacher recipe on the chosen dataset, shown live
    /// like any run; when it completes, the teacher field points at its weights.
    pub fn teacher_config(&mut self, state: &AppState, data: &DataPanel) -> Option<TrainConfig> {
        let info = data.usable()?;
        let form_config =
            state.train.to_config(info.root.clone(), Some(info.kind), state.runs_dir.clone(), String::new());
        let mut config = form_config.teacher_recipe();
        config.name = unique_run_name(&state.runs_dir, &format!("teacher-{}", config.model));
        Some(config)
    }

    /// Starts (or, with `resume`, continues) a run on the engine's thread. A resumed run keeps the
    /// curves already on screen (read from its folder).
    pub fn start_config(&mut self, config: TrainConfig, resume: bool, teacher: Option<ModelKind>) {
        self.start_error = None;
        let run_dir = config.run_dir();
        if resume {
            self.live.info = None;
            self.live.messages.clear();
            self.live.preparing = None;
        } else {
            self.live = LiveRun::default();
        }
        self.live.run_dir = Some(run_dir);
        self.status = RunStatus::Starting;
        self.resumable = None;
        self.training_teacher = teacher;
        self.handle = Some(start(config, resume));
    }

    pub fn ui(&mut self, ui: &mut Ui, state: &mut AppState, data: &mut DataPanel, commands: &mut CommandQueue) {
        egui::Panel::left("train_form").resizable(true).default_size(330.0).show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| self.form_ui(ui, state, data, commands));
        });
        egui::CentralPanel::default().show(ui, |ui| self.live_ui(ui, state, data, commands));
    }

    fn form_ui(&mut self, ui: &mut Ui, state: &mut AppState, data: &mut DataPanel, commands: &mut CommandQueue) {
        let editable = !self.is_running();
        section(ui, "Data");
        ui.add_enabled_ui(editable, |ui| data.ui(ui, state, commands));
        section(ui, "Weights");
        let teacher_needed = state.train.mode.needs_teacher();
        ui.add_enabled_ui(editable, |ui| data.weights_ui(ui, state, teacher_needed, commands));
        train_teacher_ui(ui, state, data, editable, commands);
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
                ui.add(egui::DragValue::new(&mut f.alpha).speed(0.01).range(LIMITS.loss_weight)).labelled_by(label.id);
                ui.end_row();
                let label = ui.add_enabled(f.mode.uses_logits(), egui::Label::new("β (KD)"));
                ui.add_enabled(f.mode.uses_logits(), egui::DragValue::new(&mut f.beta).speed(0.01).range(LIMITS.loss_weight))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.add_enabled(f.mode.uses_logits(), egui::Label::new("τ"));
                ui.add_enabled(f.mode.uses_logits(), egui::DragValue::new(&mut f.tau).speed(0.05).range(LIMITS.tau))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.add_enabled(f.mode.uses_features(), egui::Label::new("γ (features)"));
                ui.add_enabled(
                    f.mode.uses_features(),
                    egui::DragValue::new(&mut f.gamma).speed(0.01).range(LIMITS.loss_weight),
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
                ui.add(egui::DragValue::new(&mut f.epochs).range(LIMITS.epochs)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("batch");
                ui.add(egui::DragValue::new(&mut f.batch).range(LIMITS.batch)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("crop size");
                ui.add(egui::DragValue::new(&mut f.size).range(LIMITS.size).speed(8)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("learning rate");
                ui.add(egui::DragValue::new(&mut f.lr).speed(1e-4).range(1e-6..=1.0).max_decimals(6))
                    .labelled_by(label.id);
                ui.end_row();
                let label = ui.label("optimiser");
                let mut optimizer = f.optimizer;
                egui::ComboBox::from_id_salt("optimizer")
                    .selected_text(format!("{:?}", f.optimizer))
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut optimizer, OptimizerKind::Adamw, "Adamw");
                        ui.selectable_value(&mut optimizer, OptimizerKind::Sgd, "Sgd");
                    })
                    .response
                    .labelled_by(label.id);
                if optimizer != f.optimizer {
                    f.set_optimizer(optimizer);
                }
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
}

/// Offered where a dataset has no competent teacher yet: the demo dataset, or a teacher that
/// scores near chance.
fn train_teacher_ui(ui: &mut Ui, state: &AppState, data: &DataPanel, editable: bool, commands: &mut CommandQueue) {
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
    if ui.add_enabled(editable, egui::Button::new("Train a teacher for this dataset")).on_hover_text(hover).clicked() {
        commands.push(Command::TrainTeacher);
    }
}

impl TrainTab {
    fn controls_ui(&mut self, ui: &mut Ui, commands: &mut CommandQueue) {
        ui.horizontal(|ui| {
            let running = self.is_running();
            if ui.add_enabled(!running, egui::Button::new("Start")).clicked() {
                commands.push(Command::StartRun);
            }
            let paused = self.status == RunStatus::Paused;
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
            ui.label(match &self.status {
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
            });
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
        if let RunStatus::Failed(m) = &self.status {
            error_text(ui, m.clone());
        }
        match &self.live.info {
            Some(info) => note(
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
        self.charts_ui(ui, state.smoothing);
    }

    fn progress_ui(&self, ui: &mut Ui) {
        if !self.is_running() {
            return;
        }
        if let Some(p) = &self.live.preparing
            && self.live.steps.iter().all(|s| s.total_steps == 0)
        {
            let fresh = p.done.saturating_sub(p.done_at_start);
            let paused = self.status == RunStatus::Paused;
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
                if self.status == RunStatus::Starting {
                    ui.spinner();
                }
                ui.label(if self.status == RunStatus::Paused { "paused" } else { "loading data and models…" });
            });
            return;
        };
        let epochs = last.total_steps / last.steps_per_epoch.max(1);
        // Paused: the ETA is frozen at its last value and says so.
        let eta = match self.status {
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

    fn charts_ui(&self, ui: &mut Ui, smoothing: f64) {
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
        let steps = &self.live.steps;
        let series = |name: &str, color: Color32, f: &dyn Fn(&StepMetrics) -> Option<f64>| {
            Series::new(name, steps.iter().filter_map(|s| f(s).map(|v| [s.step as f64, v])).collect(), color)
        };
        let losses = [
            series("total", Color32::from_rgb(31, 119, 180), &|s| Some(s.loss)),
            series("CE", Color32::from_rgb(255, 127, 14), &|s| Some(s.ce)),
            series("KD", Color32::from_rgb(44, 160, 44), &|s| s.kd),
            series("feature", Color32::from_rgb(214, 39, 40), &|s| s.feature),
        ];
        // Without distillation the total is the CE: one line, not two on top of each other.
        let distilled = losses[2..].iter().any(|s| !s.points.is_empty());
        let losses: Vec<Series> =
            losses.into_iter().filter(|s| s.name == "total" || (distilled && !s.points.is_empty())).collect();
        let h = (ui.available_height() / 2.0 - 20.0).max(140.0);
        let w = ui.available_width();
        let size = egui::vec2(w, h);
        CurvePlot { id: "loss_plot", x: XAxis::Step, y_label: "training loss", y_range: None, size, smoothing }
            .show(ui, &losses);
        let evals = &self.live.evals;
        let per_epoch = |f: &dyn Fn(&EvalMetrics) -> f64| -> Vec<[f64; 2]> {
            evals.iter().map(|e| [(e.epoch + 1) as f64, f(e)]).collect()
        };
        let val_loss = [Series::new("val loss", per_epoch(&|e| e.val_loss), Color32::from_rgb(148, 103, 189))];
        let miou = [
            Series::new("mIoU", per_epoch(&|e| e.miou), Color32::from_rgb(31, 119, 180)),
            Series::new("pixel accuracy", per_epoch(&|e| e.pixel_acc), Color32::from_rgb(127, 127, 127)),
        ];
        let w = ui.available_width() / 3.0 - 8.0;
        let size = egui::vec2(w, ui.available_height().max(120.0));
        let names = self.live.class_names.clone();
        let colors = ClassSet::for_num_classes(names.len().max(1)).colors;
        ui.horizontal(|ui| {
            CurvePlot {
                id: "val_loss_plot",
                x: XAxis::Epoch,
                y_label: "val loss",
                y_range: None,
                size,
                smoothing: 0.0,
            }
            .show(ui, &val_loss);
            let y_range = Some((0.0, 1.0));
            CurvePlot { id: "miou_plot", x: XAxis::Epoch, y_label: "val mIoU", y_range, size, smoothing: 0.0 }
                .show(ui, &miou);
            let last = evals.last().map(|e| e.iou.clone()).unwrap_or_default();
            class_bars(ui, "iou_plot", size, &names, &colors, &last);
        });
    }
}

/// The folder of the run on screen.
pub fn live_run_dir(tab: &TrainTab) -> Option<PathBuf> {
    tab.live.run_dir.clone()
}
