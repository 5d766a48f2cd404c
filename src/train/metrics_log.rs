//! `metrics.csv`: one row per step and one per epoch, appended as the run goes (flushed each
//! row, so a killed run keeps its curve). On resume, rows after the checkpoint are dropped so the
//! file matches an uninterrupted run.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::events::{EvalMetrics, StepMetrics};

pub const HEADER: &str = "kind,epoch,step,loss,ce,kd,feature,lr,val_loss,miou,pixel_acc,images_per_sec,elapsed_s";

pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
    /// The loss terms with a column of their own (`term_<name>`, after [`HEADER`]'s), for runs
    /// whose loss is a term list.
    terms: Vec<String>,
}

/// The header of a log with columns for `terms`.
pub fn header_with(terms: &[String]) -> String {
    let mut h = HEADER.to_string();
    for t in terms {
        h.push_str(",term_");
        h.push_str(t);
    }
    h
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

impl MetricsLog {
    /// Opens (creating) the log; keeps only rows up to `keep_until` = (completed epochs, steps).
    /// Every row that reads is kept; rows that do not (damaged bytes) are moved aside to a file
    /// beside it, and the returned note says so. A last row cut short by a killed process is
    /// simply dropped.
    pub fn open(
        path: &Path,
        keep_until: Option<(usize, usize)>,
        terms: &[String],
    ) -> anyhow::Result<(Self, Option<String>)> {
        let header = header_with(terms);
        let fields = header.split(',').count();
        let bytes = match (crate::util::fs::read_regular(path), keep_until) {
            (Ok(bytes), Some(_)) => bytes,
            (Err(e), Some(_)) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(anyhow::anyhow!("cannot read {}: {e}", path.display()));
            }
            _ => Vec::new(),
        };
        let (epochs, steps) = keep_until.unwrap_or((0, 0));
        let mut kept = Vec::new();
        let mut unreadable: Vec<&[u8]> = Vec::new();
        let mut lines = bytes.split_inclusive(|&b| b == b'\n').peekable();
        while let Some(raw) = lines.next() {
            let complete = raw.ends_with(b"\n");
            let text = std::str::from_utf8(raw).ok().map(|l| l.trim_end_matches(['\n', '\r']));
            match text {
                Some(l) if l == header => {}
                Some(l) if row_is_valid(l, fields) => {
                    if row_is_before(l, epochs, steps) {
                        kept.push(l.to_string());
                    }
                }
                // The last row of a killed process may be cut short: nothing of value is lost.
                _ if !complete && lines.peek().is_none() => {}
                _ if raw.iter().all(|b| b.is_ascii_whitespace()) => {}
                _ => unreadable.push(raw),
            }
        }
        let mut note = None;
        if !unreadable.is_empty() {
            let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let aside = path.with_file_name(format!("metrics.unreadable-{stamp}.csv"));
            crate::util::fs::write_atomic(&aside, &unreadable.concat())
                .with_context(|| format!("cannot write {}", aside.display()))?;
            note = Some(format!(
                "{} row(s) of {} could not be read (damaged bytes); every readable row is kept, and the unreadable \
                 ones were moved to {}",
                unreadable.len(),
                path.display(),
                aside.display()
            ));
        }
        let mut content = format!("{header}\n");
        for l in &kept {
            content.push_str(l);
            content.push('\n');
        }
        crate::util::fs::write_atomic(path, content.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok((Self { path: path.to_path_buf(), file, terms: terms.to_vec() }, note))
    }

    fn append(&mut self, row: String) -> anyhow::Result<()> {
        writeln!(self.file, "{row}").with_context(|| format!("cannot append to {} (disk full?)", self.path.display()))
    }

    pub fn step(&mut self, m: &StepMetrics, elapsed: f64) -> anyhow::Result<()> {
        let terms: String = self
            .terms
            .iter()
            .map(|t| format!(",{}", opt(m.terms.iter().find(|(n, _)| n == t).map(|(_, v)| *v))))
            .collect();
        self.append(format!(
            "step,{},{},{},{},{},{},{},,,,{:.3},{:.3}{terms}",
            m.epoch,
            m.step,
            m.loss,
            m.ce,
            opt(m.kd),
            opt(m.feature),
            m.lr,
            m.images_per_sec,
            elapsed
        ))
    }

    pub fn epoch(&mut self, train_loss: f64, lr: f64, e: &EvalMetrics, elapsed: f64) -> anyhow::Result<()> {
        self.append(format!(
            "epoch,{},{},{},,,,{},{},{},{},,{:.3}{}",
            e.epoch,
            e.step,
            train_loss,
            lr,
            e.val_loss,
            e.miou,
            e.pixel_acc,
            elapsed,
            ",".repeat(self.terms.len())
        ))
    }
}

/// Whether a line is a whole row this log writes: the right number of fields, a known kind, an
/// epoch and a step, and numbers (or nothing) in every other field.
fn row_is_valid(line: &str, num_fields: usize) -> bool {
    let fields: Vec<&str> = line.split(',').collect();
    fields.len() == num_fields
        && matches!(fields[0], "step" | "epoch")
        && fields[1].parse::<usize>().is_ok()
        && fields[2].parse::<usize>().is_ok()
        && fields[3..].iter().all(|f| f.is_empty() || f.parse::<f64>().is_ok())
}

/// Whether a (valid) row belongs before the resume point.
fn row_is_before(line: &str, epochs_done: usize, steps_done: usize) -> bool {
    let mut f = line.split(',');
    let (kind, epoch, step) =
        (f.next(), f.next().and_then(|s| s.parse::<usize>().ok()), f.next().and_then(|s| s.parse::<usize>().ok()));
    match (kind, epoch, step) {
        (Some("step"), Some(_), Some(s)) => s <= steps_done,
        (Some("epoch"), Some(e), Some(_)) => e < epochs_done,
        _ => false,
    }
}

/// Parsed rows (for reports): (kind, epoch, step, columns by header name).
pub fn read(path: &Path) -> anyhow::Result<Vec<std::collections::HashMap<String, String>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    Ok(lines.map(|l| header.iter().zip(l.split(',')).map(|(h, v)| (h.to_string(), v.to_string())).collect()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_row_costs_that_row_only_and_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut bytes = format!("{HEADER}\n").into_bytes();
        for step in 1..=8 {
            bytes.extend(format!("step,0,{step},1.5,1.5,,,0.001,,,,10.000,{step}.000\n").as_bytes());
        }
        bytes.extend(b"epoch,0,8,1.4,,,,0.001,1.2,0.3,0.8,,9.000\n");
        // One bad byte in the third row, and a row cut short by a kill at the end.
        let third = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(2).unwrap().0 + 3;
        bytes[third] = 0xff;
        bytes.extend(b"step,1,9,1.3,1.");
        std::fs::write(&path, &bytes).unwrap();
        let (_log, note) = MetricsLog::open(&path, Some((1, 8)), &[]).unwrap();
        let note = note.expect("the damaged row is reported");
        assert!(note.contains("1 row(s)") && note.contains("metrics.unreadable-"), "{note}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1 + 7 + 1, "header, 7 intact step rows and the epoch row:\n{text}");
        assert!(text.contains("step,0,1,") && text.contains("step,0,8,") && text.contains("epoch,0,8,"));
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("metrics.unreadable-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(std::fs::read(aside[0].path()).unwrap().contains(&0xff));
    }
}
