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
use crate::model::{Model, ModelKind, load_for_inference};
use crate::train::metrics::{ConfusionMatrix, score_image};
use crate::train::predict::predict;
use crate::train::validate::{DecodedSamples, usable_sample};

/// A mask stored PNG-compressed.
#[derive(Clone, Debug)]
pub struct PackedMask(Vec<u8>);

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
#[derive(Clone, Debug)]
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

/// What to compute.
#[derive(Clone, Debug)]
pub struct BrowseRequest {
    pub dataset: Arc<Dataset>,
    pub student: Option<(ModelKind, PathBuf)>,
    pub teacher: Option<(ModelKind, PathBuf)>,
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

fn run(req: &BrowseRequest, stop: &AtomicBool, tx: &Sender<BrowseMsg>, wake: &dyn Fn()) -> anyhow::Result<()> {
    let classes = req.dataset.num_classes();
    let student = match &req.student {
        Some((kind, path)) => Some(load_for_inference(*kind, path, &req.device)?.model),
        None => None,
    };
    let teacher = match &req.teacher {
        Some((kind, path)) => Some(load_for_inference(*kind, path, &req.device)?.model),
        None => None,
    };
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
            student: student.as_ref().map(|m| view(m, &sample, req.resize, &req.device, classes)).transpose()?,
            teacher: teacher.as_ref().map(|m| view(m, &sample, req.resize, &req.device, classes)).transpose()?,
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

    #[test]
    fn packed_masks_round_trip() {
        let m = Mask::new(3, 2, vec![0, 1, 255, 20, 7, 7]);
        assert_eq!(PackedMask::pack(&m).unpack().unwrap(), m);
    }
}
