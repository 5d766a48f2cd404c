//! A plain folder of your own data: `images/` and `masks/` matched by file stem, a classes file
//! (`classes.txt` or `classes.json`) and optional split lists (`train.txt`, `val.txt`, one stem
//! per line).
//!
//! Images are JPEG or PNG. Masks are index PNGs (palette or gray: the value is the class), or RGB
//! PNGs mapped back through the class colours. Without split lists a seeded split is drawn from
//! the stems that have both an image and a mask, and written down into the folder so that every
//! later open sees the same split.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::classes::{ClassSet, VOID, voc_color};
use super::dataset::SampleFiles;
use super::error::{DataError, Result};
use super::mask::{LabelEncoding, LabelImage, Mask, RawLabels, labels_to_mask, read_label_png};
use super::voc::{DuplicateId, SplitList, parse_split};

pub const IMAGES_DIR: &str = "images";
pub const MASKS_DIR: &str = "masks";
pub const CLASSES_TXT: &str = "classes.txt";
pub const CLASSES_JSON: &str = "classes.json";
/// Image file extensions read from `images/` (what the `image` crate is built to decode).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];
/// Share of the paired stems that goes to `val` when the folder has no split lists.
pub const DEFAULT_VAL_FRACTION: f64 = 0.2;
/// The seed of the written-down split: fixed, so the same folder always splits the same way.
const SPLIT_SEED: u64 = 0x5E6D_F01D;

/// What to pass as `--data` for a folder dataset, for messages.
const ROOT_HINT: &str = "the folder that holds images/, masks/ and classes.txt";

/// Whether `path` has the folder layout's `images/` and `masks/` folders.
pub fn looks_like_folder(path: &Path) -> bool {
    path.join(IMAGES_DIR).is_dir() && path.join(MASKS_DIR).is_dir()
}

/// The dataset root: `path` itself when it holds `images/` and `masks/`.
pub fn find_root(path: &Path) -> Result<PathBuf> {
    if let Some(e) = super::voc::not_a_folder(path, "folder", ROOT_HINT) {
        return Err(e);
    }
    if looks_like_folder(path) {
        return Ok(path.to_path_buf());
    }
    Err(DataError::NotADataset {
        path: path.into(),
        kind: "folder",
        reason: "no images/ and masks/ folders inside; put the images in images/, the masks (PNG, same file \
                 name stem) in masks/ and the class names in classes.txt, one per line"
            .into(),
    })
}

/// The classes of a folder dataset, as its classes file gives them.
#[derive(Clone, Debug, PartialEq)]
pub struct FolderClasses {
    pub names: Vec<String>,
    pub colors: Vec<[u8; 3]>,
    /// The mask value that marks pixels to ignore (read as void, 255).
    pub ignore: u8,
    /// The classes file they were read from.
    pub file: PathBuf,
}

impl FolderClasses {
    pub fn class_set(&self) -> ClassSet {
        ClassSet { dataset: "folder", names: self.names.clone(), colors: self.colors.clone() }
    }

    pub fn encoding(&self) -> LabelEncoding {
        LabelEncoding::Folder { num_classes: self.names.len() as u8, ignore: self.ignore }
    }
}

/// Reads `classes.json` or `classes.txt` (the JSON one first when both exist).
pub fn read_classes(root: &Path) -> Result<FolderClasses> {
    let json = root.join(CLASSES_JSON);
    let txt = root.join(CLASSES_TXT);
    let (path, is_json) = if json.is_file() {
        (json, true)
    } else if txt.is_file() {
        (txt, false)
    } else {
        return Err(DataError::NotADataset {
            path: root.into(),
            kind: "folder",
            reason: format!(
                "no {CLASSES_TXT} (or {CLASSES_JSON}) inside; write one class name per line into {}, in the order \
                 of their mask values (0, 1, 2, …)",
                root.join(CLASSES_TXT).display()
            ),
        });
    };
    let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| DataError::ClassesFile {
        path: path.clone(),
        line: None,
        reason: "it is not UTF-8 text; save it as plain UTF-8".into(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let (names, colors, ignore) =
        if is_json { parse_classes_json(text, &path)? } else { parse_classes_txt(text, &path)? };
    finish_classes(names, colors, ignore, path)
}

type Parsed = (Vec<String>, Vec<Option<[u8; 3]>>, Option<(u32, Option<usize>)>);

/// `classes.txt`: one class per line, `name` or `name r g b`; an `ignore N` line sets the ignore
/// index; empty lines and lines starting with `#` are skipped.
pub fn parse_classes_txt(text: &str, path: &Path) -> Result<Parsed> {
    let mut names = Vec::new();
    let mut colors = Vec::new();
    let mut ignore = None;
    let bad = |line: usize, reason: String| DataError::ClassesFile { path: path.into(), line: Some(line), reason };
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() == 2 && tokens[0].eq_ignore_ascii_case("ignore") {
            let n = tokens[1].parse::<u32>().map_err(|_| {
                bad(line_no, format!("'{}' is no ignore index; write `ignore N` with N from 0 to 255", tokens[1]))
            })?;
            ignore = Some((n, Some(line_no)));
            continue;
        }
        let numeric: Vec<&str> = tokens.iter().rev().take_while(|t| t.parse::<i64>().is_ok()).copied().collect();
        let (name, color) = match numeric.len() {
            // A single trailing number is part of a name ("zone 2").
            0 | 1 if numeric.len() < tokens.len() => (line.to_string(), None),
            3 if tokens.len() > 3 => {
                let rgb: Vec<u8> = numeric.iter().rev().filter_map(|t| t.parse::<u8>().ok()).collect();
                if rgb.len() != 3 {
                    return Err(bad(line_no, format!("colour values must be 0–255 in '{line}'")));
                }
                (tokens[..tokens.len() - 3].join(" "), Some([rgb[0], rgb[1], rgb[2]]))
            }
            _ if numeric.len() == tokens.len() => {
                return Err(bad(
                    line_no,
                    format!("'{line}' has no class name; write `name` or `name r g b`, one class per line"),
                ));
            }
            n => {
                return Err(bad(
                    line_no,
                    format!("'{line}' ends in {n} number(s); write `name` or `name r g b` (three colour values 0–255)"),
                ));
            }
        };
        names.push(name);
        colors.push(color);
    }
    Ok((names, colors, ignore))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonClasses {
    List(Vec<JsonClass>),
    Object {
        classes: Vec<JsonClass>,
        #[serde(default, alias = "ignore")]
        ignore_index: Option<u32>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonClass {
    Name(String),
    Full {
        name: String,
        #[serde(default, alias = "colour")]
        color: Option<[u8; 3]>,
    },
}

/// `classes.json`: `["name", …]`, `[{"name": …, "color": [r, g, b]}, …]`, or an object
/// `{"classes": [...], "ignore_index": N}`.
pub fn parse_classes_json(text: &str, path: &Path) -> Result<Parsed> {
    let parsed: JsonClasses = serde_json::from_str(text).map_err(|e| DataError::ClassesFile {
        path: path.into(),
        line: Some(e.line()),
        reason: format!(
            "{e}; write a list like [{{\"name\": \"background\", \"color\": [0, 0, 0]}}, …] or \
             {{\"classes\": [...], \"ignore_index\": 255}}"
        ),
    })?;
    let (list, ignore) = match parsed {
        JsonClasses::List(l) => (l, None),
        JsonClasses::Object { classes, ignore_index } => (classes, ignore_index.map(|n| (n, None))),
    };
    let (names, colors) = list
        .into_iter()
        .map(|c| match c {
            JsonClass::Name(n) => (n, None),
            JsonClass::Full { name, color } => (name, color),
        })
        .unzip();
    Ok((names, colors, ignore))
}

fn finish_classes(
    names: Vec<String>,
    colors: Vec<Option<[u8; 3]>>,
    ignore: Option<(u32, Option<usize>)>,
    path: PathBuf,
) -> Result<FolderClasses> {
    let bad = |line: Option<usize>, reason: String| DataError::ClassesFile { path: path.clone(), line, reason };
    if names.len() < 2 {
        return Err(bad(None, format!("it names {} class(es); a dataset needs 2 or more, one per line", names.len())));
    }
    let (ignore, ignore_line) = ignore.unwrap_or((VOID as u32, None));
    if ignore > 255 {
        return Err(bad(ignore_line, format!("ignore index {ignore} is not a mask value; use 0–255")));
    }
    if (ignore as usize) < names.len() {
        return Err(bad(
            ignore_line,
            format!(
                "ignore index {ignore} is the value of class '{}'; use a value above the last class ({})",
                names[ignore as usize],
                names.len() - 1
            ),
        ));
    }
    if names.len() > 255 {
        return Err(bad(None, format!("it names {} classes; at most 255 are supported", names.len())));
    }
    if let Some(i) = names.iter().position(|n| n.trim().is_empty()) {
        return Err(bad(None, format!("class {i} has an empty name")));
    }
    let colors: Vec<[u8; 3]> = colors.iter().enumerate().map(|(i, c)| c.unwrap_or(voc_color(i as u8))).collect();
    let mut seen: HashMap<[u8; 3], usize> = HashMap::new();
    for (i, c) in colors.iter().enumerate() {
        if let Some(j) = seen.insert(*c, i) {
            return Err(bad(
                None,
                format!(
                    "classes '{}' and '{}' have the same colour {c:?}; RGB masks could not tell them apart",
                    names[j], names[i]
                ),
            ));
        }
    }
    Ok(FolderClasses { names, colors, ignore: ignore as u8, file: path })
}

/// Reads a folder dataset's mask: index PNGs as they are, RGB PNGs through the class colours
/// (the void colour (224, 224, 192) of the VOC palette reads as the ignore index).
pub fn read_mask(path: &Path, classes: &FolderClasses) -> Result<Mask> {
    let img = read_label_png(path)?;
    let img = match img.values {
        RawLabels::Rgb(pixels) => {
            let mut table: HashMap<[u8; 3], u8> = HashMap::new();
            table.insert(voc_color(VOID), classes.ignore);
            for (i, c) in classes.colors.iter().enumerate() {
                table.insert(*c, i as u8);
            }
            let mut out = Vec::with_capacity(pixels.len());
            for p in &pixels {
                match table.get(p) {
                    Some(&v) => out.push(v),
                    None => {
                        return Err(DataError::UnknownClassColor {
                            path: path.into(),
                            color: *p,
                            pixels: pixels.iter().filter(|q| *q == p).count(),
                            classes: classes.file.clone(),
                        });
                    }
                }
            }
            LabelImage { width: img.width, height: img.height, values: RawLabels::Index(out) }
        }
        values => LabelImage { values, ..img },
    };
    labels_to_mask(img, classes.encoding(), path)
}

/// The image and mask files of a folder, by stem.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub images: BTreeMap<String, PathBuf>,
    pub masks: BTreeMap<String, PathBuf>,
}

impl Listing {
    /// Stems that have both an image and a mask, sorted.
    pub fn paired(&self) -> Vec<String> {
        self.images.keys().filter(|s| self.masks.contains_key(*s)).cloned().collect()
    }
}

/// Files of `dir` with one of `exts` (case-insensitive), by stem; for a stem with several, the
/// first extension of `exts` wins. Hidden files are skipped.
pub(crate) fn files_by_stem(dir: &Path, exts: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out: BTreeMap<String, (usize, PathBuf)> = BTreeMap::new();
    for entry in rd.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let (Some(stem), Some(ext)) = (path.file_stem(), path.extension()) else { continue };
        let ext = ext.to_string_lossy().to_lowercase();
        let Some(rank) = exts.iter().position(|e| *e == ext) else { continue };
        let stem = stem.to_string_lossy().into_owned();
        match out.get(&stem) {
            Some((r, _)) if *r <= rank => {}
            _ => {
                out.insert(stem, (rank, path));
            }
        }
    }
    Ok(out.into_iter().map(|(k, (_, p))| (k, p)).collect())
}

/// A split of a layout that keeps its images in one folder and each image's mask as
/// `<stem>.png` in another (ADE20K, CamVid): every image with its mask's path (masks are not
/// checked here); a folder without images is an empty split.
pub(crate) fn images_with_png_masks(split: &str, images: &Path, masks: &Path) -> Result<Vec<SampleFiles>> {
    let out: Vec<SampleFiles> = files_by_stem(images, &IMAGE_EXTENSIONS)?
        .into_iter()
        .map(|(id, image)| SampleFiles { mask: masks.join(format!("{id}.png")), id, image })
        .collect();
    if out.is_empty() {
        return Err(DataError::EmptySplit { split: split.into(), path: images.to_path_buf() });
    }
    Ok(out)
}

/// Lists `images/` and `masks/` (masks are PNGs; a JPEG there is listed, to be named as such).
pub fn list_files(root: &Path) -> Result<Listing> {
    Ok(Listing {
        images: files_by_stem(&root.join(IMAGES_DIR), &IMAGE_EXTENSIONS)?,
        masks: files_by_stem(&root.join(MASKS_DIR), &["png", "jpg", "jpeg"])?,
    })
}

pub fn split_file(root: &Path, split: &str) -> PathBuf {
    root.join(format!("{split}.txt"))
}

/// The split lists in the folder: every `*.txt` but the classes file.
pub fn available_splits(root: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(root) else { return Vec::new() };
    let mut v: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".txt")).map(String::from))
        .filter(|n| format!("{n}.txt") != CLASSES_TXT)
        .collect();
    v.sort();
    v
}

/// Writes `train.txt` and `val.txt` when they are absent: without either, a seeded split of the
/// paired stems (`val_fraction` of them to val, at least one when there are two or more); with
/// one of them, the other gets the paired stems it does not list. A folder that cannot be written
/// to keeps the split in memory only (the same split each time, while the files stay the same).
/// Returns the lists as they now stand (stem lists, in order).
pub fn ensure_split(root: &Path, listing: &Listing, val_fraction: f64) -> Result<HashMap<&'static str, Vec<String>>> {
    let read = |name: &str| -> Result<Option<Vec<String>>> {
        let p = split_file(root, name);
        match std::fs::read_to_string(&p) {
            Ok(t) => Ok(Some(parse_split(&t))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DataError::io(p, e)),
        }
    };
    let paired = listing.paired();
    let (train, val) = match (read("train")?, read("val")?) {
        (Some(t), Some(v)) => return Ok(HashMap::from([("train", t), ("val", v)])),
        (Some(t), None) => {
            let v: Vec<String> = paired.iter().filter(|s| !t.contains(*s)).cloned().collect();
            (t, v)
        }
        (None, Some(v)) => {
            let t: Vec<String> = paired.iter().filter(|s| !v.contains(*s)).cloned().collect();
            (t, v)
        }
        (None, None) => seeded_split(&paired, val_fraction),
    };
    for (name, list) in [("train", &train), ("val", &val)] {
        let p = split_file(root, name);
        if !p.exists() {
            let text: String = list.iter().map(|s| format!("{s}\n")).collect();
            // Best effort: a read-only folder still opens, with the same split in memory.
            crate::util::fs::write_atomic(&p, text.as_bytes()).ok();
        }
    }
    Ok(HashMap::from([("train", train), ("val", val)]))
}

/// A seeded split of `stems` (sorted): each list keeps the sorted order.
pub fn seeded_split(stems: &[String], val_fraction: f64) -> (Vec<String>, Vec<String>) {
    let n = stems.len();
    let frac = if val_fraction.is_finite() { val_fraction.clamp(0.0, 1.0) } else { DEFAULT_VAL_FRACTION };
    let mut n_val = (n as f64 * frac).round() as usize;
    if frac > 0.0 && n >= 2 {
        n_val = n_val.clamp(1, n - 1);
    }
    let mut order: Vec<usize> = (0..n).collect();
    crate::util::Rng::new(SPLIT_SEED).shuffle(&mut order);
    let mut is_val = vec![false; n];
    for &i in &order[..n_val.min(n)] {
        is_val[i] = true;
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, s) in stems.iter().enumerate() {
        if is_val[i] { val.push(s.clone()) } else { train.push(s.clone()) }
    }
    (train, val)
}

/// One split's lines: (line number, stem), blank lines skipped.
fn split_lines(text: &str) -> Vec<(usize, String)> {
    text.strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .enumerate()
        .filter_map(|(i, l)| parse_split(l).into_iter().next().map(|s| (i + 1, s)))
        .collect()
}

/// What an open folder dataset holds besides its samples.
#[derive(Clone, Debug)]
pub struct FolderInfo {
    pub classes: Arc<FolderClasses>,
    pub listing: Listing,
}

/// The samples of `split`, and what `check-data` needs to explain the folder. A stem the split
/// lists but neither `images/` nor `masks/` holds is a sample without files (training skips it
/// and says so; check-data names its line).
pub fn open(root: &Path, split: &str, val_fraction: f64) -> Result<(Vec<SampleFiles>, FolderInfo)> {
    let classes = Arc::new(read_classes(root)?);
    let listing = list_files(root)?;
    let written = ensure_split(root, &listing, val_fraction)?;
    let path = split_file(root, split);
    let ids: Vec<String> = match std::fs::read_to_string(&path) {
        Ok(text) => parse_split(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match split {
            "train" | "val" => written[split].clone(),
            "trainval" => {
                let mut all: Vec<String> = written["train"].iter().chain(&written["val"]).cloned().collect();
                all.sort();
                all
            }
            _ => return Err(DataError::MissingSplit { split: split.into(), path, available: available_splits(root) }),
        },
        Err(e) => return Err(DataError::io(path, e)),
    };
    let list = SplitList::from_listed(ids, &path);
    if list.ids.is_empty() {
        return Err(DataError::EmptySplit { split: split.into(), path });
    }
    let samples = list
        .ids
        .iter()
        .map(|id| SampleFiles {
            id: id.clone(),
            image: listing.images.get(id).cloned().unwrap_or_else(|| root.join(IMAGES_DIR).join(format!("{id}.jpg"))),
            mask: listing.masks.get(id).cloned().unwrap_or_else(|| root.join(MASKS_DIR).join(format!("{id}.png"))),
        })
        .collect();
    Ok((samples, FolderInfo { classes, listing }))
}

/// Problems of the folder as a whole, for `check-data`: masks without an image outside the
/// split's `samples` (those in it are reported as missing files of their sample), lines of the
/// split file naming a stem with neither, and stems the split file repeats. Each is `(stem,
/// error)`. Images that no split lists and that have no mask are not problems: they are the
/// folder's unlabelled images (`crate::data::unlabeled`), which `check-data` counts apart.
pub fn folder_problems(
    root: &Path,
    split: &str,
    info: &FolderInfo,
    samples: &[SampleFiles],
) -> Vec<(String, DataError)> {
    let mut out = Vec::new();
    let l = &info.listing;
    let in_split: std::collections::HashSet<&str> = samples.iter().map(|s| s.id.as_str()).collect();
    for (stem, mask) in &l.masks {
        if !l.images.contains_key(stem) && !in_split.contains(stem.as_str()) {
            out.push((
                stem.clone(),
                DataError::MaskWithoutImage { mask: mask.clone(), stem: stem.clone(), images: root.join(IMAGES_DIR) },
            ));
        }
    }
    let path = split_file(root, split);
    if let Ok(text) = std::fs::read_to_string(&path) {
        for (line, id) in split_lines(&text) {
            if !l.images.contains_key(&id) && !l.masks.contains_key(&id) {
                out.push((id.clone(), DataError::SplitNamesMissing { path: path.clone(), line, id }));
            }
        }
        let list = SplitList::from_listed(parse_split(&text), &path);
        out.extend(list.duplicates.iter().map(|d: &DuplicateId| (d.id.clone(), d.to_error())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(text: &str) -> Result<FolderClasses> {
        let p = PathBuf::from("classes.txt");
        let (n, c, i) = parse_classes_txt(text, &p)?;
        finish_classes(n, c, i, p)
    }

    #[test]
    fn classes_txt_names_colours_and_ignore() {
        let c = txt("# my classes\nbackground\ntraffic light 250 170 30\n\nroad\nignore 200\n").unwrap();
        assert_eq!(c.names, ["background", "traffic light", "road"]);
        assert_eq!(c.colors[1], [250, 170, 30]);
        assert_eq!(c.colors[0], voc_color(0));
        assert_eq!(c.ignore, 200);
        assert_eq!(txt("a\nb\n").unwrap().ignore, 255);
    }

    #[test]
    fn bad_classes_lines_are_named_by_number() {
        let e = txt("background\ncar 1 2\n").unwrap_err().to_string();
        assert!(e.contains("classes.txt line 2") && e.contains("car 1 2"), "{e}");
        let e = txt("background\nsky 1 2 300\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("0–255"), "{e}");
        let e = txt("a\n12\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("no class name"), "{e}");
        let e = txt("only\n").unwrap_err().to_string();
        assert!(e.contains("2 or more"), "{e}");
        let e = txt("a\nb\nignore 1\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("'b'"), "{e}");
        let e = txt("a 1 1 1\nb 1 1 1\n").unwrap_err().to_string();
        assert!(e.contains("same colour"), "{e}");
    }

    #[test]
    fn classes_json_forms() {
        let p = PathBuf::from("classes.json");
        let parse = |t: &str| {
            let (n, c, i) = parse_classes_json(t, &p)?;
            finish_classes(n, c, i, p.clone())
        };
        let c = parse(r#"[{"name":"bg","color":[1,2,3]},{"name":"cat"}]"#).unwrap();
        assert_eq!((c.names.len(), c.colors[0], c.ignore), (2, [1, 2, 3], 255));
        let c = parse(r#"{"classes":["a","b","c"],"ignore_index":9}"#).unwrap();
        assert_eq!((c.names.len(), c.ignore), (3, 9));
        let e = parse("[\n{\"name\": 3}\n]").unwrap_err().to_string();
        assert!(e.contains("classes.json line"), "{e}");
    }

    #[test]
    fn seeded_split_is_fixed_and_covers_every_stem() {
        let stems: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        let (t, v) = seeded_split(&stems, 0.2);
        assert_eq!((t.len(), v.len()), (8, 2));
        assert_eq!(seeded_split(&stems, 0.2), (t.clone(), v.clone()));
        let mut all: Vec<String> = t.into_iter().chain(v).collect();
        all.sort();
        assert_eq!(all, stems);
        assert_eq!(seeded_split(&stems[..2], 0.01).1.len(), 1, "val gets at least one");
    }

    #[test]
    fn ignore_index_reads_as_void() {
        let img = LabelImage { width: 3, height: 1, values: RawLabels::Index(vec![0, 1, 7]) };
        let m = labels_to_mask(img, LabelEncoding::Folder { num_classes: 2, ignore: 7 }, Path::new("m.png")).unwrap();
        assert_eq!(m.data, [0, 1, VOID]);
        let img = LabelImage { width: 1, height: 1, values: RawLabels::Index(vec![255]) };
        let e = labels_to_mask(img, LabelEncoding::Folder { num_classes: 2, ignore: 7 }, Path::new("m.png"));
        assert!(e.unwrap_err().to_string().contains("ignore index 7"));
    }
}
