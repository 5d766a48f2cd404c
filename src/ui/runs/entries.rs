//! The Runs tab's model of a run folder: [`RunEntry`] (config, last checkpoint, status, table
//! row, losses) and the scan of a runs folder. No drawing.

use std::path::{Path, PathBuf};

use crate::report::table::{Measure, Row, student_row_when};
use crate::train::TrainConfig;
use crate::train::checkpoint::{self, CheckpointState};
use crate::train::events::StepMetrics;
use crate::ui::train::describe_state;

/// One run folder as listed.
#[derive(Clone, Debug)]
pub struct RunEntry {
    pub dir: PathBuf,
    pub name: String,
    pub config: TrainConfig,
    pub state: Option<CheckpointState>,
    pub status: String,
    /// Stopped or interrupted with a checkpoint: Resume continues it.
    pub resumable: bool,
    /// The table row, when the student weights exist (speed read from the runs folder's
    /// `speed/<architecture>.json`, measured there once per architecture and size).
    pub row: Option<Row>,
    /// Every training step's losses (metrics.csv).
    pub steps: Vec<StepMetrics>,
    /// Whether the run has evaluated student weights (student.safetensors).
    pub has_student: bool,
}

/// `measure`: whether a speed not stored yet may be measured now (not while training runs).
fn load_entry(dir: &Path, measure: Measure) -> Option<RunEntry> {
    let config = crate::train::run_folder::read_config(dir)?;
    let state = checkpoint::load_state(&checkpoint::last_path(dir)).ok();
    let (status, resumable) = describe_state(&config, state.as_ref());
    let steps = crate::report::runs::saved_steps(dir, state.as_ref().map_or(0, |s| s.step));
    let row = crate::report::runs::load(dir)
        .ok()
        .and_then(|run| student_row_when(&run, &candle_core::Device::Cpu, measure).ok().flatten());
    Some(RunEntry {
        name: crate::ui::app::run_name(dir),
        dir: dir.to_path_buf(),
        config,
        state,
        status,
        resumable,
        row,
        steps,
        has_student: checkpoint::student_path(dir).is_file(),
    })
}

/// Every run folder under `runs_dir`, newest first.
pub fn scan_runs(runs_dir: &Path, measure: Measure) -> Vec<RunEntry> {
    let Ok(rd) = std::fs::read_dir(runs_dir) else { return Vec::new() };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| crate::train::run_folder::config_path(&e.path()).is_file())
        .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.iter().filter_map(|(_, d)| load_entry(d, measure)).collect()
}
