//! The Train tab: dataset, model, distillation and hyper-parameters on the left; controls,
//! progress and live curves (loss with its parts, validation loss, mIoU, per-class IoU) on the
//! right. The engine runs on its own thread; this panel drains its events once per frame, and
//! its buttons push [`Command`](super::commands::Command)s that the app applies. This file holds
//! the tab's state and what its commands do; the view-model is in `live`, the drawing in `form`
//! and `view`.

mod curves;
mod folders;
mod form;
mod live;
mod recipe_estimate;
mod terms_form;
mod view;

pub use curves::LivePlot;
pub use folders::{describe_run, describe_state, unique_run_name};
pub use live::{LiveRun, Preparing, RunStatus};
pub use recipe_estimate::{RecipeEstimate, RecipeShape, RecipeTiming};
pub use terms_form::{TermRow, TermsForm};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::commands::Question;
use super::data_panel::{DataPanel, DatasetInfo};
use super::jobs::{Job, Poll};
use super::state::{AppState, TrainForm};
use crate::model::{ModelKind, build_trainable};
use crate::train::checkpoint;
use crate::train::events::{EndReason, EventSink as _};
use crate::train::{TrainConfig, TrainHandle, start};

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

#[derive(Default)]
pub struct TrainTab {
    handle: Option<TrainHandle>,
    /// The run on screen and its status.
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
    /// How long the teacher recipe takes on this machine, measured before it is offered.
    recipe_estimate: RecipeEstimate,
    /// The live plots' PNG/CSV exports: a save dialog in flight and the last one's outcome.
    pub plot_exports: crate::ui::plot_export::PlotExports,
}

impl TrainTab {
    /// Whether the students' parameter counts (computed in the background) are known.
    pub fn has_parameter_counts(&self) -> bool {
        !self.params.is_empty()
    }

    pub fn is_running(&self) -> bool {
        matches!(self.live.status, RunStatus::Starting | RunStatus::Running | RunStatus::Paused)
    }

    /// Running and not paused: the spinner turns only then.
    pub fn is_training_now(&self) -> bool {
        matches!(self.live.status, RunStatus::Starting | RunStatus::Running)
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
        Some(match &self.live.status {
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
        let completed = matches!(&self.live.status, RunStatus::Finished(s) if s.reason == EndReason::Completed);
        self.resumable =
            self.live.run_dir.clone().filter(|dir| !self.is_running() && !completed && describe_run(dir).1);
    }

    /// Shows a run's curves and status as its folder holds them.
    pub fn show_saved_run(&mut self, dir: &Path) {
        if let Some(live) = LiveRun::from_folder(dir) {
            self.live = live;
        }
        self.refresh_resumable();
    }

    /// Drains engine events; call once per frame (never blocks).
    pub fn update(&mut self, ctx: &egui::Context) {
        self.plot_exports.update();
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
            self.live.on_event(&event);
            if event.ends_run() {
                ended = true;
                // A teacher run fills the teacher field when it completes, not when it stops or fails.
                if let Some(model) = self.training_teacher.take()
                    && let RunStatus::Finished(s) = &self.live.status
                    && s.reason == EndReason::Completed
                {
                    self.trained_teacher = Some((model, checkpoint::student_path(&s.run_dir)));
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
        if form.config.needs_teacher() && !form.teacher_path().is_some_and(|p| p.is_file()) {
            let message = format!("distillation `{}` needs the teacher weights file", form.terms.label());
            return self.refuse(message, state, data);
        }
        let name = &form.config.name;
        let typed = !name.trim().is_empty();
        let base =
            if typed { name.trim().to_string() } else { format!("{}-{}", form.config.model, form.terms.label()) };
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
        let mut config = teacher_recipe(state, data.usable()?);
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
        self.live.status = RunStatus::Starting;
        self.resumable = None;
        self.training_teacher = teacher;
        self.handle = Some(start(config, resume));
    }
}

/// The teacher recipe over the form's settings on `info`'s dataset: the run "Train a teacher for
/// this dataset" starts (its own model, crop and schedule; see `TrainConfig::teacher_recipe`).
pub fn teacher_recipe(state: &AppState, info: &DatasetInfo) -> TrainConfig {
    let form = state.train.to_config(info.root.clone(), Some(info.kind), state.runs_dir.clone(), String::new());
    form.teacher_recipe()
}

/// The folder of the run on screen.
pub fn live_run_dir(tab: &TrainTab) -> Option<PathBuf> {
    tab.live.run_dir.clone()
}
