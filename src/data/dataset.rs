//! A split of a segmentation dataset (VOC, Cityscapes, ADE20K, CamVid or a plain image/mask folder) as a list of image/mask file pairs,
//! decoded on demand into an RGB image and a class mask.

use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::classes::{CAMVID_CLASSES, CAMVID_VOID, ClassSet};
use super::error::{DataError, Result};
use super::mask::{LabelEncoding, Mask, read_mask};
use super::{ade20k, camvid, cityscapes, folder, image::read_rgb, voc};

/// The dataset folders segdistill opens, in words: for help texts and the app's dataset field.
pub const DATASET_FOLDER_HELP: &str = "Dataset folder: a VOCdevkit or VOC2012 folder (or a parent), a Cityscapes \
     root, ADE20K's ADEChallengeData2016, SegNet's CamVid folder (or their parents), or a plain folder with \
     images/, masks/ and classes.txt";

/// Which on-disk layout a dataset uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    Voc,
    Cityscapes,
    /// A plain folder: `images/`, `masks/`, a classes file and optional split lists.
    Folder,
    /// ADE20K SceneParsing (`ADEChallengeData2016`): 150 classes, mask value 0 ignored.
    Ade20k,
    /// CamVid in SegNet's layout: 11 classes, mask value 11 void.
    Camvid,
}

impl DatasetKind {
    /// A plain folder if it has `images/` and `masks/`, Cityscapes if it (or a child) has
    /// `leftImg8bit/`, ADE20K if it (or its `ADEChallengeData2016/`) has `images/training` or
    /// `images/validation` beside `annotations/`, CamVid if it (or its `CamVid/`) has `train/`
    /// beside `trainannot/`, else VOC.
    pub fn detect(path: &Path) -> Self {
        if folder::looks_like_folder(path) {
            Self::Folder
        } else if cityscapes::looks_like_cityscapes(path) {
            Self::Cityscapes
        } else if ade20k::looks_like_ade20k(path) {
            Self::Ade20k
        } else if camvid::looks_like_camvid(path) {
            Self::Camvid
        } else {
            Self::Voc
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Voc => "voc",
            Self::Cityscapes => "cityscapes",
            Self::Folder => "folder",
            Self::Ade20k => "ade20k",
            Self::Camvid => "camvid",
        }
    }

    /// The fixed classes of a layout; `None` for a folder, whose classes file names them.
    pub fn classes(self) -> Option<ClassSet> {
        match self {
            Self::Voc => Some(ClassSet::voc()),
            Self::Cityscapes => Some(ClassSet::cityscapes()),
            Self::Folder => None,
            Self::Ade20k => Some(ClassSet::ade20k()),
            Self::Camvid => Some(ClassSet::camvid()),
        }
    }

    /// How this layout's mask files encode labels; `None` for a folder (see its classes file).
    pub fn label_encoding(self) -> Option<LabelEncoding> {
        match self {
            Self::Voc => Some(LabelEncoding::VocIndex { num_classes: 21 }),
            Self::Cityscapes => Some(LabelEncoding::CityscapesLabelIds),
            Self::Folder => None,
            Self::Ade20k => Some(LabelEncoding::ReduceZeroLabel { num_classes: ade20k::NUM_CLASSES }),
            Self::Camvid => {
                Some(LabelEncoding::WithVoid { num_classes: CAMVID_CLASSES.len() as u8, void: CAMVID_VOID })
            }
        }
    }

    /// The split used for validation by default.
    pub fn default_val_split(self) -> &'static str {
        "val"
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one sample's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleFiles {
    pub id: String,
    pub image: PathBuf,
    pub mask: PathBuf,
}

impl SampleFiles {
    /// The error to report when a decoded image and mask differ in size.
    pub fn size_mismatch(&self, image: &RgbImage, mask: &Mask) -> Option<DataError> {
        (image.dimensions() != (mask.width, mask.height)).then(|| DataError::SizeMismatch {
            image: self.image.clone(),
            mask: self.mask.clone(),
            image_w: image.width(),
            image_h: image.height(),
            mask_w: mask.width,
            mask_h: mask.height,
        })
    }
}

/// A decoded sample.
#[derive(Clone, Debug)]
pub struct Sample {
    pub id: String,
    pub image: RgbImage,
    pub mask: Mask,
}

/// One split of a dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub kind: DatasetKind,
    /// The folder the layout is rooted at (`…/VOC2012`, or the one holding `leftImg8bit/`).
    pub root: PathBuf,
    pub split: String,
    pub samples: Vec<SampleFiles>,
    classes: ClassSet,
    /// A folder dataset's classes file and file listing.
    folder: Option<folder::FolderInfo>,
    /// False for images without masks ([`Dataset::without_masks`]): distillation reads them,
    /// nothing that needs labels does.
    pub has_masks: bool,
}

impl Dataset {
    /// Opens a split; `kind = None` detects the layout. Files are listed, not read: use
    /// [`Dataset::load`] per sample (or `check-data`) to find broken ones.
    pub fn open(path: &Path, kind: Option<DatasetKind>, split: &str) -> Result<Self> {
        Self::open_with(path, kind, split, folder::DEFAULT_VAL_FRACTION)
    }

    /// [`Dataset::open`], with the share of a folder dataset that goes to `val` when the folder
    /// has no split lists yet (the split is then written down into the folder).
    pub fn open_with(path: &Path, kind: Option<DatasetKind>, split: &str, val_fraction: f64) -> Result<Self> {
        let kind = kind.unwrap_or_else(|| DatasetKind::detect(path));
        let (root, samples, folder_info) = match kind {
            DatasetKind::Voc => {
                let root = voc::find_root(path)?;
                let samples = voc::samples(&root, split)?;
                (root, samples, None)
            }
            DatasetKind::Cityscapes => {
                let root = cityscapes::find_root(path)?;
                let samples = cityscapes::samples(&root, split)?;
                (root, samples, None)
            }
            DatasetKind::Folder => {
                let root = folder::find_root(path)?;
                let (samples, info) = folder::open(&root, split, val_fraction)?;
                (root, samples, Some(info))
            }
            DatasetKind::Ade20k => {
                let root = ade20k::find_root(path)?;
                let samples = ade20k::samples(&root, split)?;
                (root, samples, None)
            }
            DatasetKind::Camvid => {
                let root = camvid::find_root(path)?;
                let samples = camvid::samples(&root, split)?;
                (root, samples, None)
            }
        };
        let classes = match &folder_info {
            Some(info) => info.classes.class_set(),
            None => kind.classes().unwrap_or_else(ClassSet::voc),
        };
        Ok(Self { kind, root, split: split.to_string(), samples, classes, folder: folder_info, has_masks: true })
    }

    /// Images without masks (`samples[..].mask` is empty), named by `split`, with the classes of
    /// the labelled data they are trained beside. [`Dataset::load`] gives each image a mask of
    /// class 0 (void where augmentation pads), which the trainer marks as unlabelled: see
    /// [`crate::data::unlabeled`].
    pub fn without_masks(
        kind: DatasetKind,
        root: PathBuf,
        split: &str,
        samples: Vec<SampleFiles>,
        classes: ClassSet,
    ) -> Self {
        Self { kind, root, split: split.to_string(), samples, classes, folder: None, has_masks: false }
    }

    /// A folder dataset's classes file and file listing (`None` for VOC and Cityscapes).
    pub fn folder_info(&self) -> Option<&folder::FolderInfo> {
        self.folder.as_ref()
    }

    /// Reads a mask file the way this dataset's masks are encoded.
    pub fn read_mask_file(&self, path: &Path) -> Result<Mask> {
        match (&self.folder, self.kind.label_encoding()) {
            (Some(info), _) => folder::read_mask(path, &info.classes),
            (None, Some(encoding)) => read_mask(path, encoding),
            (None, None) => Err(DataError::decode(path, "no classes known for this dataset")),
        }
    }

    /// A digest of what this split holds: its ids in order, each image file's length and each
    /// mask's bytes (masks are small; photos are only measured). It tells a moved or copied
    /// dataset from a different one, so a run can follow its data to a new place.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let per_sample = crate::util::par::par_map(self.samples.len(), |i| {
            let s = &self.samples[i];
            let mut h = sha2::Sha256::new();
            h.update(s.id.as_bytes());
            h.update([0]);
            h.update(std::fs::metadata(&s.image).map_or(u64::MAX, |m| m.len()).to_le_bytes());
            match std::fs::read(&s.mask) {
                Ok(bytes) => h.update(sha2::Sha256::digest(&bytes)),
                Err(_) => h.update(b"no mask"),
            }
            h.finalize()
        });
        let mut h = sha2::Sha256::new();
        h.update(self.split.as_bytes());
        for d in per_sample {
            h.update(d);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn classes(&self) -> &ClassSet {
        &self.classes
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Splits available next to this one.
    pub fn available_splits(&self) -> Vec<String> {
        match self.kind {
            DatasetKind::Voc => voc::available_splits(&self.root),
            DatasetKind::Cityscapes => cityscapes::available_splits(&self.root),
            DatasetKind::Folder => folder::available_splits(&self.root),
            DatasetKind::Ade20k => ade20k::available_splits(&self.root),
            DatasetKind::Camvid => camvid::available_splits(&self.root),
        }
    }

    /// Keeps only samples whose image and mask files both exist; returns the ids dropped.
    pub fn retain_present(&mut self) -> Vec<String> {
        let mut dropped = Vec::new();
        let has_masks = self.has_masks;
        self.samples.retain(|s| {
            let ok = s.image.is_file() && (!has_masks || s.mask.is_file());
            if !ok {
                dropped.push(s.id.clone());
            }
            ok
        });
        dropped
    }

    /// Keeps the first `n` samples (for quick runs).
    pub fn truncate(&mut self, n: usize) {
        self.samples.truncate(n);
    }

    pub fn load_image(&self, index: usize) -> Result<RgbImage> {
        let s = &self.samples[index];
        if !s.image.is_file() {
            return Err(DataError::MissingFile { what: "image", id: s.id.clone(), path: s.image.clone() });
        }
        read_rgb(&s.image)
    }

    pub fn load_mask(&self, index: usize) -> Result<Mask> {
        let s = &self.samples[index];
        if !s.mask.is_file() {
            return Err(DataError::MissingFile { what: "mask", id: s.id.clone(), path: s.mask.clone() });
        }
        self.read_mask_file(&s.mask)
    }

    /// Decodes sample `index`, checking that image and mask have the same size.
    pub fn load(&self, index: usize) -> Result<Sample> {
        let s = &self.samples[index];
        let image = self.load_image(index)?;
        if !self.has_masks {
            let mask = Mask::filled(image.width(), image.height(), 0);
            return Ok(Sample { id: s.id.clone(), image, mask });
        }
        let mask = self.load_mask(index)?;
        if let Some(err) = s.size_mismatch(&image, &mask) {
            return Err(err);
        }
        Ok(Sample { id: s.id.clone(), image, mask })
    }
}
