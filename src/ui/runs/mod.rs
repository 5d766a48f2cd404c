//! The Runs tab: every run under the runs folder with its status (Resume on stopped runs), the
//! comparison table (sortable, Δ against a chosen completed no-distillation baseline, speed
//! measured once per architecture and size, Measure again, CSV export), overlaid curves of any metric, Export report with
//! progress, and the studies of the runs folder (`crate::ui::study`). Scans, measurements and the report run in the background; buttons push commands.
//! This file holds the tab's state and its background jobs; the drawing is in `view`, `table`
//! and `curves`.

mod columns;
mod curves;
mod entries;
mod table;
mod table_actions;
mod view;

pub use columns::{Column, Metric};
pub use entries::{RunEntry, scan_runs};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::jobs::{Job, Poll, take_finished};
use super::state::AppState;
use super::widgets::PathField;
use crate::distill::teacher_cache::manifest::{self, CacheFolder};
use crate::report::table::{Measure, Row, can_be_baseline, default_baselines};
use crate::train::config::default_teacher_cache_root;
use crate::ui::study::{NewStudyForm, StudyQueue, StudyView, scan_studies};
use crate::util::fmt::human_bytes;

/// Export report in the background, with its current stage.
struct ReportJob {
    job: Job<Result<PathBuf, String>>,
    stage: Arc<Mutex<String>>,
}

pub struct RunsTab {
    pub entries: Vec<RunEntry>,
    pub selected: BTreeSet<PathBuf>,
    scan: Option<Job<(Vec<RunEntry>, Vec<CacheFolder>, Vec<StudyView>)>>,
    /// The study folders of the runs folder (listed by each scan), and the New study form.
    pub studies: Vec<StudyView>,
    pub new_study: NewStudyForm,
    /// The study the app trains cell after cell (started from the New study form).
    pub study_queue: Option<StudyQueue>,
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
    /// The table's Measure again and Export CSV.
    table_actions: table_actions::TableActions,
}

impl Default for RunsTab {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            selected: BTreeSet::new(),
            scan: None,
            studies: Vec::new(),
            new_study: NewStudyForm::default(),
            study_queue: None,
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
            table_actions: Default::default(),
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
                (scan_runs(&dir, measure), caches, scan_studies(&dir))
            }));
            self.last_scan = Some(Instant::now());
        }
        if let Some(job) = &mut self.scan {
            match job.poll() {
                Poll::Running => {}
                Poll::Done((v, caches, studies)) => {
                    self.caches = caches;
                    self.studies = studies;
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
        if self.table_actions.update(ctx, runs_dir, &self.entries) {
            self.last_scan = None; // show the new speed figures
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
        self.studies.clear();
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
        // The report compares against the baselines the table shows (by folder: a baseline
        // outside the selection is added to the report).
        let baselines: BTreeMap<String, PathBuf> = self
            .chosen_baselines(state)
            .into_iter()
            .filter_map(|(model, name)| Some((model, self.entries.iter().find(|e| e.name == name)?.dir.clone())))
            .collect();
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
        let out = state
            .runs_dir
            .join(crate::train::run_folder::EXPORTS_DIR)
            .join(format!("{}.onnx", super::app::run_name(&run)));
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

    /// The entries in the table's order.
    fn sorted(&self, deltas: &BTreeMap<PathBuf, f64>) -> Vec<&RunEntry> {
        columns::sorted(&self.entries, self.sort, deltas)
    }

    /// The names of the runs in the table's current order (tests, and what a user sees).
    pub fn sorted_names(&self) -> Vec<String> {
        self.sorted(&BTreeMap::new()).iter().map(|e| e.name.clone()).collect()
    }
}
