//! The command line: `segdistill` with no subcommand starts the desktop app; subcommands run
//! headless. Each subcommand lives in its own file with its clap `Args` and a `run`.

pub mod check_data;
pub mod demo_data;
pub mod progress;
pub mod score;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "segdistill",
    version,
    about = "Knowledge distillation studio for semantic segmentation"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the desktop app (the default).
    Gui,
    /// Write the procedurally drawn demo dataset (VOC format).
    DemoData(demo_data::DemoDataArgs),
    /// Validate a dataset split: counts, sizes, class histogram and every problem.
    CheckData(check_data::CheckDataArgs),
    /// Score predicted masks against ground truth (mIoU, pixel accuracy, per-class IoU).
    Score(score::ScoreArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None | Some(Command::Gui) => crate::ui::run_app().map(|()| ExitCode::SUCCESS),
        Some(Command::DemoData(a)) => demo_data::run(a),
        Some(Command::CheckData(a)) => check_data::run(a),
        Some(Command::Score(a)) => score::run(a),
    }
}

/// Entry point: parses arguments, runs, and turns errors into exit status 2 with the whole
/// context chain on one line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
