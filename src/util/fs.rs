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
        // A temporary file is always new: a leftover of this process id is removed (a link is
        // removed itself, never followed), and `create_new` refuses whatever appears meanwhile,
        // so a planted link can never redirect the write to another file.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
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

/// What a file-system entry is, in words: "a symbolic link", "a FIFO", "a folder", ….
pub fn describe_file_type(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading only if it is a regular file (a link to one is followed). A FIFO or
/// a device is refused without blocking on it (opened non-blocking, its type checked on the open
/// file), so a stray special file can never hang a reader; the error says what was found.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let file_type = file.metadata()?.file_type();
    if !file_type.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is {}, not a regular file", path.display(), describe_file_type(&file_type)),
        ));
    }
    #[cfg(unix)]
    {
        // Reads of a regular file never block; the flag is cleared so nothing else sees it.
        use std::os::fd::AsRawFd as _;
        // SAFETY: fcntl on a file descriptor this function owns, with plain integer flags.
        unsafe {
            let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
    }
    Ok(file)
}

/// The whole content of a regular file ([`open_regular`]: never blocks on a FIFO or a device).
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut file = open_regular(path)?;
    let mut bytes = Vec::with_capacity(file.metadata().map_or(0, |m| m.len() as usize));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Removes the temporary files ([`write_atomic`]'s `.<name>.tmp-<pid>`) in `dir` that a killed
/// process left behind. A file whose process is still alive is kept: it may be another run
/// sharing the folder (a teacher cache), in the middle of a write.
pub fn remove_stale_temp_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-")).map(|(_, pid)| pid) else {
            continue;
        };
        // This process's own files count as live: another of its threads may be writing them.
        let alive = pid.parse::<u32>().is_ok_and(process_alive);
        if !alive && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether a process with this id exists (where that cannot be told: assume it does).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
        // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
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
