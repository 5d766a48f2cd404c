//! Unpacking archives without holding them in memory, into a staging folder next to the
//! destination: the result is renamed into place only after every entry was written, so a broken
//! archive or a full disk leaves nothing half-extracted under the real name.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::{DownloadError, Observer, Stage};

/// Counts the bytes read from the archive file, for progress.
struct Counting<'a, R> {
    inner: R,
    observer: &'a dyn Observer,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.observer.cancelled() {
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.observer.advance(n as u64);
        Ok(n)
    }
}

/// A fresh, empty staging folder for extracting into `dest_parent`.
fn staging_dir(dest_parent: &Path, label: &str) -> Result<PathBuf, DownloadError> {
    let staging = dest_parent.join(format!(".{label}.extracting"));
    if staging.exists() {
        // Left by an earlier attempt that was killed: it is incomplete by construction.
        std::fs::remove_dir_all(&staging).map_err(|e| DownloadError::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| DownloadError::io(&staging, e))?;
    Ok(staging)
}

fn archive_len(archive: &Path) -> Result<u64, DownloadError> {
    std::fs::metadata(archive).map(|m| m.len()).map_err(|e| DownloadError::io(archive, e))
}

/// Unpacks a tar archive into a new staging folder under `dest_parent`; returns the folder. The
/// caller moves what it needs out of it and removes it.
pub fn untar_to_staging(
    archive: &Path,
    dest_parent: &Path,
    label: &str,
    observer: &dyn Observer,
) -> Result<PathBuf, DownloadError> {
    let staging = staging_dir(dest_parent, label)?;
    observer.stage(Stage::Extracting, Some(archive_len(archive)?));
    let file = std::fs::File::open(archive).map_err(|e| DownloadError::io(archive, e))?;
    let mut tar = tar::Archive::new(Counting { inner: BufReader::with_capacity(1 << 20, file), observer });
    tar.set_preserve_permissions(false);
    tar.set_overwrite(true);
    let result = (|| -> std::io::Result<()> {
        for entry in tar.entries()? {
            // `unpack_in` refuses entries that would escape the staging folder (`..`, absolute paths).
            entry?.unpack_in(&staging)?;
        }
        Ok(())
    })();
    finish(result, archive, &staging, observer)?;
    Ok(staging)
}

/// Unpacks a zip archive into a new staging folder under `dest_parent`.
pub fn unzip_to_staging(
    archive: &Path,
    dest_parent: &Path,
    label: &str,
    observer: &dyn Observer,
) -> Result<PathBuf, DownloadError> {
    let staging = staging_dir(dest_parent, label)?;
    let file = std::fs::File::open(archive).map_err(|e| DownloadError::io(archive, e))?;
    let result = (|| -> std::io::Result<()> {
        let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(std::io::Error::other)?;
        observer.stage(Stage::Extracting, Some(zip.len() as u64));
        for i in 0..zip.len() {
            if observer.cancelled() {
                return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled"));
            }
            let mut entry = zip.by_index(i).map_err(std::io::Error::other)?;
            let Some(rel) = entry.enclosed_name() else {
                return Err(std::io::Error::other(format!(
                    "entry `{}` points outside the archive",
                    entry.name_raw().escape_ascii()
                )));
            };
            let out = staging.join(rel);
            if entry.is_dir() {
                std::fs::create_dir_all(&out)?;
            } else {
                if let Some(dir) = out.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
                std::io::copy(&mut entry, &mut w)?;
                std::io::Write::flush(&mut w)?;
            }
            observer.advance(1);
        }
        Ok(())
    })();
    finish(result, archive, &staging, observer)?;
    Ok(staging)
}

fn finish(
    result: std::io::Result<()>,
    archive: &Path,
    staging: &Path,
    observer: &dyn Observer,
) -> Result<(), DownloadError> {
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            std::fs::remove_dir_all(staging).ok(); // best effort; the error below is what matters
            if observer.cancelled() {
                return Err(DownloadError::Cancelled);
            }
            if e.kind() == std::io::ErrorKind::StorageFull {
                return Err(DownloadError::io(staging, e));
            }
            Err(DownloadError::Extract { archive: archive.to_path_buf(), reason: e.to_string() })
        }
    }
}

/// Moves `from` to `to` (same file system: a rename), replacing nothing: `to` must not exist.
pub fn move_into_place(from: &Path, to: &Path) -> Result<(), DownloadError> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DownloadError::io(dir, e))?;
    }
    std::fs::rename(from, to).map_err(|e| DownloadError::io(to, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::download::NoProgress;

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn untars_into_staging_and_a_truncated_archive_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tar_with(&[("top/a.txt", b"hello"), ("top/sub/b.bin", &[7u8; 5000])]);
        let archive = dir.path().join("x.tar");
        std::fs::write(&archive, &bytes).unwrap();
        let staging = untar_to_staging(&archive, dir.path(), "x", &NoProgress).unwrap();
        assert_eq!(std::fs::read(staging.join("top/a.txt")).unwrap(), b"hello");
        assert_eq!(std::fs::read(staging.join("top/sub/b.bin")).unwrap().len(), 5000);
        std::fs::remove_dir_all(&staging).unwrap();

        std::fs::write(&archive, &bytes[..1200]).unwrap(); // cut inside the second file
        let err = untar_to_staging(&archive, dir.path(), "x", &NoProgress).unwrap_err();
        assert!(matches!(err, DownloadError::Extract { .. }), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["x.tar"], "staging must be gone");
    }
}
