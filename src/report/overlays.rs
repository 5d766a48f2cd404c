//! Qualitative panels: for a run's best and worst validation images (by the student's per-image
//! mIoU), a row image | ground truth | teacher | student, masks blended over the photo.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use candle_core::Device;
use image::RgbImage;
use plotters::prelude::*;

use super::RunData;
use crate::data::overlay::overlay;
use crate::data::transforms::{Resize, resize_image, resize_mask_nearest};
use crate::data::{ClassSet, Dataset, Mask};
use crate::metrics::ImageScore;
use crate::model::{Model, ModelKind, load_for_inference};
use crate::train::predict::predict;

const PANEL_H: u32 = 150;
const HEADER: u32 = 48;
const CAPTION: u32 = 22;

/// One row: the four panels at a common height.
fn panels(img: &RgbImage, gt: &Mask, teacher: Option<&Mask>, student: &Mask, classes: &ClassSet) -> Vec<RgbImage> {
    let w = ((img.width() as f64 * PANEL_H as f64 / img.height() as f64).round() as u32).max(1);
    let small = resize_image(img, w, PANEL_H);
    let blend = |m: &Mask| overlay(&small, &resize_mask_nearest(m, w, PANEL_H), classes, 0.6, classes.dataset == "voc");
    let mut v = vec![small.clone(), blend(gt)];
    v.push(match teacher {
        Some(t) => blend(t),
        None => RgbImage::from_pixel(w, PANEL_H, image::Rgb([230, 230, 230])),
    });
    v.push(blend(student));
    v
}

fn text(buf: &mut [u8], size: (u32, u32), items: &[(String, (i32, i32), u32)]) -> anyhow::Result<()> {
    let root = BitMapBackend::with_buffer(buf, size).into_drawing_area();
    for (s, pos, px) in items {
        root.draw(&Text::new(s.clone(), *pos, ("sans-serif", *px as f64).into_font().color(&BLACK)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Renders `overlays_<run>_best.png` and `_worst.png` with `n` images each.
pub fn render(
    run: &RunData,
    teacher: Option<(ModelKind, &Path)>,
    n: usize,
    out: &Path,
    device: &Device,
) -> anyhow::Result<Vec<PathBuf>> {
    if n == 0 || run.images.is_empty() {
        return Ok(Vec::new());
    }
    let mut ds = Dataset::open(&run.config.data, run.config.dataset, &run.config.val_split)?;
    ds.retain_present();
    let student = load_for_inference(run.config.model, &run.student, device)?.model;
    let teacher = teacher.map(|(kind, w)| load_for_inference(kind, w, device).map(|l| l.model)).transpose()?;
    let resize = Resize::ShorterSide(run.config.val_size.unwrap_or(run.config.size));
    let mut sorted: Vec<&ImageScore> = run.images.iter().filter(|s| s.miou.is_finite()).collect();
    sorted.sort_by(|a, b| b.miou.total_cmp(&a.miou));
    let best: Vec<&ImageScore> = sorted.iter().take(n).copied().collect();
    let worst: Vec<&ImageScore> = sorted.iter().rev().take(n).copied().collect();
    let mut files = Vec::new();
    for (which, picks) in [("best", best), ("worst", worst)] {
        let path = out.join(format!("overlays_{}_{which}.png", super::slug(&run.name)));
        let title = format!("{}: {which} {} validation images by student mIoU", run.name, picks.len());
        sheet(&ds, &picks, &student, teacher.as_ref(), resize, device, &title, &path)?;
        files.push(path);
    }
    Ok(files)
}

#[allow(clippy::too_many_arguments)] // one call site; the arguments are the sheet's content
fn sheet(
    ds: &Dataset,
    picks: &[&ImageScore],
    student: &Model,
    teacher: Option<&Model>,
    resize: Resize,
    device: &Device,
    title: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let classes = ds.classes();
    let mut rows = Vec::new();
    for score in picks {
        let Some(i) = ds.samples.iter().position(|s| s.id == score.id) else { continue };
        let sample = ds.load(i)?;
        let s_pred = predict(student, &sample.image, resize, device)?;
        let t_pred = match teacher {
            Some(t) => Some(predict(t, &sample.image, resize, device)?),
            None => None,
        };
        let t_miou = t_pred
            .as_ref()
            .map(|t| crate::metrics::score_image("", &t.mask.data, &sample.mask.data, classes.len()).0.miou);
        let caption = format!(
            "{}: student mIoU {:.3}{}",
            score.id,
            score.miou,
            t_miou.map(|m| format!(", teacher {m:.3}")).unwrap_or_default()
        );
        rows.push((
            panels(&sample.image, &sample.mask, t_pred.as_ref().map(|t| &t.mask), &s_pred.mask, classes),
            caption,
        ));
    }
    anyhow::ensure!(!rows.is_empty(), "none of the selected images are in the validation split");
    let width = rows.iter().map(|(p, _)| p.iter().map(|i| i.width() + 6).sum::<u32>()).max().unwrap_or(600).max(600);
    let height = HEADER + rows.len() as u32 * (PANEL_H + CAPTION + 6);
    let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut labels = vec![(title.to_string(), (6, 4), 18)];
    for (r, (panel_row, caption)) in rows.iter().enumerate() {
        let y = HEADER + r as u32 * (PANEL_H + CAPTION + 6);
        labels.push((caption.clone(), (6, y as i32 + 2), 14));
        let mut x = 0;
        for (k, p) in panel_row.iter().enumerate() {
            image::imageops::replace(&mut canvas, p, x as i64, (y + CAPTION) as i64);
            if r == 0 {
                let name = ["image", "ground truth", "teacher", "student"][k];
                labels.push((name.to_string(), (x as i32 + 4, 28), 14));
            }
            x += p.width() + 6;
        }
    }
    let (w, h) = canvas.dimensions();
    let mut raw = canvas.into_raw();
    text(&mut raw, (w, h), &labels)?;
    let img = RgbImage::from_raw(w, h, raw).context("sheet buffer")?;
    crate::util::fs::write_atomic(path, &crate::data::image::encode_png(&img)?)
        .with_context(|| format!("cannot write {}", path.display()))
}
