//! The comparison table: one row per run (and the teacher's), measured on this machine.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::RunData;
use super::speed::{Conditions, Speed, SpeedKey, speed_of};
use crate::data::transforms::Resize;
use crate::diagnostics::teacher_quality::{self, QualityKey};
use crate::model::{ModelKind, load_for_inference};
use crate::util::device::describe;

pub use super::speed::Measure;

/// A row of the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub label: String,
    pub model: String,
    pub mode: String,
    pub miou: f64,
    /// mIoU minus the no-distillation run's (same student), when there is one.
    pub delta: Option<f64>,
    /// What differs between this run's schedule and its Δ baseline's, when something does (the
    /// Δ then measures more than distillation).
    #[serde(default)]
    pub delta_caveat: Option<String>,
    pub params: usize,
    /// Multiply-adds of one forward pass at `eval_size`², in units of 10⁹.
    pub gmacs: f64,
    pub eval_size: u32,
    pub size_mb: f64,
    /// Median batch-1 forward time, with the fastest and slowest of the timed passes.
    pub ms_per_image: f64,
    #[serde(default)]
    pub ms_range: Option<(f64, f64)>,
    /// The standard deviation of the timed passes.
    #[serde(default)]
    pub ms_spread: Option<f64>,
    /// Why the time cannot be trusted (the machine was busy while it was measured).
    #[serde(default)]
    pub ms_busy: Option<String>,
    /// Training time (all sessions), without the teacher cache's build.
    pub train_seconds: Option<f64>,
    /// The teacher cache's one-off build time, shown apart from the training time.
    #[serde(default)]
    pub cache_seconds: Option<f64>,
    /// The run trained all its epochs (only such runs can be a Δ baseline).
    #[serde(default)]
    pub completed: bool,
    /// What the run's mIoU was reached with (compared with the baseline's for Δ).
    #[serde(default)]
    pub schedule: Schedule,
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

    fn with_speed(mut self, speed: &Speed) -> Self {
        self.params = speed.params;
        self.gmacs = speed.macs as f64 / 1e9;
        self.ms_per_image = speed.median_ms;
        self.ms_range = Some((speed.min_ms, speed.max_ms));
        self.ms_spread = Some(speed.spread_ms);
        self.ms_busy = speed.busy.clone();
        self
    }
}

/// What a run's mIoU was reached with: runs that differ in it are compared on more than their
/// distillation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub epochs_done: usize,
    pub epochs_planned: usize,
    /// The training crop's side, in pixels.
    pub crop: u32,
    /// The dataset folder.
    pub data: String,
    /// The validation split, its image limit and its evaluation size.
    pub val: String,
}

impl Schedule {
    pub fn of(run: &RunData) -> Self {
        let c = &run.config;
        let limit = c.val_limit.map_or(String::new(), |n| format!(", first {n} images"));
        Self {
            epochs_done: run.state.epoch,
            epochs_planned: c.epochs,
            crop: c.size,
            data: c.data.display().to_string(),
            val: format!("{}{limit} at {} px", c.val_split, eval_size(run)),
        }
    }

    /// What differs from `base`, one phrase each ("epochs 17/40 vs 5/5").
    pub fn differences(&self, base: &Schedule) -> Vec<String> {
        let mut d = Vec::new();
        if (self.epochs_done, self.epochs_planned) != (base.epochs_done, base.epochs_planned) {
            d.push(format!(
                "epochs {}/{} vs {}/{}",
                self.epochs_done, self.epochs_planned, base.epochs_done, base.epochs_planned
            ));
        }
        if self.crop != base.crop {
            d.push(format!("crop {} px vs {} px", self.crop, base.crop));
        }
        if self.data != base.data {
            d.push(format!("dataset {} vs {}", self.data, base.data));
        }
        if self.val != base.val {
            d.push(format!("validation {} vs {}", self.val, base.val));
        }
        d
    }
}

fn eval_size(run: &RunData) -> u32 {
    run.config.val_size.unwrap_or(run.config.size)
}

/// The runs folder holding `run` (its speed figures live there).
fn runs_dir_of(run: &RunData) -> &Path {
    run.dir.parent().unwrap_or(&run.dir)
}

/// The class count of a run's student: its evaluations say it without loading the weights.
fn classes_of(run: &RunData) -> Option<usize> {
    let evaluated = run.state.history.last().map(|r| r.iou.len()).filter(|n| *n > 0);
    evaluated.or_else(|| run.config.dataset.and_then(|d| d.classes()).map(|c| c.len()))
}

/// What a run's student speed is filed under: its architecture and key (`None` when its class
/// count is not known without loading its weights).
pub fn student_speed_key(run: &RunData, device: &Device) -> Option<(ModelKind, SpeedKey)> {
    Some((run.config.model, SpeedKey::new(classes_of(run)?, eval_size(run), device)))
}

pub fn student_row(run: &RunData, device: &Device) -> anyhow::Result<Row> {
    student_row_when(run, device, Measure::IfMissing)?.context("the speed was not measured")
}

/// The run's row; `None` when its speed is not stored and `measure_now` says not to measure.
/// Its speed is its architecture's at its evaluation size (`super::speed`), the same figure for
/// every run of that architecture.
pub fn student_row_when(run: &RunData, device: &Device, measure_now: Measure) -> anyhow::Result<Option<Row>> {
    let size = eval_size(run);
    let kind = run.config.model;
    let load = || load_for_inference(kind, &run.student, device);
    let classes = match classes_of(run) {
        Some(n) => n,
        None if measure_now == Measure::StoredOnly => return Ok(None),
        None => load()?.model.num_classes(),
    };
    let key = SpeedKey::new(classes, size, device);
    let conditions = Conditions::default();
    let Some(speed) = speed_of(runs_dir_of(run), kind, &key, measure_now, load, device, &conditions)? else {
        return Ok(None);
    };
    let size_mb = std::fs::metadata(&run.student).map(|m| m.len() as f64 / 1e6).unwrap_or(f64::NAN);
    let label = match &run.training_now {
        Some(_) => format!("{} (still training: partial)", run.name),
        None => run.name.clone(),
    };
    let row = Row {
        label,
        model: kind.name().into(),
        mode: run.mode_label(),
        miou: run.best_miou(),
        delta: None,
        delta_caveat: None,
        params: 0,
        gmacs: 0.0,
        eval_size: size,
        size_mb,
        ms_per_image: f64::NAN,
        ms_range: None,
        ms_spread: None,
        ms_busy: None,
        train_seconds: Some(run.state.train_seconds),
        cache_seconds: (run.state.cache_seconds > 0.0).then_some(run.state.cache_seconds),
        completed: run.state.epoch >= run.config.epochs,
        schedule: Schedule::of(run),
    };
    Ok(Some(row.with_speed(&speed)))
}

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

/// Δ mIoU of each row against its student's baseline (model name → row label), with what differs
/// between their schedules; rows without a usable baseline get none.
pub fn fill_deltas(rows: &mut [Row], baselines: &std::collections::BTreeMap<String, String>) {
    let base: Vec<Row> =
        rows.iter().filter(|r| can_be_baseline(r) && baselines.get(&r.model) == Some(&r.label)).cloned().collect();
    for r in rows.iter_mut() {
        let Some(b) = base.iter().find(|b| b.model == r.model) else {
            (r.delta, r.delta_caveat) = (None, None);
            continue;
        };
        r.delta = Some(r.miou - b.miou);
        let differences = r.schedule.differences(&b.schedule);
        r.delta_caveat = (!differences.is_empty())
            .then(|| format!("trained unlike its baseline {}: {}", b.label, differences.join("; ")));
    }
}

/// "+0.1600", with "†" when the schedules differ (the caveat says how); "—" without a baseline.
pub fn format_delta(r: &Row) -> String {
    match (r.delta, &r.delta_caveat) {
        (Some(d), Some(_)) => format!("{d:+.4} †"),
        (Some(d), None) => format!("{d:+.4}"),
        (None, _) => "—".into(),
    }
}

/// "4.20 ±0.30", "(busy)" after it when the machine was busy while it was measured.
pub fn format_ms(r: &Row) -> String {
    let spread = r.ms_spread.map_or(String::new(), |s| format!(" ±{s:.2}"));
    let busy = if r.ms_busy.is_some() { " (busy)" } else { "" };
    format!("{:.2}{spread}{busy}", r.ms_per_image)
}

/// The teacher's row: evaluated on the first run's validation split at its eval size, through the
/// teacher-quality cache the app shares (`<runs>/teacher-eval/`); its speed through the runs
/// folder's speed figures, as the students'.
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
    let speed_key = SpeedKey::new(loaded.model.num_classes(), size, device);
    let speed = speed_of(
        runs_dir_of(run),
        kind,
        &speed_key,
        Measure::IfMissing,
        || Ok(loaded),
        device,
        &Conditions::default(),
    )?
    .context("the teacher's speed was not measured")?;
    let row = Row {
        label: "teacher".into(),
        model: kind.name().into(),
        mode: "—".into(),
        miou: quality.miou,
        delta: None,
        delta_caveat: None,
        params: 0,
        gmacs: 0.0,
        eval_size: size,
        size_mb: std::fs::metadata(weights).map(|m| m.len() as f64 / 1e6).unwrap_or(f64::NAN),
        ms_per_image: f64::NAN,
        ms_range: None,
        ms_spread: None,
        ms_busy: None,
        train_seconds: None,
        cache_seconds: None,
        completed: true,
        schedule: Schedule::default(),
    };
    Ok(row.with_speed(&speed))
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
    /// How the baselines were chosen where that is not plain: a chosen baseline added to the
    /// selected runs, or one that could not be used and why (one line each).
    pub baseline_notes: &'a [String],
}

/// The report's markdown.
pub fn markdown(rows: &[Row], cx: &ReportContext<'_>) -> String {
    let ReportContext { teacher, runs, images, device, baselines, baseline_notes } = *cx;
    let mut s = String::from("# segdistill report\n\n");
    s.push_str(&format!(
        "Measured on {} by `segdistill report` ({}). mIoU: best validation epoch of each run; Δ: against the \
         baseline of the same student, a completed run without distillation (†: trained unlike its baseline, see \
         below); GMACs: multiply-adds of one forward pass at the evaluation size (S×S; GMACs in the FoM); size: \
         weights file; ms/image: median of 10 forward passes at batch 1 after 2 warm-up passes ± their standard \
         deviation, measured once per architecture and input size on this machine and kept in the runs folder's \
         `{}/` (the app's Runs table shows the same figures; \"(busy)\": the machine was busy in every try); train \
         time: training only, the teacher cache's build in brackets; score: 4·mIoU/(1 + params in M); FoM: \
         GMACs²·MB²/(mIoU − 0.65), only above 0.65 mIoU.\n\n",
        describe(device),
        chrono_free_date(),
        super::speed::CACHE_DIR,
    ));
    if !baselines.is_empty() {
        let list: Vec<String> = baselines.iter().map(|(model, run)| format!("{model}: {run}")).collect();
        s.push_str(&format!("Baselines: {}.\n\n", list.join(", ")));
    }
    for note in baseline_notes {
        s.push_str(&format!("- {note}\n"));
    }
    if !baseline_notes.is_empty() {
        s.push('\n');
    }
    s.push_str(
        "| run | model | mode | mIoU | Δ mIoU | params | MACs @ S² | size MB | ms/image | train time | score | FoM |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in teacher.into_iter().chain(rows) {
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {} | {} | {} @ {} | {:.2} | {} | {} | {:.4} | {} |\n",
            r.label,
            r.model,
            r.mode,
            r.miou,
            format_delta(r),
            crate::model::format_params(r.params),
            format_macs(r.gmacs),
            r.eval_size,
            r.size_mb,
            format_ms(r),
            train_time(r),
            r.score(),
            fmt_opt(r.fom(), |f| format!("{f:.3}")),
        ));
    }
    let caveats: Vec<String> =
        rows.iter().filter_map(|r| Some(format!("- † {}: {}\n", r.label, r.delta_caveat.as_ref()?))).collect();
    let busy: Vec<String> = teacher
        .into_iter()
        .chain(rows)
        .filter_map(|r| {
            Some(format!("- (busy) {}: {}; measure again on an idle machine\n", r.label, r.ms_busy.as_ref()?))
        })
        .collect();
    if !caveats.is_empty() || !busy.is_empty() {
        s.push('\n');
        s.extend(caveats.into_iter().chain(busy));
    }
    s.push_str("\n## Runs\n\n");
    for run in runs {
        let c = &run.config;
        s.push_str(&format!(
            "- **{}**: `{}` on `{}` ({} / {}{}), {}, batch {} at {}px, {:?} lr {:.1e}, {:?} schedule, \
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
            run.description(),
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
            delta_caveat: None,
            params,
            gmacs: 2.0,
            eval_size: 256,
            size_mb: 4.0,
            ms_per_image: 1.0,
            ms_range: None,
            ms_spread: None,
            ms_busy: None,
            train_seconds: None,
            cache_seconds: None,
            completed: true,
            schedule: Schedule {
                epochs_done: 5,
                epochs_planned: 5,
                crop: 128,
                data: "demo".into(),
                val: "val at 128 px".into(),
            },
        }
    }

    #[test]
    fn a_delta_against_a_baseline_trained_otherwise_says_what_differs() {
        let base = row("none", 0.40, 1);
        let mut stopped = row("response", 0.56, 1);
        stopped.label = "kd-40".into();
        stopped.completed = false;
        stopped.schedule = Schedule { epochs_done: 17, epochs_planned: 40, crop: 256, ..base.schedule.clone() };
        let mut same = row("feature", 0.45, 1);
        same.label = "feature".into();
        let mut rows = vec![base, stopped, same];
        let baselines = default_baselines(&rows);
        fill_deltas(&mut rows, &baselines);
        let caveat = rows[1].delta_caveat.as_deref().expect("a caveat on the stopped run's Δ");
        assert!(caveat.contains("epochs 17/40 vs 5/5") && caveat.contains("crop 256 px vs 128 px"), "{caveat}");
        assert!(caveat.contains("baseline none"), "{caveat}");
        assert_eq!(format_delta(&rows[1]), "+0.1600 †");
        assert_eq!((rows[2].delta_caveat.as_deref(), format_delta(&rows[2])), (None, "+0.0500".to_string()));
        assert_eq!(rows[0].delta_caveat, None, "the baseline against itself");
        let other_data =
            Schedule { data: "voc".into(), val: "val, first 50 images at 128 px".into(), ..rows[0].schedule.clone() };
        let d = other_data.differences(&rows[0].schedule);
        assert_eq!(d, ["dataset voc vs demo", "validation val, first 50 images at 128 px vs val at 128 px"]);
    }

    #[test]
    fn a_time_shows_its_spread_and_whether_the_machine_was_busy() {
        let mut r = row("none", 0.5, 1);
        r.ms_per_image = 4.2;
        assert_eq!(format_ms(&r), "4.20", "a row without a spread (an old report's) shows the median");
        r.ms_spread = Some(0.3);
        assert_eq!(format_ms(&r), "4.20 ±0.30");
        r.ms_busy = Some("the machine was busy".into());
        assert_eq!(format_ms(&r), "4.20 ±0.30 (busy)");
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
}
