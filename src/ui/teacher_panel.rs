//! The teacher beside its weights field: its architecture, a finished run as the teacher, and its
//! quality on the dataset's validation split (the lab's Step 1) — Evaluate runs in the background
//! with progress and Cancel, the result is cached in `<runs>/teacher-eval/` and shown again on
//! later starts, and a teacher near chance gets a warning before Start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use egui::Ui;

use super::commands::{Command, CommandQueue};
use super::jobs::{Job, Poll};
use super::state::AppState;
use super::widgets::{error_text, note};
use crate::data::transforms::Resize;
use crate::diagnostics::teacher_quality::{self, QualityKey, TORCHVISION_RESIZE, TeacherQuality};
use crate::model::ModelKind;
use crate::train::TrainConfig;
use crate::train::run_folder::read_config;

/// A finished run whose best weights can teach.
struct RunTeacher {
    name: String,
    config: TrainConfig,
    weights: PathBuf,
}

/// The runs under `runs_dir` with best weights.
fn runs_with_weights(runs_dir: &Path) -> Vec<RunTeacher> {
    let Ok(dirs) = std::fs::read_dir(runs_dir) else { return Vec::new() };
    let mut runs: Vec<RunTeacher> = dirs
        .flatten()
        .filter_map(|d| {
            let dir = d.path();
            let config = read_config(&dir)?;
            let weights = crate::train::checkpoint::student_path(&dir);
            weights.is_file().then(|| RunTeacher {
                name: d.file_name().to_string_lossy().into_owned(),
                config,
                weights,
            })
        })
        .collect();
    runs.sort_by(|a, b| a.name.cmp(&b.name));
    runs
}

/// How a teacher is evaluated: a run's weights at that run's validation size, any other file as
/// torchvision evaluates its weights (shorter side 520).
fn protocol_for(weights: &Path) -> Resize {
    match weights.parent().and_then(read_config) {
        Some(c) => Resize::ShorterSide(c.val_size.unwrap_or(c.size)),
        None => TORCHVISION_RESIZE,
    }
}

fn describe(resize: Resize) -> String {
    match resize {
        TORCHVISION_RESIZE => "shorter side 520, as torchvision".into(),
        Resize::ShorterSide(s) => format!("shorter side {s}, the run's validation size"),
        Resize::None => "own size".into(),
        Resize::Fixed { width, height } => format!("{width}×{height}"),
    }
}

/// The teacher's own run's evaluation of its weights, when that run measured them as `key`
/// asks: `key.weights` is a run's best weights (`student.safetensors`), and the run validated
/// that architecture on the same dataset folder and split, at the same size, on the whole split
/// (it evaluates each epoch; the best epoch's scores are those of the best weights). `None`
/// otherwise: then only an evaluation here tells.
fn run_evaluation(key: &QualityKey) -> Option<(TeacherQuality, Source)> {
    let dir = key.weights.parent()?;
    if key.weights.file_name()? != crate::train::run_folder::files::STUDENT {
        return None;
    }
    let state = crate::train::checkpoint::load_state(&crate::train::checkpoint::last_path(dir)).ok()?;
    let c = &state.config;
    let same = c.model == key.model
        && crate::util::fs::absolute(&c.data) == key.data
        && c.dataset.is_none_or(|d| Some(d) == key.dataset)
        && c.val_split == key.split
        && Resize::ShorterSide(c.val_size.unwrap_or(c.size)) == key.resize
        && c.val_limit == key.limit;
    let best = state.best.as_ref().filter(|_| same)?;
    let record = state.history.iter().find(|r| r.epoch == best.epoch)?;
    let scored: Option<Vec<crate::metrics::ImageScore>> =
        std::fs::read_to_string(crate::train::run_folder::best_images_path(dir))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
    let quality = TeacherQuality {
        key: key.clone(),
        miou: record.miou,
        pixel_accuracy: record.pixel_acc,
        per_class_iou: record.iou.clone(),
        class_names: crate::data::ClassSet::for_num_classes(record.iou.len()).names,
        images: scored.map_or(0, |s| s.len()),
    };
    Some((quality, Source::OwnRun { run: crate::ui::app::run_name(dir), epoch: best.epoch + 1 }))
}

/// Where the shown figures came from (the hover of the result).
#[derive(Clone, Debug, PartialEq)]
enum Source {
    /// Evaluate, here or at an earlier start (cached in `<runs>/teacher-eval/`).
    EvaluatedHere,
    /// The teacher's own run validated these weights ([`run_evaluation`]).
    OwnRun { run: String, epoch: usize },
}

impl Source {
    fn describe(&self, resize: Resize) -> String {
        match self {
            Self::EvaluatedHere => format!("evaluated here with Evaluate ({})", describe(resize)),
            Self::OwnRun { run, epoch } => format!(
                "measured by its own run {run} at its best epoch ({epoch}), on the same dataset folder, split and \
                 validation size ({}); Evaluate measures it again here",
                describe(resize)
            ),
        }
    }
}

type EvalResult = Result<Option<TeacherQuality>, String>;

/// What the teacher's evaluation key depends on in the form.
#[derive(Clone, Debug, PartialEq)]
struct FormInputs {
    model: ModelKind,
    weights: String,
    data: Option<(PathBuf, crate::data::DatasetKind)>,
}

#[derive(Default)]
pub struct TeacherPanel {
    job: Option<Job<EvalResult>>,
    cancel: Arc<AtomicBool>,
    /// The form values `key` was made from: the key (a file's metadata, a run's config) is
    /// rebuilt only when they change, not every frame.
    inputs: Option<FormInputs>,
    /// The key the shown quality belongs to (looked up in the cache when it changes).
    key: Option<QualityKey>,
    quality: Option<TeacherQuality>,
    source: Option<Source>,
    error: Option<String>,
}

impl TeacherPanel {
    /// The key for the form's teacher on the dataset at `data` (`None` without both).
    fn current_key(state: &AppState, data: Option<(&Path, crate::data::DatasetKind)>) -> Option<QualityKey> {
        let (kind, weights) = state.train.teacher()?;
        let (root, dataset) = data?;
        QualityKey::new(kind, &weights, root, Some(dataset), "val", protocol_for(&weights))
    }

    /// Follows the form: a new teacher or dataset shows its cached quality, if any. Once per frame.
    pub fn update(&mut self, state: &AppState, data: Option<(&Path, crate::data::DatasetKind)>) {
        if let Some(job) = &mut self.job {
            match job.poll() {
                Poll::Running => {}
                Poll::Done(Ok(q)) => {
                    // Cancelled (`None`): what was shown before stays.
                    if q.is_some() {
                        self.quality = q;
                        self.source = Some(Source::EvaluatedHere);
                    }
                    self.job = None;
                }
                Poll::Done(Err(e)) => {
                    self.error = Some(e);
                    self.job = None;
                }
                Poll::Failed(why) => {
                    self.error = Some(why);
                    self.job = None;
                }
            }
        }
        let inputs = FormInputs {
            model: state.train.config.teacher,
            weights: state.train.teacher_weights.clone(),
            data: data.map(|(r, k)| (r.to_path_buf(), k)),
        };
        if self.inputs.as_ref() == Some(&inputs) || self.job.is_some() {
            return;
        }
        self.inputs = Some(inputs);
        let key = Self::current_key(state, data);
        if key != self.key {
            let cache = teacher_quality::cache_dir(&state.runs_dir);
            let cached = key.as_ref().and_then(|k| teacher_quality::cached(&cache, k));
            (self.quality, self.source) = match (cached, &key) {
                (Some(q), _) => (Some(q), Some(Source::EvaluatedHere)),
                (None, Some(k)) => run_evaluation(k).map_or((None, None), |(q, source)| (Some(q), Some(source))),
                (None, None) => (None, None),
            };
            self.error = None;
            self.key = key;
        }
    }

    /// The evaluated quality of the form's current teacher, when known.
    pub fn quality(&self) -> Option<&TeacherQuality> {
        self.quality.as_ref().filter(|q| Some(&q.key) == self.key.as_ref())
    }

    pub fn is_evaluating(&self) -> bool {
        self.job.is_some()
    }

    /// Architecture, "from a run" menu, Evaluate and the result.
    pub fn ui(&mut self, ui: &mut Ui, state: &mut AppState, teacher_needed: bool, commands: &mut CommandQueue) {
        ui.horizontal(|ui| {
            let label = ui.label("Teacher");
            egui::ComboBox::from_id_salt("teacher_model")
                .selected_text(state.train.config.teacher.name())
                .show_ui(ui, |ui| {
                    for kind in ModelKind::ALL {
                        ui.selectable_value(&mut state.train.config.teacher, kind, kind.name());
                    }
                })
                .response
                .labelled_by(label.id)
                .on_hover_text("the teacher's architecture: torchvision's zoo, or any model trained here");
            ui.menu_button("From a run…", |ui| {
                let runs = runs_with_weights(&state.runs_dir);
                if runs.is_empty() {
                    ui.label("no finished runs in the runs folder yet");
                }
                for run in runs {
                    let text = format!("{} ({}, {})", run.name, run.config.model, run.config.distill.name());
                    if ui.button(text).clicked() {
                        state.train.config.teacher = run.config.model;
                        state.train.teacher_weights = run.weights.display().to_string();
                        ui.close();
                    }
                }
            });
        });
        self.evaluate_ui(ui, commands);
        match self.quality() {
            Some(q) if q.near_chance() && teacher_needed => {
                error_text(
                    ui,
                    format!(
                        "this teacher scores near chance (mIoU {:.3} < {:.2}): distilling from it teaches noise. \
                         Train a teacher for this dataset (any model, then \"From a run…\") or pick other weights.",
                        q.miou,
                        q.chance_level()
                    ),
                );
            }
            _ => {}
        }
    }

    fn evaluate_ui(&mut self, ui: &mut Ui, commands: &mut CommandQueue) {
        if let Some(job) = &self.job {
            ui.ctx().request_repaint_after(std::time::Duration::from_millis(100));
            ui.horizontal(|ui| {
                let (done, total) = job.progress.counts();
                let fraction = job.progress.fraction().unwrap_or(0.0);
                ui.add(egui::ProgressBar::new(fraction).text(format!("evaluating the teacher: {done}/{total} images")));
                if ui.button("Cancel").clicked() {
                    commands.push(Command::CancelTeacherEvaluation);
                }
            });
            return;
        }
        ui.horizontal(|ui| {
            let Some(key) = self.key.clone() else {
                note(ui, "choose the teacher's weights and a dataset to evaluate it");
                return;
            };
            let again = self.quality().is_some();
            let text = if again { "Evaluate again" } else { "Evaluate" };
            let hover = format!("validation mIoU, pixel accuracy and per-class IoU ({})", describe(key.resize));
            if ui.button(text).on_hover_text(hover).clicked() {
                commands.push(Command::EvaluateTeacher);
            }
            match self.quality() {
                Some(q) => {
                    let images = if q.images > 0 { format!(" · {} val images", q.images) } else { String::new() };
                    let label = ui
                        .label(format!("teacher mIoU {:.4} · pixel accuracy {:.4}{images}", q.miou, q.pixel_accuracy));
                    if let Some(source) = &self.source {
                        label.on_hover_text(source.describe(q.key.resize));
                    }
                }
                None => note(ui, "not evaluated on this dataset yet"),
            }
        });
        if let Some(e) = &self.error {
            error_text(ui, e.clone());
        }
        if let Some(q) = self.quality() {
            egui::CollapsingHeader::new("per-class IoU").id_salt("teacher_per_class").show(ui, |ui| {
                egui::Grid::new("teacher_iou_grid").num_columns(4).show(ui, |ui| {
                    for (i, iou) in q.per_class_iou.iter().enumerate() {
                        ui.label(q.class_names.get(i).map_or("?", String::as_str));
                        ui.label(iou.map_or("—".into(), |v| format!("{v:.3}")));
                        if i % 2 == 1 {
                            ui.end_row();
                        }
                    }
                });
                note(ui, format!("protocol: {}", describe(q.key.resize)));
            });
        }
    }

    /// Stops an evaluation in progress (what was shown before stays).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Evaluates the form's teacher on the dataset in the background (the app applies
    /// [`Command::EvaluateTeacher`] here); nothing happens without a teacher and a dataset.
    pub fn start(&mut self, ctx: &egui::Context, state: &AppState) {
        let Some(key) = self.key.clone() else { return };
        if self.job.is_some() {
            return;
        }
        self.cancel = Arc::new(AtomicBool::new(false));
        self.error = None;
        let cancel = self.cancel.clone();
        let cache = teacher_quality::cache_dir(&state.runs_dir);
        let device = state.train.config.device;
        self.job = Some(Job::spawn("evaluate teacher", ctx, move |progress| {
            let device = device.resolve().map_err(|e| format!("{e:#}"))?;
            let on_image = |done: usize, total: usize| {
                progress.restart(total as u64);
                progress.add(done as u64);
            };
            teacher_quality::evaluate_teacher(&key, &cache, &device, &on_image, &|| !cancel.load(Ordering::Relaxed))
                .map_err(|e| format!("{e:#}"))
        }));
    }
}
