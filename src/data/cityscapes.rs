//! Cityscapes layout: `leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png` with
//! `gtFine/<split>/<city>/<frame>_gtFine_labelIds.png` (label ids, mapped to the 19 train ids
//! when loaded; see [`crate::data::classes::CITYSCAPES_LABELS`]).

use std::path::{Path, PathBuf};

use super::dataset::SampleFiles;
use super::error::{DataError, Result};

const IMAGE_SUFFIX: &str = "_leftImg8bit.png";
const MASK_SUFFIX: &str = "_gtFine_labelIds.png";
/// What to pass as `--data` for Cityscapes, for messages.
const ROOT_HINT: &str = "the Cityscapes root (the folder holding leftImg8bit/ and gtFine/)";

fn is_root(dir: &Path) -> bool {
    dir.join("leftImg8bit").is_dir()
}

/// Finds the folder holding `leftImg8bit/` and `gtFine/`: the folder itself or a descendant
/// (two levels at most).
pub fn find_root(path: &Path) -> Result<PathBuf> {
    if let Some(e) = super::voc::not_a_folder(path, "Cityscapes", ROOT_HINT) {
        return Err(e);
    }
    let mut level = vec![path.to_path_buf()];
    for _ in 0..=2 {
        if let Some(found) = level.iter().find(|d| is_root(d)) {
            return Ok(found.clone());
        }
        level = level.iter().flat_map(|d| sorted_entries(d, true)).collect();
    }
    Err(DataError::NotADataset {
        path: path.into(),
        kind: "Cityscapes",
        reason: "no leftImg8bit/ folder inside; run `segdistill download cityscapes` for how to get it".into(),
    })
}

pub(crate) fn looks_like_cityscapes(path: &Path) -> bool {
    find_root(path).is_ok()
}

fn sorted_entries(dir: &Path, dirs: bool) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir() == dirs))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

pub fn available_splits(root: &Path) -> Vec<String> {
    sorted_entries(&root.join("leftImg8bit"), true)
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(String::from))
        .collect()
}

/// Every frame of a split with its label-id mask path (files are not checked here).
pub fn samples(root: &Path, split: &str) -> Result<Vec<SampleFiles>> {
    let split_dir = root.join("leftImg8bit").join(split);
    if !split_dir.is_dir() {
        return Err(DataError::MissingSplit {
            split: split.into(),
            path: split_dir,
            available: available_splits(root),
        });
    }
    let mut out = Vec::new();
    for city_dir in sorted_entries(&split_dir, true) {
        let city = city_dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        for file in sorted_entries(&city_dir, false) {
            let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(frame) = name.strip_suffix(IMAGE_SUFFIX) else {
                continue;
            };
            let mask = root.join("gtFine").join(split).join(&city).join(format!("{frame}{MASK_SUFFIX}"));
            out.push(SampleFiles { id: frame.to_string(), image: file.clone(), mask });
        }
    }
    if out.is_empty() {
        return Err(DataError::EmptySplit { split: split.into(), path: split_dir });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_and_a_file_are_told_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let msg = find_root(&tmp.path().join("absent")).unwrap_err().to_string();
        assert!(msg.contains("absent") && msg.contains("no such file or folder"), "{msg}");
        let zip = tmp.path().join("leftImg8bit_trainvaltest.zip");
        std::fs::write(&zip, "PK").unwrap();
        let msg = find_root(&zip).unwrap_err().to_string();
        assert!(msg.contains("is an archive, not a folder") && msg.contains("the Cityscapes root"), "{msg}");
        let file = tmp.path().join("frame_leftImg8bit.png");
        std::fs::write(&file, "png").unwrap();
        let msg = find_root(&file).unwrap_err().to_string();
        assert!(msg.contains("is a file, not a folder: pass the Cityscapes root"), "{msg}");
        std::fs::create_dir_all(tmp.path().join("cs/leftImg8bit")).unwrap();
        assert_eq!(find_root(tmp.path()).unwrap(), tmp.path().join("cs"));
    }
}
