//! Unpacking archives without holding them in memory, into a staging folder next to the
//! destination: the result is renamed into place only after every entry was written, so a broken
//! archive or a full disk leaves nothing half-extracted under the real name.

use std::cell::Cell;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::{DownloadError, Observer, Stage};

/// Counts the bytes read from the archive file, for progress and for saying where a damaged
/// archive breaks.
struct Counting<'a, R> {
    inner: R,
    observer: &'a dyn Observer,
    pos: &'a Cell<u64>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.observer.cancelled() {
            // Not `ErrorKind::Interrupted`: `read_exact` and `io::copy` retry those, forever.
            return Err(std::io::Error::other("cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.pos.set(self.pos.get() + n as u64);
        self.observer.advance(n as u64);
        Ok(n)
    }
}

/// What a file that should be an archive looks like, from its first bytes, for messages: never
/// the bytes themselves, which can be anything (terminal escapes included).
pub fn describe_content(head: &[u8]) -> &'static str {
    let lower = String::from_utf8_lossy(head.get(..1024).unwrap_or(head)).to_ascii_lowercase();
    let start = lower.trim_start();
    match head {
        [] => "an empty file",
        _ if is_tar_header(head) => "a tar archive",
        [0xFF, 0xD8, 0xFF, ..] => "a JPEG image",
        [0x89, b'P', b'N', b'G', ..] => "a PNG image",
        [b'P', b'K', 3 | 5 | 7, 4 | 6 | 8, ..] => "a zip archive",
        [0x1F, 0x8B, ..] => "a gzip-compressed file (decompress it first)",
        [b'B', b'Z', b'h', ..] => "a bzip2-compressed file (decompress it first)",
        [0xFD, b'7', b'z', b'X', b'Z', 0, ..] => "an xz-compressed file (decompress it first)",
        [0x28, 0xB5, 0x2F, 0xFD, ..] => "a zstd-compressed file (decompress it first)",
        [b'7', b'z', 0xBC, 0xAF, 0x27, 0x1C, ..] => "a 7-Zip archive",
        [b'%', b'P', b'D', b'F', ..] => "a PDF document",
        _ if start.starts_with("<!doctype html") || start.starts_with("<html") || lower.contains("<html") => {
            "an HTML page (a web page served instead of the file: an error or login page?)"
        }
        _ if is_text(head) => "a text file",
        _ => "unrecognised binary data",
    }
}

/// Whether `head` reads as text (UTF-8 without control characters but line breaks and tabs); a
/// character cut at the end of `head` does not count against it.
fn is_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
        Err(_) => return false,
    };
    valid.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

/// Whether `head` starts with a tar header: its checksum field matches its bytes, which is what
/// tar readers check (old archives have no `ustar` magic). An all-zero block (an empty archive)
/// counts.
fn is_tar_header(head: &[u8]) -> bool {
    let Some(block) = head.get(..512) else { return false };
    if block.iter().all(|&b| b == 0) {
        return true;
    }
    let Some(field) = block.get(148..156) else { return false };
    let digits: String = field.iter().take_while(|&&b| b != 0).map(|&b| char::from(b)).collect();
    let Ok(stored) = u32::from_str_radix(digits.trim(), 8) else { return false };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(b) })
        .sum();
    stored == sum
}

/// `text` with control characters escaped and cut to a readable length: error texts of archive
/// readers quote names and fields from the archive, which may be arbitrary bytes.
pub fn printable(text: &str) -> String {
    const MAX: usize = 200;
    let mut out: String = text.chars().flat_map(|c| c.escape_debug()).take(MAX).collect();
    if text.chars().flat_map(|c| c.escape_debug()).nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// The first `n` bytes of `path` (fewer when it is shorter).
fn read_head(path: &Path, n: u64) -> Result<Vec<u8>, DownloadError> {
    let mut head = Vec::new();
    let file = std::fs::File::open(path).map_err(|e| DownloadError::io(path, e))?;
    file.take(n).read_to_end(&mut head).map_err(|e| DownloadError::io(path, e))?;
    Ok(head)
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
    let head = read_head(archive, 4096)?;
    if !is_tar_header(&head) {
        return Err(DownloadError::Extract {
            archive: archive.to_path_buf(),
            reason: format!("it is not a tar archive but {}", describe_content(&head)),
        });
    }
    let staging = staging_dir(dest_parent, label)?;
    let len = archive_len(archive)?;
    observer.stage(Stage::Extracting, Some(len));
    let file = std::fs::File::open(archive).map_err(|e| DownloadError::io(archive, e))?;
    let pos = Cell::new(0);
    let mut tar = tar::Archive::new(Counting { inner: BufReader::with_capacity(1 << 20, file), observer, pos: &pos });
    tar.set_preserve_permissions(false);
    tar.set_overwrite(true);
    let mut unpacked = 0usize;
    let result = (|| -> std::io::Result<()> {
        for entry in tar.entries()? {
            // `unpack_in` refuses entries that would escape the staging folder (`..`, absolute paths).
            entry?.unpack_in(&staging)?;
            unpacked += 1;
        }
        Ok(())
    })();
    let result = result.map_err(|e| match e.kind() {
        // The tar reader's complaints about the archive's bytes quote those bytes (a damaged
        // header's fields): say where it breaks instead. Other kinds come from the file system.
        std::io::ErrorKind::Other | std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
            let at = pos.get();
            let what = if at >= len { "it is cut short" } else { "an entry header is damaged" };
            std::io::Error::other(format!(
                "the tar archive is corrupt: {what} (reading stopped at byte {at} of {len}, after {unpacked} entries)"
            ))
        }
        _ => e,
    });
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
        let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
            let head = read_head(archive, 4096).unwrap_or_default();
            match describe_content(&head) {
                "a zip archive" => std::io::Error::other(format!("the zip archive is corrupt ({e})")),
                other => std::io::Error::other(format!("it is not a zip archive but {other}")),
            }
        })?;
        let total = zip.len();
        observer.stage(Stage::Extracting, Some(total as u64));
        // The zip reader's "Invalid checksum" alone does not say the download is damaged.
        let corrupt = |entry: &str, e: &dyn std::fmt::Display, done: usize| {
            std::io::Error::other(format!(
                "the zip archive is corrupt: {entry} is damaged ({e}), after {done} of {total} entries"
            ))
        };
        for i in 0..total {
            if observer.cancelled() {
                return Err(std::io::Error::other("cancelled"));
            }
            let mut entry = zip.by_index(i).map_err(|e| corrupt(&format!("entry {}", i + 1), &e, i))?;
            let Some(rel) = entry.enclosed_name() else {
                return Err(std::io::Error::other(format!(
                    "entry `{}` points outside the archive",
                    entry.name_raw().escape_ascii()
                )));
            };
            let name = format!("`{}`", rel.display());
            let out = staging.join(rel);
            if entry.is_dir() {
                std::fs::create_dir_all(&out)?;
            } else {
                if let Some(dir) = out.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
                std::io::copy(&mut entry, &mut w).map_err(|e| match e.kind() {
                    // What reading the entry's bytes reports; other kinds come from the file system.
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => corrupt(&name, &e, i),
                    _ => e,
                })?;
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
            Err(DownloadError::Extract { archive: archive.to_path_buf(), reason: printable(&e.to_string()) })
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
    fn contents_are_described_by_their_first_bytes() {
        let tar = tar_with(&[("a.txt", b"hello")]);
        let mut zip_bytes = b"PK\x03\x04".to_vec();
        zip_bytes.extend([0u8; 40]);
        // (first bytes, description)
        let cases: [(&[u8], &str); 10] = [
            (&tar, "a tar archive"),
            (&[0u8; 1024], "a tar archive"),
            (&[], "an empty file"),
            (&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10], "a JPEG image"),
            (b"\x89PNG\r\n\x1a\n", "a PNG image"),
            (&zip_bytes, "a zip archive"),
            (&[0x1f, 0x8b, 8, 0, 1, 2], "a gzip-compressed file (decompress it first)"),
            (
                b"  <!DOCTYPE HTML><html>",
                "an HTML page (a web page served instead of the file: an error or login page?)",
            ),
            ("caf\u{e9} au lait\n".as_bytes(), "a text file"),
            (&[0x1b, b'[', b'2', b'J', 0, 1, 2, 0xff], "unrecognised binary data"),
        ];
        for (head, want) in cases {
            assert_eq!(describe_content(head), want, "{:?}", head.get(..8));
        }
        let mut damaged = tar.clone();
        damaged[0] ^= 1; // the name changes, the checksum field does not
        assert!(!is_tar_header(&damaged));
        assert!(!is_tar_header(&tar[..511]), "a header is a whole block");
    }

    #[test]
    fn printable_escapes_control_characters_and_caps_length() {
        assert_eq!(printable("a\u{1b}[31mb\u{7}\n"), "a\\u{1b}[31mb\\u{7}\\n");
        let long = printable(&"x".repeat(500));
        assert!(long.chars().count() == 201 && long.ends_with('…'), "{long}");
    }

    #[test]
    fn a_file_that_is_no_tar_is_described_and_never_extracted() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("x.tar");
        std::fs::write(&archive, b"\x1b[2J\xff\xfe not a tar at all, only junk \x07\x00".repeat(40)).unwrap();
        let err = untar_to_staging(&archive, dir.path(), "x", &NoProgress).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("it is not a tar archive but unrecognised binary data"), "{msg}");
        assert!(!msg.chars().any(|c| c.is_control()), "{msg:?}");
        assert_eq!(names_in(dir.path()), ["x.tar"]);

        // A real tar with a damaged second header: the reader's error quotes the header's bytes.
        let mut bytes = tar_with(&[("a.txt", b"hello"), ("b.txt", b"world")]);
        bytes[1024..1036].copy_from_slice(b"\x1b[2J\x1b[31mevi");
        bytes[1024 + 148..1024 + 156].copy_from_slice(&[0xff, 0xfe, 0x1b, b'[', b'0', b'm', 7, 0x80]);
        std::fs::write(&archive, &bytes).unwrap();
        let msg = untar_to_staging(&archive, dir.path(), "x", &NoProgress).unwrap_err().to_string();
        assert!(msg.contains("an entry header is damaged") && msg.contains("after 1 entries"), "{msg}");
        assert!(!msg.chars().any(|c| c.is_control() || c == char::REPLACEMENT_CHARACTER), "{msg:?}");
        assert_eq!(names_in(dir.path()), ["x.tar"]);
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
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
