//! Reading a finished (or stopped) run folder.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::eval::ImageScore;
use crate::train::TrainConfig;
use crate::train::checkpoint::{self, CheckpointState};
use crate::train::metrics_log;

/// Everything a report needs from a run.
pub struct RunData {
    pub dir: PathBuf,
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
}

impl RunData {
    pub fn best_miou(&self) -> f64 {
        self.state.best.as_ref().map_or(f64::NAN, |b| b.miou)
    }

    /// "mode" label: the distillation mode, with the KD form for response runs.
    pub fn mode_label(&self) -> String {
        self.config.distill.name().to_string()
    }
}

pub fn load(dir: &Path) -> anyhow::Result<RunData> {
    let last = checkpoint::last_path(dir);
    let ckpt = checkpoint::load(&last).with_context(|| format!("{} is not a finished run folder", dir.display()))?;
    let student = checkpoint::student_path(dir);
    anyhow::ensure!(
        student.is_file(),
        "{} has no evaluated student yet ({} is missing)",
        dir.display(),
        student.display()
    );
    let images_path = dir.join("best_images.json");
    let images: Vec<ImageScore> = match std::fs::read_to_string(&images_path) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("cannot parse {}", images_path.display()))?,
        Err(_) => Vec::new(),
    };
    let steps = metrics_log::read(&dir.join("metrics.csv"))
        .unwrap_or_default()
        .iter()
        .filter(|r| r.get("kind").is_some_and(|k| k == "step"))
        .filter_map(|r| Some((r.get("step")?.parse().ok()?, r.get("loss")?.parse().ok()?)))
        .collect();
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    Ok(RunData {
        dir: dir.to_path_buf(),
        name,
        config: ckpt.state.config.clone(),
        state: ckpt.state,
        student,
        images,
        steps,
    })
}
