//! Getting VOC 2012, SBD's augmented masks, ADE20K and torchvision's weights from the internet: resumable
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

use crate::util::fmt::human_bytes;

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

/// Everything that can go wrong getting data; each message says what happened and what to do
/// next. Resuming is offered only when a `.part` file with bytes exists ([`Kept`]), and retrying
/// only when it can help (not for a bad address or a file the server does not have).
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("`{url}` is not a valid http:// or https:// address ({reason}); check the address you passed")]
    BadUrl { url: String, reason: String },
    #[error(
        "cannot reach {host} ({reason}). Check the internet connection; behind a proxy set HTTPS_PROXY / \
         HTTP_PROXY; or pass --url with a mirror"
    )]
    Offline { host: String, reason: String },
    #[error("{url} answered HTTP {status} {text}: {}", http_advice(*.status, .kept))]
    Http { url: String, status: u16, text: String, kept: Option<Kept> },
    #[error(
        "the server at {url} stopped sending: no data for {secs} s (the stall timeout; raise it with --timeout or \
         SEGDISTILL_TIMEOUT); {}",
        resume_or(.kept, "nothing was received: try again later, or pass --url with a mirror")
    )]
    Stalled { url: String, secs: u64, kept: Option<Kept> },
    #[error(
        "the connection to {url} broke after {got} of {total} bytes ({reason}); {}",
        resume_or(.kept, "nothing was received: try again (retrying may help), or pass --url with a mirror")
    )]
    Interrupted { url: String, got: u64, total: String, reason: String, kept: Option<Kept> },
    #[error(
        "{algorithm} of {path} is {actual}, expected {expected}: the file is corrupt or not the published one; \
         it was deleted, run the command again to download it afresh"
    )]
    ChecksumMismatch { path: PathBuf, algorithm: &'static str, expected: String, actual: String },
    #[error("not enough free space in {dir}: {need} needed, {have} free; free some space or pass --dest elsewhere")]
    DiskSpace { dir: PathBuf, need: String, have: String },
    /// `cause`, not `source`: the OS error is in the message already, and a chain printed with
    /// `{:#}` would repeat it.
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
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

/// The `.part` file of an unfinished download and how many bytes it holds: the next run of the
/// same command asks the server for the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub part: PathBuf,
    pub bytes: u64,
}

impl Kept {
    /// What `part` holds now; `None` when it is missing or empty (nothing to resume).
    pub fn on_disk(part: &Path) -> Option<Self> {
        let bytes = std::fs::metadata(part).ok().filter(|m| m.is_file())?.len();
        (bytes > 0).then(|| Self { part: part.to_path_buf(), bytes })
    }
}

/// The resume advice when a `.part` with bytes exists, else `otherwise`.
fn resume_or(kept: &Option<Kept>, otherwise: &str) -> String {
    match kept {
        Some(k) => format!(
            "the {} bytes received so far are kept in {}: run the same command again to resume",
            k.bytes,
            k.part.display()
        ),
        None => otherwise.to_string(),
    }
}

/// What an HTTP error status means for the user: whether retrying can help, and what else to try.
fn http_advice(status: u16, kept: &Option<Kept>) -> String {
    let elsewhere = "check the address, or pass --url with a mirror";
    let later = |why: &str| match kept {
        Some(_) => format!("{why}: retrying later may help; {}", resume_or(kept, "")),
        None => format!("{why}: retrying later may help, or pass --url with a mirror"),
    };
    match status {
        404 | 410 => format!("the file is not at that address, so retrying will not help; {elsewhere}"),
        401 | 403 => format!("the server refuses to give out this file, so retrying will not help; {elsewhere}"),
        407 => "the proxy wants a user name and password: put them in HTTPS_PROXY / HTTP_PROXY \
                (http://user:password@host:port)"
            .into(),
        408 | 429 => later("the server is busy"),
        400..=499 => format!("the server rejected the request, so retrying will not help; {elsewhere}"),
        500..=599 => later("a problem on the server's side"),
        _ => format!("an answer a download cannot use; {elsewhere}"),
    }
}

impl DownloadError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        let source = if source.kind() == std::io::ErrorKind::StorageFull {
            std::io::Error::new(source.kind(), "the disk is full: free some space and run again to resume")
        } else {
            source
        };
        Self::Io { path: path.to_path_buf(), cause: source }
    }
}

/// Fails when `dir` (or its nearest existing ancestor) has less than `need` bytes free.
pub fn ensure_free_space(dir: &Path, need: u64) -> Result<(), DownloadError> {
    let have = crate::util::fs::free_space(dir).map_err(|e| DownloadError::io(dir, e))?;
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
    fn http_statuses_say_whether_retrying_helps() {
        let kept = Some(Kept { part: PathBuf::from("/d/v.tar.part"), bytes: 42 });
        // (status, kept part, what the advice must say, what it must not)
        let cases: [(u16, &Option<Kept>, &str, &str); 7] = [
            (404, &None, "not at that address, so retrying will not help", "resume"),
            (404, &kept, "not at that address, so retrying will not help", "resume"),
            (403, &None, "refuses to give out this file, so retrying will not help", "resume"),
            (503, &None, "retrying later may help, or pass --url", "resume"),
            (500, &kept, "the 42 bytes received so far are kept in /d/v.tar.part", "will not help"),
            (429, &None, "busy: retrying later may help", "will not help"),
            (407, &None, "HTTPS_PROXY", "retrying"),
        ];
        for (status, kept, says, not) in cases {
            let advice = http_advice(status, kept);
            assert!(advice.contains(says) && !advice.contains(not), "HTTP {status} ({kept:?}): {advice}");
        }
    }

    #[test]
    fn resume_is_offered_only_for_a_part_with_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("a.part");
        assert_eq!(Kept::on_disk(&part), None, "missing");
        std::fs::write(&part, b"").unwrap();
        assert_eq!(Kept::on_disk(&part), None, "empty");
        std::fs::write(&part, b"abc").unwrap();
        assert_eq!(Kept::on_disk(&part), Some(Kept { part: part.clone(), bytes: 3 }));
        assert_eq!(Kept::on_disk(dir.path()), None, "a folder is no part file");
        let err = DownloadError::Stalled { url: "http://h/a".into(), secs: 3, kept: None };
        assert!(!err.to_string().contains("resume"), "{err}");
    }

    #[test]
    fn free_space_check_refuses_impossible_sizes() {
        let dir = tempfile::tempdir().unwrap();
        ensure_free_space(&dir.path().join("not/yet/there"), 1).unwrap();
        let err = ensure_free_space(dir.path(), u64::MAX).unwrap_err();
        assert!(matches!(err, DownloadError::DiskSpace { .. }), "{err}");
    }
}
