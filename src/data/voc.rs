//! PASCAL VOC 2012 segmentation layout: `ImageSets/Segmentation/<split>.txt`, `JPEGImages/<id>.jpg`,
//! `SegmentationClass/<id>.png` (palette PNGs; 255 = void). SBD's augmented masks live in
//! `SegmentationClassAug/` and are used for splits whose name ends in `_aug` (e.g. `train_aug`).

use std::path::{Path, PathBuf};

use super::dataset::SampleFiles;
use super::error::{DataError, Result};

const SPLIT_DIR: &str = "ImageSets/Segmentation";

fn is_voc_root(dir: &Path) -> bool {
    dir.join(SPLIT_DIR).is_dir() || (dir.join("JPEGImages").is_dir() && dir.join("SegmentationClass").is_dir())
}

/// Finds the `VOC2012` folder from a `VOCdevkit` folder, a `VOC2012` folder or any parent of
/// them (searched breadth-first, four levels deep at most).
pub fn find_root(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Err(DataError::NotADataset { path: path.into(), kind: "VOC", reason: "no such folder".into() });
    }
    let mut level = vec![path.to_path_buf()];
    for _depth in 0..=4 {
        // Prefer the conventional names at each level, then anything else, in sorted order.
        level.sort_by_key(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
            (name != "voc2012", name != "vocdevkit", p.clone())
        });
        if let Some(found) = level.iter().find(|d| is_voc_root(d)) {
            return Ok(found.clone());
        }
        level = level.iter().flat_map(|d| subdirs(d)).collect();
        if level.is_empty() {
            break;
        }
    }
    Err(DataError::NotADataset {
        path: path.into(),
        kind: "VOC",
        reason: "no VOC2012 folder (with ImageSets/Segmentation, JPEGImages, SegmentationClass) inside; \
                 run `segdistill download voc` or `segdistill demo-data --out DIR`"
            .into(),
    })
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

pub fn split_file(root: &Path, split: &str) -> PathBuf {
    root.join(SPLIT_DIR).join(format!("{split}.txt"))
}

/// Names of the split lists present under `ImageSets/Segmentation`.
pub fn available_splits(root: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(root.join(SPLIT_DIR)) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".txt")).map(String::from))
        .collect();
    v.sort();
    v
}

/// Parses a split list: one id per line; lines of SBD-style lists (`/JPEGImages/x.jpg
/// /SegmentationClassAug/x.png`) give the file stem of their first field.
pub fn parse_split(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|tok| {
            if tok.contains('/') { Path::new(tok).file_stem().map_or(tok, |s| s.to_str().unwrap_or(tok)) } else { tok }
        })
        .map(String::from)
        .collect()
}

/// Ids of a split. `trainval` falls back to `train` ∪ `val` when its own list is absent.
pub fn read_split(root: &Path, split: &str) -> Result<Vec<String>> {
    let path = split_file(root, split);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let ids = parse_split(&text);
            if ids.is_empty() {
                return Err(DataError::EmptySplit { split: split.into(), path });
            }
            Ok(ids)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if split == "trainval"
                && let (Ok(mut train), Ok(val)) = (read_split(root, "train"), read_split(root, "val"))
            {
                train.extend(val);
                train.sort();
                train.dedup();
                return Ok(train);
            }
            Err(DataError::MissingSplit { split: split.into(), path, available: available_splits(root) })
        }
        Err(e) => Err(DataError::io(path, e)),
    }
}

/// The folder holding a split's masks.
pub fn mask_dir(root: &Path, split: &str) -> PathBuf {
    let aug = root.join("SegmentationClassAug");
    if split.ends_with("_aug") && aug.is_dir() { aug } else { root.join("SegmentationClass") }
}

/// Image and mask paths for every id of a split (files are not checked here).
pub fn samples(root: &Path, split: &str) -> Result<Vec<SampleFiles>> {
    let masks = mask_dir(root, split);
    let images = root.join("JPEGImages");
    Ok(read_split(root, split)?
        .into_iter()
        .map(|id| SampleFiles { image: images.join(format!("{id}.jpg")), mask: masks.join(format!("{id}.png")), id })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_sbd_style_lists() {
        let ids = parse_split(
            "2007_000032\n\n 2007_000039 \n/JPEGImages/2008_000001.jpg /SegmentationClassAug/2008_000001.png\n",
        );
        assert_eq!(ids, ["2007_000032", "2007_000039", "2008_000001"]);
    }

    #[test]
    fn finds_root_from_parent_devkit_or_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let voc = tmp.path().join("data/VOCdevkit/VOC2012");
        std::fs::create_dir_all(voc.join("ImageSets/Segmentation")).unwrap();
        for p in [tmp.path().to_path_buf(), tmp.path().join("data"), tmp.path().join("data/VOCdevkit"), voc.clone()] {
            assert_eq!(find_root(&p).unwrap(), voc, "from {}", p.display());
        }
        let err = find_root(&tmp.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("nope"));
    }

    #[test]
    fn missing_split_lists_available_and_trainval_falls_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(SPLIT_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("train.txt"), "a\nb\n").unwrap();
        std::fs::write(dir.join("val.txt"), "c\n").unwrap();
        let err = read_split(tmp.path(), "test").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("test.txt") && msg.contains("train, val"), "{msg}");
        assert_eq!(read_split(tmp.path(), "trainval").unwrap(), ["a", "b", "c"]);
        std::fs::write(dir.join("empty.txt"), "\n").unwrap();
        assert!(matches!(read_split(tmp.path(), "empty"), Err(DataError::EmptySplit { .. })));
    }
}
