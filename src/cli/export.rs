//! `segdistill export`: a trained student (or any model of the registry) as an ONNX file for
//! deployment (onnxruntime, TensorRT, OpenVINO, phones).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::model::ModelKind;
use crate::model::onnx::{ExportOptions, IMAGENET_MEAN, IMAGENET_STD, INPUT, InputShape, LOGITS, MASK, OPSETS};
use crate::util::fmt::human_bytes;
use crate::util::fs::{Output, check_outputs};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["run", "weights"])))]
pub struct ExportArgs {
    /// A run folder: its model and best weights (student.safetensors).
    #[arg(long, conflicts_with_all = ["model", "weights"])]
    pub run: Option<PathBuf>,
    /// The architecture of --weights.
    #[arg(long, value_enum, requires = "weights")]
    pub model: Option<ModelKind>,
    /// A weights file (.pth from torchvision, or .safetensors from segdistill); needs --model.
    #[arg(long, requires = "model")]
    pub weights: Option<PathBuf>,
    /// The ONNX file to write.
    #[arg(long)]
    pub onnx: PathBuf,
    /// Fix the input to batch 1 at this height and width (default: batch, height and width dynamic).
    #[arg(long, num_args = 2, value_names = ["H", "W"], conflicts_with = "dynamic")]
    pub size: Option<Vec<u32>>,
    /// Leave batch, height and width to the runtime (the default; says so explicitly).
    #[arg(long)]
    pub dynamic: bool,
    /// ONNX opset (14–17).
    #[arg(long, default_value_t = 17)]
    pub opset: i64,
    /// Bake torchvision's ImageNet normalisation into the graph: the input is then RGB in [0, 1].
    #[arg(long)]
    pub with_normalize: bool,
    /// Add the per-pixel arg-max as a second output, `mask` (int64, N×H×W).
    #[arg(long)]
    pub argmax: bool,
}

/// The largest fixed side accepted (the models' own input limit).
const MAX_SIDE: u32 = 4096;

fn shape(args: &ExportArgs) -> anyhow::Result<InputShape> {
    match args.size.as_deref() {
        None => Ok(InputShape::Dynamic),
        Some(&[height, width]) => {
            anyhow::ensure!(
                (32..=MAX_SIDE).contains(&height) && (32..=MAX_SIDE).contains(&width),
                "--size {height} {width}: each side must be 32–{MAX_SIDE}"
            );
            Ok(InputShape::Fixed { height, width })
        }
        Some(other) => anyhow::bail!("--size takes a height and a width, got {other:?}"),
    }
}

/// The model and weights to export.
fn source(args: &ExportArgs) -> anyhow::Result<(ModelKind, PathBuf)> {
    match (&args.run, args.model, &args.weights) {
        (Some(run), _, _) => {
            let best = crate::train::best_weights::best_student(run)?;
            for note in &best.notes {
                eprintln!("note: {note}");
            }
            Ok((best.config.model, best.weights))
        }
        (None, Some(kind), Some(weights)) => Ok((kind, weights.clone())),
        _ => anyhow::bail!("give --run RUN_DIR, or --model NAME with --weights FILE"),
    }
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(OPSETS.contains(&args.opset), "--opset {}: choose {}–{}", args.opset, OPSETS.start(), OPSETS.end());
    let options =
        ExportOptions { shape: shape(&args)?, opset: args.opset, normalize: args.with_normalize, argmax: args.argmax };
    let (kind, weights) = source(&args)?;
    check_outputs(&[("--weights", &weights)], &[Output { flag: "--onnx", path: &args.onnx, extensions: &["onnx"] }])?;
    let done = crate::model::onnx::export_file(kind, &weights, &args.onnx, &options)?;
    println!(
        "{}: {kind} ({} classes), {} nodes, {}, opset {}",
        done.path.display(),
        done.classes,
        done.nodes,
        human_bytes(done.bytes as u64),
        options.opset
    );
    let (batch, size) = match options.shape {
        InputShape::Fixed { height, width } => ("1".to_string(), format!("{height}×{width}")),
        InputShape::Dynamic => ("N".into(), "H×W".into()),
    };
    let input = format!("{batch}×3×{size}");
    let scale = if options.normalize {
        "RGB in [0, 1] (ImageNet normalisation inside)".to_string()
    } else {
        format!("RGB normalised with mean {IMAGENET_MEAN:?}, std {IMAGENET_STD:?}")
    };
    println!("input `{INPUT}`: float32 {input}, {scale}");
    print!("output `{LOGITS}`: float32 {batch}×{}×{size}", done.classes);
    if options.argmax {
        print!("; `{MASK}`: int64 {batch}×{size} (class per pixel)");
    }
    println!();
    Ok(ExitCode::SUCCESS)
}
