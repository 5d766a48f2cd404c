//! `cache.json` in each cache folder: which teacher file (path, length, modification time) and
//! which dataset the folder was built for. The folder's name is a hash of the same facts, so a
//! changed teacher file makes a new folder and leaves the old one orphaned; the manifest is how
//! `segdistill cache list|prune` and the app tell orphaned folders from current ones.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const MANIFEST_FILE: &str = "cache.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub teacher_model: String,
    pub teacher_weights: PathBuf,
    pub teacher_len: u64,
    pub teacher_modified_ns: u128,
    pub dataset: PathBuf,
}

/// Length and modification time of a file (0 when unknown).
pub fn file_stamp(path: &Path) -> Option<(u64, u128)> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    Some((meta.len(), modified.map_or(0, |d| d.as_nanos())))
}

impl Manifest {
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::util::fs::write_atomic(&dir.join(MANIFEST_FILE), &json)
    }

    pub fn read(dir: &Path) -> Option<Self> {
        serde_json::from_slice(&crate::util::fs::read_regular(&dir.join(MANIFEST_FILE)).ok()?).ok()
    }

    /// Why no run can use this folder again (`None`: it is current).
    pub fn orphaned_because(&self) -> Option<String> {
        match file_stamp(&self.teacher_weights) {
            None => Some(format!("its teacher file {} is gone", self.teacher_weights.display())),
            Some(stamp) if stamp != (self.teacher_len, self.teacher_modified_ns) => {
                Some(format!("its teacher file {} has changed since", self.teacher_weights.display()))
            }
            Some(_) if !self.dataset.exists() => Some(format!("its dataset {} is gone", self.dataset.display())),
            Some(_) => None,
        }
    }
}

/// One folder of a teacher-cache root, as `cache list` shows it.
#[derive(Clone, Debug)]
pub struct CacheFolder {
    pub dir: PathBuf,
    pub bytes: u64,
    pub entries: usize,
    pub manifest: Option<Manifest>,
}

impl CacheFolder {
    /// Why the folder can be removed (`None`: a run may still use it). A folder without a
    /// manifest was built by an older version and cannot be checked: it is kept.
    pub fn orphaned_because(&self) -> Option<String> {
        self.manifest.as_ref().and_then(Manifest::orphaned_because)
    }
}

/// The cache folders under `root` (each teacher/dataset/settings combination has one).
pub fn list(root: &Path) -> std::io::Result<Vec<CacheFolder>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = e.path();
        let (mut bytes, mut entries) = (0u64, 0usize);
        for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if let Ok(meta) = f.metadata()
                && meta.is_file()
            {
                bytes += meta.len();
                entries += usize::from(f.path().extension().is_some_and(|x| x == "tc"));
            }
        }
        out.push(CacheFolder { manifest: Manifest::read(&dir), dir, bytes, entries });
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(out)
}

/// Removes the orphaned cache folders under `root` (only lists them when `dry_run`): each with
/// why it could go. `cache prune` and the app's Runs tab both call this.
pub fn prune_orphaned(root: &Path, dry_run: bool) -> std::io::Result<Vec<(CacheFolder, String)>> {
    let mut pruned = Vec::new();
    for folder in list(root)? {
        let Some(why) = folder.orphaned_because() else { continue };
        if !dry_run {
            std::fs::remove_dir_all(&folder.dir)
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot remove {}: {e}", folder.dir.display())))?;
        }
        pruned.push((folder, why));
    }
    Ok(pruned)
}
