//! ADE20K SceneParsing layout (`ADEChallengeData2016`): `images/{training,validation}/<id>.jpg`
//! with `annotations/{training,validation}/<id>.png`, gray PNGs where 0 is "other" (ignored) and
//! 1–150 are the classes, read as 0–149 (mmsegmentation's `reduce_zero_label`). The splits are
//! called `train` and `val` here, like every other layout's; `training` and `validation` are
//! accepted too.

use std::path::{Path, PathBuf};

use super::dataset::SampleFiles;
use super::error::{DataError, Result};

/// The name of the folder the archive extracts to.
pub const ROOT_NAME: &str = "ADEChallengeData2016";
/// Classes in the masks besides "other" (value 0).
pub const NUM_CLASSES: u8 = 150;
/// Split names and the folder each lives in.
const SPLITS: [(&str, &str); 2] = [("train", "training"), ("val", "validation")];
const IMAGES_DIR: &str = "images";
const ANNOTATIONS_DIR: &str = "annotations";
/// What to pass as `--data` for ADE20K, for messages.
const ROOT_HINT: &str = "the ADEChallengeData2016 folder (holding images/ and annotations/) or its parent";

fn is_root(dir: &Path) -> bool {
    dir.join(ANNOTATIONS_DIR).is_dir() && SPLITS.iter().any(|(_, d)| dir.join(IMAGES_DIR).join(d).is_dir())
}

/// The folder holding `images/` and `annotations/`: `path` itself or its `ADEChallengeData2016`.
pub fn find_root(path: &Path) -> Result<PathBuf> {
    if let Some(e) = super::voc::not_a_folder(path, "ADE20K", ROOT_HINT) {
        return Err(e);
    }
    for dir in [path.to_path_buf(), path.join(ROOT_NAME)] {
        if is_root(&dir) {
            return Ok(dir);
        }
    }
    Err(DataError::NotADataset {
        path: path.into(),
        kind: "ADE20K",
        reason: format!(
            "no images/training or images/validation beside annotations/ inside (nor in {ROOT_NAME}/); run \
             `segdistill download ade20k` to get it"
        ),
    })
}

pub(crate) fn looks_like_ade20k(path: &Path) -> bool {
    find_root(path).is_ok()
}

/// The folder of a split name (`train` or `training`, `val` or `validation`).
fn split_folder(split: &str) -> Option<&'static str> {
    SPLITS.iter().find(|(name, dir)| split == *name || split == *dir).map(|(_, dir)| *dir)
}

pub fn available_splits(root: &Path) -> Vec<String> {
    SPLITS.iter().filter(|(_, dir)| root.join(IMAGES_DIR).join(dir).is_dir()).map(|(n, _)| n.to_string()).collect()
}

/// Every image of a split with its annotation's path (files are not checked here).
pub fn samples(root: &Path, split: &str) -> Result<Vec<SampleFiles>> {
    let missing =
        |path: PathBuf| DataError::MissingSplit { split: split.into(), path, available: available_splits(root) };
    let Some(folder) = split_folder(split) else {
        return Err(missing(root.join(IMAGES_DIR).join(split)));
    };
    let images = root.join(IMAGES_DIR).join(folder);
    if !images.is_dir() {
        return Err(missing(images));
    }
    let masks = root.join(ANNOTATIONS_DIR).join(folder);
    super::folder::images_with_png_masks(split, &images, &masks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_or_its_parent_is_found_and_splits_are_train_and_val() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(ROOT_NAME);
        for d in ["images/training", "images/validation", "annotations/training", "annotations/validation"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("images/validation/ADE_val_00000001.jpg"), "jpg").unwrap();
        assert_eq!(find_root(tmp.path()).unwrap(), root);
        assert_eq!(find_root(&root).unwrap(), root);
        assert_eq!(available_splits(&root), ["train", "val"]);
        let val = samples(&root, "val").unwrap();
        assert_eq!(val.len(), 1);
        assert_eq!(val[0].mask, root.join("annotations/validation/ADE_val_00000001.png"));
        assert_eq!(samples(&root, "validation").unwrap(), val);
        let msg = samples(&root, "train").unwrap_err().to_string();
        assert!(msg.contains("lists no images"), "{msg}");
        let msg = samples(&root, "test").unwrap_err().to_string();
        assert!(msg.contains("available splits: train, val"), "{msg}");
        let msg = find_root(&tmp.path().join("absent")).unwrap_err().to_string();
        assert!(msg.contains("ADEChallengeData2016 folder"), "{msg}");
    }
}
