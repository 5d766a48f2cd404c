//! The Runs tab: every run under the runs folder with its status, overlaid curves for the
//! selected ones, the comparison table, and an Export report button. Scans and measurements run
//! in the background.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::Ui;
use egui_plot::{Legend, Line, Plot};

use super::file_dialog::PickKind;
use super::jobs::{Job, Poll};
use super::state::AppState;
use super::widgets::{PathField, duration, error_text, note};
use crate::eval::teacher_quality::TeacherQuality;
use crate::model::{format_params, load_for_inference};
use crate::report::table::{Row, fill_deltas, format_macs, measure};
use crate::train::TrainConfig;
use crate::train::checkpoint::{self, CheckpointState};

/// One run folder as listed.
#[derive(Clone, Debug)]
pub struct RunEntry {
    pub dir: PathBuf,
    pub name: String,
    pub config: TrainConfig,
    pub state: Option<CheckpointState>,
    pub status: String,
    /// Measured when the student weights exist.
    pub row: Option<Row>,
    /// (step, training loss).
    pub steps: Vec<(usize, f64)>,
}

fn load_entry(dir: &Path, measure_models: bool) -> Option<RunEntry> {
    let config = crate::train::run_folder::read_config(dir)?;
    let state = checkpoint::load(&checkpoint::last_path(dir)).ok().map(|c| c.state);
    let status = match &state {
        None => "no checkpoint yet".to_string(),
        Some(s) if s.epoch >= s.config.epochs => "completed".into(),
        Some(s) => format!("stopped after epoch {}/{}", s.epoch, s.config.epochs),
    };
    let steps = crate::report::runs::load(dir).map(|r| r.steps).unwrap_or_default();
    let student = checkpoint::student_path(dir);
    let row = (measure_models && student.is_file())
        .then(|| {
            let loaded = load_for_inference(config.model, &student, &candle_core::Device::Cpu).ok()?;
            let size = config.val_size.unwrap_or(config.size);
            let (macs, ms) = measure(&loaded.model, size, &candle_core::Device::Cpu).ok()?;
            let st = state.as_ref()?;
            Some(Row {
                label: dir.file_name()?.to_string_lossy().into_owned(),
                model: config.model.name().into(),
                mode: config.distill.name().into(),
                miou: st.best.as_ref().map_or(f64::NAN, |b| b.miou),
                delta: None,
                params: loaded.num_params,
                gmacs: macs as f64 / 1e9,
                eval_size: size,
                size_mb: std::fs::metadata(&student).map(|m| m.len() as f64 / 1e6).unwrap_or(f64::NAN),
                ms_per_image: ms,
                train_seconds: Some(st.train_seconds),
            })
        })
        .flatten();
    Some(RunEntry {
        name: dir.file_name()?.to_string_lossy().into_owned(),
        dir: dir.to_path_buf(),
        config,
        state,
        status,
        row,
        steps,
    })
}

/// Every run folder under `runs_dir`, newest first.
pub fn scan_runs(runs_dir: &Path, measure_models: bool) -> Vec<RunEntry> {
    let Ok(rd) = std::fs::read_dir(runs_dir) else { return Vec::new() };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| e.path().join("config.json").is_file())
        .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    let mut entries: Vec<RunEntry> = dirs.iter().filter_map(|(_, d)| load_entry(d, measure_models)).collect();
    let mut rows: Vec<Row> = entries.iter().filter_map(|e| e.row.clone()).collect();
    fill_deltas(&mut rows);
    for e in &mut entries {
        if let Some(r) = &mut e.row {
            r.delta = rows.iter().find(|x| x.label == r.label).and_then(|x| x.delta);
        }
    }
    entries
}

#[derive(Default)]
pub struct RunsTab {
    pub entries: Vec<RunEntry>,
    pub selected: BTreeSet<PathBuf>,
    scan: Option<Job<Vec<RunEntry>>>,
    last_scan: Option<Instant>,
    report: Option<Job<Result<PathBuf, String>>>,
    report_result: Option<Result<PathBuf, String>>,
    /// Whether the first non-empty scan chose the initial selection.
    preselected: bool,
    /// The runs folder as typed or picked (applied when it changes).
    runs_dir_text: Option<String>,
    runs_dir_field: PathField,
}

/// How many runs the first scan selects.
const INITIAL_SELECTION: usize = 4;

impl RunsTab {
    /// Rescans when asked, or every 15 s while the tab is visible.
    pub fn update(&mut self, ctx: &egui::Context, runs_dir: &Path, visible: bool, force: bool) {
        let stale = self.last_scan.is_none_or(|t| t.elapsed() > Duration::from_secs(15));
        if self.scan.is_none() && (force || (visible && stale)) {
            let dir = runs_dir.to_path_buf();
            self.scan = Some(Job::spawn("scan runs", ctx, move |_| scan_runs(&dir, true)));
            self.last_scan = Some(Instant::now());
        }
        if let Some(job) = &mut self.scan {
            match job.poll() {
                Poll::Running => {}
                Poll::Done(v) => {
                    if !self.preselected {
                        // A first look overlays the most recent runs rather than an empty chart.
                        self.selected = v.iter().take(INITIAL_SELECTION).map(|e| e.dir.clone()).collect();
                        self.preselected = !v.is_empty();
                    }
                    self.entries = v;
                    self.scan = None;
                }
                Poll::Failed => self.scan = None,
            }
        }
        if let Some(job) = &mut self.report {
            match job.poll() {
                Poll::Running => {}
                Poll::Done(r) => {
                    self.report_result = Some(r);
                    self.report = None;
                }
                Poll::Failed => {
                    self.report_result = Some(Err("the report crashed".into()));
                    self.report = None;
                }
            }
        }
    }

    /// Draws the tab; true when the runs folder changed (the caller rescans).
    /// `teacher`: the Train tab's teacher, when evaluated on its dataset (the table's first row).
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        state: &mut AppState,
        live_run: Option<&Path>,
        teacher: Option<&TeacherQuality>,
    ) -> bool {
        let changed = self.runs_dir_ui(ui, state);
        ui.horizontal(|ui| {
            if ui.add_enabled(self.scan.is_none(), egui::Button::new("Refresh")).clicked() {
                self.last_scan = None;
            }
            if self.scan.is_some() {
                ui.spinner();
            }
            ui.separator();
            let can_export = !self.selected.is_empty() && self.report.is_none();
            if ui
                .add_enabled(can_export, egui::Button::new("Export report"))
                .on_hover_text("report.md with the table, curves and overlays of the selected runs")
                .clicked()
            {
                self.export(ui.ctx(), state);
            }
            if self.report.is_some() {
                ui.spinner();
                ui.label("writing the report…");
            }
        });
        match &self.report_result {
            Some(Ok(p)) => note(ui, format!("report written to {}", p.display())),
            Some(Err(e)) => error_text(ui, e.clone()),
            None => {}
        }
        if self.entries.is_empty() {
            note(ui, "No runs yet: start one in the Train tab.");
            return changed;
        }
        self.table_ui(ui, live_run, teacher);
        ui.separator();
        self.curves_ui(ui);
        changed
    }

    /// The runs folder, shown whole and changeable; stored absolute.
    fn runs_dir_ui(&mut self, ui: &mut Ui, state: &mut AppState) -> bool {
        let text = self.runs_dir_text.get_or_insert_with(|| state.runs_dir.display().to_string());
        let mut changed = false;
        ui.horizontal(|ui| {
            ui.label("Runs folder");
            if self.runs_dir_field.ui(ui, "runs_dir", text, PickKind::Folder, "folder holding the run folders")
                && !text.trim().is_empty()
            {
                state.runs_dir = crate::util::fs::absolute(Path::new(text.trim()));
                self.entries.clear();
                self.selected.clear();
                self.last_scan = None;
                changed = true;
            }
        });
        changed
    }

    fn export(&mut self, ctx: &egui::Context, state: &AppState) {
        let dirs: Vec<PathBuf> = self.selected.iter().cloned().collect();
        let out = state.runs_dir.join("report");
        let teacher = state.train.teacher().filter(|(_, p)| p.is_file());
        self.report_result = None;
        self.report = Some(Job::spawn("report", ctx, move |_| {
            let opts = crate::report::ReportOptions {
                out,
                teacher_model: teacher.as_ref().map(|(k, _)| *k),
                teacher_weights: teacher.map(|(_, p)| p),
                overlays: 3,
                device: candle_core::Device::Cpu,
            };
            crate::report::write(&dirs, &opts, &|_| {}).map(|f| f.markdown).map_err(|e| format!("{e:#}"))
        }));
    }

    fn table_ui(&mut self, ui: &mut Ui, live_run: Option<&Path>, teacher: Option<&TeacherQuality>) {
        egui::ScrollArea::horizontal().id_salt("runs_table_scroll").show(ui, |ui| {
            egui::Grid::new("runs_table").striped(true).num_columns(13).show(ui, |ui| {
                for h in [
                    "",
                    "run",
                    "model",
                    "mode",
                    "status",
                    "mIoU",
                    "Δ mIoU",
                    "params",
                    "MACs",
                    "ms/image",
                    "train time",
                    "score",
                    "",
                ] {
                    ui.label(egui::RichText::new(h).strong());
                }
                ui.end_row();
                if let Some(t) = teacher {
                    teacher_row_ui(ui, t);
                }
                for e in &self.entries {
                    let mut on = self.selected.contains(&e.dir);
                    if ui.checkbox(&mut on, "").changed() {
                        if on {
                            self.selected.insert(e.dir.clone());
                        } else {
                            self.selected.remove(&e.dir);
                        }
                    }
                    ui.label(&e.name);
                    ui.label(e.config.model.name());
                    ui.label(e.config.distill.name());
                    let running = live_run == Some(e.dir.as_path());
                    ui.label(if running { "running" } else { e.status.as_str() });
                    let best = e.state.as_ref().and_then(|s| s.best.as_ref()).map(|b| b.miou);
                    ui.label(best.map_or("—".into(), |m| format!("{m:.4}")));
                    match &e.row {
                        Some(r) => {
                            ui.label(r.delta.map_or("—".into(), |d| format!("{d:+.4}")));
                            ui.label(format_params(r.params));
                            ui.label(format!("{} @ {}", format_macs(r.gmacs), r.eval_size));
                            ui.label(format!("{:.2}", r.ms_per_image));
                            ui.label(r.train_seconds.map_or("—".into(), duration));
                            ui.label(format!("{:.4}", r.score()));
                        }
                        None => {
                            for _ in 0..6 {
                                ui.label("—");
                            }
                        }
                    }
                    ui.label(egui::RichText::new(e.dir.display().to_string()).weak().small());
                    ui.end_row();
                }
            });
        });
    }

    fn curves_ui(&self, ui: &mut Ui) {
        let chosen: Vec<&RunEntry> = self.entries.iter().filter(|e| self.selected.contains(&e.dir)).collect();
        if chosen.is_empty() {
            note(ui, "Select runs to overlay their curves.");
            return;
        }
        let w = ui.available_width() / 2.0 - 8.0;
        let h = ui.available_height().max(160.0);
        let miou: Vec<(String, Vec<[f64; 2]>)> = chosen
            .iter()
            .map(|e| {
                let pts = e
                    .state
                    .as_ref()
                    .map(|s| s.history.iter().map(|r| [(r.epoch + 1) as f64, r.miou]).collect())
                    .unwrap_or_default();
                (e.name.clone(), pts)
            })
            .collect();
        let loss: Vec<(String, Vec<[f64; 2]>)> = chosen
            .iter()
            .map(|e| {
                let smooth = crate::report::plots::ema(&e.steps.iter().map(|s| s.1).collect::<Vec<_>>(), 0.1);
                (e.name.clone(), e.steps.iter().zip(smooth).map(|(s, v)| [s.0 as f64, v]).collect())
            })
            .collect();
        ui.horizontal(|ui| {
            Plot::new("runs_loss")
                .width(w)
                .height(h)
                .legend(Legend::default())
                .x_axis_label("step")
                .y_axis_label("training loss (EMA 0.1)")
                .show(ui, |p| {
                    for (name, pts) in loss {
                        p.line(Line::new(name, pts));
                    }
                });
            Plot::new("runs_miou")
                .width(w)
                .height(h)
                .legend(Legend::default())
                .x_axis_label("epoch")
                .y_axis_label("val mIoU")
                .include_y(0.0)
                .show(ui, |p| {
                    for (name, pts) in miou {
                        p.line(Line::new(name, pts));
                    }
                });
        });
    }
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
