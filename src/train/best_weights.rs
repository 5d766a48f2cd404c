//! The best weights of a run, kept true to the run's record. A finished epoch writes `last`
//! first (it records the new best, with the digest of its weights), then `best` and
//! `student.safetensors`. A crash or a full disk between those writes, or a file damaged later,
//! would leave a run whose record says "best at epoch N" beside weights of another epoch, or none.
//! So whoever opens a run checks the best files against the recorded digest and, where they
//! differ, takes the weights from the checkpoint that holds them: a resume rewrites the files
//! (it holds the run's lock); a reader (`test`, `export`, `--teacher-run`) repairs them when the
//! run is idle, or reads a recovered copy while another process trains it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::checkpoint::{self, Checkpoint, CheckpointState};
use crate::model::weights::{digest, save_safetensors};

/// What a check of the best files found and did, for the user.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// One line per file rewritten or problem found; empty when everything held.
    pub notes: Vec<String>,
}

/// The digest of the tensors a safetensors file holds, verified against the digest stored in
/// it: `None` when the file is missing, damaged, or carries no digest.
fn verified_file_digest(path: &Path) -> Option<String> {
    let bytes = crate::util::fs::read_regular(path).ok()?;
    let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    digest::verify(&st, header.metadata().as_ref()).ok().flatten()
}

fn model_digest(ckpt: &Checkpoint) -> Option<String> {
    digest::of_tensors(&ckpt.model).ok()
}

/// The checkpoints of a run that may hold a given epoch's weights: `best`, `last`, periodic ones.
fn candidate_checkpoints(run_dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![checkpoint::best_path(run_dir), checkpoint::last_path(run_dir)];
    if let Ok(rd) = std::fs::read_dir(checkpoint::checkpoints_dir(run_dir)) {
        let mut periodic: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("epoch-")))
            .collect();
        periodic.sort();
        paths.extend(periodic.into_iter().rev());
    }
    paths
}

/// The first intact checkpoint of the run whose model weights have this digest.
fn checkpoint_holding(run_dir: &Path, digest: &str) -> Option<(PathBuf, Checkpoint)> {
    candidate_checkpoints(run_dir)
        .into_iter()
        .find_map(|p| checkpoint::load(&p).ok().filter(|c| model_digest(c).as_deref() == Some(digest)).map(|c| (p, c)))
}

/// Makes `checkpoints/best.safetensors` and `student.safetensors` hold the weights of the best
/// epoch `state` records. Only for a caller that holds the run folder's claim (it writes).
pub fn reconcile(run_dir: &Path, state: &CheckpointState) -> anyhow::Result<Reconciled> {
    let mut out = Reconciled::default();
    let Some(best) = &state.best else { return Ok(out) };
    let Some(want) = &best.weights_digest else { return Ok(out) }; // a run from before digests
    let student = checkpoint::student_path(run_dir);
    let best_path = checkpoint::best_path(run_dir);
    let student_ok = verified_file_digest(&student).as_ref() == Some(want);
    let best_ckpt_ok = checkpoint::load(&best_path).ok().and_then(|c| model_digest(&c)).as_ref() == Some(want);
    if student_ok && best_ckpt_ok {
        return Ok(out);
    }
    let Some((source_path, source)) = checkpoint_holding(run_dir, want) else {
        out.notes.push(format!(
            "the weights of the best epoch ({}) are in no intact file of {}; {} is left as it is and is replaced \
             when an evaluation next improves",
            best.epoch + 1,
            run_dir.display(),
            student.display()
        ));
        return Ok(out);
    };
    if !best_ckpt_ok && source_path != best_path {
        checkpoint::save(&best_path, &source)?;
        out.notes.push(format!(
            "{} did not hold the best epoch's ({}) weights: rewritten from {}",
            best_path.display(),
            best.epoch + 1,
            source_path.display()
        ));
    }
    if !student_ok {
        save_safetensors(&source.model, &student)
            .with_context(|| format!("cannot write the best student weights {} (disk full?)", student.display()))?;
        out.notes.push(format!(
            "{} did not hold the best epoch's ({}) weights: rewritten from {}",
            student.display(),
            best.epoch + 1,
            source_path.display()
        ));
    }
    Ok(out)
}

/// The file to read a run's best weights from, for `test`, `export`, `--teacher-run` and the
/// app: `student.safetensors` when it holds the recorded best weights; otherwise the files are
/// repaired (when no training holds the run) or, while another process trains the run, the
/// best weights are copied from the checkpoint that holds them to a file outside the run. The
/// notes say what happened.
pub fn for_reading(run_dir: &Path) -> anyhow::Result<(PathBuf, Reconciled)> {
    let student = checkpoint::student_path(run_dir);
    let Some(state) = checkpoint::load_state(&checkpoint::last_path(run_dir)).ok() else {
        // No checkpoint to check against (weights copied out of a run): the file as it is.
        return Ok((student, Reconciled::default()));
    };
    let Some(want) = state.best.as_ref().and_then(|b| b.weights_digest.clone()) else {
        // A run from before digests were recorded: nothing to check against.
        return Ok((student, Reconciled::default()));
    };
    if verified_file_digest(&student).as_deref() == Some(want.as_str()) {
        return Ok((student, Reconciled::default()));
    }
    if let Ok(claim) = super::run_folder::RunFolder::claim(run_dir) {
        let done = reconcile(run_dir, &state)?;
        drop(claim);
        return Ok((student, done));
    }
    // Another process trains the run: leave its files alone, read a recovered copy.
    let (source_path, source) = checkpoint_holding(run_dir, &want).with_context(|| {
        format!(
            "{} does not hold the run's best weights and no checkpoint of {} does (the run is being trained by \
             another process: try again when it has saved its next epoch)",
            student.display(),
            run_dir.display()
        )
    })?;
    let copy = std::env::temp_dir().join(format!("segdistill-best-{}.safetensors", &want[..16.min(want.len())]));
    save_safetensors(&source.model, &copy)?;
    let notes = vec![format!(
        "{} does not hold the run's best weights; read them from {} instead (copied to {})",
        student.display(),
        source_path.display(),
        copy.display()
    )];
    Ok((copy, Reconciled { notes }))
}

/// A run's model and its best weights, checked against the run's record (see [`for_reading`]).
pub struct BestStudent {
    pub config: crate::train::config::TrainConfig,
    pub weights: PathBuf,
    /// What the check repaired or where the weights were read from instead; empty when all held.
    pub notes: Vec<String>,
}

/// The model and checked best weights of the run in `run_dir`, for everything that reads a
/// trained run (`test`, `export`, `--teacher-run`, the app). Errors say what is missing.
pub fn best_student(run_dir: &Path) -> anyhow::Result<BestStudent> {
    let config = super::run_folder::saved_config(run_dir)?.with_context(|| {
        format!(
            "{} is not a run folder: no run there (no config.json and no checkpoint); point it at a run folder",
            run_dir.display()
        )
    })?;
    let (weights, checked) = for_reading(run_dir)?;
    anyhow::ensure!(
        weights.is_file(),
        "{} has no best weights yet ({} is written after the first evaluation): train at least one epoch",
        run_dir.display(),
        weights.display()
    );
    Ok(BestStudent { config, weights, notes: checked.notes })
}
