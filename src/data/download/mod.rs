//! Getting VOC 2012, SBD's augmented masks and torchvision's weights from the internet: resumable
//! HTTP downloads (Range requests into a `.part` file), checksums, a free-space check and
//! streaming extraction into a staging folder that is renamed into place only when complete, so an
//! interrupted or corrupt download never leaves a half-extracted dataset behind.
//!
//! Everything reports through an [`Observer`] (a terminal bar in the CLI, a progress bar with a
//! Cancel button in the app) and can be cancelled between chunks.

pub mod catalog;
pub mod checksum;
pub mod extract;
pub mod http;

use std::path::{Path, PathBuf};

pub use catalog::{
    Fetched, SBD, VOC_TRAINVAL, WEIGHTS, download_sbd, download_voc, download_weight_url, download_weights,
};
pub use checksum::Checksum;
pub use http::HttpOptions;

/// What a long download step is doing (for progress displays).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Receiving `file`; `resumed_from` bytes were already on disk.
    Downloading { file: String, resumed_from: u64 },
    /// Hashing the finished file.
    Verifying,
    /// Unpacking the archive.
    Extracting,
}

impl Stage {
    pub fn label(&self) -> String {
        match self {
            Self::Downloading { file, resumed_from: 0 } => format!("downloading {file}"),
            Self::Downloading { file, resumed_from } => {
                format!("resuming {file} from {}", human_bytes(*resumed_from))
            }
            Self::Verifying => "verifying checksum".into(),
            Self::Extracting => "extracting".into(),
        }
    }
}

/// Receives progress; its `cancelled` is polled between chunks.
pub trait Observer: Sync {
    /// A new stage starts; `total` is its size in bytes when known.
    fn stage(&self, stage: Stage, total: Option<u64>);
    /// `bytes` more of the current stage are done.
    fn advance(&self, bytes: u64);
    /// A line for the user (what was skipped, where things went).
    fn message(&self, _text: &str) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// An observer that ignores everything (tests, scripts).
pub struct NoProgress;

impl Observer for NoProgress {
    fn stage(&self, _stage: Stage, _total: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
}

/// Everything that can go wrong getting data; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "cannot reach {host} ({reason}). Check the internet connection; behind a proxy set HTTPS_PROXY / \
         HTTP_PROXY; or pass --url with a mirror"
    )]
    Offline { host: String, reason: String },
    #[error("{url} answered HTTP {status} {text}; try again later or pass --url with a mirror")]
    Http { url: String, status: u16, text: String },
    #[error(
        "no data from {url} for {secs} s (timeout; raise it with --timeout or SEGDISTILL_TIMEOUT). \
         {kept} bytes are kept in {part}: run the same command again to resume"
    )]
    Stalled { url: String, secs: u64, part: PathBuf, kept: u64 },
    #[error(
        "the connection to {url} broke after {kept} of {total} bytes ({reason}); they are kept in {part}: \
         run the same command again to resume"
    )]
    Interrupted { url: String, part: PathBuf, kept: u64, total: String, reason: String },
    #[error(
        "{algorithm} of {path} is {actual}, expected {expected}: the file is corrupt or not the published one; \
         it was deleted, run the command again to download it afresh"
    )]
    ChecksumMismatch { path: PathBuf, algorithm: &'static str, expected: String, actual: String },
    #[error("not enough free space in {dir}: {need} needed, {have} free; free some space or pass --dest elsewhere")]
    DiskSpace { dir: PathBuf, need: String, have: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "cannot extract {archive}: {reason}; nothing was extracted (the archive is kept; delete it to download again)"
    )]
    Extract { archive: PathBuf, reason: String },
    #[error(
        "{part} is being written by another download (another segdistill, or a cancelled download still \
         stopping); wait for it to finish or try again in a moment"
    )]
    Busy { part: PathBuf },
    #[error("cancelled; the partial download is kept and resumes next time")]
    Cancelled,
    #[error("{0}")]
    Invalid(String),
}

impl DownloadError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        let source = if source.kind() == std::io::ErrorKind::StorageFull {
            std::io::Error::new(source.kind(), "the disk is full: free some space and run again to resume")
        } else {
            source
        };
        Self::Io { path: path.to_path_buf(), source }
    }
}

/// `1.9 GB`-style sizes for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Fails when `dir` (or its nearest existing ancestor) has less than `need` bytes free.
pub fn ensure_free_space(dir: &Path, need: u64) -> Result<(), DownloadError> {
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p.to_path_buf(),
            _ => {
                probe = PathBuf::from(".");
                break;
            }
        }
    }
    let have = fs4::available_space(&probe).map_err(|e| DownloadError::io(&probe, e))?;
    if have < need {
        return Err(DownloadError::DiskSpace {
            dir: dir.to_path_buf(),
            need: human_bytes(need),
            have: human_bytes(have),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_999_639_040), "2.0 GB");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
    }

    #[test]
    fn free_space_check_refuses_impossible_sizes() {
        let dir = tempfile::tempdir().unwrap();
        ensure_free_space(&dir.path().join("not/yet/there"), 1).unwrap();
        let err = ensure_free_space(dir.path(), u64::MAX).unwrap_err();
        assert!(matches!(err, DownloadError::DiskSpace { .. }), "{err}");
    }
}
