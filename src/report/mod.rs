//! The comparison report over finished runs: a markdown table (mIoU, Δ vs no distillation,
//! parameters, multiply-adds, size, speed, training time, the lab's score, the Cityscapes FoM),
//! curve PNGs, and overlay PNGs of each student's best and worst validation images.

pub mod overlays;
pub mod plots;
pub mod runs;
pub mod study;
pub mod sweep;
pub mod table;

use std::path::PathBuf;

use anyhow::Context as _;
use candle_core::Device;

use crate::model::ModelKind;

pub use runs::RunData;
pub use table::Row;

/// What `report` should produce.
pub struct ReportOptions {
    pub out: PathBuf,
    /// Teacher weights for the teacher's row and panels (default: the runs' teacher).
    pub teacher_weights: Option<PathBuf>,
    /// The architecture of `teacher_weights` (default: the runs' teacher architecture, else
    /// FCN-ResNet50).
    pub teacher_model: Option<ModelKind>,
    /// Best and worst images per run in the overlay PNGs.
    pub overlays: usize,
    pub device: Device,
    /// The Δ baseline chosen per student architecture (model name → run name); a model not
    /// listed gets its first completed no-distillation run.
    pub baselines: std::collections::BTreeMap<String, String>,
}

/// The files written.
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub images: Vec<PathBuf>,
    pub rows: Vec<Row>,
    /// What the report had to leave out, and why (one line each).
    pub warnings: Vec<String>,
}

/// The teacher of the report: the one asked for, else the first run's that has one.
fn teacher_of(runs: &[RunData], opts: &ReportOptions) -> Option<(ModelKind, PathBuf)> {
    match &opts.teacher_weights {
        Some(w) => {
            let of_runs = runs.iter().find(|r| r.config.teacher_weights.as_ref() == Some(w)).map(|r| r.config.teacher);
            Some((opts.teacher_model.or(of_runs).unwrap_or(ModelKind::FcnResnet50), w.clone()))
        }
        None => runs.iter().find_map(|r| r.config.teacher_weights.clone().map(|w| (r.config.teacher, w))),
    }
}

/// Builds the report for `run_dirs`; `progress` receives one-line status messages.
pub fn write(run_dirs: &[PathBuf], opts: &ReportOptions, progress: &dyn Fn(&str)) -> anyhow::Result<ReportFiles> {
    anyhow::ensure!(!run_dirs.is_empty(), "no run folders given");
    std::fs::create_dir_all(&opts.out).with_context(|| format!("cannot create {}", opts.out.display()))?;
    let runs: Vec<RunData> = run_dirs.iter().map(|d| runs::load(d)).collect::<anyhow::Result<_>>()?;
    plots::register_fonts();
    let teacher_weights = teacher_of(&runs, opts).filter(|(_, p)| p.is_file());
    progress("measuring students");
    let mut rows: Vec<Row> = Vec::new();
    for run in &runs {
        rows.push(table::student_row(run, &opts.device)?);
    }
    let mut baselines = table::default_baselines(&rows);
    for (model, run) in &opts.baselines {
        if rows.iter().any(|r| &r.model == model && &r.label == run && table::can_be_baseline(r)) {
            baselines.insert(model.clone(), run.clone());
        }
    }
    table::fill_deltas(&mut rows, &baselines);
    let teacher = match &teacher_weights {
        Some((kind, w)) => {
            progress("evaluating the teacher on the validation split (cached afterwards)");
            Some(table::teacher_row(&runs[0], *kind, w, &opts.device)?)
        }
        None => None,
    };
    let mut images = Vec::new();
    progress("drawing curves");
    images.extend(plots::curves(&runs, teacher.as_ref().map(|t| t.miou), &opts.out)?);
    progress("rendering overlays");
    let mut warnings: Vec<String> = runs.iter().flat_map(|r| r.warnings.iter().cloned()).collect();
    for run in &runs {
        // Overlays need the run's dataset; without it the report is still written, and says so.
        let teacher = teacher_weights.as_ref().map(|(k, p)| (*k, p.as_path()));
        match overlays::render(run, teacher, opts.overlays, &opts.out, &opts.device) {
            Ok(drawn) => images.extend(drawn),
            Err(e) => warnings.push(format!("no overlays for run {}: {e:#}", run.name)),
        }
    }
    let cx = table::ReportContext {
        teacher: teacher.as_ref(),
        runs: &runs,
        images: &images,
        device: &opts.device,
        baselines: &baselines,
    };
    let md = table::markdown(&rows, &cx);
    let markdown = opts.out.join("report.md");
    crate::util::fs::write_atomic(&markdown, md.as_bytes())
        .with_context(|| format!("cannot write {}", markdown.display()))?;
    if let Some(t) = teacher {
        rows.insert(0, t);
    }
    Ok(ReportFiles { markdown, images, rows, warnings })
}

/// A file name made of a run's name (safe characters only).
pub(crate) fn slug(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}
