//! `segdistill demo-data`: writes the procedurally drawn demo dataset in VOC format, or as a
//! plain image/mask folder.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::data::demo::{DemoConfig, Difficulty, generate, generate_folder};

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
    /// Labelled training images.
    #[arg(long, default_value_t = DemoConfig::first_run().train)]
    pub train: usize,
    /// Validation images.
    #[arg(long, default_value_t = DemoConfig::first_run().val)]
    pub val: usize,
    /// Training images without masks (the `unlabeled` split), for distillation on unlabelled images.
    #[arg(long, default_value_t = DemoConfig::first_run().unlabeled)]
    pub unlabeled: usize,
    /// Image width in pixels (heights vary from 70 % to 100 % of it).
    #[arg(long, default_value_t = DemoConfig::first_run().size)]
    pub size: u32,
    /// How hard the scenes are: `easy` (one to four large objects, each class its own look) or
    /// `hard` (many small overlapping objects; pairs of classes told apart by texture alone).
    #[arg(long, value_enum, default_value_t = DemoConfig::first_run().difficulty)]
    pub difficulty: Difficulty,
    /// Random seed: the same seed writes the same dataset.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Replace a dataset that is already in --out.
    #[arg(long)]
    pub force: bool,
}

impl DemoDataArgs {
    fn config(&self) -> DemoConfig {
        DemoConfig {
            train: self.train,
            val: self.val,
            unlabeled: self.unlabeled,
            size: self.size,
            seed: self.seed,
            difficulty: self.difficulty,
        }
    }
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
    let config = args.config();
    let pb = super::progress::bar(config.images() as u64, "drawing");
    let root = generate(&args.out, &config, &|| pb.inc(1))?;
    pb.finish_and_clear();
    println!("wrote {} to {}", config.in_words(), root.display());
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
    let config = args.config();
    let pb = super::progress::bar(config.images() as u64, "drawing");
    let root = generate_folder(out, &config, &|| pb.inc(1))?;
    pb.finish_and_clear();
    println!("wrote {} as a plain folder (images/, masks/, classes.txt) to {}", config.in_words(), root.display());
    Ok(ExitCode::SUCCESS)
}
