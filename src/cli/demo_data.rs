//! `segdistill demo-data`: writes the procedurally drawn demo dataset in VOC format, or as a
//! plain image/mask folder.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::data::demo::{DemoConfig, generate, generate_folder};

/// The on-disk layout `demo-data` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoLayout {
    /// PASCAL VOC: OUT/VOCdevkit/VOC2012.
    #[default]
    Voc,
    /// A plain folder: OUT/images, OUT/masks, OUT/classes.txt, OUT/train.txt, OUT/val.txt.
    Folder,
}

#[derive(Debug, clap::Args)]
pub struct DemoDataArgs {
    /// Output folder; the dataset goes to OUT/VOCdevkit/VOC2012 (voc layout) or into OUT itself
    /// (folder layout).
    #[arg(long)]
    pub out: PathBuf,
    /// On-disk layout of the dataset.
    #[arg(long, value_enum, default_value_t = DemoLayout::Voc)]
    pub layout: DemoLayout,
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
    if args.layout == DemoLayout::Folder {
        return run_folder(args);
    }
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

fn run_folder(args: DemoDataArgs) -> anyhow::Result<ExitCode> {
    use crate::data::folder::{IMAGES_DIR, MASKS_DIR};
    let out = &args.out;
    if !args.force && (out.join(IMAGES_DIR).exists() || out.join(MASKS_DIR).exists()) {
        anyhow::bail!(
            "{} already holds a dataset (images/ or masks/); pass --force to replace it, or choose another --out",
            out.display()
        );
    }
    let config = DemoConfig { train: args.train, val: args.val, size: args.size, seed: args.seed };
    let pb = super::progress::bar((config.train + config.val) as u64, "drawing");
    let root = generate_folder(out, &config, &|| pb.inc(1))?;
    pb.finish_and_clear();
    println!(
        "wrote {} train + {} val images ({}px wide) as a plain folder (images/, masks/, classes.txt) to {}",
        config.train,
        config.val,
        config.size,
        root.display()
    );
    Ok(ExitCode::SUCCESS)
}
