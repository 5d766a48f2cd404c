//! `segdistill eval`: mIoU, pixel accuracy and per-class IoU of a model over a dataset split.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::ResizeArg;
use crate::data::{Dataset, DatasetKind};
use crate::model::{ModelKind, format_params, load_for_inference};
use crate::train::validate::evaluate;
use crate::util::device::{DeviceChoice, Precision, describe};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[arg(long, value_enum)]
    pub model: ModelKind,
    #[arg(long)]
    pub weights: PathBuf,
    #[arg(long, help = crate::data::dataset::DATASET_FOLDER_HELP)]
    pub data: PathBuf,
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Shorter side the images are resized to before the model (`none`: own size). Scores are
    /// computed on the original masks.
    #[arg(long, default_value = "520")]
    pub resize: ResizeArg,
    /// Evaluate only the first N samples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print the scores as JSON.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Arithmetic of GPU matrix products and convolutions; when left out, tf32 on a GPU (as PyTorch's
    /// convolutions) and fp32 on the CPU, which always computes in fp32.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let device = args.device.resolve()?;
    Precision::apply(args.precision, &device)?;
    let mut ds = Dataset::open(&args.data, args.dataset, &args.split)?;
    let dropped = ds.retain_present();
    if !dropped.is_empty() {
        eprintln!(
            "warning: {} of {} ids in '{}' lack an image or mask and are skipped (run `segdistill check-data` for the list)",
            dropped.len(),
            dropped.len() + ds.len(),
            args.split
        );
    }
    if let Some(n) = args.limit {
        ds.truncate(n);
    }
    anyhow::ensure!(!ds.is_empty(), "no usable samples in split '{}' of {}", args.split, ds.root.display());
    let loaded = load_for_inference(args.model, &args.weights, &device)?;
    anyhow::ensure!(
        loaded.model.num_classes() == ds.num_classes(),
        "{} predicts {} classes but the {} dataset has {}",
        args.weights.display(),
        loaded.model.num_classes(),
        ds.kind,
        ds.num_classes()
    );
    eprintln!(
        "{} ({} parameters) on {}, {} images of '{}'",
        args.model,
        format_params(loaded.num_params),
        describe(&device),
        ds.len(),
        args.split
    );
    let classes = ds.classes().clone();
    let pb = super::progress::bar(ds.len() as u64, "evaluating");
    let outcome = evaluate(&loaded.model, Arc::new(ds), args.resize.0, &device, &|_, _| pb.inc(1))?;
    pb.finish_and_clear();
    warn_skipped(&outcome.skipped);
    let scores = outcome.confusion.scores();
    if args.json {
        let v = serde_json::json!({
            "miou": scores.miou, "pixel_acc": scores.pixel_acc, "iou": scores.iou,
            "images": outcome.images.len(), "ms_per_image": outcome.ms_per_image,
            "skipped": outcome.skipped,
        });
        println!("{v}");
    } else {
        super::score::print_table(&scores, &classes, outcome.images.len());
        println!("model time    {:.1} ms/image", outcome.ms_per_image);
    }
    Ok(ExitCode::SUCCESS)
}

/// Samples listed by name on stderr before the rest are counted.
const SKIPPED_SHOWN: usize = 10;

/// Warns on stderr about the samples left out of the scores: each problem for the first few,
/// then a count.
pub(super) fn warn_skipped(skipped: &[String]) {
    if skipped.is_empty() {
        return;
    }
    eprintln!("warning: {} sample(s) could not be used and are not in the scores:", skipped.len());
    for problem in skipped.iter().take(SKIPPED_SHOWN) {
        eprintln!("  {problem}");
    }
    if skipped.len() > SKIPPED_SHOWN {
        eprintln!("  … and {} more (run `segdistill check-data` for the full list)", skipped.len() - SKIPPED_SHOWN);
    }
}
