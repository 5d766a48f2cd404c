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
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

impl MetricsLog {
    /// Opens (creating) the log; keeps only rows up to `keep_until` = (completed epochs, steps).
    pub fn open(path: &Path, keep_until: Option<(usize, usize)>) -> anyhow::Result<Self> {
        let kept: Vec<String> = match (std::fs::read_to_string(path), keep_until) {
            (Ok(text), Some((epochs, steps))) => {
                text.lines().skip(1).filter(|l| row_is_before(l, epochs, steps)).map(String::from).collect()
            }
            _ => Vec::new(),
        };
        let mut content = format!("{HEADER}\n");
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
        Ok(Self { path: path.to_path_buf(), file })
    }

    fn append(&mut self, row: String) -> anyhow::Result<()> {
        writeln!(self.file, "{row}").with_context(|| format!("cannot append to {} (disk full?)", self.path.display()))
    }

    pub fn step(&mut self, m: &StepMetrics, elapsed: f64) -> anyhow::Result<()> {
        self.append(format!(
            "step,{},{},{},{},{},{},{},,,,{:.3},{:.3}",
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
            "epoch,{},{},{},,,,{},{},{},{},,{:.3}",
            e.epoch, e.step, train_loss, lr, e.val_loss, e.miou, e.pixel_acc, elapsed
        ))
    }
}

/// Whether a row belongs before the resume point.
fn row_is_before(line: &str, epochs_done: usize, steps_done: usize) -> bool {
    // A row cut short by a killed process is dropped.
    if line.split(',').count() != HEADER.split(',').count() {
        return false;
    }
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
