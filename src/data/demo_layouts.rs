//! The demo dataset written in each real on-disk layout, so every reader (VOC, the plain folder,
//! ADE20K, CamVid, Cityscapes) can be tried and tested without a download. The scenes are the
//! same in every layout ([`super::demo::draw_sample`]); only the files, their names and the label
//! values differ. The demo draws VOC's 21 classes; for layouts with another label space each demo
//! class is written as one of that dataset's classes (the tables below), and void borders as the
//! layout's own void value.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use image::RgbImage;

use super::classes::CAMVID_VOID;
use super::demo::{DemoConfig, MARKER_FILE, check_config, draw_sample, write_staged};
use super::image::encode_jpeg;
use super::mask::Mask;
use crate::util::fs::write_atomic;

/// The on-disk layout `demo-data` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoLayout {
    /// PASCAL VOC: OUT/VOCdevkit/VOC2012.
    #[default]
    Voc,
    /// A plain folder: OUT/images, OUT/masks, OUT/classes.txt, OUT/train.txt, OUT/val.txt.
    Folder,
    /// ADE20K SceneParsing: OUT/ADEChallengeData2016 (150 class ids, 0 = other).
    Ade20k,
    /// CamVid in SegNet's layout: OUT/CamVid (11 classes, 11 = void).
    Camvid,
    /// Cityscapes: OUT/cityscapes with leftImg8bit/ and gtFine/ (label ids).
    Cityscapes,
}

/// The ADE20K class (0-based; the mask value is one more) each demo class is written as: the
/// class of the same meaning where ADE20K has one. ADE20K has one "animal" class; the demo's other
/// animals are written as distinct classes of no relation to them, so that the 21 demo classes stay
/// 21 classes (a demo object's shape and colour carry no meaning of their own).
#[rustfmt::skip]
pub const ADE20K_OF_DEMO: [u8; 21] = [
    0,   // background → wall
    90,  // aeroplane → airplane
    127, // bicycle
    126, // bird → animal
    76,  // boat
    98,  // bottle
    80,  // bus
    20,  // car
    39,  // cat → cushion
    19,  // chair
    34,  // cow → rock
    15,  // diningtable → table
    28,  // dog → rug
    114, // horse → tent
    116, // motorbike → minibike
    12,  // person
    17,  // pottedplant → plant
    57,  // sheep → pillow
    23,  // sofa
    102, // train → van
    89,  // tvmonitor → television receiver
];

/// The CamVid class each demo class is written as (CamVid has 11: several demo classes share one).
#[rustfmt::skip]
pub const CAMVID_OF_DEMO: [u8; 21] = [
    3,  // background → road
    0,  // aeroplane → sky
    10, // bicycle → bicyclist
    5,  // bird → tree
    1,  // boat → building
    2,  // bottle → pole
    8,  // bus → car
    8,  // car
    4,  // cat → sidewalk
    7,  // chair → fence
    4,  // cow → sidewalk
    7,  // diningtable → fence
    4,  // dog → sidewalk
    4,  // horse → sidewalk
    10, // motorbike → bicyclist
    9,  // person → pedestrian
    5,  // pottedplant → tree
    4,  // sheep → sidewalk
    7,  // sofa → fence
    8,  // train → car
    6,  // tvmonitor → sign symbol
];

/// The Cityscapes label id (the value in `*_gtFine_labelIds.png`) each demo class is written as.
#[rustfmt::skip]
pub const CITYSCAPES_ID_OF_DEMO: [u8; 21] = [
    7,  // background → road
    23, // aeroplane → sky
    33, // bicycle
    21, // bird → vegetation
    11, // boat → building
    17, // bottle → pole
    28, // bus
    26, // car
    22, // cat → terrain
    13, // chair → fence
    22, // cow → terrain
    12, // diningtable → wall
    22, // dog → terrain
    25, // horse → rider
    32, // motorbike → motorcycle
    24, // person
    21, // pottedplant → vegetation
    22, // sheep → terrain
    8,  // sofa → sidewalk
    31, // train
    20, // tvmonitor → traffic sign
];

/// Cityscapes' label id for unlabelled pixels (read as void).
const CITYSCAPES_UNLABELED: u8 = 0;
/// ADE20K's "other" (read as void).
const ADE20K_OTHER: u8 = 0;
/// The city all demo frames are filed under in the Cityscapes layout.
const DEMO_CITY: &str = "democity";

/// Where a layout's dataset goes under `out` (the folder to pass as `--data`, or its parent for
/// VOC).
pub fn target(layout: DemoLayout, out: &Path) -> PathBuf {
    match layout {
        DemoLayout::Voc => super::demo::voc_root(out),
        DemoLayout::Folder => out.to_path_buf(),
        DemoLayout::Ade20k => out.join(super::ade20k::ROOT_NAME),
        DemoLayout::Camvid => out.join("CamVid"),
        DemoLayout::Cityscapes => out.join("cityscapes"),
    }
}

/// Generates the demo dataset under `out` in `layout`, replacing one of the same layout that is
/// there; `on_image` is called after each image (progress). Returns the dataset's root.
pub fn generate(
    layout: DemoLayout,
    out: &Path,
    config: &DemoConfig,
    on_image: &(dyn Fn() + Sync),
) -> anyhow::Result<PathBuf> {
    match layout {
        DemoLayout::Voc => super::demo::generate(out, config, on_image),
        DemoLayout::Folder => super::demo::generate_folder(out, config, on_image),
        DemoLayout::Ade20k | DemoLayout::Camvid | DemoLayout::Cityscapes => {
            check_config(config)?;
            let root = target(layout, out);
            write_staged(&root, |staging| draw_layout(layout, staging, config, on_image))?;
            Ok(root)
        }
    }
}

/// The paths of sample `index`'s image and mask inside a layout's root, for `split`.
fn sample_paths(layout: DemoLayout, root: &Path, split: &str, index: usize) -> (PathBuf, PathBuf) {
    match layout {
        DemoLayout::Ade20k => {
            let (folder, prefix) = if split == "train" { ("training", "train") } else { ("validation", "val") };
            let id = format!("ADE_{prefix}_{:08}", index + 1);
            (
                root.join("images").join(folder).join(format!("{id}.jpg")),
                root.join("annotations").join(folder).join(format!("{id}.png")),
            )
        }
        DemoLayout::Camvid => {
            let id = format!("demo_{:06}", index + 1);
            (root.join(split).join(format!("{id}.png")), root.join(format!("{split}annot")).join(format!("{id}.png")))
        }
        DemoLayout::Cityscapes => {
            let frame = format!("{DEMO_CITY}_000000_{:06}", index + 1);
            (
                root.join("leftImg8bit").join(split).join(DEMO_CITY).join(format!("{frame}_leftImg8bit.png")),
                root.join("gtFine").join(split).join(DEMO_CITY).join(format!("{frame}_gtFine_labelIds.png")),
            )
        }
        DemoLayout::Voc | DemoLayout::Folder => unreachable!("VOC and the folder are written by demo.rs"),
    }
}

/// The mask values of a layout for a demo mask (VOC classes, 255 void).
fn relabel(layout: DemoLayout, mask: &Mask) -> Mask {
    let (table, void): (&[u8; 21], u8) = match layout {
        DemoLayout::Ade20k => (&ADE20K_OF_DEMO, ADE20K_OTHER),
        DemoLayout::Camvid => (&CAMVID_OF_DEMO, CAMVID_VOID),
        DemoLayout::Cityscapes => (&CITYSCAPES_ID_OF_DEMO, CITYSCAPES_UNLABELED),
        DemoLayout::Voc | DemoLayout::Folder => return mask.clone(),
    };
    // ADE20K's mask values are its class index + 1 (0 is "other").
    let shift = u8::from(layout == DemoLayout::Ade20k);
    let lut: [u8; 256] = std::array::from_fn(|v| table.get(v).map_or(void, |&c| c + shift));
    let mut out = mask.clone();
    out.map_values(&lut);
    out
}

fn draw_layout(
    layout: DemoLayout,
    root: &Path,
    config: &DemoConfig,
    on_image: &(dyn Fn() + Sync),
) -> anyhow::Result<()> {
    let total = config.train + config.val;
    let written = crate::util::par::par_map(total, |i| {
        let (split, index) = if i < config.train { ("train", i) } else { ("val", i - config.train) };
        let (image_path, mask_path) = sample_paths(layout, root, split, index);
        let r = (|| {
            let (image, mask) = draw_sample(config, i);
            let image_bytes = match layout {
                DemoLayout::Ade20k => encode_jpeg(&image, 92)?,
                _ => encode_png_rgb(&image)?,
            };
            write_file(&image_path, &image_bytes)?;
            write_file(&mask_path, &encode_png_gray(&relabel(layout, &mask))?)
        })();
        on_image();
        r
    });
    written.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let marker = root.join(MARKER_FILE);
    write_file(&marker, serde_json::to_string_pretty(config)?.as_bytes())
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_atomic(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn encode_png_rgb(image: &RgbImage) -> anyhow::Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// An 8-bit grayscale PNG of the mask's values (how ADE20K, CamVid and Cityscapes store labels).
fn encode_png_gray(mask: &Mask) -> anyhow::Result<Vec<u8>> {
    let gray = image::GrayImage::from_raw(mask.width, mask.height, mask.data.clone())
        .context("mask data does not match its size")?;
    let mut out = std::io::Cursor::new(Vec::new());
    gray.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::classes::{CAMVID_CLASSES, CITYSCAPES_LABELS, ClassSet, VOC_CLASS_NAMES};

    #[test]
    fn the_ade20k_table_is_one_to_one_and_names_match_where_ade20k_has_the_class() {
        let mut ids = ADE20K_OF_DEMO.to_vec();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 21, "21 demo classes stay 21 classes");
        let ade = ClassSet::ade20k();
        for (demo, ade_name) in [(7u8, "car"), (15, "person"), (6, "bus"), (9, "chair"), (18, "sofa")] {
            assert_eq!(
                ade.names[ADE20K_OF_DEMO[demo as usize] as usize], ade_name,
                "{}",
                VOC_CLASS_NAMES[demo as usize]
            );
        }
    }

    #[test]
    fn tables_point_at_trained_classes() {
        assert!(CAMVID_OF_DEMO.iter().all(|&c| (c as usize) < CAMVID_CLASSES.len()));
        for id in CITYSCAPES_ID_OF_DEMO {
            let label = CITYSCAPES_LABELS[id as usize];
            assert_ne!(label.train_id, 255, "{} is trained on", label.name);
        }
        assert_eq!(CITYSCAPES_LABELS[CITYSCAPES_UNLABELED as usize].train_id, 255);
    }

    #[test]
    fn relabelling_writes_void_as_the_layouts_void() {
        let m = Mask::new(3, 1, vec![0, 15, 255]);
        assert_eq!(relabel(DemoLayout::Ade20k, &m).data, vec![1, 13, 0], "ADE20K: index + 1, void → 0");
        assert_eq!(relabel(DemoLayout::Camvid, &m).data, vec![3, 9, CAMVID_VOID]);
        assert_eq!(relabel(DemoLayout::Cityscapes, &m).data, vec![7, 24, 0]);
    }
}
