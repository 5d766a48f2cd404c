//! `segdistill demo-data`: writes the procedurally drawn demo dataset in one of the on-disk
//! layouts segdistill reads (VOC, a plain folder, ADE20K, CamVid, Cityscapes).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::data::demo::DemoConfig;
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
    let config = DemoConfig { train: args.train, val: args.val, size: args.size, seed: args.seed };
    let pb = super::progress::bar((config.train + config.val) as u64, "drawing");
    let root = generate(args.layout, &args.out, &config, &|| pb.inc(1))?;
    pb.finish_and_clear();
    let layout = match args.layout {
        DemoLayout::Voc => "in the VOC layout",
        DemoLayout::Folder => "as a plain folder (images/, masks/, classes.txt)",
        DemoLayout::Ade20k => "in the ADE20K layout (150 class ids)",
        DemoLayout::Camvid => "in CamVid's SegNet layout (11 classes)",
        DemoLayout::Cityscapes => "in the Cityscapes layout (label ids)",
    };
    println!(
        "wrote {} train + {} val images ({}px wide) {layout} to {}",
        config.train,
        config.val,
        config.size,
        root.display()
    );
    Ok(ExitCode::SUCCESS)
}
