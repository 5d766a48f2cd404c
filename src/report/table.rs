//! The comparison table: one row per run (and the teacher's), measured on this machine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::RunData;
use crate::data::transforms::Resize;
use crate::diagnostics::teacher_quality::{self, QualityKey};
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
    /// Median batch-1 forward time, with the fastest and slowest of the timed passes.
    pub ms_per_image: f64,
    #[serde(default)]
    pub ms_range: Option<(f64, f64)>,
    /// Training time (all sessions), without the teacher cache's build.
    pub train_seconds: Option<f64>,
    /// The teacher cache's one-off build time, shown apart from the training time.
    #[serde(default)]
    pub cache_seconds: Option<f64>,
    /// The run trained all its epochs (only such runs can be a Δ baseline).
    #[serde(default)]
    pub completed: bool,
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

/// Warm-up and timed forward passes of a speed measurement.
const WARM_UP: usize = 2;
const TIMED: usize = 10;

/// A model's inference cost measured once under fixed conditions (batch 1, `size`², after
/// warm-up, synchronised, on `device` with `threads` CPU threads).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Speed {
    pub macs: u64,
    pub params: usize,
    pub size: u32,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub repeats: usize,
    pub device: String,
    pub threads: usize,
    /// The weights file measured (length and modification time): a rewritten file is measured again.
    pub weights_len: u64,
    pub weights_modified_ns: u128,
}

impl Speed {
    /// Whether a stored figure can be a measurement at all (a damaged or hand-edited speed.json
    /// with zero, negative, unordered or absurd times is measured again, not shown).
    pub fn is_plausible(&self) -> bool {
        let times = [self.min_ms, self.median_ms, self.max_ms];
        times.iter().all(|t| t.is_finite() && *t > 0.0 && *t < 600_000.0)
            && self.min_ms <= self.median_ms
            && self.median_ms <= self.max_ms
            && self.repeats > 0
            && self.macs > 0
            && self.params > 0
    }
}

/// Multiply-adds and forward times (batch 1, after warm-up, synchronised) at size²×size.
pub fn measure(model: &Model, size: u32, device: &Device) -> anyhow::Result<(u64, Vec<f64>)> {
    let x = Tensor::zeros((1, 3, size as usize, size as usize), candle_core::DType::F32, device)?;
    let (out, macs) = count_macs(|| model.forward(&x, Mode::Eval));
    out?;
    for _ in 0..WARM_UP {
        model.forward(&x, Mode::Eval)?;
    }
    let mut times = Vec::new();
    for _ in 0..TIMED {
        device.synchronize()?;
        let t = Instant::now();
        model.forward(&x, Mode::Eval)?;
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((macs, times))
}

fn file_stamp(path: &Path) -> anyhow::Result<(u64, u128)> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let modified = meta.modified().ok().and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok());
    Ok((meta.len(), modified.map_or(0, |d| d.as_nanos())))
}

/// Where a run keeps its student's measured speed.
pub fn speed_path(run_dir: &Path) -> PathBuf {
    run_dir.join(crate::train::run_folder::files::SPEED)
}

/// When to measure a speed that is not stored yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Measure it now (and store it).
    IfMissing,
    /// Only read what is stored: the machine is busy (e.g. training), times now would be wrong.
    StoredOnly,
}

/// A run's student speed: measured once and stored in `<run>/speed.json`, measured again only
/// when the weights file, the size, the device or the thread count differ (times from one visit
/// to the next would otherwise wander with whatever else the machine does). `None` when it is
/// not stored and `measure` says not to measure now.
pub fn student_speed(
    run_dir: &Path,
    kind: ModelKind,
    weights: &Path,
    size: u32,
    device: &Device,
    measure_now: Measure,
) -> anyhow::Result<Option<Speed>> {
    let (weights_len, weights_modified_ns) = file_stamp(weights)?;
    let device_name = describe(device);
    let threads = crate::util::available_threads();
    let path = speed_path(run_dir);
    let stored: Option<Speed> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(s) = stored.filter(|s| {
        (s.weights_len, s.weights_modified_ns, s.size, s.threads) == (weights_len, weights_modified_ns, size, threads)
            && s.device == device_name
            && s.is_plausible()
    }) {
        return Ok(Some(s));
    }
    if measure_now == Measure::StoredOnly {
        return Ok(None);
    }
    let loaded = load_for_inference(kind, weights, device)?;
    let (macs, times) = measure(&loaded.model, size, device)?;
    let speed = Speed {
        macs,
        params: loaded.num_params,
        size,
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        max_ms: times[times.len() - 1],
        repeats: times.len(),
        device: device_name,
        threads,
        weights_len,
        weights_modified_ns,
    };
    // A folder that cannot be written (read-only share) still gets its row, measured each time.
    if let Ok(json) = serde_json::to_vec_pretty(&speed) {
        crate::util::fs::write_atomic(&path, &json).ok();
    }
    Ok(Some(speed))
}

fn eval_size(run: &RunData) -> u32 {
    run.config.val_size.unwrap_or(run.config.size)
}

pub fn student_row(run: &RunData, device: &Device) -> anyhow::Result<Row> {
    student_row_when(run, device, Measure::IfMissing)?.context("the speed was not measured")
}

/// The run's row; `None` when its speed is not stored and `measure_now` says not to measure.
pub fn student_row_when(run: &RunData, device: &Device, measure_now: Measure) -> anyhow::Result<Option<Row>> {
    let size = eval_size(run);
    let Some(speed) = student_speed(&run.dir, run.config.model, &run.student, size, device, measure_now)? else {
        return Ok(None);
    };
    let size_mb = std::fs::metadata(&run.student).map(|m| m.len() as f64 / 1e6).unwrap_or(f64::NAN);
    let state = &run.state;
    let label = match &run.training_now {
        Some(_) => format!("{} (still training: partial)", run.name),
        None => run.name.clone(),
    };
    Ok(Some(Row {
        label,
        model: run.config.model.name().into(),
        mode: run.mode_label(),
        miou: run.best_miou(),
        delta: None,
        params: speed.params,
        gmacs: speed.macs as f64 / 1e9,
        eval_size: size,
        size_mb,
        ms_per_image: speed.median_ms,
        ms_range: Some((speed.min_ms, speed.max_ms)),
        train_seconds: Some(state.train_seconds),
        cache_seconds: (state.cache_seconds > 0.0).then_some(state.cache_seconds),
        completed: state.epoch >= state.config.epochs,
    }))
}

/// Δ mIoU of each run against the no-distillation run of the same student model.
/// Whether a row can be the Δ baseline of its student: a completed run without distillation
/// (a partial run's mIoU says how far it got, not what the student reaches).
pub fn can_be_baseline(row: &Row) -> bool {
    row.mode == "none" && row.completed
}

/// Per student architecture, the first row (in the given order) that can be its baseline:
/// model name → row label.
pub fn default_baselines(rows: &[Row]) -> std::collections::BTreeMap<String, String> {
    let mut chosen = std::collections::BTreeMap::new();
    for r in rows.iter().filter(|r| can_be_baseline(r)) {
        chosen.entry(r.model.clone()).or_insert_with(|| r.label.clone());
    }
    chosen
}

/// Δ mIoU of each row against its student's baseline (model name → row label); rows without a
/// usable baseline get none.
pub fn fill_deltas(rows: &mut [Row], baselines: &std::collections::BTreeMap<String, String>) {
    let base: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| can_be_baseline(r) && baselines.get(&r.model) == Some(&r.label))
        .map(|r| (r.model.clone(), r.miou))
        .collect();
    for r in rows.iter_mut() {
        r.delta = base.iter().find(|(m, _)| *m == r.model).map(|(_, b)| r.miou - b);
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
    let (macs, times) = measure(&loaded.model, size, device)?;
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
        ms_per_image: times[times.len() / 2],
        ms_range: Some((times[0], times[times.len() - 1])),
        train_seconds: None,
        cache_seconds: None,
        completed: true,
    })
}

/// "12m03s", or "12m03s (+1m10s cache)" when a teacher cache was built.
pub fn train_time(r: &Row) -> String {
    let train = fmt_opt(r.train_seconds, crate::util::fmt::format_duration);
    match r.cache_seconds {
        Some(c) => format!("{train} (+{} cache)", crate::util::fmt::format_duration(c)),
        None => train,
    }
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("—".into(), f)
}

/// What goes into the report besides the rows.
pub struct ReportContext<'a> {
    pub teacher: Option<&'a Row>,
    pub runs: &'a [RunData],
    pub images: &'a [PathBuf],
    pub device: &'a Device,
    /// Model name → the run its Δ is measured against.
    pub baselines: &'a std::collections::BTreeMap<String, String>,
}

/// The report's markdown.
pub fn markdown(rows: &[Row], cx: &ReportContext<'_>) -> String {
    let ReportContext { teacher, runs, images, device, baselines } = *cx;
    let mut s = String::from("# segdistill report\n\n");
    s.push_str(&format!(
        "Measured on {} by `segdistill report` ({}). mIoU: best validation epoch of each run; Δ: against the \
         baseline of the same student, a completed run without distillation; GMACs: multiply-adds of one forward pass at the evaluation size \
         (S×S; GMACs in the FoM); size: weights file; ms/image: median of 10 forward passes at batch 1 after 2 warm-up \
         passes, measured once per run and stored in its speed.json; train time: training only, the teacher cache's \
         build in brackets; score: 4·mIoU/(1 + params in M); FoM: GMACs²·MB²/(mIoU − 0.65), only above 0.65 mIoU.\n\n",
        describe(device),
        chrono_free_date()
    ));
    if !baselines.is_empty() {
        let list: Vec<String> = baselines.iter().map(|(model, run)| format!("{model}: {run}")).collect();
        s.push_str(&format!("Baselines: {}.\n\n", list.join(", ")));
    }
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
            train_time(r),
            r.score(),
            fmt_opt(r.fom(), |f| format!("{f:.3}")),
        ));
    }
    s.push_str("\n## Runs\n\n");
    for run in runs {
        let c = &run.config;
        s.push_str(&format!(
            "- **{}**: `{}` on `{}` ({} / {}{}), {} epochs × batch {} at {}px, {:?} lr {:.1e}, {:?} schedule, \
             α {} β {} γ {} τ {}, seed {}\n",
            run.name,
            c.model,
            c.data.display(),
            c.train_split,
            c.val_split,
            // Images without masks are counted apart from the labelled split.
            c.unlabeled.as_ref().map_or(String::new(), |u| format!(
                "; + `{u}` without masks, {} per labelled image",
                c.unlabeled_ratio
            )),
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
            ms_range: None,
            train_seconds: None,
            cache_seconds: None,
            completed: true,
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
        let defaults = default_baselines(&rows);
        fill_deltas(&mut rows, &defaults);
        assert!((rows[1].delta.unwrap() - 0.05).abs() < 1e-12);
        assert_eq!(rows[0].delta, Some(0.0));
        assert_eq!(chrono_free_date().len(), 10);
    }

    #[test]
    fn a_partial_run_is_never_the_baseline_and_the_baseline_can_be_chosen() {
        let mut partial = row("none", 0.2, 1);
        partial.label = "stopped-early".into();
        partial.completed = false;
        let mut other = row("none", 0.45, 1);
        other.label = "second-baseline".into();
        let mut rows = vec![partial, row("none", 0.5, 1), other, row("response", 0.55, 1)];
        let defaults = default_baselines(&rows);
        assert_eq!(defaults.get("mbv3s-aspp").map(String::as_str), Some("none"), "the first completed no-KD run");
        fill_deltas(&mut rows, &defaults);
        assert!((rows[3].delta.unwrap() - 0.05).abs() < 1e-12);
        let chosen = [("mbv3s-aspp".to_string(), "second-baseline".to_string())].into();
        fill_deltas(&mut rows, &chosen);
        assert!((rows[3].delta.unwrap() - 0.10).abs() < 1e-12, "against the chosen run");
        let wrong = [("mbv3s-aspp".to_string(), "stopped-early".to_string())].into();
        fill_deltas(&mut rows, &wrong);
        assert_eq!(rows[3].delta, None, "a partial run chosen by name still does not count");
    }

    #[test]
    fn a_runs_speed_is_measured_once_and_stored() {
        let dir = tempfile::tempdir().unwrap();
        let kind = ModelKind::Mbv3sTiny;
        let weights = dir.path().join("student.safetensors");
        let t = crate::model::build_trainable(kind, 21, 0, &Device::Cpu).unwrap();
        t.varmap.save(&weights).unwrap();
        let stored_only = student_speed(dir.path(), kind, &weights, 64, &Device::Cpu, Measure::StoredOnly).unwrap();
        assert_eq!(stored_only, None, "nothing stored yet, and not measured while busy");
        let first = student_speed(dir.path(), kind, &weights, 64, &Device::Cpu, Measure::IfMissing).unwrap().unwrap();
        assert!(speed_path(dir.path()).is_file());
        assert!(first.min_ms <= first.median_ms && first.median_ms <= first.max_ms);
        assert_eq!(first.repeats, TIMED);
        let again = student_speed(dir.path(), kind, &weights, 64, &Device::Cpu, Measure::StoredOnly).unwrap().unwrap();
        assert_eq!(again, first, "read back, not measured again");
        let other_size =
            student_speed(dir.path(), kind, &weights, 96, &Device::Cpu, Measure::IfMissing).unwrap().unwrap();
        assert_eq!(other_size.size, 96);
        assert!(other_size.macs > first.macs, "measured again at the new size");
        // An absurd stored figure (hand-edited, damaged) is measured again, not shown.
        let absurd = Speed { median_ms: -3.0, ..other_size.clone() };
        crate::util::fs::write_atomic(&speed_path(dir.path()), serde_json::to_string(&absurd).unwrap().as_bytes())
            .unwrap();
        let remeasured =
            student_speed(dir.path(), kind, &weights, 96, &Device::Cpu, Measure::IfMissing).unwrap().unwrap();
        assert!(remeasured.is_plausible() && remeasured.median_ms > 0.0, "{remeasured:?}");
        assert_eq!(
            student_speed(dir.path(), kind, &weights, 96, &Device::Cpu, Measure::StoredOnly).unwrap(),
            Some(remeasured)
        );
        for bad in [
            Speed { min_ms: 5.0, median_ms: 1.0, ..first.clone() },
            Speed { max_ms: f64::NAN, ..first.clone() },
            Speed { median_ms: 1e9, max_ms: 1e9, ..first.clone() },
            Speed { repeats: 0, ..first.clone() },
        ] {
            assert!(!bad.is_plausible(), "{bad:?}");
        }
    }
}
