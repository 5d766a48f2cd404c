//! What the app needs and whether it is there: the dataset (folder field with Browse…, layout,
//! what was found), the teacher and backbone weights; for each a Download with progress and
//! Cancel, and the demo dataset for a first start without VOC. Scans and downloads run in the
//! background.

use std::path::PathBuf;

use egui::Ui;

use super::commands::{Command, CommandQueue, DownloadTarget};
use super::downloads::{DownloadTask, Outcome};
use super::file_dialog::PickKind;
use super::jobs::{Job, Poll};
use super::state::{AppState, DownloadSettings};
use super::weights::{WeightsRow, WeightsSlot, outcome_ui};
use super::widgets::{PathField, error_text, note};
use crate::data::demo::{DemoConfig, generate};
use crate::data::download::{self, Checksum, HttpOptions};
use crate::data::{ClassSet, Dataset, DatasetKind};

/// What a dataset folder holds.
#[derive(Clone, Debug)]
pub struct DatasetInfo {
    pub kind: DatasetKind,
    pub root: PathBuf,
    pub train: usize,
    pub val: usize,
    pub train_listed: usize,
    pub val_listed: usize,
    pub is_demo: bool,
    pub classes: ClassSet,
}

fn scan(path: PathBuf, kind: Option<DatasetKind>) -> Result<DatasetInfo, String> {
    let count = |split: &str| -> Result<(usize, usize, Dataset), String> {
        let mut ds = Dataset::open(&path, kind, split).map_err(|e| e.to_string())?;
        let listed = ds.len();
        ds.retain_present();
        Ok((ds.len(), listed, ds))
    };
    let (train, train_listed, ds) = count("train")?;
    let (val, val_listed, _) = count("val")?;
    Ok(DatasetInfo {
        kind: ds.kind,
        is_demo: crate::data::demo::is_demo(&ds.root),
        root: ds.root.clone(),
        classes: ds.classes().clone(),
        train,
        val,
        train_listed,
        val_listed,
    })
}

#[derive(Default)]
pub struct DataPanel {
    field: PathField,
    voc_task: Option<DownloadTask>,
    voc_outcome: Option<Outcome>,
    teacher: WeightsRow,
    backbone: WeightsRow,
    /// The teacher's architecture, runs as teachers, and its evaluated quality.
    pub teacher_panel: super::teacher_panel::TeacherPanel,
    scan: Option<Job<Result<DatasetInfo, String>>>,
    demo: Option<Job<Result<PathBuf, String>>>,
    /// The last scan's result, for the current path.
    pub info: Option<Result<DatasetInfo, String>>,
    scanned_for: Option<(String, Option<DatasetKind>)>,
}

impl DataPanel {
    /// Starts a scan when the configured path changed and takes what background work finished
    /// (scans, downloads, the demo dataset); call once per frame.
    pub fn update(&mut self, state: &mut AppState, ctx: &egui::Context) {
        self.take_finished_work(state);
        let key = (state.data_dir.clone(), state.dataset_kind);
        if self.scanned_for.as_ref() != Some(&key) {
            self.scanned_for = Some(key);
            self.info = None;
            self.scan = state.data_path().map(|p| {
                let kind = state.dataset_kind;
                Job::spawn("scan dataset", ctx, move |_| scan(p, kind))
            });
        }
        let data = self.usable().map(|i| (i.root.clone(), i.kind));
        self.teacher_panel.update(state, data.as_ref().map(|(root, kind)| (root.as_path(), *kind)));
        if let Some(job) = &mut self.scan {
            match job.poll() {
                Poll::Running => {}
                Poll::Done(r) => {
                    self.info = Some(r);
                    self.scan = None;
                }
                Poll::Failed(why) => {
                    self.info = Some(Err(why));
                    self.scan = None;
                }
            }
        }
    }

    /// The dataset, if one is configured and usable.
    pub fn usable(&self) -> Option<&DatasetInfo> {
        match &self.info {
            Some(Ok(i)) if i.train > 0 && i.val > 0 => Some(i),
            _ => None,
        }
    }

    /// Downloads and the demo dataset that finished: their results go into the settings.
    fn take_finished_work(&mut self, state: &mut AppState) {
        if let Some(task) = &mut self.voc_task
            && let Some(outcome) = task.poll()
        {
            if let Outcome::Done(root) = &outcome {
                state.data_dir = root.display().to_string();
                state.dataset_kind = Some(DatasetKind::Voc);
                self.scanned_for = None;
            }
            self.voc_outcome = Some(outcome);
            self.voc_task = None;
        }
        if let Some(file) = self.teacher.poll() {
            state.train.teacher_weights = file.display().to_string();
            if let Some(kind) = recognise(&state.train.teacher_weights) {
                state.train.config.teacher = kind;
            }
        }
        if let Some(file) = self.backbone.poll() {
            state.train.backbone_weights = file.display().to_string();
        }
        if let Some(job) = &mut self.demo {
            match job.poll() {
                Poll::Running => {}
                Poll::Done(Ok(root)) => {
                    state.data_dir = root.display().to_string();
                    self.scanned_for = None;
                    self.demo = None;
                }
                Poll::Done(Err(e)) | Poll::Failed(e) => {
                    self.demo = None;
                    self.info = Some(Err(e));
                }
            }
        }
    }

    /// Starts a download (the app applies [`Command::Download`] here).
    pub fn start_download(&mut self, ctx: &egui::Context, target: DownloadTarget, state: &AppState) {
        let teacher = state.train.config.teacher;
        match target {
            DownloadTarget::Voc => self.start_voc_download(ctx, state),
            DownloadTarget::Weights(WeightsSlot::Teacher) => {
                self.teacher.start(ctx, WeightsSlot::Teacher, &state.downloads, teacher)
            }
            DownloadTarget::Weights(WeightsSlot::Backbone) => {
                self.backbone.start(ctx, WeightsSlot::Backbone, &state.downloads, teacher)
            }
        }
    }

    pub fn cancel_download(&mut self, target: DownloadTarget) {
        let task = match target {
            DownloadTarget::Voc => &self.voc_task,
            DownloadTarget::Weights(WeightsSlot::Teacher) => &self.teacher.task,
            DownloadTarget::Weights(WeightsSlot::Backbone) => &self.backbone.task,
        };
        if let Some(t) = task {
            t.cancel();
        }
    }

    /// Points the dataset field at the demo dataset, drawing it first when it is not there.
    pub fn use_demo_data(&mut self, ctx: &egui::Context, state: &mut AppState) {
        if self.demo.is_some() {
            return;
        }
        let dir = state.demo_path();
        let existing = crate::data::demo::voc_root(&dir);
        if crate::data::demo::is_demo(&existing) {
            state.data_dir = existing.display().to_string();
            self.scanned_for = None;
            return;
        }
        self.demo = Some(Job::spawn("drawing the demo dataset", ctx, move |p| {
            let cfg = DemoConfig::first_run();
            p.set_total(cfg.images() as u64);
            generate(&dir, &cfg, &|| p.inc()).map_err(|e| format!("{e:#}"))
        }));
    }

    pub fn ui(&mut self, ui: &mut Ui, state: &mut AppState, commands: &mut CommandQueue) {
        ui.label("Dataset folder").on_hover_text(crate::data::dataset::DATASET_FOLDER_HELP);
        ui.weak("VOC, Cityscapes, ADE20K, CamVid, or your images/ + masks/");
        if self.field.ui(ui, "data_dir", &mut state.data_dir, PickKind::Folder, "dataset folder", None) {
            self.scanned_for = None;
        }
        ui.horizontal(|ui| {
            let label = ui.label("Layout");
            egui::ComboBox::from_id_salt("dataset_kind")
                .selected_text(state.dataset_kind.map_or("auto", |k| k.name()))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut state.dataset_kind, None, "auto");
                    ui.selectable_value(&mut state.dataset_kind, Some(DatasetKind::Voc), "voc");
                    ui.selectable_value(&mut state.dataset_kind, Some(DatasetKind::Cityscapes), "cityscapes");
                    ui.selectable_value(&mut state.dataset_kind, Some(DatasetKind::Folder), "folder");
                    ui.selectable_value(&mut state.dataset_kind, Some(DatasetKind::Ade20k), "ade20k");
                    ui.selectable_value(&mut state.dataset_kind, Some(DatasetKind::Camvid), "camvid");
                })
                .response
                .labelled_by(label.id);
        });
        match (&self.info, &self.scan) {
            (_, Some(_)) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("scanning…");
                });
            }
            (Some(Ok(i)), None) => {
                let demo = if i.is_demo { " (demo dataset)" } else { "" };
                ui.label(format!("{}{demo}: {} train / {} val images", i.kind, i.train, i.val));
                if i.train < i.train_listed || i.val < i.val_listed {
                    note(
                        ui,
                        format!(
                            "{} train and {} val ids have no image or mask and are skipped",
                            i.train_listed - i.train,
                            i.val_listed - i.val
                        ),
                    );
                }
                if i.train == 0 || i.val == 0 {
                    error_text(ui, "no usable images in train or val: extract the images next to the masks");
                }
            }
            (Some(Err(e)), None) => error_text(ui, e.clone()),
            (None, None) => {
                ui.label("No dataset configured.");
            }
        }
        if let Some(task) = &self.voc_task {
            if task.ui(ui) {
                commands.push(Command::CancelDownload(DownloadTarget::Voc));
            }
        } else {
            ui.horizontal(|ui| {
                if self.usable().is_none() {
                    voc_download_button(ui, state, commands);
                }
                self.demo_ui(ui, state, commands);
            });
        }
        outcome_ui(ui, self.voc_outcome.as_ref());
    }

    fn start_voc_download(&mut self, ctx: &egui::Context, state: &AppState) {
        let d = &state.downloads;
        let dest = d.data_dir.clone();
        let url = Some(d.voc_url.trim().to_string()).filter(|u| !u.is_empty());
        let md5 = Checksum::md5(&d.voc_md5).ok();
        self.voc_outcome = None;
        self.voc_task = Some(DownloadTask::spawn("VOC 2012", ctx, move |obs| {
            download::download_voc(
                &dest,
                url.as_deref(),
                md5,
                false,
                &HttpOptions::with_timeout_secs(None).unwrap_or_default(),
                obs,
            )
            .map(|f| f.path)
        }));
    }

    /// How the last download of a weight file ended (while none runs).
    pub fn weights_outcome(&self, slot: WeightsSlot) -> Option<&Outcome> {
        match slot {
            WeightsSlot::Teacher => self.teacher.outcome.as_ref(),
            WeightsSlot::Backbone => self.backbone.outcome.as_ref(),
        }
    }

    pub fn voc_outcome(&self) -> Option<&Outcome> {
        self.voc_outcome.as_ref()
    }

    pub fn is_downloading(&self) -> bool {
        self.voc_task.is_some() || self.teacher.task.is_some() || self.backbone.task.is_some()
    }

    /// The weights fields (teacher for distillation, optional ImageNet backbone) with downloads.
    pub fn weights_ui(&mut self, ui: &mut Ui, state: &mut AppState, teacher_needed: bool, commands: &mut CommandQueue) {
        let model_before = state.train.config.teacher;
        self.teacher_panel.ui(ui, state, teacher_needed, commands);
        ui.label(format!("Teacher weights ({})", state.train.config.teacher));
        let path_before = state.train.teacher_weights.clone();
        let teacher_model = state.train.config.teacher;
        self.teacher.ui(ui, WeightsSlot::Teacher, &mut state.train.teacher_weights, teacher_model, commands);
        if state.train.teacher_weights != path_before && state.train.config.teacher == model_before {
            // A downloaded or picked file brings its architecture (recognised from its keys).
            if let Some(kind) = recognise(&state.train.teacher_weights) {
                state.train.config.teacher = kind;
            }
        }
        if teacher_needed && !state.train.teacher_path().is_some_and(|p| p.is_file()) {
            note(ui, "distillation needs the teacher weights file");
        }
        ui.label("ImageNet backbone weights (optional)");
        let teacher_model = state.train.config.teacher;
        self.backbone.ui(ui, WeightsSlot::Backbone, &mut state.train.backbone_weights, teacher_model, commands);
        egui::CollapsingHeader::new("Download settings").id_salt("download_settings").show(ui, |ui| {
            settings_ui(ui, &mut state.downloads);
        });
    }
}

/// The architecture of a weights file without reading it: a run's (its `config.json`) or a
/// torchvision file's (its published name).
fn recognise(path: &str) -> Option<crate::model::ModelKind> {
    let path = std::path::Path::new(path.trim());
    if let Some(config) = path.parent().and_then(crate::train::run_folder::read_config) {
        return Some(config.model);
    }
    crate::model::ModelKind::from_torchvision_file_name(&path.file_name()?.to_string_lossy())
}

fn settings_ui(ui: &mut Ui, d: &mut DownloadSettings) {
    let path_field = |ui: &mut Ui, label: &str, p: &mut std::path::PathBuf| {
        let mut text = p.display().to_string();
        ui.label(label);
        if ui.text_edit_singleline(&mut text).changed() {
            *p = text.into();
        }
        ui.end_row();
    };
    egui::Grid::new("download_settings_grid").num_columns(2).show(ui, |ui| {
        path_field(ui, "datasets into", &mut d.data_dir);
        path_field(ui, "weights into", &mut d.weights_dir);
        let label = ui.label("VOC mirror");
        ui.add(egui::TextEdit::singleline(&mut d.voc_url).hint_text("official address")).labelled_by(label.id);
        ui.end_row();
        let label = ui.label("its MD5");
        ui.add(
            egui::TextEdit::singleline(&mut d.voc_md5)
                .hint_text(download::VOC_TRAINVAL.published.map_or("", |(_, hex)| hex)),
        )
        .labelled_by(label.id);
        ui.end_row();
        let label = ui.label("weights mirror");
        ui.add(egui::TextEdit::singleline(&mut d.weights_base_url).hint_text(download::catalog::TORCHVISION_BASE))
            .labelled_by(label.id);
        ui.end_row();
    });
    note(ui, "proxies: HTTPS_PROXY / HTTP_PROXY / NO_PROXY; stall timeout: SEGDISTILL_TIMEOUT (s)");
}

/// The VOC download button (with where it unpacks).
fn voc_download_button(ui: &mut Ui, state: &AppState, commands: &mut CommandQueue) {
    let d = &state.downloads;
    let hover = format!("PASCAL VOC 2012 train/val into {}", d.data_dir.join("VOCdevkit/VOC2012").display());
    if ui.button("Download VOC 2012 (2.0 GB)").on_hover_text(hover).clicked() {
        commands.push(Command::Download(DownloadTarget::Voc));
    }
}

impl DataPanel {
    fn demo_ui(&mut self, ui: &mut Ui, state: &AppState, commands: &mut CommandQueue) {
        if let Some(job) = &self.demo {
            let (done, total) = job.progress.counts();
            ui.add(
                egui::ProgressBar::new(job.progress.fraction().unwrap_or(0.0))
                    .text(format!("drawing the demo dataset {done}/{total}")),
            );
            return;
        }
        if self.usable().is_some() {
            return;
        }
        let dir = state.demo_path();
        let label = if crate::data::demo::is_demo(&crate::data::demo::voc_root(&dir)) {
            "Use the demo dataset"
        } else {
            "Create the demo dataset"
        };
        if ui
            .button(label)
            .on_hover_text(format!("procedurally drawn scenes in VOC format, in {}", dir.display()))
            .clicked()
        {
            commands.push(Command::UseDemoData);
        }
    }
}
