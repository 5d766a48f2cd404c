//! The main window: state that persists (`AppState`) apart from the panels that draw it, a tab
//! bar, per-frame draining of background work in `logic` (never blocking), and the one point per
//! frame where the commands the panels pushed are applied (`apply`).

use std::path::Path;

use eframe::egui;

use super::browse::BrowseTab;
use super::commands::{
    CloseChoice, Command, CommandQueue, Question, SHORTCUTS, ShortcutScope, open_folder, shortcut_commands,
};
use super::data_panel::DataPanel;
use super::plot_export::PlotData;
use super::runs::RunsTab;
use super::state::{AppState, Tab};
use super::study::StudyQueue;
use super::train::{RunStatus, StartPlan, TrainTab, live_run_dir};
use crate::train::events::EndReason;

pub struct SegdistillApp {
    /// What is persisted between starts.
    pub state: AppState,
    pub data: DataPanel,
    pub train: TrainTab,
    pub runs: RunsTab,
    pub browse: BrowseTab,
    /// What the panels asked for this frame.
    commands: CommandQueue,
    /// A question awaiting the user's answer (a modal dialog).
    pub question: Option<Question>,
    /// Closing was confirmed while training: the window closes once the run has stopped.
    pub closing: bool,
    /// A run finished: refresh the Runs list once.
    rescan_runs: bool,
    /// The last command's failure the user should see (e.g. a folder that cannot be opened).
    pub notice: Option<String>,
}

impl SegdistillApp {
    /// The app as started from the desktop: settings restored from eframe's storage (falling back
    /// to defaults, with a warning, if they cannot be read).
    pub fn new(cc: &eframe::CreationContext<'_>) -> Self {
        let state = cc
            .storage
            .and_then(|s| s.get_string(eframe::APP_KEY))
            .and_then(|json| match serde_json::from_str::<AppState>(&json) {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("segdistill: ignoring unreadable saved settings ({e})");
                    None
                }
            })
            .unwrap_or_default()
            .with_absolute_paths();
        Self::start(cc, state)
    }

    /// The app in a window that is being created: its fonts installed, then [`Self::with_state`].
    pub fn start(cc: &eframe::CreationContext<'_>, state: AppState) -> Self {
        cc.egui_ctx.set_fonts(super::fonts());
        Self::with_state(state)
    }

    /// The app with given settings (tests, or a fresh start). The last run's curves are shown
    /// again, read from its folder.
    pub fn with_state(state: AppState) -> Self {
        let mut train = TrainTab::default();
        if let Some(run) = state.last_run.as_deref().filter(|r| crate::train::run_folder::config_path(r).is_file()) {
            train.show_saved_run(run);
        }
        Self {
            state,
            data: DataPanel::default(),
            train,
            runs: RunsTab::default(),
            browse: BrowseTab::default(),
            commands: CommandQueue::default(),
            question: None,
            closing: false,
            rescan_runs: true,
            notice: None,
        }
    }

    /// Carries out one command: the single place where what the user asked for happens.
    pub fn apply(&mut self, ctx: &egui::Context, command: Command) {
        // A notice is about the last action: the next one replaces it.
        self.notice = None;
        match command {
            Command::StartRun => match self.train.plan_start(&self.state, &self.data) {
                StartPlan::Start(config) => self.start_run(*config, false),
                StartPlan::Ask(question) => self.question = Some(question),
                StartPlan::Refused => {}
            },
            Command::StartRunNamed(name) => {
                self.question = None;
                if let Some(config) = self.train.config_named(&self.state, &self.data, name) {
                    self.start_run(config, false);
                }
            }
            Command::TrainTeacher => {
                if let Some(config) = self.train.teacher_config(&self.state, &self.data) {
                    let model = config.model;
                    self.train.start_config(config, false, Some(model));
                    self.state.last_run = live_run_dir(&self.train);
                }
            }
            Command::PauseRun => self.train.pause(),
            Command::UnpauseRun => self.train.unpause(),
            Command::StopRun => self.train.stop(),
            Command::ResumeRun(dir) => {
                self.question = None;
                // Another process trains it: say so rather than start a run that would fail.
                if let Some(why) = super::runs::resume_refusal(&dir) {
                    self.notice = Some(why);
                    return;
                }
                match crate::train::run_folder::read_config(&dir) {
                    Some(mut config) => {
                        // The row clicked is the run resumed, wherever its configuration says it was
                        // made (a copied or moved folder, a damaged config.json).
                        let dir = crate::util::fs::absolute(&dir);
                        config.name =
                            dir.file_name().map_or_else(|| config.name.clone(), |n| n.to_string_lossy().into_owned());
                        config.runs_dir =
                            dir.parent().map_or_else(|| config.runs_dir.clone(), std::path::Path::to_path_buf);
                        self.train.show_saved_run(&dir);
                        self.start_run(config, true);
                        self.state.tab = Tab::Train;
                    }
                    None => self.notice = Some(format!("{} holds no readable run (config.json)", dir.display())),
                }
            }
            Command::UseDemoData => self.data.use_demo_data(ctx, &mut self.state),
            Command::Download(target) => self.data.start_download(ctx, target, &self.state),
            Command::CancelDownload(target) => self.data.cancel_download(target),
            Command::EvaluateTeacher => self.data.teacher_panel.start(ctx, &self.state),
            Command::CancelTeacherEvaluation => self.data.teacher_panel.cancel(),
            Command::SetRunsDir(dir) => {
                self.state.runs_dir = crate::util::fs::absolute(&dir);
                self.runs.forget_runs();
                self.rescan_runs = true;
            }
            Command::RescanRuns => self.rescan_runs = true,
            Command::PruneTeacherCaches => self.runs.prune_caches(ctx, &self.state.runs_dir),
            Command::StartStudy => self.start_study(),
            Command::StopStudy => {
                self.runs.study_queue = None;
                self.train.stop();
            }
            Command::ExportReport => self.runs.export(ctx, &self.state),
            Command::ExportOnnx(run) => self.runs.export_onnx(ctx, &run, &self.state),
            Command::OpenFolder(dir) => self.notice = open_folder(&dir).err(),
            Command::ExportPlot(plot, format) => {
                let data = PlotData::of(plot, self.train.live.series(plot), self.state.smoothing);
                let run = self.train.live.run_dir.as_deref().map_or_else(|| "run".to_string(), run_name);
                let file = format!("{run}-{}.{}", plot.file_stem(), format.extension());
                let dir = self.state.runs_dir.join("exports");
                self.train.plot_exports.start(ctx, data, format, &dir, &file);
            }
            Command::BrowseRun(dir) => {
                self.state.browse.run = Some(dir);
                self.state.tab = Tab::Browse;
            }
            Command::Close(CloseChoice::StopAndClose) => {
                self.question = None;
                self.closing = true;
                self.train.stop();
            }
            Command::Close(CloseChoice::KeepTraining) | Command::DismissQuestion => self.question = None,
        }
    }

    fn start_run(&mut self, config: crate::train::TrainConfig, resume: bool) {
        self.train.start_config(config, resume, None);
        self.state.last_run = live_run_dir(&self.train);
    }

    /// Plans the New study form's grid over the Train form's settings and starts its first cell.
    fn start_study(&mut self) {
        if self.train.is_running() {
            self.notice = Some("a run is training: wait for it or stop it before starting a study".into());
            return;
        }
        let Some(info) = self.data.usable() else {
            self.notice = Some("choose a dataset in the Train tab first".into());
            return;
        };
        let state = &self.state;
        let mut base = state.train.to_config(info.root.clone(), Some(info.kind), state.runs_dir.clone(), String::new());
        // The form's own distillation may be none; the study's methods need its teacher all the same.
        base.teacher_weights = state.train.teacher_path();
        match StudyQueue::plan(&self.runs.new_study, &base, &state.runs_dir) {
            Ok(queue) => {
                self.runs.study_queue = Some(queue);
                self.next_study_cell();
            }
            Err(e) => self.notice = Some(e),
        }
    }

    /// Starts the study's next cell; the queue ends with the grid.
    fn next_study_cell(&mut self) {
        let Some(queue) = &mut self.runs.study_queue else { return };
        match queue.next_cell() {
            Some((config, resume)) => self.start_run(config, resume),
            None => self.runs.study_queue = None,
        }
        self.rescan_runs = true;
    }

    /// A run of the study ended: a completed cell leads to the next; a stopped or failed one ends
    /// the queue (starting the same study again continues it).
    fn study_run_ended(&mut self) {
        if self.runs.study_queue.is_none() || self.closing {
            return;
        }
        if matches!(&self.train.live.status, RunStatus::Finished(s) if s.reason == EndReason::Completed) {
            self.next_study_cell();
        } else {
            self.runs.study_queue = None;
            self.notice = Some("the study stopped: Start study with the same form continues it".into());
        }
    }

    /// Applies what the panels pushed this frame, in order.
    fn apply_commands(&mut self, ctx: &egui::Context) {
        for command in self.commands.take() {
            self.apply(ctx, command);
        }
    }

    fn tab_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("segdistill");
            ui.separator();
            for tab in Tab::ALL {
                ui.selectable_value(&mut self.state.tab, tab, tab.label());
            }
            if let Some(status) = self.train.top_bar_status() {
                ui.separator();
                if self.train.is_training_now() {
                    ui.spinner();
                }
                ui.label(status);
            }
            // The rest of the row from the right: Help at the window's edge, a notice beside it.
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let commands = &mut self.commands;
                ui.menu_button("Help", |ui| help_menu_ui(ui, commands));
                if let Some(n) = &self.notice {
                    ui.separator();
                    // Wrapped, never cut off: a notice may carry a path to copy.
                    let text = egui::RichText::new(n.clone()).color(ui.visuals().error_fg_color);
                    ui.add(egui::Label::new(text).wrap());
                }
            });
        });
    }

    /// Turns this frame's shortcut keys into commands (not while a question is open).
    fn shortcuts(&mut self, ctx: &egui::Context) {
        if self.question.is_some() || self.closing {
            return;
        }
        let paused = self.train.live.status == RunStatus::Paused;
        let scope = ShortcutScope {
            running: self.train.is_running() && !paused,
            paused,
            can_start: self.state.tab == Tab::Train && !self.train.is_running(),
        };
        for command in shortcut_commands(ctx, scope) {
            self.commands.push(command);
        }
    }

    /// A close request while training is held back and asked about.
    fn intercept_close(&mut self, ctx: &egui::Context) {
        if !ctx.input(|i| i.viewport().close_requested()) || !self.train.is_running() || self.closing {
            return;
        }
        ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        let run = live_run_dir(&self.train)
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "the run".into());
        self.question = Some(Question::CloseWhileTraining { run });
    }

    fn question_ui(&mut self, ctx: &egui::Context) {
        let Some(question) = &self.question else { return };
        let commands = &mut self.commands;
        egui::Modal::new(egui::Id::unique("question")).show(ctx, |ui| {
            ui.set_max_width(460.0);
            match question {
                Question::NameTaken { name, status, resumable, fresh } => {
                    ui.heading(format!("A run named “{name}” exists"));
                    ui.label(format!("It is {status}."));
                    ui.horizontal(|ui| {
                        if let Some(dir) = resumable
                            && ui.button(format!("Resume {name}")).clicked()
                        {
                            commands.push(Command::ResumeRun(dir.clone()));
                        }
                        if ui.button(format!("Start new as {fresh}")).clicked() {
                            commands.push(Command::StartRunNamed(fresh.clone()));
                        }
                        if ui.button("Cancel").clicked() {
                            commands.push(Command::DismissQuestion);
                        }
                    });
                }
                Question::CloseWhileTraining { run } => {
                    ui.heading("Training is running");
                    ui.label(format!(
                        "{run} is training. Stopping writes a checkpoint, and the run can be resumed later from \
                         the Runs tab."
                    ));
                    ui.horizontal(|ui| {
                        if ui.button("Stop and keep a checkpoint").clicked() {
                            commands.push(Command::Close(CloseChoice::StopAndClose));
                        }
                        // The one way back: a "Cancel" beside it would do the same.
                        if ui.button("Keep training").clicked() {
                            commands.push(Command::Close(CloseChoice::KeepTraining));
                        }
                    });
                }
            }
        });
    }
}

impl eframe::App for SegdistillApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let was_running = self.train.is_running();
        self.data.update(&mut self.state, ctx);
        self.train.update(ctx);
        if let Some((model, weights)) = self.train.take_trained_teacher() {
            self.state.train.config.teacher = model;
            self.state.train.teacher_weights = weights.display().to_string();
        }
        if was_running && !self.train.is_running() {
            self.rescan_runs = true;
            self.study_run_ended();
        }
        if self.closing && !self.train.is_running() {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        let visible = self.state.tab == Tab::Runs || self.state.tab == Tab::Browse;
        let training = self.train.is_running();
        self.runs.update(ctx, &self.state.runs_dir, visible, std::mem::take(&mut self.rescan_runs), training);
        if self.state.tab == Tab::Browse {
            self.browse.update(ctx, &self.state, &self.data);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.intercept_close(&ctx);
        self.shortcuts(&ctx);
        egui::Panel::top("tabs").show(ui, |ui| self.tab_bar(ui));
        let commands = &mut self.commands;
        egui::CentralPanel::default().show(ui, |ui| match self.state.tab {
            Tab::Train => self.train.ui(ui, &mut self.state, &mut self.data, commands),
            Tab::Runs => {
                let live = live_run_dir(&self.train).filter(|_| self.train.is_running());
                let teacher = self.data.teacher_panel.quality();
                self.runs.ui(ui, &mut self.state, live.as_deref(), teacher, commands);
            }
            Tab::Browse => self.browse.ui(ui, &mut self.state, &self.data, &self.runs.entries),
        });
        if self.closing {
            egui::Modal::new(egui::Id::unique("closing")).show(&ctx, |ui| {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("stopping the run and writing its checkpoint…");
                });
            });
        }
        self.question_ui(&ctx);
        self.apply_commands(&ctx);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if let Ok(json) = serde_json::to_string(&self.state) {
            storage.set_string(eframe::APP_KEY, json);
        }
    }

    /// The window is gone (closed after the question, or by the system): a run still training
    /// stops cleanly, with a checkpoint.
    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.train.shutdown();
    }
}

/// The Help menu: the keyboard shortcuts, the version, and where the documentation is.
fn help_menu_ui(ui: &mut egui::Ui, commands: &mut CommandQueue) {
    ui.strong("Keyboard shortcuts");
    egui::Grid::new("shortcuts").num_columns(2).show(ui, |ui| {
        for (keys, what) in SHORTCUTS {
            ui.monospace(keys);
            ui.label(what);
            ui.end_row();
        }
    });
    ui.label("Right-click a plot of the Train tab to export it as PNG or CSV.");
    ui.separator();
    ui.label(format!("segdistill {}", env!("CARGO_PKG_VERSION")));
    // The documentation travels with the source this build came from.
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    if docs.join("app.md").is_file() {
        ui.label(format!("Documentation: {}", docs.join("app.md").display()));
        if ui.button("Open the documentation folder").clicked() {
            commands.push(Command::OpenFolder(docs));
            ui.close();
        }
    } else {
        ui.label("Documentation: docs/app.md in segdistill's source");
    }
}

/// `<name>` of a run folder, for messages.
pub fn run_name(dir: &Path) -> String {
    dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}
