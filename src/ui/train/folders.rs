//! Run folders in words: a free run name, how a run stands and whether it can be resumed.
//! No drawing.

use std::path::Path;

use crate::train::TrainConfig;
use crate::train::checkpoint::{self, CheckpointState};

/// A run name not yet taken in `runs_dir`: `base`, `base-2`, `base-3`, ….
pub fn unique_run_name(runs_dir: &Path, base: &str) -> String {
    (1..)
        .map(|i| if i == 1 { base.to_string() } else { format!("{base}-{i}") })
        .find(|n| !runs_dir.join(n).exists())
        .unwrap_or_default()
}

/// How a run folder stands, in words, and whether it can be resumed.
pub fn describe_run(dir: &Path) -> (String, bool) {
    let Some(config) = crate::train::run_folder::read_config(dir) else {
        return ("a folder that is not a run".into(), false);
    };
    describe_state(&config, checkpoint::load_state(&checkpoint::last_path(dir)).ok().as_ref())
}

/// [`describe_run`] from a run's config and last checkpoint, already read.
pub fn describe_state(config: &TrainConfig, last: Option<&CheckpointState>) -> (String, bool) {
    match last {
        Some(s) if s.epoch >= config.epochs => (format!("completed ({} epochs)", s.epoch), false),
        Some(s) => (format!("stopped after epoch {}/{} (step {})", s.epoch, config.epochs, s.step), true),
        None => ("a run without a checkpoint yet (stopped before its first)".into(), false),
    }
}
