//! One writer per run folder. A training holds an exclusive OS file lock on `<run>/.lock` for its
//! whole life, taken before anything is written; the operating system releases it when the
//! process exits or crashes, so it can never go stale. A second training (another process, or
//! another run in the app) into the same folder is refused with a message naming the holder.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::checkpoint;

const LOCK_FILE: &str = ".lock";
const CONFIG_FILE: &str = "config.json";

/// The claim on a run folder, held while a training writes into it.
#[derive(Debug)]
pub struct RunFolder {
    dir: PathBuf,
    /// Holds the lock; closing the file releases it.
    _lock: File,
    /// Whether this claim made the folder (so an abandoned claim may remove it again).
    created: bool,
}

/// Files of a run folder that are the run's own (anything else means the folder is not a run's).
const RUN_FILES: &[&str] =
    &[LOCK_FILE, CONFIG_FILE, "metrics.csv", "checkpoints", "student.safetensors", "best_images.json"];

impl RunFolder {
    /// Creates `dir` if needed and locks it for this process.
    pub fn claim(dir: &Path) -> anyhow::Result<Self> {
        let created = !dir.exists();
        if dir.exists() && !dir.is_dir() {
            anyhow::bail!("run folder {} is a file; choose a folder for --out", dir.display());
        }
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create run folder {}: {e}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false) // the holder's note must stay readable until the lock is ours
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut note = String::new();
                file.read_to_string(&mut note).ok(); // the note only improves the message
                anyhow::bail!(
                    "run folder {} is in use by another training ({}); wait for it to end or stop it, or choose another --out",
                    dir.display(),
                    describe_holder(note.trim())
                );
            }
            // File systems without locks (rare network mounts): train unguarded rather than not at all.
            Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {}
            Err(std::fs::TryLockError::Error(e)) => anyhow::bail!("cannot lock {}: {e}", path.display()),
        }
        let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // Best effort: the note names this process in a rival's message; the lock works without it.
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{} {started}", std::process::id()))
            .ok();
        file.flush().ok();
        Ok(Self { dir: dir.to_path_buf(), _lock: file, created })
    }

    /// Whether this claim made the folder (it held nothing of anyone's before).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Gives the folder back after a start that failed before anything was trained: removes what
    /// the start wrote (configuration, empty log and checkpoint folder), and the folder itself when
    /// this claim created it, so a failed start leaves nothing behind. A folder with a checkpoint
    /// is never touched.
    pub fn abandon_untrained(self) {
        if checkpoint::last_path(&self.dir).exists() {
            return;
        }
        for name in [CONFIG_FILE, "metrics.csv"] {
            std::fs::remove_file(self.dir.join(name)).ok(); // may not have been written
        }
        std::fs::remove_dir(checkpoint::checkpoints_dir(&self.dir)).ok(); // only if empty
        if self.created {
            std::fs::remove_file(self.dir.join(LOCK_FILE)).ok();
            std::fs::remove_dir(&self.dir).ok(); // only if now empty
        }
    }
}

/// Whether `dir` holds a run (a configuration written by a training that started).
pub fn holds_run(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

pub fn config_path(dir: &Path) -> PathBuf {
    dir.join(CONFIG_FILE)
}

/// The configuration in a run folder's `config.json`, for listing and display; `None` when the
/// folder holds no readable one (not a run).
pub fn read_config(dir: &Path) -> Option<super::TrainConfig> {
    serde_json::from_str(&std::fs::read_to_string(config_path(dir)).ok()?).ok()
}

/// Entries of `dir` that no run writes (a folder of the user's other files is not a run folder).
pub fn foreign_entries(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<String> =
        rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !is_run_file(n)).collect();
    v.sort();
    v
}

/// Whether `name` is something a run writes (its files, or a temporary file of an atomic write).
fn is_run_file(name: &str) -> bool {
    RUN_FILES.contains(&name) || (name.starts_with('.') && name.contains(".tmp-"))
}

/// "process 1234, started 5 min ago" from a lock note (`<pid> <unix seconds>`).
fn describe_holder(note: &str) -> String {
    let mut parts = note.split_whitespace();
    let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
    let started = parts.next().and_then(|s| s.parse::<u64>().ok());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match (pid, started) {
        (Some(pid), Some(t)) => {
            let ago = now.saturating_sub(t);
            let ago = if ago >= 3600 {
                format!("{} h {} min", ago / 3600, ago / 60 % 60)
            } else {
                format!("{} min", ago / 60)
            };
            format!("process {pid}, started {ago} ago")
        }
        (Some(pid), None) => format!("process {pid}"),
        _ => "another process".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let first = RunFolder::claim(&dir).unwrap();
        let err = RunFolder::claim(&dir).unwrap_err().to_string();
        assert!(
            err.contains("in use") && err.contains("run") && err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        drop(first);
        let again = RunFolder::claim(&dir).unwrap();
        again.abandon_untrained();
        assert!(dir.exists(), "a folder this claim did not create is kept");
    }

    #[test]
    fn an_abandoned_claim_removes_the_folder_it_made() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("new-run");
        let claim = RunFolder::claim(&dir).unwrap();
        std::fs::write(config_path(&dir), "{}").unwrap();
        std::fs::create_dir_all(checkpoint::checkpoints_dir(&dir)).unwrap();
        claim.abandon_untrained();
        assert!(!dir.exists());
    }
}
