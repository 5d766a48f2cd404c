//! Reading a finished (or stopped) run folder.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::metrics::ImageScore;
use crate::train::TrainConfig;
use crate::train::checkpoint::CheckpointState;
use crate::train::metrics_log;
use crate::train::run_folder::{self, RunRecord, RunStatus};

/// Everything a report needs from a run.
pub struct RunData {
    pub dir: PathBuf,
    /// The folder's name, control characters escaped (see [`load`]).
    pub name: String,
    pub config: TrainConfig,
    /// State of the last checkpoint (history, best, training time).
    pub state: CheckpointState,
    /// Best student weights.
    pub student: PathBuf,
    /// Per-image scores of the best epoch.
    pub images: Vec<ImageScore>,
    /// (global step, training loss).
    pub steps: Vec<(usize, f64)>,
    /// What could not be read (a damaged metrics.csv, …): the report says so instead of drawing
    /// empty curves silently.
    pub warnings: Vec<String>,
    /// The process training this run right now ("process N"): its figures are partial.
    pub training_now: Option<String>,
    /// Where the run stands (completed, or stopped after which epoch).
    pub status: RunStatus,
}

impl RunData {
    pub fn best_miou(&self) -> f64 {
        self.state.best.as_ref().map_or(f64::NAN, |b| b.miou)
    }

    /// The run's description wherever a report names where it stands: "completed (40 epochs)",
    /// "stopped after epoch 17/40 (step 340)", as the app's Runs table says it.
    pub fn description(&self) -> String {
        match &self.training_now {
            Some(holder) => format!("{} (still training: {holder})", self.status),
            None => self.status.to_string(),
        }
    }

    /// "mode" label: the distillation mode, with the KD form for response runs.
    pub fn mode_label(&self) -> String {
        self.config.distill.name().to_string()
    }
}

pub fn load(dir: &Path) -> anyhow::Result<RunData> {
    let record = RunRecord::open(dir)?.with_context(|| format!("{} is not a run folder", dir.display()))?;
    let state = record
        .state
        .clone()
        .with_context(|| format!("{} is not a finished run folder: it has no readable checkpoint", dir.display()))?;
    let student = record.student_path();
    anyhow::ensure!(
        student.is_file(),
        "{} has no evaluated student yet ({} is missing)",
        dir.display(),
        student.display()
    );
    let images_path = record.best_images_path();
    let images: Vec<ImageScore> = match std::fs::read_to_string(&images_path) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("cannot parse {}", images_path.display()))?,
        Err(_) => Vec::new(),
    };
    let (steps, mut warnings) = step_losses(&record.metrics_path(), state.step);
    // The name as reports show it: a folder name may hold control characters (escape sequences
    // that would recolour a terminal), so it is escaped once, here, for every table, legend and title.
    let name = dir.file_name().map_or_else(|| "run".into(), |n| crate::util::fmt::escaped(&n.to_string_lossy()));
    let status = record.status();
    let training_now = record.training_now;
    if let Some(holder) = &training_now {
        warnings.push(format!(
            "{name} is still training ({holder}): its figures are partial, as of epoch {} of {}",
            state.epoch, state.config.epochs
        ));
    }
    Ok(RunData {
        dir: dir.to_path_buf(),
        name,
        config: state.config.clone(),
        state,
        student,
        images,
        steps,
        warnings,
        training_now,
        status,
    })
}

/// (step, loss) of every step row of a metrics.csv, and a warning when rows the run should have
/// are missing or unreadable (the loss curve would otherwise be empty without a word).
fn step_losses(path: &Path, steps_done: usize) -> (Vec<(usize, f64)>, Vec<String>) {
    let rows = match metrics_log::read(path) {
        Ok(rows) => rows,
        Err(e) => return (Vec::new(), vec![format!("{e:#}; the training-loss curve is left out")]),
    };
    let step_rows: Vec<_> = rows.iter().filter(|r| r.get("kind").is_some_and(|k| k == "step")).collect();
    let steps: Vec<(usize, f64)> =
        step_rows.iter().filter_map(|r| Some((r.get("step")?.parse().ok()?, r.get("loss")?.parse().ok()?))).collect();
    let unreadable = step_rows.len() - steps.len();
    let mut warnings = Vec::new();
    if unreadable > 0 || (steps.is_empty() && steps_done > 0) {
        warnings.push(format!(
            "{} is damaged ({} readable step rows of {} steps trained{}); the training-loss curve is incomplete",
            path.display(),
            steps.len(),
            steps_done,
            if unreadable > 0 { format!(", {unreadable} unreadable") } else { String::new() }
        ));
    }
    (steps, warnings)
}

/// The step rows of a run's metrics.csv, up to the checkpoint's step (later rows belong to a
/// session whose checkpoint was lost, and are replaced when the run resumes).
pub fn saved_steps(dir: &Path, steps_done: usize) -> Vec<crate::train::events::StepMetrics> {
    let rows = metrics_log::read(&run_folder::metrics_path(dir)).unwrap_or_default();
    let num = |r: &std::collections::HashMap<String, String>, k: &str| r.get(k).and_then(|v| v.parse::<f64>().ok());
    rows.iter()
        .filter(|r| r.get("kind").is_some_and(|k| k == "step"))
        .filter_map(|r| {
            Some(crate::train::events::StepMetrics {
                epoch: num(r, "epoch")? as usize,
                step: num(r, "step")? as usize,
                total_steps: 0,
                steps_per_epoch: 0,
                loss: num(r, "loss")?,
                ce: num(r, "ce")?,
                kd: num(r, "kd"),
                feature: num(r, "feature"),
                terms: {
                    let mut t: Vec<(String, f64)> = r
                        .iter()
                        .filter_map(|(k, v)| Some((k.strip_prefix("term_")?.to_string(), v.parse::<f64>().ok()?)))
                        .collect();
                    t.sort_by(|a, b| a.0.cmp(&b.0));
                    t
                },
                lr: num(r, "lr").unwrap_or(f64::NAN),
                images_per_sec: num(r, "images_per_sec").unwrap_or(f64::NAN),
                eta_secs: f64::NAN,
            })
        })
        .filter(|s| s.step <= steps_done)
        .collect()
}
