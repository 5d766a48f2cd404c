//! The Browse tab's detail view: image | ground truth | teacher | student with synchronised zoom
//! and pan, an opacity slider, the class legend with its toggles, and a read-out of the classes
//! under the cursor.

use egui::{Color32, Rect, Sense, TextureHandle, TextureOptions, Ui, Vec2, pos2, vec2};

use super::BrowseTab;
use super::legend::Legend;
use crate::data::overlay::overlay;
use crate::data::{ClassSet, Dataset, Mask, VOID};
use crate::ui::jobs::Job;
use crate::ui::state::AppState;
use crate::ui::widgets::{color_image, note};

/// The open image.
pub(super) struct Detail {
    pub(super) item: usize,
    /// The full-resolution photo, decoded in the background (a blank of the right size until then).
    pub(super) image: image::RgbImage,
    pub(super) loading: Option<Job<Option<image::RgbImage>>>,
    pub(super) masks: [Option<Mask>; 3],
    pub(super) textures: Vec<Option<TextureHandle>>,
    pub(super) shown: Vec<bool>,
    pub(super) legend: Legend,
    pub(super) opacity: f32,
    /// Zoom factor (1 = whole image) and the image point at the view's centre (0..1).
    pub(super) zoom: f32,
    pub(super) center: Vec2,
    pub(super) hover: Option<(u32, u32)>,
    pub(super) dirty: bool,
}

impl BrowseTab {
    pub(super) fn open(&mut self, ctx: &egui::Context, item: usize, opacity: f32) {
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
            legend: Legend::default(),
            opacity,
            zoom: 1.0,
            center: vec2(0.5, 0.5),
            hover: None,
            dirty: true,
        });
    }

    pub(super) fn detail_ui(&mut self, ui: &mut Ui, state: &mut AppState) {
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
        if d.legend.ui(ui, &classes, &present, &mut d.shown) {
            d.dirty = true;
        }
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
