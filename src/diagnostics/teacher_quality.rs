//! The teacher's own quality (the lab's Step 1): validation mIoU, pixel accuracy and per-class
//! IoU of a teacher file on a dataset split, computed once and cached per (architecture, weights
//! file and its size/date, dataset folder, split, input protocol) in `<runs>/teacher-eval/`, so
//! the app, the report and later starts show it without evaluating again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::data::transforms::Resize;
use crate::data::{Dataset, DatasetKind};
use crate::model::{Model, ModelKind, load_for_inference};
use crate::train::validate::evaluate_while;

/// torchvision's evaluation of its segmentation weights: the shorter side resized to 520.
pub const TORCHVISION_RESIZE: Resize = Resize::ShorterSide(520);

/// What an evaluation was computed on; equal keys share a cache entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualityKey {
    pub model: ModelKind,
    pub weights: PathBuf,
    /// Size and modification time of the weights file: a retrained file is evaluated afresh.
    pub weights_bytes: u64,
    pub weights_modified_s: Option<u64>,
    pub data: PathBuf,
    pub dataset: Option<DatasetKind>,
    pub split: String,
    /// How images are resized before the model (scores are computed on the original masks).
    pub resize: Resize,
    /// Only the split's first N samples (the report follows a run's `--val-limit`).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl QualityKey {
    /// The key for evaluating `weights` now (reads the file's size and date; `None` when the file
    /// is not there).
    pub fn new(
        model: ModelKind,
        weights: &Path,
        data: &Path,
        dataset: Option<DatasetKind>,
        split: &str,
        resize: Resize,
    ) -> Option<Self> {
        let meta = std::fs::metadata(weights).ok().filter(|m| m.is_file())?;
        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        Some(Self {
            model,
            weights: crate::util::fs::absolute(weights),
            weights_bytes: meta.len(),
            weights_modified_s: modified.map(|d| d.as_secs()),
            data: crate::util::fs::absolute(data),
            dataset,
            split: split.to_string(),
            resize,
            limit: None,
        })
    }

    fn file_name(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        let hash = sha2::Sha256::digest(text.as_bytes());
        let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{}-{hex}.json", self.model.name())
    }
}

/// A teacher's scores on a split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeacherQuality {
    pub key: QualityKey,
    pub miou: f64,
    pub pixel_accuracy: f64,
    /// IoU per class (`None`: the class appears in neither masks nor predictions).
    pub per_class_iou: Vec<Option<f64>>,
    pub class_names: Vec<String>,
    /// Images scored (samples that could not be used are left out).
    pub images: usize,
}

impl TeacherQuality {
    /// mIoU below which a teacher is no better than guessing: twice the 1/C that uniform
    /// guessing scores on balanced classes (at most 0.3). A random-weights network scores under it.
    pub fn chance_level(&self) -> f64 {
        (2.0 / self.per_class_iou.len().max(1) as f64).min(0.3)
    }

    pub fn near_chance(&self) -> bool {
        self.miou.is_nan() || self.miou < self.chance_level()
    }
}

/// Where evaluations are cached: `<runs folder>/teacher-eval`.
pub fn cache_dir(runs_dir: &Path) -> PathBuf {
    runs_dir.join("teacher-eval")
}

/// The cached evaluation for `key`, if one was made.
pub fn cached(cache: &Path, key: &QualityKey) -> Option<TeacherQuality> {
    let text = std::fs::read_to_string(cache.join(key.file_name())).ok()?;
    serde_json::from_str::<TeacherQuality>(&text).ok().filter(|q| &q.key == key)
}

/// Evaluates the teacher described by `key` on its split and caches the result; `progress(done,
/// total)` per image; `keep_going` false stops early (`Ok(None)`, nothing cached).
pub fn evaluate_teacher(
    key: &QualityKey,
    cache: &Path,
    device: &Device,
    progress: &dyn Fn(usize, usize),
    keep_going: &dyn Fn() -> bool,
) -> anyhow::Result<Option<TeacherQuality>> {
    let loaded = load_for_inference(key.model, &key.weights, device).context("loading the teacher")?;
    evaluate_loaded(&loaded.model, key, cache, device, progress, keep_going)
}

/// [`evaluate_teacher`] with the teacher already loaded from `key.weights` (the report measures
/// the same model).
pub fn evaluate_loaded(
    model: &Model,
    key: &QualityKey,
    cache: &Path,
    device: &Device,
    progress: &dyn Fn(usize, usize),
    keep_going: &dyn Fn() -> bool,
) -> anyhow::Result<Option<TeacherQuality>> {
    let mut ds = Dataset::open(&key.data, key.dataset, &key.split)?;
    ds.retain_present();
    if let Some(n) = key.limit {
        ds.truncate(n);
    }
    anyhow::ensure!(!ds.is_empty(), "no validation samples in split '{}' of {}", key.split, ds.root.display());
    let class_names = ds.classes().names.clone();
    anyhow::ensure!(
        model.num_classes() == class_names.len(),
        "{} predicts {} classes but {} has {}: not a teacher for this dataset",
        key.weights.display(),
        model.num_classes(),
        key.data.display(),
        class_names.len()
    );
    let Some(outcome) = evaluate_while(model, Arc::new(ds), key.resize, device, progress, keep_going)? else {
        return Ok(None);
    };
    let quality = TeacherQuality {
        key: key.clone(),
        miou: outcome.confusion.mean_iou(),
        pixel_accuracy: outcome.confusion.pixel_accuracy(),
        per_class_iou: outcome.confusion.iou_per_class(),
        class_names,
        images: outcome.images.len(),
    };
    std::fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let path = cache.join(key.file_name());
    crate::util::fs::write_atomic(&path, serde_json::to_string_pretty(&quality)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(quality))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quality(miou: f64, classes: usize) -> TeacherQuality {
        let key = QualityKey {
            model: ModelKind::FcnResnet50,
            weights: "/w.pth".into(),
            weights_bytes: 1,
            weights_modified_s: None,
            data: "/d".into(),
            dataset: None,
            split: "val".into(),
            resize: TORCHVISION_RESIZE,
            limit: None,
        };
        TeacherQuality {
            key,
            miou,
            pixel_accuracy: 0.5,
            per_class_iou: vec![None; classes],
            class_names: vec![],
            images: 1,
        }
    }

    #[test]
    fn near_chance_is_relative_to_the_class_count() {
        assert!(quality(0.05, 21).near_chance());
        assert!(!quality(0.12, 21).near_chance(), "above 2/21");
        assert!(quality(0.25, 2).near_chance(), "two classes: capped at 0.3");
        assert!(quality(f64::NAN, 21).near_chance());
    }

    #[test]
    fn keys_name_distinct_files() {
        let a = quality(0.5, 21).key;
        let b = QualityKey { split: "train".into(), ..a.clone() };
        assert_ne!(a.file_name(), b.file_name());
        assert!(a.file_name().starts_with("fcn-resnet50-"));
    }
}
