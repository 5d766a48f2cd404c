//! `segdistill test --run RUN_DIR`: the lab's test script — evaluates a trained student on the
//! validation split: mIoU, per-class IoU and inference time per image.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::data::Dataset;
use crate::data::transforms::Resize;
use crate::model::{format_params, load_for_inference};
use crate::train::validate::evaluate;
use crate::util::device::{DeviceChoice, describe};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// A run folder written by `segdistill train` (or the app).
    #[arg(long)]
    pub run: PathBuf,
    /// Split to evaluate (default: the run's validation split).
    #[arg(long)]
    pub split: Option<String>,
    /// Dataset folder (default: the run's).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let run = crate::train::best_weights::best_student(&args.run)?;
    for note in &run.notes {
        eprintln!("note: {note}");
    }
    let (cfg, weights) = (run.config, run.weights);
    let device = args.device.resolve()?;
    let loaded = load_for_inference(cfg.model, &weights, &device)?;
    let split = args.split.unwrap_or(cfg.val_split.clone());
    let mut ds = Dataset::open(args.data.as_ref().unwrap_or(&cfg.data), cfg.dataset, &split)?;
    ds.retain_present();
    if let Some(n) = cfg.val_limit.filter(|_| split == cfg.val_split) {
        ds.truncate(n);
    }
    anyhow::ensure!(!ds.is_empty(), "no usable samples in split '{split}'");
    eprintln!(
        "{} ({} parameters, {} distillation) on {}: {} images of '{split}'",
        cfg.model,
        format_params(loaded.num_params),
        cfg.distill.name(),
        describe(&device),
        ds.len()
    );
    let classes = ds.classes().clone();
    let pb = super::progress::bar(ds.len() as u64, "testing");
    let resize = Resize::ShorterSide(cfg.val_size.unwrap_or(cfg.size));
    let outcome = evaluate(&loaded.model, Arc::new(ds), resize, &device, &|_, _| pb.inc(1))?;
    pb.finish_and_clear();
    super::eval::warn_skipped(&outcome.skipped);
    let scores = outcome.confusion.scores();
    if args.json {
        let v = serde_json::json!({"miou": scores.miou, "pixel_acc": scores.pixel_acc, "iou": scores.iou,
            "val_loss": outcome.val_loss, "ms_per_image": outcome.ms_per_image, "params": loaded.num_params,
            "skipped": outcome.skipped});
        println!("{v}");
    } else {
        super::score::print_table(&scores, &classes, outcome.images.len());
        println!("val loss      {:.4}", outcome.val_loss);
        println!("inference     {:.2} ms/image (batch 1, {})", outcome.ms_per_image, describe(&device));
    }
    Ok(ExitCode::SUCCESS)
}
