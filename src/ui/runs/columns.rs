//! What the Runs table sorts by ([`Column`], and the order it gives the entries) and what the
//! curves overlay ([`Metric`], and each run's series of it). No drawing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::entries::RunEntry;
use crate::diagnostics::teacher_quality::TeacherQuality;
use crate::model::format_params;
use crate::report::table::{Row, format_delta, format_macs, format_ms, train_time};
use crate::train::events::StepMetrics;

/// A column the table sorts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Run,
    Model,
    Mode,
    Status,
    Miou,
    Delta,
    Params,
    Macs,
    Ms,
    TrainTime,
    Score,
}

impl Column {
    pub const ALL: [Column; 11] = [
        Self::Run,
        Self::Model,
        Self::Mode,
        Self::Status,
        Self::Miou,
        Self::Delta,
        Self::Params,
        Self::Macs,
        Self::Ms,
        Self::TrainTime,
        Self::Score,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Model => "model",
            Self::Mode => "mode",
            Self::Status => "status",
            Self::Miou => "mIoU",
            Self::Delta => "Δ mIoU",
            Self::Params => "params",
            Self::Macs => "MACs",
            Self::Ms => "ms/image",
            Self::TrainTime => "train time",
            Self::Score => "score",
        }
    }

    pub fn tooltip(self) -> &'static str {
        match self {
            Self::Run => "the run's folder name",
            Self::Model => "the student architecture",
            Self::Mode => "distillation: a preset (none, response, feature, combined) or the run's loss-term list",
            Self::Status => "completed, stopped after an epoch (Resume continues it), or running",
            Self::Miou => "best validation mIoU over the run's evaluations",
            Self::Delta => {
                "mIoU minus the chosen baseline's: a completed no-distillation run of the same student; † marks a \
                 run trained unlike its baseline (epochs, crop, dataset or validation differ; hover it)"
            }
            Self::Params => "trainable parameters of the student",
            Self::Macs => "multiply-adds of one forward pass at the evaluation size (S²)",
            Self::Ms => {
                "median CPU forward time at batch 1 after 2 warm-up passes ± the standard deviation of 10 timed \
                 passes, measured once per architecture and input size on this machine and kept in the runs \
                 folder's speed/ (the report uses the same figures); (busy): the machine was busy while it was \
                 measured; Measure again measures afresh"
            }
            Self::TrainTime => {
                "wall-clock training time over all sessions; the teacher cache's one-off build is shown apart"
            }
            Self::Score => "the lab's score: 4·mIoU / (1 + parameters in millions); higher is better",
        }
    }
}

/// How a run's row stands in the table: whether it trains now, and its Δ figures (its table
/// row with Δ filled in against the chosen baseline, and whether it is that baseline).
pub struct Shown<'a> {
    pub running: bool,
    pub row: Option<&'a Row>,
    pub is_baseline: bool,
}

/// The text of a run's cell: what the table shows and what its CSV export writes.
pub fn cell_text(column: Column, e: &RunEntry, shown: &Shown<'_>) -> String {
    let row = shown.row;
    let dash = || "—".to_string();
    match column {
        Column::Run => e.name.clone(),
        Column::Model => e.config.model.name().to_string(),
        Column::Mode => e.config.loss_name(),
        Column::Status if shown.running => "running".into(),
        Column::Status => e.status.clone(),
        Column::Miou => e.state.as_ref().and_then(|s| s.best.as_ref()).map_or_else(dash, |b| format!("{:.4}", b.miou)),
        Column::Delta if shown.is_baseline => "baseline".into(),
        Column::Delta => row.map_or_else(dash, format_delta),
        Column::Params => row.map_or_else(dash, |r| format_params(r.params)),
        Column::Macs => row.map_or_else(dash, |r| format!("{} @ {}", format_macs(r.gmacs), r.eval_size)),
        Column::Ms => row.map_or_else(dash, format_ms),
        Column::TrainTime => row.map_or_else(dash, train_time),
        Column::Score => row.map_or_else(dash, |r| format!("{:.4}", r.score())),
    }
}

/// The teacher's row: its evaluated quality, no training columns.
pub fn teacher_cells(t: &TeacherQuality) -> Vec<String> {
    Column::ALL
        .iter()
        .map(|c| match c {
            Column::Run => "teacher".into(),
            Column::Model => t.key.model.name().into(),
            Column::Status => (if t.near_chance() { "near chance" } else { "evaluated" }).into(),
            Column::Miou => format!("{:.4}", t.miou),
            _ => "—".into(),
        })
        .collect()
}

/// The table as CSV: the column titles, then each row's cells as shown.
pub fn to_csv(rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let field = |f: &str| {
        if f.contains([',', '"', '\n', '\r']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.to_string() }
    };
    let line = |cells: &[String]| cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(",") + "\n";
    let header: Vec<String> = Column::ALL.iter().map(|c| c.title().to_string()).collect();
    std::iter::once(line(&header)).chain(rows.into_iter().map(|r| line(&r))).collect()
}

/// A metric the curves can overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    TrainLoss,
    Ce,
    Kd,
    Feature,
    ValLoss,
    Miou,
    PixelAccuracy,
    ClassIou(usize),
}

impl Metric {
    pub fn label(self, class_names: &[String]) -> String {
        match self {
            Self::TrainLoss => "training loss".into(),
            Self::Ce => "CE loss".into(),
            Self::Kd => "KD loss".into(),
            Self::Feature => "feature loss".into(),
            Self::ValLoss => "val loss".into(),
            Self::Miou => "val mIoU".into(),
            Self::PixelAccuracy => "pixel accuracy".into(),
            Self::ClassIou(c) => format!("IoU of {}", class_names.get(c).map_or("?", String::as_str)),
        }
    }

    pub fn per_step(self) -> bool {
        matches!(self, Self::TrainLoss | Self::Ce | Self::Kd | Self::Feature)
    }

    pub fn series(self, e: &RunEntry) -> Vec<[f64; 2]> {
        let step = |f: &dyn Fn(&StepMetrics) -> Option<f64>| -> Vec<[f64; 2]> {
            e.steps.iter().filter_map(|s| f(s).map(|v| [s.step as f64, v])).collect()
        };
        let history = e.state.as_ref().map(|s| s.history.as_slice()).unwrap_or_default();
        let epoch = |f: &dyn Fn(&crate::train::checkpoint::EpochRecord) -> Option<f64>| -> Vec<[f64; 2]> {
            history.iter().filter_map(|r| f(r).map(|v| [(r.epoch + 1) as f64, v])).collect()
        };
        match self {
            Self::TrainLoss => step(&|s| Some(s.loss)),
            Self::Ce => step(&|s| Some(s.ce)),
            Self::Kd => step(&|s| s.kd),
            Self::Feature => step(&|s| s.feature),
            Self::ValLoss => epoch(&|r| Some(r.val_loss)),
            Self::Miou => epoch(&|r| Some(r.miou)),
            Self::PixelAccuracy => epoch(&|r| Some(r.pixel_acc)),
            Self::ClassIou(c) => epoch(&|r| r.iou.get(c).copied().flatten()),
        }
    }
}

/// `entries` in the order of `column`, ascending or not; `deltas`: each run's Δ mIoU by folder.
pub fn sorted<'a>(
    entries: &'a [RunEntry],
    (column, ascending): (Column, bool),
    deltas: &BTreeMap<PathBuf, f64>,
) -> Vec<&'a RunEntry> {
    let num = |e: &RunEntry| -> f64 {
        let row = e.row.as_ref();
        match column {
            Column::Miou => e.state.as_ref().and_then(|s| s.best.as_ref()).map_or(f64::NAN, |b| b.miou),
            Column::Delta => deltas.get(&e.dir).copied().unwrap_or(f64::NAN),
            Column::Params => row.map_or(f64::NAN, |r| r.params as f64),
            Column::Macs => row.map_or(f64::NAN, |r| r.gmacs),
            Column::Ms => row.map_or(f64::NAN, |r| r.ms_per_image),
            Column::TrainTime => e.state.as_ref().map_or(f64::NAN, |s| s.train_seconds),
            Column::Score => row.map_or(f64::NAN, |r| r.score()),
            _ => 0.0,
        }
    };
    let text = |e: &RunEntry| -> String {
        match column {
            Column::Run => e.name.clone(),
            Column::Model => e.config.model.name().to_string(),
            Column::Mode => e.config.loss_name(),
            Column::Status => e.status.clone(),
            _ => String::new(),
        }
    };
    let mut v: Vec<&RunEntry> = entries.iter().collect();
    v.sort_by(|a, b| {
        let (na, nb) = (num(a), num(b));
        // Unknown values last in either direction.
        let order = match (na.is_nan(), nb.is_nan()) {
            (true, false) => return std::cmp::Ordering::Greater,
            (false, true) => return std::cmp::Ordering::Less,
            _ => na.total_cmp(&nb).then_with(|| text(a).cmp(&text(b))),
        };
        if ascending { order } else { order.reverse() }
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::TrainConfig;

    fn entry(name: &str) -> RunEntry {
        RunEntry {
            dir: PathBuf::from("runs").join(name),
            name: name.into(),
            config: TrainConfig::default(),
            state: None,
            status: "completed".into(),
            resumable: false,
            row: None,
            steps: Vec::new(),
            has_student: false,
        }
    }

    fn names(v: Vec<&RunEntry>) -> Vec<&str> {
        v.into_iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn the_csv_has_the_shown_columns_and_quotes_what_needs_it() {
        let e = entry("a,b");
        let shown = Shown { running: true, row: None, is_baseline: false };
        let cells: Vec<String> = Column::ALL.iter().map(|c| cell_text(*c, &e, &shown)).collect();
        let csv = to_csv([cells]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "run,model,mode,status,mIoU,Δ mIoU,params,MACs,ms/image,train time,score");
        assert!(lines[1].starts_with("\"a,b\",mbv3s-aspp,none,running,—"), "{}", lines[1]);
        assert_eq!(lines[1].split(',').count(), Column::ALL.len() + 1, "one comma inside quotes");
        // A run trained with a term list names its terms, not the preset field it leaves at none.
        let mut kd = entry("kd");
        kd.config.loss_terms = Some("ce,kd".parse().unwrap());
        assert_eq!(cell_text(Column::Mode, &kd, &shown), "ce=1,kd=1");
    }

    #[test]
    fn runs_sort_by_a_column_with_unknown_values_last() {
        let entries = [entry("b"), entry("c"), entry("a")];
        let none = BTreeMap::new();
        assert_eq!(names(sorted(&entries, (Column::Run, true), &none)), ["a", "b", "c"]);
        assert_eq!(names(sorted(&entries, (Column::Run, false), &none)), ["c", "b", "a"]);
        let deltas = BTreeMap::from([(PathBuf::from("runs/a"), 0.1), (PathBuf::from("runs/c"), -0.2)]);
        assert_eq!(names(sorted(&entries, (Column::Delta, true), &deltas)), ["c", "a", "b"]);
        assert_eq!(names(sorted(&entries, (Column::Delta, false), &deltas)), ["a", "c", "b"]);
    }
}
