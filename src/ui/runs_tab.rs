//! The Runs tab: every run under the runs folder with its status (Resume on stopped runs), the
//! comparison table (sortable, Δ against a chosen completed no-distillation baseline, speed
//! measured once per run and stored), overlaid curves of any metric, and Export report with
//! progress. Scans, measurements and the report run in the background; buttons push commands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui::Ui;

use super::commands::{Command, CommandQueue};
use super::file_dialog::PickKind;
use super::jobs::{Job, Poll, take_finished};
use super::plots::{CurvePlot, Series, XAxis, run_color};
use super::state::AppState;
use super::train_tab::describe_state;
use super::widgets::{PathField, error_text, note};
use crate::eval::teacher_quality::TeacherQuality;
use crate::model::format_params;
use crate::report::table::{
    Measure, Row, can_be_baseline, default_baselines, fill_deltas, format_macs, student_row_when, train_time,
};
use crate::distill::teacher_cache::manifest::{self, CacheFolder};
use crate::train::TrainConfig;
use crate::train::config::default_teacher_cache_root;
use crate::util::fmt::human_bytes;
use crate::train::checkpoint::{self, CheckpointState};
use crate::train::events::StepMetrics;

/// One run folder as listed.
#[derive(Clone, Debug)]
pub struct RunEntry {
    pub dir: PathBuf,
    pub name: String,
    pub config: TrainConfig,
    pub state: Option<CheckpointState>,
    pub status: String,
    /// Stopped or interrupted with a checkpoint: Resume continues it.
    pub resumable: bool,
    /// The table row, when the student weights exist (speed read from `<run>/speed.json`,
    /// measured there once).
    pub row: Option<Row>,
    /// Every training step's losses (metrics.csv).
    pub steps: Vec<StepMetrics>,
    /// Whether the run has evaluated student weights (student.safetensors).
    pub has_student: bool,
}

/// `measure`: whether a speed not stored yet may be measured now (not while training runs).
fn load_entry(dir: &Path, measure: Measure) -> Option<RunEntry> {
    let config = crate::train::run_folder::read_config(dir)?;
    let state = checkpoint::load_state(&checkpoint::last_path(dir)).ok();
    let (status, resumable) = describe_state(&config, state.as_ref());
    let steps = crate::report::runs::saved_steps(dir, state.as_ref().map_or(0, |s| s.step));
    let row = crate::report::runs::load(dir)
        .ok()
        .and_then(|run| student_row_when(&run, &candle_core::Device::Cpu, measure).ok().flatten());
    Some(RunEntry {
        name: super::app::run_name(dir),
        dir: dir.to_path_buf(),
        config,
        state,
        status,
        resumable,
        row,
        steps,
        has_student: checkpoint::student_path(dir).is_file(),
    })
}

/// Every run folder under `runs_dir`, newest first.
pub fn scan_runs(runs_dir: &Path, measure: Measure) -> Vec<RunEntry> {
    let Ok(rd) = std::fs::read_dir(runs_dir) else { return Vec::new() };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| e.path().join("config.json").is_file())
        .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.iter().filter_map(|(_, d)| load_entry(d, measure)).collect()
}

/// A column the table sorts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Run,
    Model,
    Mode,
    Status,
    Miou,
    Delta,
    Params,
    Macs,
    Ms,
    TrainTime,
    Score,
}

impl Column {
    const ALL: [Column; 11] = [
        Self::Run,
        Self::Model,
        Self::Mode,
        Self::Status,
        Self::Miou,
        Self::Delta,
        Self::Params,
        Self::Macs,
        Self::Ms,
        Self::TrainTime,
        Self::Score,
    ];

    fn title(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Model => "model",
            Self::Mode => "mode",
            Self::Status => "status",
            Self::Miou => "mIoU",
            Self::Delta => "Δ mIoU",
            Self::Params => "params",
            Self::Macs => "MACs",
            Self::Ms => "ms/image",
            Self::TrainTime => "train time",
            Self::Score => "score",
        }
    }

    fn tooltip(self) -> &'static str {
        match self {
            Self::Run => "the run's folder name",
            Self::Model => "the student architecture",
            Self::Mode => "distillation mode: none, response (logits), feature, combined",
            Self::Status => "completed, stopped after an epoch (Resume continues it), or running",
            Self::Miou => "best validation mIoU over the run's evaluations",
            Self::Delta => "mIoU minus the chosen baseline's: a completed no-distillation run of the same student",
            Self::Params => "trainable parameters of the student",
            Self::Macs => "multiply-adds of one forward pass at the evaluation size (S²)",
            Self::Ms => {
                "median CPU forward time at batch 1 after 2 warm-up passes, 10 timed passes, measured once per run \
                 and stored in its speed.json (hover a value for the fastest and slowest pass)"
            }
            Self::TrainTime => {
                "wall-clock training time over all sessions; the teacher cache's one-off build is shown apart"
            }
            Self::Score => "the lab's score: 4·mIoU / (1 + parameters in millions); higher is better",
        }
    }
}

/// A metric the curves can overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    TrainLoss,
    Ce,
    Kd,
    Feature,
    ValLoss,
    Miou,
    PixelAccuracy,
    ClassIou(usize),
}

impl Metric {
    fn label(self, class_names: &[String]) -> String {
        match self {
            Self::TrainLoss => "training loss".into(),
            Self::Ce => "CE loss".into(),
            Self::Kd => "KD loss".into(),
            Self::Feature => "feature loss".into(),
            Self::ValLoss => "val loss".into(),
            Self::Miou => "val mIoU".into(),
            Self::PixelAccuracy => "pixel accuracy".into(),
            Self::ClassIou(c) => format!("IoU of {}", class_names.get(c).map_or("?", String::as_str)),
        }
    }

    fn per_step(self) -> bool {
        matches!(self, Self::TrainLoss | Self::Ce | Self::Kd | Self::Feature)
    }

    fn series(self, e: &RunEntry) -> Vec<[f64; 2]> {
        let step = |f: &dyn Fn(&StepMetrics) -> Option<f64>| -> Vec<[f64; 2]> {
            e.steps.iter().filter_map(|s| f(s).map(|v| [s.step as f64, v])).collect()
        };
        let history = e.state.as_ref().map(|s| s.history.as_slice()).unwrap_or_default();
        let epoch = |f: &dyn Fn(&crate::train::checkpoint::EpochRecord) -> Option<f64>| -> Vec<[f64; 2]> {
            history.iter().filter_map(|r| f(r).map(|v| [(r.epoch + 1) as f64, v])).collect()
        };
        match self {
            Self::TrainLoss => step(&|s| Some(s.loss)),
            Self::Ce => step(&|s| Some(s.ce)),
            Self::Kd => step(&|s| s.kd),
            Self::Feature => step(&|s| s.feature),
            Self::ValLoss => epoch(&|r| Some(r.val_loss)),
            Self::Miou => epoch(&|r| Some(r.miou)),
            Self::PixelAccuracy => epoch(&|r| Some(r.pixel_acc)),
            Self::ClassIou(c) => epoch(&|r| r.iou.get(c).copied().flatten()),
        }
    }
}

/// Export report in the background, with its current stage.
struct ReportJob {
    job: Job<Result<PathBuf, String>>,
    stage: Arc<Mutex<String>>,
}

pub struct RunsTab {
    pub entries: Vec<RunEntry>,
    pub selected: BTreeSet<PathBuf>,
    scan: Option<Job<(Vec<RunEntry>, Vec<CacheFolder>)>>,
    /// The teacher-cache folders of the runs folder (listed by each scan), and their removal.
    pub caches: Vec<CacheFolder>,
    prune: Option<Job<Result<String, String>>>,
    prune_result: Option<Result<String, String>>,
    scan_error: Option<String>,
    last_scan: Option<Instant>,
    report: Option<ReportJob>,
    report_result: Option<Result<PathBuf, String>>,
    onnx: Option<Job<Result<PathBuf, String>>>,
    onnx_result: Option<Result<PathBuf, String>>,
    /// Whether the first non-empty scan chose the initial selection.
    preselected: bool,
    /// The runs folder as typed or picked (applied when it changes).
    runs_dir_text: Option<String>,
    runs_dir_field: PathField,
    /// Column and direction (true: ascending).
    pub sort: (Column, bool),
    /// The metrics of the two curve plots.
    pub metrics: [Metric; 2],
}

impl Default for RunsTab {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            selected: BTreeSet::new(),
            scan: None,
            caches: Vec::new(),
            prune: None,
            prune_result: None,
            scan_error: None,
            last_scan: None,
            report: None,
            report_result: None,
            onnx: None,
            onnx_result: None,
            preselected: false,
            runs_dir_text: None,
            runs_dir_field: PathField::default(),
            sort: (Column::Run, true),
            metrics: [Metric::TrainLoss, Metric::Miou],
        }
    }
}

/// How many runs the first scan selects.
const INITIAL_SELECTION: usize = 4;

impl RunsTab {
    /// Rescans when asked, or every 15 s while the tab is visible; takes finished work. While
    /// `training`, speeds not stored yet are left unmeasured (the machine is busy): they are
    /// measured at the first scan after the run ends.
    pub fn update(&mut self, ctx: &egui::Context, runs_dir: &Path, visible: bool, force: bool, training: bool) {
        let stale = self.last_scan.is_none_or(|t| t.elapsed() > Duration::from_secs(15));
        if self.scan.is_none() && (force || (visible && stale)) {
            let dir = runs_dir.to_path_buf();
            let measure = if training { Measure::StoredOnly } else { Measure::IfMissing };
            self.scan = Some(Job::spawn("scanning the runs", ctx, move |_| {
                let caches = manifest::list(&default_teacher_cache_root(&dir)).unwrap_or_default();
                (scan_runs(&dir, measure), caches)
            }));
            self.last_scan = Some(Instant::now());
        }
        if let Some(job) = &mut self.scan {
            match job.poll() {
                Poll::Running => {}
                Poll::Done((v, caches)) => {
                    self.caches = caches;
                    if !self.preselected {
                        // A first look overlays the most recent runs rather than an empty chart.
                        self.selected = v.iter().take(INITIAL_SELECTION).map(|e| e.dir.clone()).collect();
                        self.preselected = !v.is_empty();
                    }
                    self.entries = v;
                    self.scan = None;
                    self.scan_error = None;
                }
                Poll::Failed(why) => {
                    self.scan_error = Some(why);
                    self.scan = None;
                }
            }
        }
        if let Some(result) = take_finished(&mut self.prune) {
            self.prune_result = Some(result);
            self.last_scan = None; // list what is left at the next frame
        }
        if let Some(result) = take_finished(&mut self.onnx) {
            self.onnx_result = Some(result);
        }
        if let Some(r) = &mut self.report {
            match r.job.poll() {
                Poll::Running => ctx.request_repaint_after(Duration::from_millis(200)),
                Poll::Done(result) => {
                    self.report_result = Some(result);
                    self.report = None;
                }
                Poll::Failed(why) => {
                    self.report_result = Some(Err(why));
                    self.report = None;
                }
            }
        }
    }

    /// Whether a report or an ONNX file is being written.
    pub fn is_exporting(&self) -> bool {
        self.report.is_some() || self.onnx.is_some()
    }

    /// Forgets the listed runs (the runs folder changed).
    pub fn forget_runs(&mut self) {
        self.entries.clear();
        self.selected.clear();
        self.preselected = false;
        self.last_scan = None;
        self.runs_dir_text = None;
    }

    /// Writes report.md for the selected runs in the background (the app applies
    /// [`Command::ExportReport`] here).
    pub fn export(&mut self, ctx: &egui::Context, state: &AppState) {
        if self.report.is_some() || self.selected.is_empty() {
            return;
        }
        // The report compares against the baselines the table shows.
        let baselines = self.chosen_baselines(state);
        let dirs: Vec<PathBuf> = self.selected.iter().cloned().collect();
        let out = state.runs_dir.join("report");
        let teacher = state.train.teacher().filter(|(_, p)| p.is_file());
        let stage = Arc::new(Mutex::new("starting".to_string()));
        let stage_w = stage.clone();
        self.report_result = None;
        let job = Job::spawn("the report", ctx, move |_| {
            let opts = crate::report::ReportOptions {
                baselines,
                out,
                teacher_model: teacher.as_ref().map(|(k, _)| *k),
                teacher_weights: teacher.map(|(_, p)| p),
                overlays: 3,
                device: candle_core::Device::Cpu,
            };
            let progress = |s: &str| {
                if let Ok(mut g) = stage_w.lock() {
                    *g = s.to_string();
                }
            };
            crate::report::write(&dirs, &opts, &progress).map(|f| f.markdown).map_err(|e| format!("{e:#}"))
        });
        self.report = Some(ReportJob { job, stage });
    }

    /// Writes a run's best student as `<runs>/exports/<run>.onnx` in the background (dynamic
    /// input, `segdistill export` for the other options); the app applies
    /// [`Command::ExportOnnx`] here.
    pub fn export_onnx(&mut self, ctx: &egui::Context, run: &Path, state: &AppState) {
        if self.onnx.is_some() {
            return;
        }
        let run = run.to_path_buf();
        let out = state.runs_dir.join("exports").join(format!("{}.onnx", super::app::run_name(&run)));
        self.onnx_result = None;
        self.onnx = Some(Job::spawn("the ONNX export", ctx, move |_| {
            // The best weights are checked against the run's record (and repaired) off the UI thread.
            let best = crate::train::best_weights::best_student(&run).map_err(|e| format!("{e:#}"))?;
            let options = crate::model::onnx::ExportOptions::default();
            crate::model::onnx::export_file(best.config.model, &best.weights, &out, &options)
                .map(|done| done.path)
                .map_err(|e| format!("{e:#}"))
        }));
    }

    /// Removes the orphaned teacher-cache folders of the runs folder in the background (the app
    /// applies [`Command::PruneTeacherCaches`] here); the next scan lists what is left.
    pub fn prune_caches(&mut self, ctx: &egui::Context, runs_dir: &Path) {
        if self.prune.is_some() {
            return;
        }
        let root = default_teacher_cache_root(runs_dir);
        self.prune_result = None;
        self.prune = Some(Job::spawn("removing orphaned teacher caches", ctx, move |_| {
            let pruned = manifest::prune_orphaned(&root, false).map_err(|e| e.to_string())?;
            let freed: u64 = pruned.iter().map(|(f, _)| f.bytes).sum();
            Ok(format!("removed {} orphaned teacher cache(s), {} freed", pruned.len(), human_bytes(freed)))
        }));
        self.caches.retain(|c| c.orphaned_because().is_none());
    }

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
            if self.runs_dir_field.ui(ui, "runs_dir", text, PickKind::Folder, "folder holding the run folders")
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
                ui.label(format!("{} orphaned ({})", orphaned.len(), human_bytes(orphaned_bytes))).on_hover_text(why.join("\n"));
                if ui
                    .add_enabled(self.prune.is_none(), egui::Button::new("Remove orphaned caches"))
                    .on_hover_text("their teacher file changed or is gone, or their dataset is gone: no run can use them")
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

    /// The baseline of each student: the user's choice where it is still a completed no-KD run
    /// listed here, else the most recent such run. Model name → run name.
    pub fn chosen_baselines(&self, state: &AppState) -> BTreeMap<String, String> {
        let rows: Vec<Row> = self.entries.iter().filter_map(|e| e.row.clone()).collect();
        let mut chosen = default_baselines(&rows);
        for (model, dir) in &state.baselines {
            let name = super::app::run_name(dir);
            if rows.iter().any(|r| &r.model == model && r.label == name && can_be_baseline(r)) {
                chosen.insert(model.clone(), name);
            }
        }
        chosen
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

    /// The entries in the table's order.
    fn sorted(&self, deltas: &BTreeMap<PathBuf, f64>) -> Vec<&RunEntry> {
        let (column, ascending) = self.sort;
        let num = |e: &RunEntry| -> f64 {
            let row = e.row.as_ref();
            match column {
                Column::Miou => e.state.as_ref().and_then(|s| s.best.as_ref()).map_or(f64::NAN, |b| b.miou),
                Column::Delta => deltas.get(&e.dir).copied().unwrap_or(f64::NAN),
                Column::Params => row.map_or(f64::NAN, |r| r.params as f64),
                Column::Macs => row.map_or(f64::NAN, |r| r.gmacs),
                Column::Ms => row.map_or(f64::NAN, |r| r.ms_per_image),
                Column::TrainTime => e.state.as_ref().map_or(f64::NAN, |s| s.train_seconds),
                Column::Score => row.map_or(f64::NAN, |r| r.score()),
                _ => 0.0,
            }
        };
        let text = |e: &RunEntry| -> String {
            match column {
                Column::Run => e.name.clone(),
                Column::Model => e.config.model.name().to_string(),
                Column::Mode => e.config.distill.name().to_string(),
                Column::Status => e.status.clone(),
                _ => String::new(),
            }
        };
        let mut v: Vec<&RunEntry> = self.entries.iter().collect();
        v.sort_by(|a, b| {
            let (na, nb) = (num(a), num(b));
            // Unknown values last in either direction.
            let order = match (na.is_nan(), nb.is_nan()) {
                (true, false) => return std::cmp::Ordering::Greater,
                (false, true) => return std::cmp::Ordering::Less,
                _ => na.total_cmp(&nb).then_with(|| text(a).cmp(&text(b))),
            };
            if ascending { order } else { order.reverse() }
        });
        v
    }

    /// The names of the runs in the table's current order (tests, and what a user sees).
    pub fn sorted_names(&self) -> Vec<String> {
        self.sorted(&BTreeMap::new()).iter().map(|e| e.name.clone()).collect()
    }

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

    fn table_ui(
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

    fn curves_ui(&mut self, ui: &mut Ui, smoothing: &mut f64) {
        let chosen: Vec<&RunEntry> = self.entries.iter().filter(|e| self.selected.contains(&e.dir)).collect();
        if chosen.is_empty() {
            note(ui, "Select runs to overlay their curves.");
            return;
        }
        let class_names: Vec<String> = chosen
            .iter()
            .filter_map(|e| e.state.as_ref()?.history.last().map(|r| r.iou.len()))
            .max()
            .map(|n| crate::data::ClassSet::for_num_classes(n).names)
            .unwrap_or_default();
        let mut metrics = self.metrics;
        ui.horizontal(|ui| {
            for (k, metric) in metrics.iter_mut().enumerate() {
                let label = ui.label(if k == 0 { "left plot" } else { "right plot" });
                egui::ComboBox::from_id_salt(("runs_metric", k))
                    .selected_text(metric.label(&class_names))
                    .show_ui(ui, |ui| {
                        let base = [
                            Metric::TrainLoss,
                            Metric::Ce,
                            Metric::Kd,
                            Metric::Feature,
                            Metric::ValLoss,
                            Metric::Miou,
                            Metric::PixelAccuracy,
                        ];
                        let classes = (0..class_names.len()).map(Metric::ClassIou);
                        for m in base.into_iter().chain(classes) {
                            ui.selectable_value(metric, m, m.label(&class_names));
                        }
                    })
                    .response
                    .labelled_by(label.id);
            }
            ui.separator();
            // The same setting as the Train tab's slider.
            let label = ui.label("smoothing");
            ui.add(egui::Slider::new(smoothing, 0.0..=0.99)).labelled_by(label.id);
        });
        self.metrics = metrics;
        let smoothing = *smoothing;
        let w = ui.available_width() / 2.0 - 8.0;
        let size = egui::vec2(w, ui.available_height().max(160.0));
        ui.horizontal(|ui| {
            for (k, metric) in self.metrics.iter().enumerate() {
                let series: Vec<Series> =
                    chosen.iter().map(|e| Series::new(e.name.clone(), metric.series(e), run_color(&e.name))).collect();
                let label = metric.label(&class_names);
                let plot = CurvePlot {
                    id: if k == 0 { "runs_left" } else { "runs_right" },
                    x: if metric.per_step() { XAxis::Step } else { XAxis::Epoch },
                    y_label: &label,
                    y_range: (!metric.per_step() && *metric != Metric::ValLoss).then_some((0.0, 1.0)),
                    size,
                    smoothing: if metric.per_step() { smoothing } else { 0.0 },
                };
                plot.show(ui, &series);
            }
        });
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

/// One run's row after its checkbox.
fn entry_row_ui(
    ui: &mut Ui,
    e: &RunEntry,
    running: bool,
    delta: Option<f64>,
    is_baseline: bool,
    commands: &mut CommandQueue,
) {
    ui.horizontal(|ui| {
        let c = run_color(&e.name);
        super::widgets::swatch(ui, [c.r(), c.g(), c.b()]);
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
