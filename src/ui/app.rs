//! The main window: state that persists (`AppState`) apart from the panels that draw it, a tab
//! bar, and per-frame draining of background work in `logic` (never blocking).

use eframe::egui;

use super::browse_tab::BrowseTab;
use super::data_panel::DataPanel;
use super::runs_tab::RunsTab;
use super::state::{AppState, Tab};
use super::train_tab::{TrainTab, live_run_dir};

pub struct SegdistillApp {
    /// What is persisted between starts.
    pub state: AppState,
    pub data: DataPanel,
    pub train: TrainTab,
    pub runs: RunsTab,
    pub browse: BrowseTab,
    /// A run finished: refresh the Runs list once.
    rescan_runs: bool,
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
        Self::with_state(state)
    }

    /// The app with given settings (tests, or a fresh start).
    pub fn with_state(state: AppState) -> Self {
        Self {
            state,
            data: DataPanel::default(),
            train: TrainTab::default(),
            runs: RunsTab::default(),
            browse: BrowseTab::default(),
            rescan_runs: true,
        }
    }

    fn tab_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("segdistill");
            ui.separator();
            for tab in Tab::ALL {
                ui.selectable_value(&mut self.state.tab, tab, tab.label());
            }
            if self.train.is_running() {
                ui.separator();
                ui.spinner();
                ui.label("training");
            }
        });
    }
}

impl eframe::App for SegdistillApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let was_running = self.train.is_running();
        self.data.update(&self.state, ctx);
        self.train.update(ctx);
        if let Some((model, weights)) = self.train.take_trained_teacher() {
            self.state.train.teacher_model = model;
            self.state.train.teacher_weights = weights.display().to_string();
        }
        if was_running && !self.train.is_running() {
            self.rescan_runs = true;
        }
        let visible = self.state.tab == Tab::Runs || self.state.tab == Tab::Browse;
        self.runs.update(ctx, &self.state.runs_dir, visible, std::mem::take(&mut self.rescan_runs));
        if self.state.tab == Tab::Browse {
            self.browse.update(ctx, &self.state, &self.data);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::Panel::top("tabs").show(ui, |ui| self.tab_bar(ui));
        egui::CentralPanel::default().show(ui, |ui| match self.state.tab {
            Tab::Train => self.train.ui(ui, &mut self.state, &mut self.data),
            Tab::Runs => {
                let live = live_run_dir(&self.train).filter(|_| self.train.is_running());
                if self.runs.ui(ui, &mut self.state, live.as_deref(), self.data.teacher_panel.quality()) {
                    self.rescan_runs = true;
                }
            }
            Tab::Browse => self.browse.ui(ui, &mut self.state, &self.data, &self.runs.entries),
        });
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if let Ok(json) = serde_json::to_string(&self.state) {
            storage.set_string(eframe::APP_KEY, json);
        }
    }

    /// Closing the window during training stops the run cleanly, with a checkpoint.
    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.train.shutdown();
    }
}
