//! The comparison report over finished runs: a markdown table (mIoU, Δ vs no distillation,
//! parameters, multiply-adds, size, speed, training time, the lab's score, the Cityscapes FoM),
//! curve PNGs, and overlay PNGs of each student's best and worst validation images.

pub mod overlays;
pub mod plots;
pub mod runs;
pub mod speed;
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
    /// The Δ baseline chosen per student architecture (model name → the run's folder), as the
    /// app's table shows it; a chosen run that is not among the report's runs is added to them. A
    /// model not listed gets its first completed no-distillation run.
    pub baselines: std::collections::BTreeMap<String, PathBuf>,
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
    // A chosen baseline outside the selection is added to it: the report compares as the table does.
    let mut dirs: Vec<PathBuf> = run_dirs.to_vec();
    let mut baseline_notes = Vec::new();
    for (model, dir) in &opts.baselines {
        if !dirs.iter().any(|d| same_folder(d, dir)) {
            match runs::load(dir) {
                Ok(_) => {
                    baseline_notes.push(format!(
                        "{model}: the chosen baseline {} was not among the selected runs; it is added to the table",
                        crate::util::fmt::escaped(&dir.display().to_string())
                    ));
                    dirs.push(dir.clone());
                }
                Err(e) => baseline_notes.push(format!("{model}: the chosen baseline cannot be read ({e:#})")),
            }
        }
    }
    let runs: Vec<RunData> = dirs.iter().map(|d| runs::load(d)).collect::<anyhow::Result<_>>()?;
    plots::register_fonts();
    let teacher_weights = teacher_of(&runs, opts).filter(|(_, p)| p.is_file());
    progress("measuring students (once per architecture and size)");
    let mut rows: Vec<Row> = Vec::new();
    for run in &runs {
        rows.push(table::student_row(run, &opts.device)?);
    }
    let mut baselines = table::default_baselines(&rows);
    for (model, dir) in &opts.baselines {
        let Some(run) = runs.iter().find(|r| same_folder(&r.dir, dir)) else { continue };
        match rows.iter().find(|r| &r.model == model && r.label == run.name) {
            Some(r) if table::can_be_baseline(r) => {
                baselines.insert(model.clone(), run.name.clone());
            }
            _ => baseline_notes.push(format!(
                "{model}: the chosen baseline {} is not a completed run without distillation of this student ({})",
                run.name,
                run.description()
            )),
        }
    }
    for (model, run) in &baselines {
        if opts.baselines.get(model).is_some_and(|d| !runs.iter().any(|r| same_folder(&r.dir, d) && &r.name == run)) {
            baseline_notes.push(format!("{model}: Δ is measured against {run} instead"));
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
        baseline_notes: &baseline_notes,
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

/// Whether two paths name the same folder (as given, or once resolved).
fn same_folder(a: &std::path::Path, b: &std::path::Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// A file name made of a run's name (safe characters only).
pub(crate) fn slug(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}
