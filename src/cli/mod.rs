//! The command line: `segdistill` with no subcommand starts the desktop app; subcommands run
//! headless. Each subcommand lives in its own file with its clap `Args` and a `run`.

pub mod bench;
pub mod cache;
pub mod check_data;
pub mod demo_data;
pub mod download;
pub mod eval;
pub mod export;
pub mod models;
pub mod predict;
pub mod progress;
pub mod report;
pub mod score;
pub mod selftest;
pub mod signals;
pub mod splits;
pub mod study;
pub mod test_run;
pub mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "segdistill", version, about = "Knowledge distillation studio for semantic segmentation")]
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
    /// List a dataset's splits with their image counts, and its images without masks.
    Splits(splits::SplitsArgs),
    /// Score predicted masks against ground truth (mIoU, pixel accuracy, per-class IoU).
    Score(score::ScoreArgs),
    /// Run a model on one image: mask PNG, overlay, logits.
    Predict(predict::PredictArgs),
    /// Evaluate a model on a dataset split: mIoU, pixel accuracy, per-class IoU.
    Eval(eval::EvalArgs),
    /// List the models with their parameter counts and feature taps.
    Models(models::ModelsArgs),
    /// Train a student, with or without distillation (headless, with a progress bar).
    Train(Box<train::TrainArgs>),
    /// Evaluate a trained run on its validation split: mIoU, per-class IoU, ms/image.
    Test(test_run::TestArgs),
    /// Compare runs: markdown table, loss and mIoU curves, best/worst overlays.
    Report(report::ReportArgs),
    /// Write a trained student (or any model) as an ONNX file for deployment.
    Export(export::ExportArgs),
    /// Download VOC 2012, SBD masks or torchvision's weights (progress, resume, checksums).
    Download(download::DownloadArgs),
    /// Time training steps, the teacher and inference (compare with bench/pytorch_reference.py).
    Bench(bench::BenchArgs),
    /// Check that this build computes what torchvision computes, on this device and precision.
    Selftest(selftest::SelftestArgs),
    /// List the teacher caches, or remove the orphaned ones.
    Cache(cache::CacheArgs),
    /// Compare distillation methods over several seeds: mean ± sd, Δ vs no KD, significance.
    Study(Box<study::StudyArgs>),
}

/// `--resize none|N`: keep the image size, or scale the shorter side to N.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResizeArg(pub crate::data::transforms::Resize);

/// The largest `--resize`: a 8192-pixel shorter side already makes 64-megapixel model inputs
/// (tens of GB of activations); larger values are typos, refused before any work.
pub const MAX_RESIZE: u32 = 8192;

impl std::str::FromStr for ResizeArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use crate::data::transforms::Resize;
        if s.eq_ignore_ascii_case("none") {
            return Ok(Self(Resize::None));
        }
        match s.parse::<u32>() {
            Ok(n) if (8..=MAX_RESIZE).contains(&n) => Ok(Self(Resize::ShorterSide(n))),
            Ok(n) if n > MAX_RESIZE => Err(format!(
                "a shorter side of {n} pixels is too large (at most {MAX_RESIZE}); use a smaller `--resize`"
            )),
            _ => Err(format!("expected `none` or a shorter-side length from 8 to {MAX_RESIZE}, got `{s}`")),
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None | Some(Command::Gui) => crate::ui::run_app().map(|()| ExitCode::SUCCESS),
        Some(Command::DemoData(a)) => demo_data::run(a),
        Some(Command::CheckData(a)) => check_data::run(a),
        Some(Command::Splits(a)) => splits::run(a),
        Some(Command::Score(a)) => score::run(a),
        Some(Command::Predict(a)) => predict::run(a),
        Some(Command::Eval(a)) => eval::run(a),
        Some(Command::Models(a)) => models::run(a),
        Some(Command::Train(a)) => train::run(*a),
        Some(Command::Test(a)) => test_run::run(a),
        Some(Command::Report(a)) => report::run(a),
        Some(Command::Download(a)) => download::run(a),
        Some(Command::Export(a)) => export::run(a),
        Some(Command::Bench(a)) => bench::run(a),
        Some(Command::Selftest(a)) => selftest::run(a),
        Some(Command::Cache(a)) => cache::run(a),
        Some(Command::Study(a)) => study::run(*a),
    }
}

/// Entry point: parses arguments, runs, and turns errors into exit status 2 with the whole
/// context chain on one line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            // Names of files and runs reach the message: escape sequences in them are shown, not obeyed.
            eprintln!("error: {}", crate::util::fmt::escaped_message(&format!("{err:#}")));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::transforms::Resize;

    #[test]
    fn resize_argument_is_bounded() {
        assert_eq!("none".parse::<ResizeArg>(), Ok(ResizeArg(Resize::None)));
        assert_eq!("520".parse::<ResizeArg>(), Ok(ResizeArg(Resize::ShorterSide(520))));
        assert_eq!("8192".parse::<ResizeArg>(), Ok(ResizeArg(Resize::ShorterSide(8192))));
        let too_large = "100000".parse::<ResizeArg>().unwrap_err();
        assert!(too_large.contains("100000") && too_large.contains("8192"), "{too_large}");
        for bad in ["4", "-3", "big", "99999999999"] {
            assert!(bad.parse::<ResizeArg>().is_err(), "{bad}");
        }
    }
}
