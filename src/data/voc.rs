//! PASCAL VOC 2012 segmentation layout: `ImageSets/Segmentation/<split>.txt`, `JPEGImages/<id>.jpg`,
//! `SegmentationClass/<id>.png` (palette PNGs; 255 = void). SBD's augmented masks live in
//! `SegmentationClassAug/` and are used for splits whose name ends in `_aug` (e.g. `train_aug`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::dataset::SampleFiles;
use super::error::{DataError, Result};

const SPLIT_DIR: &str = "ImageSets/Segmentation";

fn is_voc_root(dir: &Path) -> bool {
    dir.join(SPLIT_DIR).is_dir() || (dir.join("JPEGImages").is_dir() && dir.join("SegmentationClass").is_dir())
}

/// What to pass as `--data` for VOC, for messages.
const VOC_FOLDER_HINT: &str = "the folder that contains VOCdevkit (or VOC2012 itself)";

/// Finds the `VOC2012` folder from a `VOCdevkit` folder, a `VOC2012` folder or any parent of
/// them (searched breadth-first, four levels deep at most).
pub fn find_root(path: &Path) -> Result<PathBuf> {
    if let Some(e) = not_a_folder(path, "VOC", VOC_FOLDER_HINT) {
        return Err(e);
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

/// Why `path` cannot be a dataset folder (absent, or a file), saying what to pass instead (`hint`);
/// `None` if it is a folder. Shared with [`super::cityscapes::find_root`].
pub(crate) fn not_a_folder(path: &Path, kind: &'static str, hint: &str) -> Option<DataError> {
    let reason = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return None,
        Ok(_) if is_archive(path) => {
            format!("it is an archive, not a folder: extract it first, then pass {hint}")
        }
        Ok(_) => format!("it is a file, not a folder: pass {hint}"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("no such file or folder: pass {hint}"),
        Err(e) => format!("cannot read it ({e}): pass a readable folder, {hint}"),
    };
    Some(DataError::NotADataset { path: path.into(), kind, reason })
}

fn is_archive(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    [".tar", ".tar.gz", ".tgz", ".zip"].iter().any(|ext| name.ends_with(ext))
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

/// Parses a split list: one id per line, in file order (repeats included: see [`SplitList`]);
/// lines of SBD-style lists (`/JPEGImages/x.jpg /SegmentationClassAug/x.png`) give the file
/// stem of their first field. A UTF-8 byte-order mark (Windows editors write one) is not part of
/// the first id.
pub fn parse_split(text: &str) -> Vec<String> {
    text.strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|tok| {
            if tok.contains('/') { Path::new(tok).file_stem().map_or(tok, |s| s.to_str().unwrap_or(tok)) } else { tok }
        })
        .map(String::from)
        .collect()
}

/// An id a split file lists more than once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateId {
    pub id: String,
    /// How many times the file lists it (2 or more).
    pub times: usize,
    /// The split file that repeats it.
    pub file: PathBuf,
}

impl DuplicateId {
    pub fn to_error(&self) -> DataError {
        DataError::DuplicateId { path: self.file.clone(), id: self.id.clone(), times: self.times }
    }
}

/// The ids of a split, each once in first-seen order, and those its file repeats, so that callers
/// can warn: a repeated id would otherwise weigh twice in training and evaluation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitList {
    pub ids: Vec<String>,
    /// In the order of their first listing.
    pub duplicates: Vec<DuplicateId>,
}

impl SplitList {
    /// Keeps the first listing of each id of `listed` (as read from `file`), noting repeats.
    pub fn from_listed(listed: Vec<String>, file: &Path) -> Self {
        let mut times: HashMap<String, usize> = HashMap::new();
        let mut ids = Vec::with_capacity(listed.len());
        for id in listed {
            let count = times.entry(id.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                ids.push(id);
            }
        }
        let duplicates = ids
            .iter()
            .filter_map(|id| {
                let n = times.get(id).copied().unwrap_or(1);
                (n > 1).then(|| DuplicateId { id: id.clone(), times: n, file: file.to_path_buf() })
            })
            .collect();
        Self { ids, duplicates }
    }
}

/// Ids of a split, each once (see [`read_split_list`] for the repeated ones).
pub fn read_split(root: &Path, split: &str) -> Result<Vec<String>> {
    read_split_list(root, split).map(|list| list.ids)
}

/// Ids of a split, each once, with the ids its file repeats. `trainval` falls back to
/// `train` ∪ `val` (sorted) when its own list is absent.
pub fn read_split_list(root: &Path, split: &str) -> Result<SplitList> {
    let path = split_file(root, split);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let list = SplitList::from_listed(parse_split(&text), &path);
            if list.ids.is_empty() {
                return Err(DataError::EmptySplit { split: split.into(), path });
            }
            Ok(list)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if split == "trainval"
                && let (Ok(train), Ok(val)) = (read_split_list(root, "train"), read_split_list(root, "val"))
            {
                return Ok(union_of(train, val));
            }
            Err(DataError::MissingSplit { split: split.into(), path, available: available_splits(root) })
        }
        Err(e) => Err(DataError::io(path, e)),
    }
}

/// The sorted union of two lists; an id in both is not a repeat (the lists are two files), but
/// each file's own repeats are kept.
fn union_of(mut a: SplitList, b: SplitList) -> SplitList {
    a.ids.extend(b.ids);
    a.ids.sort();
    a.ids.dedup();
    a.duplicates.extend(b.duplicates);
    a
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
    fn a_byte_order_mark_is_not_part_of_the_first_id() {
        assert_eq!(parse_split("\u{feff}2007_000032\r\n2007_000039\r\n"), ["2007_000032", "2007_000039"]);
        let ids = parse_split("\u{feff}/JPEGImages/2008_000001.jpg /SegmentationClassAug/2008_000001.png\n");
        assert_eq!(ids, ["2008_000001"]);
    }

    #[test]
    fn repeated_ids_are_kept_once_in_first_seen_order_and_reported() {
        let file = Path::new("VOC2012/ImageSets/Segmentation/train.txt");
        let list = SplitList::from_listed(parse_split("b\na\nb\nc\na\nb\n"), file);
        assert_eq!(list.ids, ["b", "a", "c"]);
        let dup = |id: &str, times| DuplicateId { id: id.into(), times, file: file.into() };
        assert_eq!(list.duplicates, [dup("b", 3), dup("a", 2)]);
        assert!(SplitList::from_listed(parse_split("a\nb\n"), file).duplicates.is_empty());
    }

    #[test]
    fn read_split_uses_each_id_once_and_read_split_list_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(SPLIT_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("train.txt"), "\u{feff}x\ny\nx\n").unwrap();
        std::fs::write(dir.join("val.txt"), "y\nz\nz\n").unwrap();
        assert_eq!(read_split(tmp.path(), "train").unwrap(), ["x", "y"]);
        let list = read_split_list(tmp.path(), "train").unwrap();
        assert_eq!(list.duplicates, [DuplicateId { id: "x".into(), times: 2, file: dir.join("train.txt") }]);
        // The trainval fallback: an id in both files is fine, each file's own repeats are kept.
        let list = read_split_list(tmp.path(), "trainval").unwrap();
        assert_eq!(list.ids, ["x", "y", "z"]);
        let repeated: Vec<(&str, &Path)> = list.duplicates.iter().map(|d| (d.id.as_str(), d.file.as_path())).collect();
        assert_eq!(repeated, [("x", dir.join("train.txt").as_path()), ("z", dir.join("val.txt").as_path())]);
    }

    #[test]
    fn a_file_or_archive_given_as_the_dataset_folder_says_what_to_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let list = tmp.path().join("train.txt");
        std::fs::write(&list, "a\n").unwrap();
        let msg = find_root(&list).unwrap_err().to_string();
        assert!(msg.contains("train.txt") && msg.contains("is a file, not a folder"), "{msg}");
        assert!(msg.contains("the folder that contains VOCdevkit"), "{msg}");
        let tar = tmp.path().join("VOCtrainval_11-May-2012.tar");
        std::fs::write(&tar, "not really").unwrap();
        let msg = find_root(&tar).unwrap_err().to_string();
        assert!(msg.contains("is an archive, not a folder: extract it first"), "{msg}");
        let msg = find_root(&tmp.path().join("nope")).unwrap_err().to_string();
        assert!(msg.contains("no such file or folder"), "{msg}");
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
