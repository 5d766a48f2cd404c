//! `segdistill check-data`: validates a dataset split and reports every problem with its path.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::data::check::{CheckReport, check_dataset};
use crate::data::{DataError, Dataset, DatasetKind};

#[derive(Debug, clap::Args)]
pub struct CheckDataArgs {
    #[arg(long, help = crate::data::dataset::DATASET_FOLDER_HELP)]
    pub data: PathBuf,
    /// Dataset layout; detected from the folder when omitted.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Split to check.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// For a plain folder without train.txt/val.txt: the share of images that goes to val. The
    /// split is drawn with a fixed seed and written into the folder as train.txt and val.txt.
    #[arg(long, default_value_t = crate::data::folder::DEFAULT_VAL_FRACTION)]
    pub val_fraction: f64,
}

/// Exit status: 0 if the split is fully usable, 1 if it has problems, 2 on errors.
pub fn run(args: CheckDataArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (0.0..1.0).contains(&args.val_fraction),
        "--val-fraction must be at least 0 and below 1 (got {})",
        args.val_fraction
    );
    let ds = Dataset::open_with(&args.data, args.dataset, &args.split, args.val_fraction)?;
    println!("{} dataset at {}: split '{}' lists {} id(s)", ds.kind, ds.root.display(), ds.split, ds.len());
    if let Some(n) = crate::data::unlabeled::count_in(ds.kind, &ds.root).filter(|&n| n > 0) {
        // Counted apart: they are in no split and have nothing to check against.
        println!(
            "{n} more image(s) have no mask and are in no split: the `{0}` split, which `train --unlabeled {0}` \
             distils on (if they should have masks, add the masks and list the images in a split)",
            crate::data::unlabeled::SPLIT
        );
    }
    if let Some(info) = ds.folder_info() {
        println!(
            "{} classes from {} (mask value {} is ignored); split list {}",
            info.classes.names.len(),
            info.classes.file.display(),
            info.classes.ignore,
            crate::data::folder::split_file(&ds.root, &ds.split).display()
        );
    }
    let pb = super::progress::bar(ds.len() as u64, "checking");
    let report = check_dataset(&ds, &|| pb.inc(1));
    pb.finish_and_clear();
    print_report(&ds, &report);
    Ok(if report.is_fully_usable() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_report(ds: &Dataset, r: &CheckReport) {
    let groups = r.problems_by_kind();
    for (kind, problems) in &groups {
        println!("\n{kind}: {}", problems.len());
        for p in problems {
            match &p.error {
                // Hundreds of these are common (images not extracted): the path says it all.
                DataError::MissingFile { path, .. } => println!("  {}: {}", p.id, path.display()),
                e if ds.kind == DatasetKind::Folder => println!("  {e}"),
                e => println!("  {}: {e}", p.id),
            }
        }
    }
    println!("\nimages: {} listed, {} usable", r.listed, r.usable);
    if let (Some(lo), Some(hi)) = (r.min_size, r.max_size) {
        println!("image size: width {}–{}, height {}–{}", lo.0, hi.0, lo.1, hi.1);
    }
    let total: u64 = r.class_pixels.iter().sum::<u64>() + r.void_pixels;
    if total > 0 {
        println!("\nclass pixels over usable samples:");
        let classes = ds.classes();
        let pct = |n: u64| 100.0 * n as f64 / total as f64;
        for (c, &n) in r.class_pixels.iter().enumerate() {
            println!("  {:>3} {:<14} {:>12} {:>6.2}%", c, classes.names[c], n, pct(n));
        }
        println!("  {:>3} {:<14} {:>12} {:>6.2}%", 255, "void", r.void_pixels, pct(r.void_pixels));
    }
    if r.is_fully_usable() {
        println!("\nOK: all {} samples of '{}' are usable", r.usable, ds.split);
    } else {
        let summary: Vec<String> = groups.iter().map(|(k, v)| format!("{} {k}", v.len())).collect();
        let summary = if summary.is_empty() { "no samples".to_string() } else { summary.join(", ") };
        println!("\nNOT FULLY USABLE: {} of {} samples usable ({summary})", r.usable, r.listed);
        let missing = r.problems.iter().filter(|p| matches!(p.error, DataError::MissingFile { .. })).count();
        if missing * 2 > r.listed && ds.kind != DatasetKind::Folder {
            let how = match ds.kind {
                DatasetKind::Ade20k => "for ADE20K, extract ADEChallengeData2016.zip whole",
                DatasetKind::Camvid => "for CamVid, each image of train/ needs its mask in trainannot/",
                DatasetKind::Cityscapes => "for Cityscapes, extract gtFine_trainvaltest.zip beside leftImg8bit/",
                _ => "for VOC 2012, extract VOCtrainval_11-May-2012.tar here",
            };
            println!("most files are missing: the dataset looks incomplete ({how}), or point --data at the full copy");
        } else {
            println!("fix or re-extract the files listed above, or train on the usable samples only");
        }
    }
}
