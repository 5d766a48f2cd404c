//! The Browse tab: validation images with ground truth, teacher and student masks. Thumbnails
//! carry each model's per-image mIoU; sort by student, teacher or their gap to find failures,
//! filter by class or by a confusion-matrix cell; the detail view shows image | ground truth |
//! teacher | student with synchronised zoom and pan, an opacity slider, per-class toggles and a
//! read-out of the class under the cursor. Predictions stream in from a worker thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use egui::{Color32, Rect, Sense, TextureHandle, TextureOptions, Ui, Vec2, pos2, vec2};

use super::data_panel::DataPanel;
use super::jobs::{Job, Poll};
use super::runs_tab::RunEntry;
use super::state::AppState;
use super::widgets::{color_image, error_text, note, swatch};
use crate::data::transforms::Resize;
use crate::data::{ClassSet, Dataset, Mask, VOID};
use crate::eval::browse::{BrowseItem, BrowseJob, BrowseModel, BrowseMsg, BrowseRequest, start};
use crate::model::ModelKind;
use crate::train::predict::overlay;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    FileOrder,
    /// Worst student first.
    StudentAscending,
    StudentDescending,
    TeacherAscending,
    /// Where the teacher beats the student most.
    GapDescending,
}

impl SortKey {
    const ALL: [SortKey; 5] =
        [Self::FileOrder, Self::StudentAscending, Self::StudentDescending, Self::TeacherAscending, Self::GapDescending];

    pub fn label(self) -> &'static str {
        match self {
            Self::FileOrder => "file order",
            Self::StudentAscending => "student IoU, failures first",
            Self::StudentDescending => "student IoU, successes first",
            Self::TeacherAscending => "teacher IoU, lowest first",
            Self::GapDescending => "teacher − student gap, largest first",
        }
    }
}

/// Which model the confusion matrix describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Student,
    Teacher,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Self::Student => "student",
            Self::Teacher => "teacher",
        }
    }
}

/// The open image.
struct Detail {
    item: usize,
    /// The full-resolution photo, decoded in the background (a blank of the right size until then).
    image: image::RgbImage,
    loading: Option<Job<Option<image::RgbImage>>>,
    masks: [Option<Mask>; 3],
    textures: Vec<Option<TextureHandle>>,
    shown: Vec<bool>,
    opacity: f32,
    /// Zoom factor (1 = whole image) and the image point at the view's centre (0..1).
    zoom: f32,
    center: Vec2,
    hover: Option<(u32, u32)>,
    dirty: bool,
}

/// What the shown predictions were computed for: run, split, dataset folder and teacher.
type BrowseKey = (PathBuf, String, PathBuf, Option<(ModelKind, PathBuf)>);

#[derive(Default)]
pub struct BrowseTab {
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
    thumbs: HashMap<usize, TextureHandle>,
    detail: Option<Detail>,
    /// An image the user asked to open (applied in `update`, where background work starts).
    open_request: Option<usize>,
}

fn gap(i: &BrowseItem) -> f64 {
    match (&i.student, &i.teacher) {
        (Some(s), Some(t)) => t.miou - s.miou,
        _ => f64::NAN,
    }
}

impl BrowseTab {
    fn sort_key(&self) -> SortKey {
        self.sort.unwrap_or(SortKey::StudentAscending)
    }

    /// Items after filters, in the chosen order (indices into `items`).
    pub fn visible(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.items.len())
            .filter(|&i| self.class_filter.is_none_or(|c| self.items[i].classes.contains(&c)))
            .filter(|&i| {
                self.confusion_filter.is_none_or(|(source, t, p)| {
                    let view = match source {
                        Source::Student => self.items[i].student.as_ref(),
                        Source::Teacher => self.items[i].teacher.as_ref(),
                    };
                    view.is_some_and(|v| v.confusions.iter().any(|&(a, b, _)| a == t && b == p))
                })
            })
            .collect();
        let s = |i: &usize| self.items[*i].student.as_ref().map_or(f64::NAN, |v| v.miou);
        let t = |i: &usize| self.items[*i].teacher.as_ref().map_or(f64::NAN, |v| v.miou);
        match self.sort_key() {
            SortKey::FileOrder => v.sort_by_key(|&i| self.items[i].index),
            SortKey::StudentAscending => v.sort_by(|a, b| s(a).total_cmp(&s(b))),
            SortKey::StudentDescending => v.sort_by(|a, b| s(b).total_cmp(&s(a))),
            SortKey::TeacherAscending => v.sort_by(|a, b| t(a).total_cmp(&t(b))),
            SortKey::GapDescending => v.sort_by(|a, b| gap(&self.items[*b]).total_cmp(&gap(&self.items[*a]))),
        }
        v
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
            let teacher_cache = crate::eval::teacher_quality::cache_dir(&state.runs_dir).join("browse");
            self.restart(ctx, key, info.kind, teacher, teacher_cache);
        }
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

    fn restart(
        &mut self,
        ctx: &egui::Context,
        key: BrowseKey,
        kind: crate::data::DatasetKind,
        teacher: Option<(ModelKind, PathBuf)>,
        teacher_cache: PathBuf,
    ) {
        *self = Self { sort: self.sort, source: self.source, ..Default::default() };
        let (run, split, root, _) = key.clone();
        self.key = Some(key);
        let Some(config) = crate::train::run_folder::read_config(&run) else {
            self.errors.push(format!("{} is not a run folder", run.display()));
            self.finished = true;
            return;
        };
        let mut ds = match Dataset::open(&root, Some(kind), &split) {
            Ok(ds) => ds,
            Err(e) => {
                self.errors.push(e.to_string());
                self.finished = true;
                return;
            }
        };
        ds.retain_present();
        self.classes = Some(ds.classes().clone());
        let student = crate::train::checkpoint::student_path(&run);
        let req = BrowseRequest {
            dataset: Arc::new(ds),
            // Predictions are kept between starts: the student's in its run folder, the teacher's
            // beside its evaluations.
            student: student.is_file().then(|| BrowseModel {
                kind: config.model,
                weights: student,
                cache_dir: Some(run.join("browse")),
            }),
            teacher: teacher.map(|(kind, weights)| BrowseModel { kind, weights, cache_dir: Some(teacher_cache) }),
            resize: Resize::ShorterSide(config.val_size.unwrap_or(config.size)),
            device: candle_core::Device::Cpu,
            thumbnail_height: 96,
        };
        let ctx = ctx.clone();
        self.job = Some(start(req, move || ctx.request_repaint()));
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
        egui::Panel::right("confusion").resizable(true).default_size(300.0).show(ui, |ui| self.confusion_ui(ui));
        egui::CentralPanel::default().show(ui, |ui| self.grid_ui(ui, state));
    }

    fn controls_ui(&mut self, ui: &mut Ui, state: &mut AppState, data: &DataPanel, runs: &[RunEntry]) {
        ui.horizontal(|ui| {
            let run_label = ui.label("Student run");
            let with_student: Vec<&RunEntry> = runs.iter().filter(|r| r.has_student).collect();
            let current =
                state.browse.run.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
            egui::ComboBox::from_id_salt("browse_run")
                .selected_text(current.unwrap_or_else(|| "choose…".into()))
                .show_ui(ui, |ui| {
                    for r in &with_student {
                        let label = format!("{} ({}, {})", r.name, r.config.model, r.config.distill.name());
                        ui.selectable_value(&mut state.browse.run, Some(r.dir.clone()), label);
                    }
                })
                .response
                .labelled_by(run_label.id);
            let label = ui.label("split");
            ui.add(egui::TextEdit::singleline(&mut state.browse.split).desired_width(60.0)).labelled_by(label.id);
            if self.job.is_some() && !self.finished {
                ui.spinner();
            }
            ui.label(format!("{}/{} images", self.items.len(), self.total));
        });
        if data.usable().is_none() {
            note(ui, "Choose a dataset in the Train tab first.");
        } else if state.browse.run.is_none() {
            note(ui, "Choose a trained run to browse its student's predictions.");
        } else if state.train.teacher_path().is_none_or(|p| !p.is_file()) {
            note(ui, "No teacher weights set in the Train tab: the teacher column stays empty.");
        }
    }

    fn filters_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            let sort_label = ui.label("sort");
            let mut sort = self.sort_key();
            egui::ComboBox::from_id_salt("browse_sort")
                .selected_text(sort.label())
                .show_ui(ui, |ui| {
                    for k in SortKey::ALL {
                        ui.selectable_value(&mut sort, k, k.label());
                    }
                })
                .response
                .labelled_by(sort_label.id);
            self.sort = Some(sort);
            let class_label = ui.label("class");
            let names = self.classes.as_ref().map(|c| c.names.clone()).unwrap_or_default();
            let current =
                self.class_filter.map_or("any".to_string(), |c| names.get(c as usize).cloned().unwrap_or_default());
            egui::ComboBox::from_id_salt("browse_class")
                .selected_text(current)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.class_filter, None, "any");
                    for (c, n) in names.iter().enumerate() {
                        ui.selectable_value(&mut self.class_filter, Some(c as u8), n);
                    }
                })
                .response
                .labelled_by(class_label.id);
            if let Some((source, t, p)) = self.confusion_filter {
                let n = |c: u8| names.get(c as usize).cloned().unwrap_or_default();
                if ui
                    .button(format!("× {}: {} → {}", source.name(), n(t), n(p)))
                    .on_hover_text(format!(
                        "images where the {} predicted {} pixels as {}; click to clear",
                        source.name(),
                        n(t),
                        n(p)
                    ))
                    .clicked()
                {
                    self.confusion_filter = None;
                }
            }
        });
    }

    fn grid_ui(&mut self, ui: &mut Ui, state: &AppState) {
        self.filters_ui(ui);
        let visible = self.visible();
        note(ui, format!("{} images shown", visible.len()));
        if visible.is_empty() && !self.items.is_empty() {
            let names = self.classes.as_ref().map(|c| c.names.clone()).unwrap_or_default();
            let n = |c: u8| names.get(c as usize).cloned().unwrap_or_default();
            match self.confusion_filter {
                Some((source, t, p)) => note(
                    ui,
                    format!(
                        "no image has the {} predicting {} as {}{}: clear the filter or pick another cell",
                        source.name(),
                        n(t),
                        n(p),
                        self.class_filter.map(|c| format!(" among images with {}", n(c))).unwrap_or_default()
                    ),
                ),
                None => note(ui, "no image matches the class filter"),
            }
        }
        let classes = self.classes.clone().unwrap_or_else(ClassSet::voc);
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                for i in visible {
                    let tex = self.thumbnail(ui.ctx(), i, &classes, state.browse.opacity);
                    let item = &self.items[i];
                    let s = item.student.as_ref().map_or("—".into(), |v| format!("{:.2}", v.miou));
                    let t = item.teacher.as_ref().map_or("—".into(), |v| format!("{:.2}", v.miou));
                    let label = format!("{}\nS {s} · T {t}", item.id);
                    let size = tex.size_vec2();
                    let button = egui::Button::image_and_text(egui::Image::new((tex.id(), size)), label);
                    if ui.add(button).clicked() {
                        self.open_request = Some(i);
                    }
                }
            });
        });
    }

    fn thumbnail(&mut self, ctx: &egui::Context, i: usize, classes: &ClassSet, opacity: f32) -> TextureHandle {
        if let Some(t) = self.thumbs.get(&i) {
            return t.clone();
        }
        let item = &self.items[i];
        let (w, h) = item.thumbnail.dimensions();
        let img = match item.student.as_ref().and_then(|v| v.mask.unpack()) {
            Some(m) => overlay(
                &item.thumbnail,
                &crate::data::transforms::resize_mask_nearest(&m, w, h),
                classes,
                opacity,
                classes.dataset == "voc",
            ),
            None => item.thumbnail.clone(),
        };
        let tex = ctx.load_texture(format!("thumb-{}", item.id), color_image(&img), TextureOptions::LINEAR);
        self.thumbs.insert(i, tex.clone());
        tex
    }

    fn open(&mut self, ctx: &egui::Context, item: usize, opacity: f32) {
        let Some((_, split, root, _)) = self.key.clone() else { return };
        let it = &self.items[item];
        // The full-resolution photo is decoded in the background (thumbnails are all that is kept
        // in memory); the masks show on a blank of the right size until it arrives.
        let id = it.id.clone();
        let loading = Some(Job::spawn("decoding the image", ctx, move |_| {
            let ds = Dataset::open(&root, None, &split).ok()?;
            let i = ds.samples.iter().position(|s| s.id == id)?;
            ds.load_image(i).ok()
        }));
        let image = image::RgbImage::new(it.width, it.height);
        let masks = [
            it.ground_truth.unpack(),
            it.teacher.as_ref().and_then(|v| v.mask.unpack()),
            it.student.as_ref().and_then(|v| v.mask.unpack()),
        ];
        let n = self.classes.as_ref().map_or(21, |c| c.len());
        self.detail = Some(Detail {
            item,
            image,
            loading,
            masks,
            textures: vec![None; 4],
            shown: vec![true; n],
            opacity,
            zoom: 1.0,
            center: vec2(0.5, 0.5),
            hover: None,
            dirty: true,
        });
    }

    fn detail_ui(&mut self, ui: &mut Ui, state: &mut AppState) {
        let classes = self.classes.clone().unwrap_or_else(ClassSet::voc);
        let (position, count) = {
            let order = self.visible();
            let at = self.detail.as_ref().and_then(|d| order.iter().position(|&i| i == d.item));
            (at, order.len())
        };
        let mut step = 0isize;
        if !ui.ctx().text_edit_focused() {
            ui.input(|i| {
                if i.key_pressed(egui::Key::ArrowLeft) {
                    step = -1;
                }
                if i.key_pressed(egui::Key::ArrowRight) {
                    step = 1;
                }
            });
        }
        let Some(d) = &mut self.detail else { return };
        let item = &self.items[d.item];
        let mut close = false;
        ui.horizontal(|ui| {
            if ui.button("Back to the grid").clicked() {
                close = true;
            }
            let first = position == Some(0);
            let last = position.is_none_or(|p| p + 1 >= count);
            if ui
                .add_enabled(!first, egui::Button::new("← previous"))
                .on_hover_text("previous image in this order (←)")
                .clicked()
            {
                step = -1;
            }
            if ui
                .add_enabled(!last, egui::Button::new("next →"))
                .on_hover_text("next image in this order (→)")
                .clicked()
            {
                step = 1;
            }
            if let Some(p) = position {
                note(ui, format!("{}/{count}", p + 1));
            }
            ui.heading(&item.id);
            if d.loading.is_some() {
                ui.spinner();
            }
            let s = item.student.as_ref().map_or("—".into(), |v| format!("{:.3}", v.miou));
            let t = item.teacher.as_ref().map_or("—".into(), |v| format!("{:.3}", v.miou));
            ui.label(format!("student mIoU {s} · teacher mIoU {t}"));
        });
        ui.horizontal(|ui| {
            ui.label("opacity");
            if ui.add(egui::Slider::new(&mut d.opacity, 0.0..=1.0)).changed() {
                d.dirty = true;
                state.browse.opacity = d.opacity;
            }
            if ui.button("reset zoom").clicked() {
                d.zoom = 1.0;
                d.center = vec2(0.5, 0.5);
            }
        });
        // Class toggles with the colour legend, for classes in any of the masks.
        let mut present = [false; 256];
        for m in d.masks.iter().flatten() {
            for &v in &m.data {
                present[v as usize] = true;
            }
        }
        ui.horizontal_wrapped(|ui| {
            for (c, _) in present.iter().enumerate().take(classes.len()).filter(|(_, p)| **p) {
                // Swatch, box and name wrap as one.
                ui.horizontal(|ui| {
                    swatch(ui, classes.colors[c]);
                    if ui.checkbox(&mut d.shown[c], &classes.names[c]).changed() {
                        d.dirty = true;
                    }
                });
            }
        });
        if d.dirty {
            rebuild_textures(ui.ctx(), d, &classes);
        }
        let titles = ["image", "ground truth", "teacher", "student"];
        let aspect = d.image.height() as f32 / d.image.width().max(1) as f32;
        // Four panels side by side, as large as the window allows in both directions (room is
        // kept below for the title row and the read-out).
        let fit_height = (ui.available_height() - 60.0).max(60.0) / aspect;
        let panel_w = (ui.available_width() / 4.0 - 8.0).min(fit_height).max(80.0);
        let panel = vec2(panel_w, panel_w * aspect);
        let mut hover = None;
        ui.horizontal(|ui| {
            for (k, title) in titles.iter().enumerate() {
                ui.vertical(|ui| {
                    ui.label(*title);
                    let (rect, response) = ui.allocate_exact_size(panel, Sense::click_and_drag());
                    match &d.textures[k] {
                        Some(tex) => {
                            ui.painter().image(tex.id(), rect, uv_rect(d.zoom, d.center), Color32::WHITE);
                        }
                        None => {
                            ui.painter().rect_filled(rect, 0.0, ui.visuals().faint_bg_color);
                            ui.painter().text(
                                rect.center(),
                                egui::Align2::CENTER_CENTER,
                                "no model",
                                egui::FontId::default(),
                                ui.visuals().weak_text_color(),
                            );
                        }
                    }
                    // Shared zoom (scroll) and pan (drag) across all panels.
                    if response.dragged() {
                        let delta = response.drag_delta();
                        d.center -= vec2(delta.x / rect.width(), delta.y / rect.height()) / d.zoom;
                    }
                    if response.hovered() {
                        let scroll = ui.input(|i| i.smooth_scroll_delta.y);
                        if scroll != 0.0 {
                            d.zoom = (d.zoom * (1.0 + scroll * 0.002)).clamp(1.0, 32.0);
                        }
                        if let Some(p) = response.hover_pos() {
                            let uv = uv_rect(d.zoom, d.center);
                            let u = uv.min.x + (p.x - rect.min.x) / rect.width() * uv.width();
                            let v = uv.min.y + (p.y - rect.min.y) / rect.height() * uv.height();
                            let (x, y) = ((u * d.image.width() as f32) as u32, (v * d.image.height() as f32) as u32);
                            if x < d.image.width() && y < d.image.height() {
                                hover = Some((x, y));
                            }
                        }
                    }
                    let half = 0.5 / d.zoom;
                    d.center = vec2(d.center.x.clamp(half, 1.0 - half), d.center.y.clamp(half, 1.0 - half));
                });
            }
        });
        // The read-out follows the cursor and clears when it leaves the panels.
        d.hover = hover;
        if let Some((x, y)) = d.hover {
            let name =
                |m: &Option<Mask>| m.as_ref().map_or("—".to_string(), |m| classes.name_of(m.get(x, y)).to_string());
            ui.label(format!(
                "({x}, {y})  ground truth: {} · teacher: {} · student: {}",
                name(&d.masks[0]),
                name(&d.masks[1]),
                name(&d.masks[2])
            ));
        } else {
            note(ui, "hover a panel to read the classes under the cursor; scroll to zoom, drag to pan");
        }
        if close {
            self.detail = None;
        } else if step != 0 {
            self.step_detail(step);
        }
    }

    fn confusion_ui(&mut self, ui: &mut Ui) {
        let classes = self.classes.clone().unwrap_or_else(ClassSet::voc);
        let n = classes.len();
        ui.horizontal(|ui| {
            ui.label("Confusion matrix of");
            let mut s = self.source.unwrap_or(Source::Student);
            ui.selectable_value(&mut s, Source::Student, "student");
            ui.selectable_value(&mut s, Source::Teacher, "teacher");
            self.source = Some(s);
        });
        let source = self.source.unwrap_or(Source::Student);
        let mut cm = vec![0u64; n * n];
        for it in &self.items {
            let view = match source {
                Source::Student => it.student.as_ref(),
                Source::Teacher => it.teacher.as_ref(),
            };
            for &(t, p, c) in view.map(|v| v.confusions.as_slice()).unwrap_or_default() {
                if (t as usize) < n && (p as usize) < n {
                    cm[t as usize * n + p as usize] += c as u64;
                }
            }
        }
        note(ui, "rows: ground truth · columns: prediction · click a cell to list its images");
        // Class names left of the rows and above the columns (rotated), in a small font.
        let font = egui::FontId::proportional(10.0);
        let text_color = ui.visuals().text_color();
        let label_room = classes
            .names
            .iter()
            .map(|name| ui.fonts_mut(|f| f.layout_no_wrap(name.clone(), font.clone(), text_color).size().x))
            .fold(0.0f32, f32::max)
            + 4.0;
        let cell = ((ui.available_width() - label_room - 8.0) / n as f32).clamp(6.0, 18.0);
        let grid = cell * n as f32;
        let (outer, response) = ui.allocate_exact_size(vec2(label_room + grid, label_room + grid), Sense::click());
        let rect = Rect::from_min_size(outer.min + vec2(label_room, label_room), vec2(grid, grid));
        {
            let painter = ui.painter_at(outer);
            let show_names = cell >= 9.0;
            for (c, name) in classes.names.iter().enumerate().take(n).filter(|_| show_names) {
                let y = rect.min.y + (c as f32 + 0.5) * cell;
                painter.text(pos2(rect.min.x - 3.0, y), egui::Align2::RIGHT_CENTER, name, font.clone(), text_color);
                let galley = painter.layout_no_wrap(name.clone(), font.clone(), text_color);
                let x = rect.min.x + (c as f32 + 0.5) * cell - galley.size().y / 2.0;
                let at = pos2(x, rect.min.y - 3.0);
                painter
                    .add(egui::epaint::TextShape::new(at, galley, text_color).with_angle(-std::f32::consts::FRAC_PI_2));
            }
        }
        let painter = ui.painter_at(rect);
        for t in 0..n {
            let row: u64 = cm[t * n..(t + 1) * n].iter().sum();
            for p in 0..n {
                let v = if row > 0 { cm[t * n + p] as f32 / row as f32 } else { 0.0 };
                let shade = (255.0 * (1.0 - v.sqrt())) as u8;
                let color =
                    if t == p { Color32::from_rgb(shade, 255, shade) } else { Color32::from_rgb(255, shade, shade) };
                let r = Rect::from_min_size(
                    pos2(rect.min.x + p as f32 * cell, rect.min.y + t as f32 * cell),
                    vec2(cell - 1.0, cell - 1.0),
                );
                painter.rect_filled(r, 0.0, color);
            }
        }
        if let Some(pos) = response.hover_pos() {
            let (p, t) = (((pos.x - rect.min.x) / cell) as usize, ((pos.y - rect.min.y) / cell) as usize);
            if t < n && p < n {
                let text = format!("{} predicted as {}: {} px", classes.names[t], classes.names[p], cm[t * n + p]);
                response.clone().on_hover_text(text);
                if response.clicked() {
                    self.confusion_filter = Some((source, t as u8, p as u8));
                }
            }
        }
    }
}

/// The texture area shown for a zoom factor and centre (in 0..1 image coordinates).
fn uv_rect(zoom: f32, center: Vec2) -> Rect {
    let half = 0.5 / zoom;
    Rect::from_min_max(pos2(center.x - half, center.y - half), pos2(center.x + half, center.y + half))
}

fn rebuild_textures(ctx: &egui::Context, d: &mut Detail, classes: &ClassSet) {
    let filtered = |m: &Mask| -> Mask {
        let mut m = m.clone();
        for v in &mut m.data {
            if (*v as usize) < d.shown.len() && !d.shown[*v as usize] {
                *v = VOID;
            }
        }
        m
    };
    let photo = ctx.load_texture("detail-image", color_image(&d.image), TextureOptions::NEAREST);
    d.textures[0] = Some(photo);
    for k in 0..3 {
        d.textures[k + 1] = d.masks[k].as_ref().map(|m| {
            let img = overlay(&d.image, &filtered(m), classes, d.opacity, classes.dataset == "voc");
            ctx.load_texture(format!("detail-{k}"), color_image(&img), TextureOptions::NEAREST)
        });
    }
    d.dirty = false;
}
