//! Predictions for the Browse tab, computed on a worker thread and streamed back image by image:
//! ground truth, student and teacher masks, per-image scores and confusions, and a thumbnail.
//! Masks are kept PNG-compressed (a few kB each) so a whole VOC val split fits in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;
use crossbeam_channel::{Receiver, Sender, unbounded};
use image::RgbImage;

use crate::data::loader::{Loader, LoaderConfig};
use crate::data::mask::{LabelEncoding, decode_label_png, encode_palette_png, labels_to_mask};
use crate::data::transforms::{Resize, resize_image};
use crate::data::{Dataset, Mask, Sample};
use crate::metrics::{ConfusionMatrix, score_image};
use crate::model::{Model, ModelKind, load_for_inference};
use crate::train::predict::predict;
use crate::train::validate::{DecodedSamples, usable_sample};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// A mask stored PNG-compressed (base64 text in the prediction cache).
#[derive(Clone, Debug, PartialEq)]
pub struct PackedMask(Vec<u8>);

impl Serialize for PackedMask {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for PackedMask {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text).map(PackedMask).map_err(serde::de::Error::custom)
    }
}

impl PackedMask {
    pub fn pack(mask: &Mask) -> Self {
        Self(encode_palette_png(mask, &crate::data::classes::voc_palette()).unwrap_or_default())
    }

    pub fn unpack(&self) -> Option<Mask> {
        let img = decode_label_png(&self.0, Path::new("<memory>")).ok()?;
        labels_to_mask(img, LabelEncoding::Plain { num_classes: 255 }, Path::new("<memory>")).ok()
    }
}

/// One model's prediction on an image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelView {
    pub mask: PackedMask,
    /// mIoU over the classes in this image's target or prediction.
    pub miou: f64,
    /// Non-zero (target, prediction, pixels) cells of this image's confusion matrix.
    pub confusions: Vec<(u8, u8, u32)>,
}

/// Everything the Browse tab shows about one image.
#[derive(Clone, Debug)]
pub struct BrowseItem {
    /// Index in the dataset split.
    pub index: usize,
    pub id: String,
    pub width: u32,
    pub height: u32,
    pub thumbnail: RgbImage,
    pub ground_truth: PackedMask,
    /// Classes present in the ground truth.
    pub classes: Vec<u8>,
    pub student: Option<ModelView>,
    pub teacher: Option<ModelView>,
}

pub enum BrowseMsg {
    Started {
        total: usize,
    },
    Item(Box<BrowseItem>),
    /// A problem with one image (skipped) or with the setup (the job ends).
    Error(String),
    Done,
}

/// What the predictions of one model on one split depend on: a cache file per key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ViewKey {
    model: ModelKind,
    weights: PathBuf,
    weights_len: u64,
    weights_modified_ns: u128,
    dataset: PathBuf,
    split: String,
    resize: String,
    classes: usize,
}

/// One model's predictions on a split, kept between starts (the Browse tab would otherwise run
/// the models over the whole split on every start). Written atomically every few dozen images and
/// at the end; a damaged or stale file is simply recomputed.
struct ViewCache {
    path: PathBuf,
    key: ViewKey,
    views: std::collections::BTreeMap<String, ModelView>,
    unsaved: usize,
}

#[derive(Serialize, Deserialize)]
struct ViewCacheFile {
    key: ViewKey,
    views: std::collections::BTreeMap<String, ModelView>,
}

impl ViewCache {
    fn open(dir: &Path, model: ModelKind, weights: &Path, dataset: &Dataset, resize: Resize) -> Option<Self> {
        let meta = std::fs::metadata(weights).ok()?;
        let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
        let key = ViewKey {
            model,
            weights: crate::util::fs::absolute(weights),
            weights_len: meta.len(),
            weights_modified_ns: modified.as_nanos(),
            dataset: crate::util::fs::absolute(&dataset.root),
            split: dataset.split.clone(),
            resize: format!("{resize:?}"),
            classes: dataset.num_classes(),
        };
        let json = serde_json::to_vec(&key).ok()?;
        let hash = sha2::Sha256::digest(&json);
        let name: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!("{}-{name}.json", model.name()));
        let views = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<ViewCacheFile>(&b).ok())
            .filter(|f| f.key == key)
            .map(|f| f.views)
            .unwrap_or_default();
        Some(Self { path, key, views, unsaved: 0 })
    }

    fn get(&self, id: &str) -> Option<ModelView> {
        self.views.get(id).cloned()
    }

    fn insert(&mut self, id: &str, view: ModelView) {
        self.views.insert(id.to_string(), view);
        self.unsaved += 1;
        if self.unsaved >= 50 {
            self.save();
        }
    }

    /// Best effort: a folder that cannot be written only costs recomputing next time.
    fn save(&mut self) {
        if self.unsaved == 0 {
            return;
        }
        let file = ViewCacheFile { key: self.key.clone(), views: std::mem::take(&mut self.views) };
        if let Ok(json) = serde_json::to_vec(&file)
            && let Some(dir) = self.path.parent()
            && std::fs::create_dir_all(dir).is_ok()
        {
            crate::util::fs::write_atomic(&self.path, &json).ok();
        }
        self.views = file.views;
        self.unsaved = 0;
    }
}

/// A model and where its predictions are cached (none: computed every time).
#[derive(Clone, Debug)]
pub struct BrowseModel {
    pub kind: ModelKind,
    pub weights: PathBuf,
    pub cache_dir: Option<PathBuf>,
}

/// What to compute.
#[derive(Clone, Debug)]
pub struct BrowseRequest {
    pub dataset: Arc<Dataset>,
    pub student: Option<BrowseModel>,
    pub teacher: Option<BrowseModel>,
    pub resize: Resize,
    pub device: Device,
    pub thumbnail_height: u32,
}

/// A running browse job; dropping it stops the worker.
pub struct BrowseJob {
    pub rx: Receiver<BrowseMsg>,
    stop: Arc<AtomicBool>,
}

impl Drop for BrowseJob {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn view(model: &Model, sample: &Sample, resize: Resize, device: &Device, classes: usize) -> anyhow::Result<ModelView> {
    let pred = predict(model, &sample.image, resize, device)?;
    let (score, cm) = score_image(&sample.id, &pred.mask.data, &sample.mask.data, classes);
    Ok(ModelView { mask: PackedMask::pack(&pred.mask), miou: score.miou, confusions: sparse(&cm) })
}

fn sparse(cm: &ConfusionMatrix) -> Vec<(u8, u8, u32)> {
    let n = cm.num_classes();
    (0..n)
        .flat_map(|t| (0..n).map(move |p| (t, p)))
        .filter_map(|(t, p)| {
            let c = cm.get(t, p);
            (c > 0).then_some((t as u8, p as u8, c as u32))
        })
        .collect()
}

/// Starts the worker; `on_message` is called after each message (to wake the UI).
pub fn start(req: BrowseRequest, on_message: impl Fn() + Send + 'static) -> BrowseJob {
    let (tx, rx) = unbounded();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let spawned = std::thread::Builder::new().name("browse".into()).spawn(move || {
        let send = |m: BrowseMsg| {
            tx.send(m).ok(); // the tab went away; the stop flag ends the loop
            on_message();
        };
        if let Err(e) = run(&req, &flag, &tx, &on_message) {
            send(BrowseMsg::Error(format!("{e:#}")));
        }
        send(BrowseMsg::Done);
    });
    if spawned.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    BrowseJob { rx, stop }
}

/// A model as the worker uses it: loaded on first need (a fully cached split never loads it).
struct Predictor<'a> {
    spec: &'a BrowseModel,
    model: Option<Model>,
    cache: Option<ViewCache>,
}

impl<'a> Predictor<'a> {
    fn new(spec: &'a BrowseModel, req: &BrowseRequest) -> Self {
        let cache = spec
            .cache_dir
            .as_deref()
            .and_then(|dir| ViewCache::open(dir, spec.kind, &spec.weights, &req.dataset, req.resize));
        Self { spec, model: None, cache }
    }

    fn view(&mut self, sample: &Sample, req: &BrowseRequest, classes: usize) -> anyhow::Result<ModelView> {
        if let Some(v) = self.cache.as_ref().and_then(|c| c.get(&sample.id)) {
            return Ok(v);
        }
        if self.model.is_none() {
            self.model = Some(load_for_inference(self.spec.kind, &self.spec.weights, &req.device)?.model);
        }
        let model = self.model.as_ref().ok_or_else(|| anyhow::anyhow!("the model did not load"))?;
        let v = view(model, sample, req.resize, &req.device, classes)?;
        if let Some(c) = &mut self.cache {
            c.insert(&sample.id, v.clone());
        }
        Ok(v)
    }
}

impl Drop for Predictor<'_> {
    fn drop(&mut self) {
        if let Some(c) = &mut self.cache {
            c.save();
        }
    }
}

fn run(req: &BrowseRequest, stop: &AtomicBool, tx: &Sender<BrowseMsg>, wake: &dyn Fn()) -> anyhow::Result<()> {
    let classes = req.dataset.num_classes();
    // Weights that do not load are reported before any image is shown.
    for spec in req.student.iter().chain(&req.teacher) {
        anyhow::ensure!(spec.weights.is_file(), "{} is not a file", spec.weights.display());
    }
    let mut student = req.student.as_ref().map(|s| Predictor::new(s, req));
    let mut teacher = req.teacher.as_ref().map(|t| Predictor::new(t, req));
    tx.send(BrowseMsg::Started { total: req.dataset.len() }).ok();
    wake();
    let loader = Loader::new(Arc::new(DecodedSamples(req.dataset.clone())), &LoaderConfig::eval(1), 0);
    for (index, sample) in loader.enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let sample = match usable_sample(sample, &req.dataset, index, req.resize) {
            Ok(s) => s,
            Err(problem) => {
                tx.send(BrowseMsg::Error(problem)).ok();
                wake();
                continue;
            }
        };
        let (w, h) = sample.image.dimensions();
        let tw = ((w as f64 * req.thumbnail_height as f64 / h as f64).round() as u32).max(1);
        let item = BrowseItem {
            index,
            id: sample.id.clone(),
            width: w,
            height: h,
            thumbnail: resize_image(&sample.image, tw, req.thumbnail_height),
            ground_truth: PackedMask::pack(&sample.mask),
            classes: {
                let hist = sample.mask.histogram();
                (0..classes.min(255)).filter(|&c| hist[c] > 0).map(|c| c as u8).collect()
            },
            student: student.as_mut().map(|m| m.view(&sample, req, classes)).transpose()?,
            teacher: teacher.as_mut().map(|m| m.view(&sample, req, classes)).transpose()?,
        };
        if tx.send(BrowseMsg::Item(Box::new(item))).is_err() {
            break;
        }
        wake();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn browse_all(req: BrowseRequest) -> Vec<BrowseItem> {
        let job = start(req, || {});
        let mut items = Vec::new();
        for msg in job.rx.iter() {
            match msg {
                BrowseMsg::Item(i) => items.push(*i),
                BrowseMsg::Error(e) => panic!("{e}"),
                BrowseMsg::Done => break,
                BrowseMsg::Started { .. } => {}
            }
        }
        items
    }

    #[test]
    fn predictions_are_cached_per_model_and_recomputed_when_the_weights_change() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::data::demo::DemoConfig { train: 2, val: 3, size: 48, seed: 1, ..Default::default() };
        crate::data::demo::generate(dir.path(), &cfg, &|| {}).unwrap();
        let ds = Dataset::open(&crate::data::demo::voc_root(dir.path()), None, "val").unwrap();
        let weights = dir.path().join("student.safetensors");
        let kind = ModelKind::Mbv3sTiny;
        crate::model::build_trainable(kind, 21, 0, &Device::Cpu).unwrap().varmap.save(&weights).unwrap();
        let cache_dir = dir.path().join("browse");
        let req = BrowseRequest {
            dataset: Arc::new(ds),
            student: Some(BrowseModel { kind, weights: weights.clone(), cache_dir: Some(cache_dir.clone()) }),
            teacher: None,
            resize: Resize::ShorterSide(48),
            device: Device::Cpu,
            thumbnail_height: 16,
        };
        let first = browse_all(req.clone());
        assert_eq!(first.len(), 3);
        let files: Vec<_> = std::fs::read_dir(&cache_dir).unwrap().flatten().map(|e| e.path()).collect();
        assert_eq!(files.len(), 1, "one cache file for the student on this split");
        // Served from the file: an edited score comes back as edited.
        let mut file: ViewCacheFile = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
        let id = first[0].id.clone();
        file.views.get_mut(&id).unwrap().miou = 0.125;
        std::fs::write(&files[0], serde_json::to_vec(&file).unwrap()).unwrap();
        let second = browse_all(req.clone());
        assert_eq!(second[0].student.as_ref().unwrap().miou, 0.125, "read from the cache");
        assert_eq!(second[1].student, first[1].student);
        // New weights (another seed, rewritten in place): computed again, not served stale.
        std::thread::sleep(std::time::Duration::from_millis(20));
        crate::model::build_trainable(kind, 21, 1, &Device::Cpu).unwrap().varmap.save(&weights).unwrap();
        let third = browse_all(req);
        assert_ne!(third[0].student.as_ref().unwrap().miou, 0.125, "stale entries are not used");
    }

    #[test]
    fn packed_masks_round_trip() {
        let m = Mask::new(3, 2, vec![0, 1, 255, 20, 7, 7]);
        assert_eq!(PackedMask::pack(&m).unpack().unwrap(), m);
    }
}
