//! One writer per run folder. A training holds an exclusive OS file lock on `<run>/.lock` for its
//! whole life, taken before anything is written; the operating system releases it when the
//! process exits or crashes, so it can never go stale. A second training (another process, or
//! another run in the app) into the same folder is refused with a message naming the holder.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use super::checkpoint;

/// The names of a run folder's files: the one place each is spelled.
pub mod files {
    pub const LOCK: &str = ".lock";
    pub const CONFIG: &str = "config.json";
    pub const METRICS: &str = "metrics.csv";
    pub const CHECKPOINTS: &str = "checkpoints";
    pub const LAST: &str = "last.safetensors";
    pub const BEST: &str = "best.safetensors";
    pub const STUDENT: &str = "student.safetensors";
    pub const BEST_IMAGES: &str = "best_images.json";
    pub const SPEED: &str = "speed.json";
    pub const TENSORBOARD: &str = "tb";
    pub const BROWSE: &str = "browse";
    pub const EXPORTS: &str = "exports";
}

use files::{CONFIG as CONFIG_FILE, LOCK as LOCK_FILE};

/// `metrics.csv` of a run.
pub fn metrics_path(run_dir: &Path) -> PathBuf {
    run_dir.join(files::METRICS)
}

/// `best_images.json` of a run: the per-image scores of its best evaluation.
pub fn best_images_path(run_dir: &Path) -> PathBuf {
    run_dir.join(files::BEST_IMAGES)
}

/// Where the app keeps a run's browse predictions.
pub fn browse_cache_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(files::BROWSE)
}

/// The claim on a run folder, held while a training writes into it.
#[derive(Debug)]
pub struct RunFolder {
    dir: PathBuf,
    /// Holds the lock; closing the file releases it.
    lock: File,
    /// Whether this claim made the folder (so an abandoned claim may remove it again).
    created: bool,
    /// What the folder held when it was claimed: a failed start removes only what it added.
    held_before: BTreeSet<OsString>,
}

/// Files of a run folder that are the run's own (anything else means the folder is not a run's).
const RUN_FILES: &[&str] = &[
    files::LOCK,
    files::CONFIG,
    files::METRICS,
    files::CHECKPOINTS,
    files::STUDENT,
    files::BEST_IMAGES,
    files::SPEED,
    files::TENSORBOARD,
    files::BROWSE,
    files::EXPORTS,
];

/// Opens (creating) a lock file without following a link at its place and without blocking on
/// a FIFO, and refuses anything but a regular file: a planted link must never make the lock's
/// note overwrite another file.
fn open_lock_file(path: &Path) -> anyhow::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let refuse = |what: &str| {
        anyhow::anyhow!(
            "{} is {what}, not the lock file a run keeps: remove it (a run folder's .lock is an ordinary file)",
            path.display()
        )
    };
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.file_type().is_file()
    {
        return Err(refuse(crate::util::fs::describe_file_type(&meta.file_type())));
    }
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return refuse("a symbolic link");
        }
        anyhow::anyhow!("cannot open {}: {e}", path.display())
    })?;
    let meta = file.metadata().map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(refuse(crate::util::fs::describe_file_type(&meta.file_type())));
    }
    Ok(file)
}

impl RunFolder {
    /// Creates `dir` if needed and locks it for this process.
    pub fn claim(dir: &Path) -> anyhow::Result<Self> {
        let created = std::fs::symlink_metadata(dir).is_err();
        if dir.exists() && !dir.is_dir() {
            anyhow::bail!("run folder {} is a file; choose a folder for --out", dir.display());
        }
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create run folder {}: {e}", dir.display()))?;
        let held_before = entry_names(dir);
        let path = dir.join(LOCK_FILE);
        let mut file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut note = String::new();
                file.read_to_string(&mut note).ok(); // the note only improves the message
                anyhow::bail!(
                    "run folder {} is in use by another training ({}); wait for it to end or stop it, or choose another --out",
                    dir.display(),
                    LockHolder::from_note(&note)
                );
            }
            // File systems without locks (rare network mounts): train unguarded rather than not at all.
            Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {}
            Err(std::fs::TryLockError::Error(e)) => anyhow::bail!("cannot lock {}: {e}", path.display()),
        }
        // Best effort: the note names this process in a rival's message and in the app's Runs
        // tab; the lock works without it. The file is ours and a regular one by now. The note has
        // one fixed width and goes in one write over the old one, so a reader sees the old note
        // or the new one, never a mix of both; it is cut only after it is written (notes of older
        // versions were shorter or longer), so a reader never sees it empty.
        let note = LockHolder::this_process().to_note();
        file.rewind()
            .and_then(|()| file.write_all(note.as_bytes()))
            .and_then(|()| file.set_len(note.len() as u64))
            .ok();
        file.flush().ok();
        Ok(Self { dir: dir.to_path_buf(), lock: file, created, held_before })
    }

    /// Whether this claim made the folder (it held nothing of anyone's before).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Checks that the folder at this path is still the one claimed: a folder deleted (or moved
    /// away) while its run trains may be made again by another training, and this one must then
    /// write nothing more into it. Called before every write by path.
    pub fn ensure_still_claimed(&self) -> anyhow::Result<()> {
        let path = self.dir.join(LOCK_FILE);
        let same = match (self.lock.metadata(), std::fs::symlink_metadata(&path)) {
            (Ok(held), Ok(now)) => same_identity(&held, &now),
            _ => false,
        };
        anyhow::ensure!(
            same,
            "run folder {} was deleted, moved or replaced while this training ran; it stops here and writes \
             nothing more into that path (whatever is there now is someone else's)",
            self.dir.display()
        );
        Ok(())
    }

    /// Runs a write into the folder by path, between two checks of the claim: before, so nothing
    /// is written into a folder that is someone else's now; and after a failure, so a write that
    /// failed because the folder went away in between is reported as that, not as a full disk.
    pub fn write<T>(&self, write: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        self.ensure_still_claimed()?;
        write().map_err(|e| match self.ensure_still_claimed() {
            Err(lost) => lost,
            Ok(()) => e,
        })
    }

    /// Gives the folder back after a start that failed before anything was trained: removes what
    /// this start added (configuration, empty log, TensorBoard folder, checkpoint folder), and the
    /// folder itself when this claim created it, so a failed start leaves nothing behind and never
    /// touches what was there before. A folder with a checkpoint is never touched.
    pub fn abandon_untrained(self) {
        if checkpoint::last_path(&self.dir).exists() || self.ensure_still_claimed().is_err() {
            return;
        }
        for name in [files::CONFIG, files::METRICS, files::TENSORBOARD, files::CHECKPOINTS] {
            if self.held_before.contains(std::ffi::OsStr::new(name)) {
                continue;
            }
            let path = self.dir.join(name);
            if path.is_dir() {
                std::fs::remove_dir_all(&path).ok(); // made by this start: no checkpoint in it (checked above)
            } else {
                std::fs::remove_file(&path).ok(); // may not have been written
            }
        }
        if !self.held_before.contains(std::ffi::OsStr::new(LOCK_FILE)) {
            std::fs::remove_file(self.dir.join(LOCK_FILE)).ok();
        }
        if self.created {
            std::fs::remove_dir(&self.dir).ok(); // only if now empty
        }
    }
}

fn entry_names(dir: &Path) -> BTreeSet<OsString> {
    std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.file_name()).collect()).unwrap_or_default()
}

#[cfg(unix)]
fn same_identity(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_identity(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// The process training the run in `dir` right now (its lock is held), as "process N, started …
/// ago" when its note names it; `None` when no training holds the folder.
pub fn training_holder(dir: &Path) -> Option<String> {
    lock_holder(dir).map(|holder| holder.to_string())
}

/// The process holding the lock of the run in `dir` right now, as far as its note tells; `None`
/// when no training holds the folder. Asks with a shared lock held for an instant, so it never
/// blocks and never takes the folder from anyone.
pub fn lock_holder(dir: &Path) -> Option<LockHolder> {
    let path = dir.join(LOCK_FILE);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.file_type().is_file() {
        return None;
    }
    let mut file = std::fs::OpenOptions::new().read(true).open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None, // released when the file closes
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut note = String::new();
            file.read_to_string(&mut note).ok(); // the note only improves the description
            Some(LockHolder::from_note(&note))
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// Refuses an export path that would write into a run folder: any other run's (its weights,
/// even its checkpoints), or this run's own outside its `exports/` folder.
pub fn check_export_path(export: &Path, own_run_dir: &Path) -> anyhow::Result<()> {
    let path = crate::util::fs::absolute(export);
    let own = crate::util::fs::absolute(own_run_dir);
    if path.starts_with(&own) {
        anyhow::ensure!(
            path.starts_with(own.join(EXPORTS_DIR)),
            "--export {} is inside the run folder {}, whose files it could replace (the best weights are kept \
             there as student.safetensors already): export into {} or elsewhere",
            export.display(),
            own.display(),
            own.join(EXPORTS_DIR).display()
        );
        return Ok(());
    }
    if let Some(run) = path.ancestors().skip(1).find(|dir| is_run_folder(dir)) {
        anyhow::bail!(
            "--export {} is inside {}, the folder of another run, whose files it could replace; choose a path \
             outside run folders",
            export.display(),
            run.display()
        );
    }
    Ok(())
}

/// Where a run's own exports go (the one place inside a run folder an export may be written).
pub const EXPORTS_DIR: &str = files::EXPORTS;

/// Whether `dir` is a run folder: it holds a run's configuration, lock or checkpoints.
pub fn is_run_folder(dir: &Path) -> bool {
    holds_run(dir) || dir.join(LOCK_FILE).exists() || checkpoint::last_path(dir).exists()
}

/// Whether `dir` holds a run (a configuration written by a training that started).
pub fn holds_run(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

pub fn config_path(dir: &Path) -> PathBuf {
    dir.join(CONFIG_FILE)
}

/// The configuration of the run in `dir`, for listing, display and resuming: its newest readable
/// checkpoint's (a damaged `config.json` does not change what the run is), else its
/// `config.json`; `None` when the folder holds neither (not a run).
pub fn read_config(dir: &Path) -> Option<super::TrainConfig> {
    saved_config(dir).ok().flatten()
}

/// The saved configuration of the run in `run_dir`: its newest readable checkpoint's (`last`,
/// else `best` or a periodic one), else its `config.json`.
pub fn saved_config(run_dir: &Path) -> anyhow::Result<Option<super::TrainConfig>> {
    let last = checkpoint::last_path(run_dir);
    if last.exists() {
        let err = match checkpoint::load_state(&last) {
            Ok(state) => return Ok(Some(state.config)),
            Err(e) => e,
        };
        let other = [checkpoint::best_path(run_dir)].into_iter().find_map(|p| checkpoint::load_state(&p).ok());
        return match other {
            Some(state) => Ok(Some(state.config)),
            None => Err(err),
        };
    }
    let path = config_path(run_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a readable run configuration", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
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

/// Who holds a run folder's lock, as its note (`<pid> <unix seconds>`, written when the lock is
/// taken) tells; either part is `None` when the note does not say (written by an older version,
/// or read in the instant between taking the lock and writing the note).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: Option<u32>,
    /// When it took the lock (seconds since the Unix epoch).
    pub started_s: Option<u64>,
}

impl LockHolder {
    fn this_process() -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { pid: Some(std::process::id()), started_s: Some(now) }
    }

    /// Whether the holder is this process (the app's own training of the folder).
    pub fn is_this_process(&self) -> bool {
        self.pid == Some(std::process::id())
    }

    fn from_note(note: &str) -> Self {
        let mut parts = note.split_whitespace();
        let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
        let started_s = parts.next().and_then(|s| s.parse::<u64>().ok());
        Self { pid, started_s }
    }

    /// The note, padded to one width whatever the numbers (see [`RunFolder::claim`]).
    fn to_note(self) -> String {
        format!("{:>10} {:>20}\n", self.pid.unwrap_or(0), self.started_s.unwrap_or(0))
    }
}

/// "process 1234, started 5 min ago".
impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match (self.pid, self.started_s) {
            (Some(pid), Some(t)) => {
                let ago = now.saturating_sub(t);
                let ago = if ago >= 3600 {
                    format!("{} h {} min", ago / 3600, ago / 60 % 60)
                } else {
                    format!("{} min", ago / 60)
                };
                write!(f, "process {pid}, started {ago} ago")
            }
            (Some(pid), None) => write!(f, "process {pid}"),
            _ => f.write_str("another process"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_record_reads_what_the_run_is_and_where_it_stands() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RunRecord::open(dir.path()).unwrap().is_none(), "an empty folder holds no run");
        let config = crate::train::TrainConfig { epochs: 3, ..Default::default() };
        std::fs::write(config_path(dir.path()), serde_json::to_string(&config).unwrap()).unwrap();
        let record = RunRecord::open(dir.path()).unwrap().unwrap();
        assert_eq!((record.config.epochs, record.status()), (3, RunStatus::NotStarted));
        assert!(!record.status().is_resumable() && record.training_now.is_none());
        let stopped = RunRecord {
            state: Some(checkpoint::CheckpointState { epoch: 1, step: 7, ..test_state(&config) }),
            ..record.clone()
        };
        assert_eq!(stopped.status().to_string(), "stopped after epoch 1/3 (step 7)");
        assert!(stopped.status().is_resumable());
        let done = RunRecord { state: Some(checkpoint::CheckpointState { epoch: 3, ..test_state(&config) }), ..record };
        assert_eq!(done.status(), RunStatus::Completed { epochs: 3 });
    }

    fn test_state(config: &crate::train::TrainConfig) -> checkpoint::CheckpointState {
        checkpoint::CheckpointState {
            version: checkpoint::FORMAT_VERSION,
            config: config.clone(),
            epoch: 0,
            batch_in_epoch: 0,
            step: 0,
            epoch_loss_sum: 0.0,
            epoch_loss_count: 0,
            optimizer: crate::train::optim::OptimizerState { t: 0 },
            plateau: Default::default(),
            best: None,
            history: Vec::new(),
            train_seconds: 0.0,
            cache_seconds: 0.0,
            inputs: Default::default(),
        }
    }

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
    fn the_lock_names_its_holder_by_pid_while_held() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        assert_eq!(lock_holder(&dir), None, "no folder, no holder");
        // A longer note of an older version is replaced whole, not overwritten in part.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(LOCK_FILE), format!("{} {}", u32::MAX, u64::MAX)).unwrap();
        let claim = RunFolder::claim(&dir).unwrap();
        let holder = lock_holder(&dir).expect("a held lock has a holder");
        assert_eq!(holder.pid, Some(std::process::id()));
        assert!(holder.is_this_process());
        let age = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - holder.started_s.unwrap();
        assert!(age < 60, "started {age} s ago");
        assert_eq!(
            LockHolder::this_process().to_note().len(),
            LockHolder { pid: Some(u32::MAX), started_s: Some(u64::MAX) }.to_note().len(),
            "every note has one width"
        );
        drop(claim);
        assert_eq!(lock_holder(&dir), None, "a released lock has no holder");
        let other = LockHolder::from_note("4242 1700000000");
        assert_eq!((other.pid, other.is_this_process()), (Some(4242), false));
        assert_eq!(LockHolder::from_note("").to_string(), "another process");
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

/// Where a run stands, as its folder says.
#[derive(Clone, Debug, PartialEq)]
pub enum RunStatus {
    /// Configured, but stopped before its first checkpoint (resumes from its beginning).
    NotStarted,
    /// Stopped after `epoch` of `epochs` (resumable).
    Stopped {
        epoch: usize,
        epochs: usize,
        step: usize,
    },
    Completed {
        epochs: usize,
    },
}

impl RunStatus {
    /// Whether `--resume` (the app's Resume) has something to continue.
    pub fn is_resumable(&self) -> bool {
        matches!(self, Self::Stopped { .. })
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotStarted => f.write_str("a run without a checkpoint yet (stopped before its first)"),
            Self::Stopped { epoch, epochs, step } => write!(f, "stopped after epoch {epoch}/{epochs} (step {step})"),
            Self::Completed { epochs } => write!(f, "completed ({epochs} epochs)"),
        }
    }
}

/// One record of a run, read once from its folder: what it is (configuration: the checkpoint's,
/// else `config.json`), where it stands (the last checkpoint's state), and whether a process
/// trains it now. Every reader of run folders (the CLI, reports, the app) starts here.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub dir: PathBuf,
    pub config: super::TrainConfig,
    /// The last checkpoint's state (`None`: no readable checkpoint yet).
    pub state: Option<checkpoint::CheckpointState>,
    /// The process training the run right now, described ("process N, started … ago").
    pub training_now: Option<String>,
}

impl RunRecord {
    /// The run in `dir`; `Ok(None)` when the folder holds no run.
    pub fn open(dir: &Path) -> anyhow::Result<Option<Self>> {
        let Some(config) = saved_config(dir)? else { return Ok(None) };
        Ok(Some(Self {
            dir: dir.to_path_buf(),
            config,
            state: checkpoint::load_state(&checkpoint::last_path(dir)).ok(),
            training_now: training_holder(dir),
        }))
    }

    pub fn status(&self) -> RunStatus {
        match &self.state {
            Some(s) if s.epoch >= self.config.epochs => RunStatus::Completed { epochs: s.epoch },
            Some(s) => RunStatus::Stopped { epoch: s.epoch, epochs: self.config.epochs, step: s.step },
            None => RunStatus::NotStarted,
        }
    }

    pub fn metrics_path(&self) -> PathBuf {
        metrics_path(&self.dir)
    }

    pub fn best_images_path(&self) -> PathBuf {
        best_images_path(&self.dir)
    }

    pub fn student_path(&self) -> PathBuf {
        checkpoint::student_path(&self.dir)
    }
}
