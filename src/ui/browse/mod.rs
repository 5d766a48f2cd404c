//! The Browse tab: validation images with ground truth, teacher and student masks. Thumbnails
//! carry each model's per-image mIoU; sort by student, teacher or their gap to find failures,
//! filter by class or by a confusion-matrix cell; the detail view shows image | ground truth |
//! teacher | student with synchronised zoom and pan, an opacity slider, per-class toggles and a
//! read-out of the class under the cursor. The dataset is opened and the predictions stream in
//! on background threads. Beside the grid: the confusion matrix (zoomed to the most confused
//! classes when there are many) with the largest confusions, and per-class IoU bars. This file
//! holds the tab's state and its background work; the order and filters are in `order`, the
//! drawing in `grid`, `detail` (with its class `legend`), `confusion` and `class_iou`.

mod class_iou;
mod confusion;
mod detail;
mod grid;
mod legend;
mod order;

pub use order::SortKey;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use egui::{TextureHandle, Ui};

use self::detail::Detail;
use self::order::Source;
use super::data_panel::DataPanel;
use super::jobs::{Job, Poll, take_finished};
use super::runs::RunEntry;
use super::state::AppState;
use super::widgets::error_text;
use crate::data::transforms::Resize;
use crate::data::{ClassSet, Dataset, DatasetKind};
use crate::diagnostics::browse::{BrowseItem, BrowseJob, BrowseModel, BrowseMsg, BrowseRequest, start};
use crate::model::ModelKind;

/// What the shown predictions were computed for: run, split, dataset folder and teacher.
type BrowseKey = (PathBuf, String, PathBuf, Option<(ModelKind, PathBuf)>);

#[derive(Default)]
pub struct BrowseTab {
    /// The dataset being opened for the worker (see `restart`).
    opening: Option<Job<Result<BrowseRequest, String>>>,
    job: Option<BrowseJob>,
    key: Option<BrowseKey>,
    pub items: Vec<BrowseItem>,
    total: usize,
    finished: bool,
    errors: Vec<String>,
    classes: Option<ClassSet>,
    sort: Option<SortKey>,
    class_filter: Option<u8>,
    /// Images where this model predicted the first class as the second.
    confusion_filter: Option<(Source, u8, u8)>,
    source: Option<Source>,
    /// Classes the zoomed confusion matrix shows (0 until first drawn: then the default).
    zoom_classes: usize,
    /// Per-class IoU bars: every class, or the worst `iou_worst` (0 until first drawn).
    iou_all: bool,
    iou_worst: usize,
    thumbs: HashMap<usize, TextureHandle>,
    detail: Option<Detail>,
    /// An image the user asked to open (applied in `update`, where background work starts).
    open_request: Option<usize>,
}

impl BrowseTab {
    fn sort_key(&self) -> SortKey {
        self.sort.unwrap_or(SortKey::StudentAscending)
    }

    /// Items after filters, in the chosen order (indices into `items`).
    pub fn visible(&self) -> Vec<usize> {
        order::visible(&self.items, self.class_filter, self.confusion_filter, self.sort_key())
    }

    pub fn sorted_ids(&self) -> Vec<String> {
        self.visible().iter().map(|&i| self.items[i].id.clone()).collect()
    }

    pub fn is_done(&self) -> bool {
        self.finished
    }

    /// Whether the open image's full-resolution photo has arrived (it decodes in the background).
    pub fn detail_ready(&self) -> bool {
        self.detail.as_ref().is_some_and(|d| d.loading.is_none())
    }

    /// The classes the open image's masks draw (after the legend's toggles).
    pub fn detail_shown_classes(&self) -> Option<Vec<usize>> {
        self.detail.as_ref().map(|d| d.shown.iter().enumerate().filter(|(_, s)| **s).map(|(c, _)| c).collect())
    }

    pub fn detail_id(&self) -> Option<&str> {
        self.detail.as_ref().map(|d| self.items[d.item].id.as_str())
    }

    /// Asks to open the image `step` places away from the open one in the current order
    /// (filters and sort applied); stays at the ends.
    pub fn step_detail(&mut self, step: isize) {
        let Some(d) = &self.detail else { return };
        let order = self.visible();
        let Some(at) = order.iter().position(|&i| i == d.item) else { return };
        let next = (at as isize + step).clamp(0, order.len() as isize - 1) as usize;
        if next != at {
            self.open_request = Some(order[next]);
        }
    }

    /// Drains the worker; restarts it when the run, split or dataset changed; opens the image
    /// asked for.
    pub fn update(&mut self, ctx: &egui::Context, state: &AppState, data: &DataPanel) {
        if let Some(item) = self.open_request.take().filter(|&i| i < self.items.len()) {
            let opacity = self.detail.as_ref().map_or(state.browse.opacity, |d| d.opacity);
            self.open(ctx, item, opacity);
        }
        if let Some(d) = &mut self.detail
            && let Some(job) = &mut d.loading
        {
            match job.poll() {
                Poll::Running => {}
                Poll::Done(image) => {
                    if let Some(img) = image {
                        d.image = img;
                        d.dirty = true;
                    }
                    d.loading = None;
                }
                Poll::Failed(why) => {
                    self.errors.push(why);
                    d.loading = None;
                }
            }
        }
        let (Some(run), Some(info)) = (state.browse.run.clone(), data.usable()) else { return };
        let teacher = state.train.teacher().filter(|(_, p)| p.is_file());
        let key = (run.clone(), state.browse.split.clone(), info.root.clone(), teacher.clone());
        if self.key.as_ref() != Some(&key) {
            let teacher_cache = crate::diagnostics::teacher_quality::cache_dir(&state.runs_dir).join("browse");
            self.restart(ctx, key, info.kind, teacher, teacher_cache);
        }
        self.take_opened(ctx);
        if let Some(job) = &self.job {
            for msg in job.rx.try_iter() {
                match msg {
                    BrowseMsg::Started { total } => self.total = total,
                    BrowseMsg::Item(item) => self.items.push(*item),
                    BrowseMsg::Error(e) => self.errors.push(e),
                    BrowseMsg::Done => self.finished = true,
                }
            }
        }
    }

    /// Forgets what was shown and opens the dataset for `key` in the background; the worker
    /// starts once it is open (in `update`).
    fn restart(
        &mut self,
        ctx: &egui::Context,
        key: BrowseKey,
        kind: DatasetKind,
        teacher: Option<(ModelKind, PathBuf)>,
        teacher_cache: PathBuf,
    ) {
        *self = Self {
            sort: self.sort,
            source: self.source,
            zoom_classes: self.zoom_classes,
            iou_all: self.iou_all,
            iou_worst: self.iou_worst,
            ..Default::default()
        };
        let (run, split, root, _) = key.clone();
        self.key = Some(key);
        self.opening = Some(Job::spawn("opening the dataset", ctx, move |_| {
            request(&run, &root, kind, &split, teacher, teacher_cache)
        }));
    }

    /// Starts the worker on the opened dataset, or shows why it could not be opened.
    fn take_opened(&mut self, ctx: &egui::Context) {
        match take_finished(&mut self.opening) {
            None => {}
            Some(Ok(req)) => {
                self.classes = Some(req.dataset.classes().clone());
                let ctx = ctx.clone();
                self.job = Some(start(req, move || ctx.request_repaint()));
            }
            Some(Err(e)) => {
                self.errors.push(e);
                self.finished = true;
            }
        }
    }

    /// Whether the dataset is being opened or predictions are still arriving.
    fn is_loading(&self) -> bool {
        (self.opening.is_some() || self.job.is_some()) && !self.finished
    }

    pub fn ui(&mut self, ui: &mut Ui, state: &mut AppState, data: &DataPanel, runs: &[RunEntry]) {
        self.controls_ui(ui, state, data, runs);
        if state.browse.run.is_none() || data.usable().is_none() {
            return;
        }
        for e in self.errors.iter().rev().take(3) {
            error_text(ui, e.clone());
        }
        if self.detail.is_some() {
            self.detail_ui(ui, state);
            return;
        }
        if self.zoom_classes == 0 {
            self.zoom_classes = confusion::DEFAULT_ZOOM;
        }
        if self.iou_worst == 0 {
            self.iou_worst = class_iou::DEFAULT_WORST;
        }
        egui::Panel::right("confusion").resizable(true).default_size(300.0).show(ui, |ui| {
            egui::ScrollArea::vertical().id_salt("browse_side").show(ui, |ui| {
                self.confusion_ui(ui);
                ui.separator();
                self.class_iou_ui(ui);
            });
        });
        egui::CentralPanel::default().show(ui, |ui| self.grid_ui(ui, state));
    }
}

/// What the worker computes for `run` on the `split` of the dataset at `root`: the run's
/// student (when its weights exist) and the `teacher`. Reads the run's config and opens the
/// dataset, checking which images are present (off the UI thread: a large split takes a while).
fn request(
    run: &std::path::Path,
    root: &std::path::Path,
    kind: DatasetKind,
    split: &str,
    teacher: Option<(ModelKind, PathBuf)>,
    teacher_cache: PathBuf,
) -> Result<BrowseRequest, String> {
    let config =
        crate::train::run_folder::read_config(run).ok_or_else(|| format!("{} is not a run folder", run.display()))?;
    let mut ds = Dataset::open(root, Some(kind), split).map_err(|e| e.to_string())?;
    ds.retain_present();
    let student = crate::train::checkpoint::student_path(run);
    Ok(BrowseRequest {
        dataset: Arc::new(ds),
        // Predictions are kept between starts: the student's in its run folder, the teacher's
        // beside its evaluations.
        student: student.is_file().then(|| BrowseModel {
            kind: config.model,
            weights: student,
            cache_dir: Some(crate::train::run_folder::browse_cache_dir(run)),
        }),
        teacher: teacher.map(|(kind, weights)| BrowseModel { kind, weights, cache_dir: Some(teacher_cache) }),
        resize: Resize::ShorterSide(config.val_size.unwrap_or(config.size)),
        device: candle_core::Device::Cpu,
        thumbnail_height: 96,
    })
}
