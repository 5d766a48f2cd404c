//! `segdistill predict`: one image through a model → mask PNG (+ overlay, + raw logits).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::ResizeArg;
use crate::data::ClassSet;
use crate::data::image::{encode_png, read_rgb};
use crate::data::mask::encode_palette_png;
use crate::data::overlay::{overlay, palette_for};
use crate::model::{ModelKind, load_for_inference};
use crate::train::predict::predict;
use crate::util::device::DeviceChoice;
use crate::util::fs::write_atomic;

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    #[arg(long, value_enum)]
    pub model: ModelKind,
    /// Weights file (.pth from torchvision, or .safetensors from segdistill).
    #[arg(long)]
    pub weights: PathBuf,
    #[arg(long)]
    pub image: PathBuf,
    /// `none` feeds the image at its own size; N resizes its shorter side to N first.
    #[arg(long, default_value = "none")]
    pub resize: ResizeArg,
    /// Output mask (palette PNG, class indices) at the image's size.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the image with the mask blended over it.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// Also write the model's output logits, tensor `logits` [1, C, H, W] f32, as safetensors.
    #[arg(long)]
    pub logits: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

pub fn run(args: PredictArgs) -> anyhow::Result<ExitCode> {
    check_paths(&args)?;
    let device = args.device.resolve()?;
    let loaded = load_for_inference(args.model, &args.weights, &device)?;
    let img = read_rgb(&args.image)?;
    let pred = predict(&loaded.model, &img, args.resize.0, &device)
        .with_context(|| format!("cannot predict {}", args.image.display()))?;
    let classes = ClassSet::for_num_classes(loaded.model.num_classes());
    let png = encode_palette_png(&pred.mask, &palette_for(&classes))?;
    write_atomic(&args.out, &png).with_context(|| format!("cannot write {}", args.out.display()))?;
    if let Some(path) = &args.overlay {
        let skip_background = classes.dataset == "voc";
        let bytes = encode_png(&overlay(&img, &pred.mask, &classes, 0.5, skip_background))?;
        write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.logits {
        let mut t = BTreeMap::new();
        t.insert("logits".to_string(), pred.logits.to_dtype(candle_core::DType::F32)?);
        crate::model::weights::save_safetensors(&t, path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let hist = pred.mask.histogram();
    let present: Vec<String> = (0..classes.len())
        .filter(|&c| hist[c] > 0)
        .map(|c| format!("{} {:.1}%", classes.names[c], 100.0 * hist[c] as f64 / pred.mask.data.len() as f64))
        .collect();
    println!(
        "{}: {}×{} → {} ({})",
        args.image.display(),
        img.width(),
        img.height(),
        args.out.display(),
        present.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// Outputs never replace an input (or each other), and each goes by its format's extension.
fn check_paths(args: &PredictArgs) -> anyhow::Result<()> {
    use crate::util::fs::{Output, check_outputs};
    let mut outputs = vec![Output { flag: "--out", path: &args.out, extensions: &["png"] }];
    if let Some(p) = &args.overlay {
        outputs.push(Output { flag: "--overlay", path: p, extensions: &["png"] });
    }
    if let Some(p) = &args.logits {
        outputs.push(Output { flag: "--logits", path: p, extensions: &["safetensors"] });
    }
    check_outputs(&[("--image", &args.image), ("--weights", &args.weights)], &outputs)
}
