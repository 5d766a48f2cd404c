//! `segdistill score`: scores a folder of predicted masks against ground truth matched by stem.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::data::ClassSet;
use crate::data::mask::{LabelEncoding, Mask, RawLabels, labels_to_mask, read_label_png};
use crate::metrics::{ConfusionMatrix, Scores};

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// Folder of predicted masks (palette or grayscale PNG, values = class indices).
    #[arg(long)]
    pub pred: PathBuf,
    /// Folder of ground-truth masks with the same file stems (a VOC2012 folder works too: its
    /// SegmentationClass/ is used).
    #[arg(long)]
    pub gt: PathBuf,
    /// Number of classes (21 = VOC, 19 = Cityscapes train ids).
    #[arg(long, default_value_t = 21, value_parser = clap::value_parser!(u8).range(1..=255))]
    pub classes: u8,
    /// Print {"miou", "pixel_acc", "iou"} as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    let gt_dir = ground_truth_dir(&args.gt);
    let preds = list_pngs(&args.pred)?;
    if preds.is_empty() {
        bail!("no .png masks in {}", args.pred.display());
    }
    let pairs: Vec<(PathBuf, PathBuf)> = preds
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().unwrap_or_default().to_os_string();
            let mut gt = gt_dir.join(&stem);
            gt.set_extension("png");
            (p, gt)
        })
        .collect();
    if let Some((p, gt)) = pairs.iter().find(|(_, gt)| !gt.is_file()) {
        bail!("no ground truth for {}: {} does not exist", p.display(), gt.display());
    }
    let pb = super::progress::bar(pairs.len() as u64, "scoring");
    let (cm, warnings) = score_pairs(&pairs, args.classes, &|| pb.inc(1))?;
    pb.finish_and_clear();
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let scores = cm.scores();
    if args.json {
        println!("{}", serde_json::to_string(&scores)?);
    } else {
        print_table(&scores, &ClassSet::for_num_classes(args.classes as usize), pairs.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn ground_truth_dir(gt: &Path) -> PathBuf {
    let voc_masks = gt.join("SegmentationClass");
    if voc_masks.is_dir() { voc_masks } else { gt.to_path_buf() }
}

fn list_pngs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("cannot read folder {}", dir.display()))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) && p.is_file())
        .collect();
    v.sort();
    Ok(v)
}

/// Reads a predicted mask: palette indices or gray values as they are; RGB through the VOC palette.
fn read_prediction(path: &Path) -> anyhow::Result<Mask> {
    let img = read_label_png(path)?;
    if let RawLabels::Index(values) = img.values {
        return Ok(Mask::new(img.width, img.height, values));
    }
    Ok(labels_to_mask(img, LabelEncoding::Plain { num_classes: 255 }, path)?)
}

/// One image's confusion matrix and, if it predicts values outside the classes, a warning.
type PairScore = anyhow::Result<(ConfusionMatrix, Option<String>)>;

fn score_one(pred_path: &Path, gt_path: &Path, classes: u8) -> PairScore {
    let pred = read_prediction(pred_path)?;
    let gt = labels_to_mask(read_label_png(gt_path)?, gt_encoding(classes), gt_path)?;
    if (pred.width, pred.height) != (gt.width, gt.height) {
        bail!(
            "size mismatch: prediction {} is {}×{} but ground truth {} is {}×{}",
            pred_path.display(),
            pred.width,
            pred.height,
            gt_path.display(),
            gt.width,
            gt.height
        );
    }
    let invalid = pred.data.iter().filter(|&&v| v >= classes).count();
    let warning = (invalid > 0).then(|| {
        format!(
            "{}: {invalid} pixel(s) predict a value outside 0–{} (counted as wrong)",
            pred_path.display(),
            classes - 1
        )
    });
    let mut cm = ConfusionMatrix::new(classes as usize);
    cm.update(&pred.data, &gt.data);
    Ok((cm, warning))
}

fn gt_encoding(classes: u8) -> LabelEncoding {
    if classes == 21 {
        LabelEncoding::VocIndex { num_classes: 21 }
    } else {
        LabelEncoding::Plain { num_classes: classes }
    }
}

/// Scores all pairs on all cores; the first error (in file order) aborts.
fn score_pairs(
    pairs: &[(PathBuf, PathBuf)],
    classes: u8,
    on_pair: &(dyn Fn() + Sync),
) -> anyhow::Result<(ConfusionMatrix, Vec<String>)> {
    let results = crate::util::par::par_map(pairs.len(), |i| {
        let (p, g) = &pairs[i];
        let r = score_one(p, g, classes);
        on_pair();
        r
    });
    let mut total = ConfusionMatrix::new(classes as usize);
    let mut warnings = Vec::new();
    for r in results {
        let (cm, w) = r?;
        total.merge(&cm);
        warnings.extend(w);
    }
    Ok((total, warnings))
}

pub(crate) fn print_table(s: &Scores, classes: &ClassSet, images: usize) {
    println!("scored {images} image(s)");
    println!("mIoU            {:.4}", s.miou);
    println!("pixel accuracy  {:.4}", s.pixel_acc);
    println!("\n{:>3}  {:<14} {:>7}", "id", "class", "IoU");
    for (c, iou) in s.iou.iter().enumerate() {
        let v = iou.map_or("—".to_string(), |v| format!("{v:.4}"));
        println!("{:>3}  {:<14} {:>7}", c, classes.names[c], v);
    }
}
