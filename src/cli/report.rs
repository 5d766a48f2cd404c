//! `segdistill report RUN_DIR...`: the comparison table, curves and overlays of finished runs.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::model::ModelKind;
use crate::report::{ReportOptions, write};
use crate::util::device::DeviceChoice;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Run folders (from `segdistill train` or the app).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output folder for report.md and the PNGs.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// Teacher weights for the teacher's row and panels (default: the runs' teacher).
    #[arg(long)]
    pub teacher_weights: Option<PathBuf>,
    /// The architecture of --teacher-weights (default: the runs' teacher, else fcn-resnet50).
    #[arg(long, value_enum)]
    pub teacher_model: Option<ModelKind>,
    /// Best and worst images per run in the overlay PNGs.
    #[arg(long, default_value_t = 3)]
    pub overlays: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let opts = ReportOptions {
        baselines: Default::default(),
        out: args.out,
        teacher_weights: args.teacher_weights,
        teacher_model: args.teacher_model,
        overlays: args.overlays,
        device: args.device.resolve()?,
    };
    let files = write(&args.runs, &opts, &|msg| eprintln!("{msg}…"))?;
    print!(
        "{}",
        std::fs::read_to_string(&files.markdown)
            .unwrap_or_default()
            .lines()
            .take_while(|l| !l.starts_with("## Runs"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!();
    for w in &files.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!("wrote {} and {} images", files.markdown.display(), files.images.len());
    Ok(ExitCode::SUCCESS)
}
