//! File-system helpers: atomic writes (temp file + fsync + rename), so a crash or a full disk
//! never leaves a half-written file under its final name; absolute paths, so what a run stores
//! works from any directory; and the guard that keeps a command's outputs off its inputs.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name used while `path` is being written: same directory, so `rename` is atomic.
fn temp_path_for(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically. On error the previous file (if any) is untouched and the
/// temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Like [`write_atomic`], with the content produced by `write` into a buffered writer.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = temp_path_for(path);
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable where the platform allows it.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            d.sync_all().ok(); // best effort: not all file systems support syncing a directory
        }
        Ok(())
    })();
    if result.is_err() {
        std::fs::remove_file(&tmp).ok(); // the temp file may not exist; nothing else to clean
    }
    result
}

/// `path` made absolute: canonical (symbolic links and `..` resolved) when it exists, else the
/// canonical form of its deepest existing ancestor joined with the rest. Stored paths (run
/// configurations, app settings) go through this, so they mean the same from any directory.
pub fn absolute(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Resolve the part that exists; keep the missing tail (a folder about to be created).
    let mut existing = abs.as_path();
    let mut tail = Vec::new();
    while let Some(parent) = existing.parent() {
        if let Some(name) = existing.file_name() {
            tail.push(name.to_os_string());
        }
        existing = parent;
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            return tail.iter().rev().fold(canonical, |p, n| p.join(n));
        }
    }
    abs
}

/// Whether two paths name the same file (compared canonically, so `./a.jpg`, `a.jpg` and a
/// link to it are the same; a path that does not exist yet is compared by its absolute form).
pub fn same_file(a: &Path, b: &Path) -> bool {
    absolute(a) == absolute(b)
}

/// A file a command writes, with the flag that names it (for messages).
pub struct Output<'a> {
    pub flag: &'static str,
    pub path: &'a Path,
    /// Extensions the written format goes by (lower case, without the dot); empty: any.
    pub extensions: &'static [&'static str],
}

/// Refuses outputs that would destroy an input or each other, or that would put one format's
/// bytes under another's name. `inputs` are (flag, path) of the files the command reads.
pub fn check_outputs(inputs: &[(&str, &Path)], outputs: &[Output]) -> anyhow::Result<()> {
    for (k, out) in outputs.iter().enumerate() {
        if let Some((flag, _)) = inputs.iter().find(|(_, input)| same_file(input, out.path)) {
            anyhow::bail!(
                "{} {} is the file given as {flag}: refusing to overwrite an input; choose another output path",
                out.flag,
                out.path.display()
            );
        }
        if let Some(other) = outputs[..k].iter().find(|o| same_file(o.path, out.path)) {
            anyhow::bail!(
                "{} and {} both name {}: give each output its own file",
                other.flag,
                out.flag,
                out.path.display()
            );
        }
        if out.path.is_dir() {
            anyhow::bail!("{} {} is a folder; give a file name", out.flag, out.path.display());
        }
        let ext = out.path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
        if !out.extensions.is_empty() && !out.extensions.contains(&ext.as_str()) {
            anyhow::bail!(
                "{} {} would hold a {} file under another name; end it in .{}",
                out.flag,
                out.path.display(),
                out.extensions[0].to_uppercase(),
                out.extensions[0]
            );
        }
    }
    Ok(())
}

/// Checks up front that `path` can be written later (its folder exists or can be made, and is
/// writable), so a long job does not fail only at its end.
pub fn check_writable(flag: &str, path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("{flag} {}: cannot create {}: {e}", path.display(), dir.display()))?;
    let probe = dir.join(format!(".segdistill-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| anyhow::anyhow!("{flag} {}: cannot write into {}: {e}", path.display(), dir.display()))?;
    std::fs::remove_file(&probe).ok(); // just made; nothing else to clean
    Ok(())
}

/// Bytes free on the file system that holds `dir`, or would hold it: the nearest existing
/// ancestor is asked when `dir` does not exist yet.
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    let mut probe = dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p,
            _ => return fs4::available_space(Path::new(".")),
        }
    }
    fs4::available_space(probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_resolves_existing_part_and_keeps_missing_tail() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(real.join("a")).unwrap();
        assert_eq!(absolute(&real.join("a/../a")), real.join("a"));
        assert_eq!(absolute(&real.join("a/new/x.bin")), real.join("a/new/x.bin"));
        assert!(absolute(Path::new("relative/thing")).is_absolute());
    }

    #[test]
    fn outputs_may_not_be_inputs_each_other_or_misnamed() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("photo.jpg");
        std::fs::write(&img, b"jpeg").unwrap();
        let dotted = dir.path().join(".").join("photo.jpg");
        let png = |flag, path| Output { flag, path, extensions: &["png"] };
        let err = check_outputs(&[("--image", &img)], &[png("--out", &dotted)]).unwrap_err().to_string();
        assert!(err.contains("--out") && err.contains("--image") && err.contains("refusing"), "{err}");
        let mask = dir.path().join("mask.png");
        let err = check_outputs(&[("--image", &img)], &[png("--out", &mask), png("--overlay", &mask)]).unwrap_err();
        assert!(err.to_string().contains("--out and --overlay"), "{err}");
        let misnamed = dir.path().join("mask.jpg");
        let err = check_outputs(&[], &[png("--out", &misnamed)]).unwrap_err().to_string();
        assert!(err.contains("PNG") && err.contains(".png"), "{err}");
        let upper = dir.path().join("o.PNG");
        check_outputs(&[("--image", &img)], &[png("--out", &mask), png("--overlay", &upper)]).unwrap();
    }

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "only the final file remains: {names:?}");
    }

    #[test]
    fn failed_write_keeps_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bin");
        write_atomic(&p, b"good").unwrap();
        let err = write_atomic_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
