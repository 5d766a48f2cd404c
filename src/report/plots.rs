//! Curve PNGs (training loss per step, validation loss and mIoU per epoch), one line per run,
//! drawn with plotters into a buffer and encoded with the `image` crate.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::prelude::*;

use super::RunData;

/// Registers the font plotters draws text with (egui's bundled Ubuntu Light: no system fonts).
pub fn register_fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Failure only means unreadable text in charts, never a failed report.
        plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT).ok();
    });
}

const W: u32 = 960;
const H: u32 = 540;

/// Exponential moving average (TensorBoard-style smoothing).
pub fn ema(values: &[f64], alpha: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len());
    let mut acc: Option<f64> = None;
    for &v in values {
        let a = acc.map_or(v, |a| alpha * v + (1.0 - alpha) * a);
        acc = Some(a);
        out.push(a);
    }
    out
}

type Series = (String, Vec<(f64, f64)>);

fn chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    hline: Option<(&str, f64)>,
) -> anyhow::Result<()> {
    let mut buf = vec![255u8; (W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let extra: Vec<(f64, f64)> = hline.iter().map(|(_, y)| (f64::NAN, *y)).collect();
        let points = series.iter().flat_map(|(_, p)| p.iter()).chain(extra.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points.filter(|(_, y)| y.is_finite()) {
            if x.is_finite() {
                (x0, x1) = (x0.min(x), x1.max(x));
            }
            (y0, y1) = (y0.min(y), y1.max(y));
        }
        if x0 > x1 {
            (x0, x1) = (0.0, 1.0);
        }
        if y0 > y1 {
            (y0, y1) = (0.0, 1.0);
        }
        let pad = ((y1 - y0) * 0.05).max(1e-3);
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        c.configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            c.draw_series(LineSeries::new(
                pts.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        if let Some((name, y)) = hline {
            let style = BLACK.mix(0.6).stroke_width(1);
            c.draw_series(DashedLineSeries::new(vec![(x0, y), (x1.max(x0 + 1.0), y)], 6, 4, style))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let img = image::RgbImage::from_raw(W, H, buf).context("chart buffer")?;
    let png = crate::data::image::encode_png(&img)?;
    crate::util::fs::write_atomic(path, &png).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `loss.png`, `val_loss.png` and `miou.png` into `out`.
pub fn curves(runs: &[RunData], teacher_miou: Option<f64>, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let loss: Vec<Series> = runs
        .iter()
        .map(|r| {
            let smoothed = ema(&r.steps.iter().map(|s| s.1).collect::<Vec<_>>(), 0.1);
            (r.name.clone(), r.steps.iter().zip(smoothed).map(|(s, v)| (s.0 as f64, v)).collect())
        })
        .collect();
    let per_epoch = |f: fn(&crate::train::checkpoint::EpochRecord) -> f64| -> Vec<Series> {
        runs.iter()
            .map(|r| (r.name.clone(), r.state.history.iter().map(|h| ((h.epoch + 1) as f64, f(h))).collect()))
            .collect()
    };
    let files = [out.join("loss.png"), out.join("val_loss.png"), out.join("miou.png")];
    chart(&files[0], "Training loss (EMA 0.1)", "step", "loss", &loss, None)?;
    chart(&files[1], "Validation loss", "epoch", "cross-entropy", &per_epoch(|h| h.val_loss), None)?;
    chart(&files[2], "Validation mIoU", "epoch", "mIoU", &per_epoch(|h| h.miou), teacher_miou.map(|m| ("teacher", m)))?;
    Ok(files.to_vec())
}

/// One line with an error band: `(x, mean, sd)` points.
pub struct Band {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// The legend column beside a band chart: the series' names never cover their data (a study
/// has two dozen of them).
const LEGEND_W: u32 = 300;

/// A chart of mean lines with shaded ±1 sd bands, one per [`Band`], written as a PNG to `path`,
/// with the legend in a column to the right of the data.
pub fn band_chart(path: &Path, title: &str, x_desc: &str, y_desc: &str, bands: &[Band]) -> anyhow::Result<()> {
    let plot_err = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw {}: {e}", path.display());
    let width = W + LEGEND_W;
    let mut buf = vec![255u8; (width * H * 3) as usize];
    {
        let canvas = BitMapBackend::with_buffer(&mut buf, (width, H)).into_drawing_area();
        canvas.fill(&WHITE).map_err(|e| plot_err(&e))?;
        let (root, legend) = canvas.split_horizontally(W);
        let finite = bands.iter().flat_map(|b| b.points.iter()).filter(|p| p.0.is_finite() && p.1.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, mean, sd) in finite {
            let sd = if sd.is_finite() { sd } else { 0.0 };
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(mean - sd), y1.max(mean + sd));
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        let pad = ((y1 - y0) * 0.05).max(1e-3);
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
            .map_err(|e| plot_err(&e))?;
        c.configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| plot_err(&e))?;
        for (i, band) in bands.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64, f64)> =
                band.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            // The band: upper edge left to right, lower edge back.
            let outline: Vec<(f64, f64)> = pts
                .iter()
                .map(|&(x, m, sd)| (x, m + sd.max(0.0)))
                .chain(pts.iter().rev().map(|&(x, m, sd)| (x, m - sd.max(0.0))))
                .collect();
            if pts.len() > 1 {
                c.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.2).filled())))
                    .map_err(|e| plot_err(&e))?;
            }
            c.draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), color.stroke_width(2)))
                .map_err(|e| plot_err(&e))?;
            // Entries 18 px apart, closer when there are more than the column holds.
            let step = (18.0_f64).min((H as f64 - 60.0) / bands.len().max(1) as f64);
            let y = 50 + (i as f64 * step) as i32;
            legend.draw(&PathElement::new(vec![(8, y), (30, y)], color.stroke_width(2))).map_err(|e| plot_err(&e))?;
            legend.draw(&Text::new(band.name.clone(), (36, y - 7), ("sans-serif", 13))).map_err(|e| plot_err(&e))?;
        }
        canvas.present().map_err(|e| plot_err(&e))?;
    }
    let img = image::RgbImage::from_raw(width, H, buf).context("chart buffer")?;
    let png = crate::data::image::encode_png(&img)?;
    crate::util::fs::write_atomic(path, &png).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ema_smooths() {
        assert_eq!(super::ema(&[1.0, 3.0], 0.5), vec![1.0, 2.0]);
    }
}
