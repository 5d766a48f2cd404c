//! `segdistill demo-data`: writes the procedurally drawn demo dataset in one of the on-disk
//! layouts segdistill reads (VOC, a plain folder, ADE20K, CamVid, Cityscapes).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::data::demo::{DemoConfig, Difficulty};
use crate::data::demo_layouts::DemoLayout;
use crate::data::demo_layouts::{generate, target};

#[derive(Debug, clap::Args)]
pub struct DemoDataArgs {
    /// Output folder; the dataset goes to OUT/VOCdevkit/VOC2012 (voc), into OUT itself (folder),
    /// or to OUT/ADEChallengeData2016 (ade20k), OUT/CamVid (camvid), OUT/cityscapes (cityscapes).
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
    /// Training images without masks (the `unlabeled` split; voc and folder layouts), for
    /// distillation on unlabelled images.
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

/// What of a layout's files in `out` means a dataset is already there.
fn existing(layout: DemoLayout, out: &std::path::Path) -> Option<PathBuf> {
    use crate::data::folder::{IMAGES_DIR, MASKS_DIR};
    let root = target(layout, out);
    let candidates = match layout {
        DemoLayout::Voc => vec![root.join("JPEGImages"), root.join("ImageSets")],
        DemoLayout::Folder => vec![out.join(IMAGES_DIR), out.join(MASKS_DIR)],
        DemoLayout::Ade20k | DemoLayout::Camvid | DemoLayout::Cityscapes => vec![root],
    };
    candidates.into_iter().find(|p| p.exists())
}

pub fn run(args: DemoDataArgs) -> anyhow::Result<ExitCode> {
    if !args.force
        && let Some(found) = existing(args.layout, &args.out)
    {
        anyhow::bail!(
            "{} already holds a dataset ({}); pass --force to replace it, or choose another --out",
            args.out.display(),
            found.display()
        );
    }
    let config = args.config();
    let pb = super::progress::bar(config.images() as u64, "drawing");
    let root = generate(args.layout, &args.out, &config, &|| pb.inc(1))?;
    pb.finish_and_clear();
    let layout = match args.layout {
        DemoLayout::Voc => "in the VOC layout",
        DemoLayout::Folder => "as a plain folder (images/, masks/, classes.txt)",
        DemoLayout::Ade20k => "in the ADE20K layout (150 class ids)",
        DemoLayout::Camvid => "in CamVid's SegNet layout (11 classes)",
        DemoLayout::Cityscapes => "in the Cityscapes layout (label ids)",
    };
    println!("wrote {} {layout} to {}", config.in_words(), root.display());
    Ok(ExitCode::SUCCESS)
}
