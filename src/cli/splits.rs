//! `segdistill splits`: the splits of a dataset with their image counts, the images without
//! masks among them (what `train --unlabeled unlabeled` distils on).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::data::{Dataset, DatasetKind, unlabeled};

#[derive(Debug, clap::Args)]
pub struct SplitsArgs {
    #[arg(long, help = crate::data::dataset::DATASET_FOLDER_HELP)]
    pub data: PathBuf,
    /// Dataset layout; detected from the folder when omitted.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
}

pub fn run(args: SplitsArgs) -> anyhow::Result<ExitCode> {
    let kind = args.dataset.unwrap_or_else(|| DatasetKind::detect(&args.data));
    // Any split opens the dataset; the listing below names them all.
    let probe = Dataset::open(&args.data, Some(kind), kind.default_val_split())
        .or_else(|_| Dataset::open(&args.data, Some(kind), "train"))?;
    println!("{} dataset at {}", probe.kind, probe.root.display());
    for split in probe.available_splits() {
        if split == unlabeled::SPLIT {
            continue;
        }
        match Dataset::open(&args.data, Some(kind), &split) {
            Ok(ds) => println!("  {split:<16} {:>7} images with masks", ds.len()),
            Err(e) => println!("  {split:<16} cannot be read: {e}"),
        }
    }
    match unlabeled::count_in(probe.kind, &probe.root) {
        Some(n) => println!(
            "  {:<16} {n:>7} images without masks (train --unlabeled {} distils on them)",
            unlabeled::SPLIT,
            unlabeled::SPLIT
        ),
        None => println!(
            "  (a {} dataset has no `{}` split; pass a folder of images to --unlabeled)",
            probe.kind,
            unlabeled::SPLIT
        ),
    }
    Ok(ExitCode::SUCCESS)
}
