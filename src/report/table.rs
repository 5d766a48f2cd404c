//! The comparison table: one row per run (and the teacher's), measured on this machine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::RunData;
use crate::data::transforms::Resize;
use crate::eval::teacher_quality::{self, QualityKey};
use crate::model::layers::count_macs;
use crate::model::{Mode, Model, ModelKind, load_for_inference};
use crate::util::device::describe;

/// A row of the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    pub model: String,
    pub mode: String,
    pub miou: f64,
    /// mIoU minus the no-distillation run's (same student), when there is one.
    pub delta: Option<f64>,
    pub params: usize,
    /// Multiply-adds of one forward pass at `eval_size`², in units of 10⁹.
    pub gmacs: f64,
    pub eval_size: u32,
    pub size_mb: f64,
    pub ms_per_image: f64,
    pub train_seconds: Option<f64>,
}

impl Row {
    /// The lab's score: 4·mIoU / (1 + parameters in millions).
    pub fn score(&self) -> f64 {
        4.0 * self.miou / (1.0 + self.params as f64 / 1e6)
    }

    /// The Cityscapes low-complexity figure of merit, GMACs²·MB²/(mIoU − 0.65); only
    /// meaningful above 0.65 mIoU (lower is better).
    pub fn fom(&self) -> Option<f64> {
        (self.miou > 0.65).then(|| self.gmacs.powi(2) * self.size_mb.powi(2) / (self.miou - 0.65))
    }
}

/// Multiply-adds and median forward time (batch 1, after warm-up, synchronised) at size²×size.
pub fn measure(model: &Model, size: u32, device: &Device) -> anyhow::Result<(u64, f64)> {
    let x = Tensor::zeros((1, 3, size as usize, size as usize), candle_core::DType::F32, device)?;
    let (out, macs) = count_macs(|| model.forward(&x, Mode::Eval));
    out?;
    for _ in 0..2 {
        model.forward(&x, Mode::Eval)?;
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        device.synchronize()?;
        let t = Instant::now();
        model.forward(&x, Mode::Eval)?;
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((macs, times[times.len() / 2]))
}

fn eval_size(run: &RunData) -> u32 {
    run.config.val_size.unwrap_or(run.config.size)
}

pub fn student_row(run: &RunData, device: &Device) -> anyhow::Result<Row> {
    let loaded = load_for_inference(run.config.model, &run.student, device)?;
    let size = eval_size(run);
    let (macs, ms) = measure(&loaded.model, size, device)?;
    let size_mb = std::fs::metadata(&run.student).map(|m| m.len() as f64 / 1e6).unwrap_or(f64::NAN);
    Ok(Row {
        label: run.name.clone(),
        model: run.config.model.name().into(),
        mode: run.mode_label(),
        miou: run.best_miou(),
        delta: None,
        params: loaded.num_params,
        gmacs: macs as f64 / 1e9,
        eval_size: size,
        size_mb,
        ms_per_image: ms,
        train_seconds: Some(run.state.train_seconds),
    })
}

/// Δ mIoU of each run against the no-distillation run of the same student model.
pub fn fill_deltas(rows: &mut [Row]) {
    let baselines: Vec<(String, f64)> =
        rows.iter().filter(|r| r.mode == "none").map(|r| (r.model.clone(), r.miou)).collect();
    for r in rows.iter_mut() {
        r.delta = baselines.iter().find(|(m, _)| *m == r.model).map(|(_, b)| r.miou - b);
    }
}

/// The teacher's row: evaluated on the first run's validation split at its eval size, through the
/// teacher-quality cache the app shares (`<runs>/teacher-eval/`).
pub fn teacher_row(run: &RunData, kind: ModelKind, weights: &Path, device: &Device) -> anyhow::Result<Row> {
    let loaded = load_for_inference(kind, weights, device).context("loading the teacher")?;
    let size = eval_size(run);
    let c = &run.config;
    let mut key = QualityKey::new(kind, weights, &c.data, c.dataset, &c.val_split, Resize::ShorterSide(size))
        .with_context(|| format!("{} is not a file", weights.display()))?;
    key.limit = c.val_limit;
    let cache = teacher_quality::cache_dir(&c.runs_dir);
    let quality = match teacher_quality::cached(&cache, &key) {
        Some(q) => q,
        None => teacher_quality::evaluate_loaded(&loaded.model, &key, &cache, device, &|_, _| {}, &|| true)?
            .context("the teacher evaluation was stopped")?,
    };
    let miou = quality.miou;
    let (macs, ms) = measure(&loaded.model, size, device)?;
    Ok(Row {
        label: "teacher".into(),
        model: kind.name().into(),
        mode: "—".into(),
        miou,
        delta: None,
        params: loaded.num_params,
        gmacs: macs as f64 / 1e9,
        eval_size: size,
        size_mb: std::fs::metadata(weights).map(|m| m.len() as f64 / 1e6).unwrap_or(f64::NAN),
        ms_per_image: ms,
        train_seconds: None,
    })
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("—".into(), f)
}

/// The report's markdown.
pub fn markdown(rows: &[Row], teacher: Option<&Row>, runs: &[RunData], images: &[PathBuf], device: &Device) -> String {
    let mut s = String::from("# segdistill report\n\n");
    s.push_str(&format!(
        "Measured on {} by `segdistill report` ({}). mIoU: best validation epoch of each run; Δ: against the \
         no-distillation run of the same student; GMACs: multiply-adds of one forward pass at the evaluation size \
         (S×S; GMACs in the FoM); size: weights file; ms/image: median of 5 forward passes at batch 1 after 2 warm-up passes; score: \
         4·mIoU/(1 + params in M); FoM: GMACs²·MB²/(mIoU − 0.65), only above 0.65 mIoU.\n\n",
        describe(device),
        chrono_free_date()
    ));
    s.push_str(
        "| run | model | mode | mIoU | Δ mIoU | params | MACs @ S² | size MB | ms/image | train time | score | FoM |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in teacher.into_iter().chain(rows) {
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {} | {} | {} @ {} | {:.2} | {:.2} | {} | {:.4} | {} |\n",
            r.label,
            r.model,
            r.mode,
            r.miou,
            fmt_opt(r.delta, |d| format!("{d:+.4}")),
            crate::model::format_params(r.params),
            format_macs(r.gmacs),
            r.eval_size,
            r.size_mb,
            r.ms_per_image,
            fmt_opt(r.train_seconds, crate::util::fmt::format_duration),
            r.score(),
            fmt_opt(r.fom(), |f| format!("{f:.3}")),
        ));
    }
    s.push_str("\n## Runs\n\n");
    for run in runs {
        let c = &run.config;
        s.push_str(&format!(
            "- **{}**: `{}` on `{}` ({} / {}), {} epochs × batch {} at {}px, {:?} lr {:.1e}, {:?} schedule, \
             α {} β {} γ {} τ {}, seed {}\n",
            run.name,
            c.model,
            c.data.display(),
            c.train_split,
            c.val_split,
            c.epochs,
            c.batch,
            c.size,
            c.optimizer.kind,
            c.optimizer.lr,
            c.schedule.kind,
            c.loss.alpha,
            c.loss.beta,
            c.loss.gamma,
            c.loss.tau,
            c.seed
        ));
    }
    s.push_str("\n## Figures\n\n");
    for img in images {
        let name = img.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        s.push_str(&format!("![{name}]({name})\n\n"));
    }
    s
}

/// "2.31 G", "4.7 M" multiply-adds.
pub fn format_macs(gmacs: f64) -> String {
    if gmacs >= 1.0 { format!("{gmacs:.2} G") } else { format!("{:.1} M", gmacs * 1e3) }
}

/// Today's date (UTC) without a date-time dependency.
fn chrono_free_date() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let days = secs.div_euclid(86_400);
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mode: &str, miou: f64, params: usize) -> Row {
        Row {
            label: mode.into(),
            model: "mbv3s-aspp".into(),
            mode: mode.into(),
            miou,
            delta: None,
            params,
            gmacs: 2.0,
            eval_size: 256,
            size_mb: 4.0,
            ms_per_image: 1.0,
            train_seconds: None,
        }
    }

    #[test]
    fn score_fom_and_deltas() {
        let r = row("none", 0.6, 1_000_000);
        assert!((r.score() - 1.2).abs() < 1e-12);
        assert_eq!(r.fom(), None, "FoM only above 0.65 mIoU");
        let r = row("none", 0.75, 1_000_000);
        assert!((r.fom().unwrap() - 4.0 * 16.0 / 0.1).abs() < 1e-9);
        let mut rows = vec![row("none", 0.5, 1), row("response", 0.55, 1)];
        fill_deltas(&mut rows);
        assert!((rows[1].delta.unwrap() - 0.05).abs() < 1e-12);
        assert_eq!(rows[0].delta, Some(0.0));
        assert_eq!(chrono_free_date().len(), 10);
    }
}
