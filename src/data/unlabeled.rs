//! Images without masks, which a student learns from through the teacher alone (distillation
//! terms only; cross-entropy and the terms that read labels skip them). Most datasets have far
//! more images than masks — VOC 2012 has about 17,000 JPEGs and 2,913 masks — and the teacher can
//! label every one of them.
//!
//! `train --unlabeled X` takes either a folder of images (every image file directly in it) or
//! the name of a split of the training dataset:
//! * `unlabeled` ([`SPLIT`]): the images that have no mask — for VOC the JPEGs with no
//!   `SegmentationClass` (or `SegmentationClassAug`) file, for a plain folder the files of `images/`
//!   with no match in `masks/`;
//! * any other split name: that split's images, their masks ignored (for Cityscapes e.g.
//!   `train_extra`, the 20,000 frames that have coarse annotations only).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::dataset::{Dataset, DatasetKind, SampleFiles};
use super::error::{DataError, Result};
use super::{folder, voc};

/// The split name of the images without masks.
pub const SPLIT: &str = "unlabeled";

/// The images `spec` names (a folder, or a split of `labeled`'s dataset), as a dataset without
/// masks sharing `labeled`'s classes. Images that are also in `labeled` are left out (a student
/// never sees an image both with and without its labels).
pub fn open(spec: &str, labeled: &Dataset) -> Result<Dataset> {
    let path = Path::new(spec);
    let (root, split, mut samples) = if path.is_dir() {
        let root = path.to_path_buf();
        let images =
            if folder::looks_like_folder(path) { images_without_masks_in_folder(path)? } else { images_in(path)? };
        (root, SPLIT.to_string(), samples_of(images))
    } else if spec.contains(['/', '\\']) {
        return Err(DataError::NotADataset {
            path: path.into(),
            kind: "unlabelled images",
            reason: "no such folder: pass a folder of images, or a split name such as `unlabeled`".into(),
        });
    } else {
        (labeled.root.clone(), spec.to_string(), split_images(labeled, spec)?)
    };
    let labeled_images: std::collections::HashSet<&Path> = labeled.samples.iter().map(|s| s.image.as_path()).collect();
    samples.retain(|s| !labeled_images.contains(s.image.as_path()));
    if samples.is_empty() {
        return Err(DataError::NotADataset {
            path: root.join(&split),
            kind: "unlabelled images",
            reason: format!(
                "no image without a mask there (beyond the {} labelled training images); `segdistill splits --data \
                 {}` lists what the dataset holds",
                labeled.len(),
                labeled.root.display()
            ),
        });
    }
    Ok(Dataset::without_masks(labeled.kind, root, &split, samples, labeled.classes().clone()))
}

/// Number of images without a mask in the dataset at `root` (the [`SPLIT`] split), for
/// `segdistill splits` and `check-data`; `None` where the layout has no such notion.
pub fn count_in(kind: DatasetKind, root: &Path) -> Option<usize> {
    match kind {
        DatasetKind::Voc => voc_images_without_masks(root).ok().map(|v| v.len()),
        DatasetKind::Folder => images_without_masks_in_folder(root).ok().map(|v| v.len()),
        _ => None,
    }
}

fn samples_of(images: BTreeMap<String, PathBuf>) -> Vec<SampleFiles> {
    images.into_iter().map(|(id, image)| SampleFiles { id, image, mask: PathBuf::new() }).collect()
}

/// Every image file directly in `dir`, by stem.
fn images_in(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    folder::files_by_stem(dir, &folder::IMAGE_EXTENSIONS)
}

fn images_without_masks_in_folder(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let listing = folder::list_files(root)?;
    Ok(listing.images.into_iter().filter(|(stem, _)| !listing.masks.contains_key(stem)).collect())
}

/// VOC's JPEGs that have no mask in `SegmentationClass/` nor `SegmentationClassAug/`.
fn voc_images_without_masks(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let images = folder::files_by_stem(&root.join("JPEGImages"), &["jpg", "jpeg"])?;
    let has_mask = |dir: &str, stem: &str| root.join(dir).join(format!("{stem}.png")).is_file();
    Ok(images
        .into_iter()
        .filter(|(stem, _)| !has_mask("SegmentationClass", stem) && !has_mask("SegmentationClassAug", stem))
        .collect())
}

/// The images of split `split` of `labeled`'s dataset.
fn split_images(labeled: &Dataset, split: &str) -> Result<Vec<SampleFiles>> {
    let root = &labeled.root;
    let images = match (labeled.kind, split) {
        (DatasetKind::Voc, SPLIT) => voc_images_without_masks(root)?,
        (DatasetKind::Folder, SPLIT) => images_without_masks_in_folder(root)?,
        (DatasetKind::Voc, _) => {
            return Ok(voc::samples(root, split)?
                .into_iter()
                .map(|s| SampleFiles { mask: PathBuf::new(), ..s })
                .collect());
        }
        (DatasetKind::Folder, _) => {
            let listing = folder::list_files(root)?;
            let list = folder::split_file(root, split);
            let text = std::fs::read_to_string(&list).map_err(|e| DataError::io(&list, e))?;
            voc::parse_split(&text)
                .into_iter()
                .filter_map(|stem| listing.images.get(&stem).map(|p| (stem, p.clone())))
                .collect()
        }
        (DatasetKind::Cityscapes, _) => cityscapes_frames(&root.join("leftImg8bit").join(split))?,
        (kind, _) => {
            return Err(DataError::NotADataset {
                path: root.clone(),
                kind: "unlabelled images",
                reason: format!(
                    "a {kind} dataset has no split '{split}' of images without masks here: pass a folder of images"
                ),
            });
        }
    };
    Ok(samples_of(images))
}

/// `<dir>/<city>/*.png`, by file stem.
fn cityscapes_frames(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = BTreeMap::new();
    let mut cities: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    cities.sort();
    for city in cities {
        out.extend(folder::files_by_stem(&city, &["png"])?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn voc_unlabeled_split_is_the_jpegs_without_masks_minus_the_training_images() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("VOC2012");
        for id in ["a", "b", "c", "d"] {
            touch(&root.join("JPEGImages").join(format!("{id}.jpg")));
        }
        touch(&root.join("SegmentationClass/a.png"));
        touch(&root.join("SegmentationClassAug/b.png"));
        std::fs::create_dir_all(root.join("ImageSets/Segmentation")).unwrap();
        std::fs::write(root.join("ImageSets/Segmentation/train.txt"), "a\nc\n").unwrap();
        let labeled = Dataset::open(&root, Some(DatasetKind::Voc), "train").unwrap();
        let unlabeled = open(SPLIT, &labeled).unwrap();
        let ids: Vec<&str> = unlabeled.samples.iter().map(|s| s.id.as_str()).collect();
        // b has an augmented mask, c is a training image: d is left.
        assert_eq!(ids, ["d"]);
        assert!(!unlabeled.has_masks);
        assert_eq!(count_in(DatasetKind::Voc, &root), Some(2));
        let err = open("no/such/folder", &labeled).unwrap_err().to_string();
        assert!(err.contains("no such folder"), "{err}");
    }
}
