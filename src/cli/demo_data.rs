//! `segdistill demo-data`: writes the procedurally drawn demo dataset in VOC format.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::data::demo::{DemoConfig, generate};

#[derive(Debug, clap::Args)]
pub struct DemoDataArgs {
    /// Output folder; the dataset goes to OUT/VOCdevkit/VOC2012.
    #[arg(long)]
    pub out: PathBuf,
    /// Training images.
    #[arg(long, default_value_t = DemoConfig::default().train)]
    pub train: usize,
    /// Validation images.
    #[arg(long, default_value_t = DemoConfig::default().val)]
    pub val: usize,
    /// Image width in pixels (heights vary from 70 % to 100 % of it).
    #[arg(long, default_value_t = DemoConfig::default().size)]
    pub size: u32,
    /// Random seed: the same seed writes the same dataset.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Replace a dataset that is already in --out.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: DemoDataArgs) -> anyhow::Result<ExitCode> {
    let root = crate::data::demo::voc_root(&args.out);
    if !args.force && (root.join("JPEGImages").is_dir() || root.join("ImageSets").is_dir()) {
        anyhow::bail!(
            "{} already holds a dataset ({}); pass --force to replace it, or choose another --out",
            args.out.display(),
            root.display()
        );
    }
    let config = DemoConfig { train: args.train, val: args.val, size: args.size, seed: args.seed };
    let pb = super::progress::bar((config.train + config.val) as u64, "drawing");
    let root = generate(&args.out, &config, &|| pb.inc(1))?;
    pb.finish_and_clear();
    println!("wrote {} train + {} val images ({}px wide) to {}", config.train, config.val, config.size, root.display());
    Ok(ExitCode::SUCCESS)
}
