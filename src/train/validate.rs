//! Evaluating a model over a dataset split: confusion matrix at the original mask resolution
//! (logits are resized back to each image, the usual protocol), validation loss, per-image
//! scores and the model's inference time.
//!
//! A sample that cannot be used (undecodable file, image and mask sizes differ, unknown label, a
//! giant model input) is left out and reported in [`EvalOutcome::skipped`]: one bad JPEG must not
//! end a training run after a full epoch. Only a split with no usable sample is an error.

use std::sync::Arc;

use candle_core::Device;

use super::predict::{LabelledLoss, input_size, predict_with_loss};
use crate::data::loader::{BatchSource, Loader, LoaderConfig};
use crate::data::transforms::Resize;
use crate::data::{DataError, Dataset, Sample};
use crate::metrics::{ConfusionMatrix, ImageScore, score_image};
use crate::model::Model;

/// Decodes samples on loader threads, one per batch (images differ in size).
pub(crate) struct DecodedSamples(pub(crate) Arc<Dataset>);

impl BatchSource for DecodedSamples {
    type Item = Sample;

    fn num_items(&self) -> usize {
        self.0.len()
    }

    fn make_batch(&self, indices: &[usize], _epoch: u64, _seed: u64) -> Result<Sample, DataError> {
        self.0.load(indices[0])
    }
}

/// The result of evaluating a split.
#[derive(Clone, Debug)]
pub struct EvalOutcome {
    pub confusion: ConfusionMatrix,
    /// Per-image scores, in dataset order (skipped samples left out).
    pub images: Vec<ImageScore>,
    /// Cross-entropy over all labelled pixels of the evaluated samples.
    pub val_loss: f64,
    /// Mean forward time at batch 1, in milliseconds, warm-up images excluded.
    pub ms_per_image: f64,
    /// One message per sample left out of the scores, naming its file and the problem, in
    /// dataset order.
    pub skipped: Vec<String>,
}

/// Images whose timing is discarded (allocator and kernel warm-up).
fn warmup_images(n: usize) -> usize {
    2.min(n / 2)
}

/// Evaluates `model` on every usable sample of `dataset`; `on_image(done, total)` reports
/// progress (skipped samples count as done).
pub fn evaluate(
    model: &Model,
    dataset: Arc<Dataset>,
    resize: Resize,
    device: &Device,
    on_image: &dyn Fn(usize, usize),
) -> anyhow::Result<EvalOutcome> {
    evaluate_while(model, dataset, resize, device, on_image, &|| true)?
        .ok_or_else(|| anyhow::anyhow!("the evaluation was stopped"))
}

/// [`evaluate`] that polls `keep_going` before each image and returns `None` when it said stop.
pub fn evaluate_while(
    model: &Model,
    dataset: Arc<Dataset>,
    resize: Resize,
    device: &Device,
    on_image: &dyn Fn(usize, usize),
    keep_going: &dyn Fn() -> bool,
) -> anyhow::Result<Option<EvalOutcome>> {
    let n = dataset.len();
    let mut tally = Tally::new(model.num_classes(), n);
    let loader = Loader::new(Arc::new(DecodedSamples(dataset.clone())), &LoaderConfig::eval(1), 0);
    for (i, sample) in loader.enumerate() {
        if !keep_going() {
            return Ok(None);
        }
        match usable_sample(sample, &dataset, i, resize) {
            Ok(sample) => tally.add(model, &sample, resize, device)?,
            Err(problem) => tally.skipped.push(problem),
        }
        on_image(i + 1, n);
    }
    tally.finish(&dataset).map(Some)
}

/// Sample `index` of `dataset` if it decoded and its model input has a sane size, else the
/// problem, naming the file.
pub(crate) fn usable_sample(
    sample: Result<Sample, DataError>,
    dataset: &Dataset,
    index: usize,
    resize: Resize,
) -> Result<Sample, String> {
    let sample = sample.map_err(|e| e.to_string())?;
    let (w, h) = sample.image.dimensions();
    if let Err(reason) = input_size(w, h, resize) {
        let file = dataset.samples.get(index).map_or(sample.id.clone(), |f| f.image.display().to_string());
        return Err(format!("{file}: {reason}"));
    }
    Ok(sample)
}

/// Sums over the samples evaluated so far.
struct Tally {
    confusion: ConfusionMatrix,
    images: Vec<ImageScore>,
    loss: LabelledLoss,
    /// Forward time of each evaluated image.
    forward_seconds: Vec<f64>,
    skipped: Vec<String>,
}

impl Tally {
    fn new(classes: usize, samples: usize) -> Self {
        Self {
            confusion: ConfusionMatrix::new(classes),
            images: Vec::with_capacity(samples),
            loss: LabelledLoss::default(),
            forward_seconds: Vec::with_capacity(samples),
            skipped: Vec::new(),
        }
    }

    fn add(&mut self, model: &Model, sample: &Sample, resize: Resize, device: &Device) -> anyhow::Result<()> {
        let (pred, loss) = predict_with_loss(model, &sample.image, &sample.mask, resize, device)?;
        self.forward_seconds.push(pred.forward_seconds);
        self.loss.sum += loss.sum;
        self.loss.pixels += loss.pixels;
        let classes = self.confusion.num_classes();
        let (score, cm) = score_image(&sample.id, &pred.mask.data, &sample.mask.data, classes);
        self.confusion.merge(&cm);
        self.images.push(score);
        Ok(())
    }

    /// The outcome; an error when every sample was skipped.
    fn finish(self, dataset: &Dataset) -> anyhow::Result<EvalOutcome> {
        if self.images.is_empty()
            && let Some(first) = self.skipped.first()
        {
            anyhow::bail!(
                "none of the {} samples of split '{}' in {} could be evaluated (`segdistill check-data` lists every \
                 problem); the first: {first}",
                self.skipped.len(),
                dataset.split,
                dataset.root.display()
            );
        }
        let val_loss = if self.loss.pixels > 0 { self.loss.sum / self.loss.pixels as f64 } else { f64::NAN };
        // Warm-up among the images evaluated, so skipped samples do not leave none timed.
        let timed = &self.forward_seconds[warmup_images(self.forward_seconds.len())..];
        Ok(EvalOutcome {
            confusion: self.confusion,
            images: self.images,
            val_loss,
            ms_per_image: 1e3 * timed.iter().sum::<f64>() / timed.len().max(1) as f64,
            skipped: self.skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::data::Mask;
    use crate::data::demo::{DemoConfig, generate};
    use crate::data::mask::write_palette_png;
    use crate::model::{ModelKind, build_trainable};

    /// A 4-image demo validation split.
    fn demo_val(dir: &std::path::Path) -> Dataset {
        let root =
            generate(dir, &DemoConfig { train: 0, val: 4, size: 40, seed: 3, ..Default::default() }, &|| {}).unwrap();
        Dataset::open(&root, None, "val").unwrap()
    }

    fn untrained_model() -> Model {
        build_trainable(ModelKind::Mbv3sTiny, 21, 1, &Device::Cpu).unwrap().model
    }

    fn run(model: &Model, ds: Dataset) -> anyhow::Result<EvalOutcome> {
        evaluate(model, Arc::new(ds), Resize::ShorterSide(32), &Device::Cpu, &|_, _| {})
    }

    #[test]
    fn bad_samples_are_skipped_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let ds = demo_val(dir.path());
        let files = ds.samples.clone();
        std::fs::write(&files[1].image, b"").unwrap();
        write_palette_png(&Mask::filled(7, 5, 0), &files[2].mask).unwrap();
        let model = untrained_model();
        let progress = Mutex::new(Vec::new());
        let outcome = evaluate(&model, Arc::new(ds.clone()), Resize::ShorterSide(32), &Device::Cpu, &|done, total| {
            progress.lock().unwrap().push((done, total));
        })
        .unwrap();

        assert_eq!(progress.into_inner().unwrap(), [(1, 4), (2, 4), (3, 4), (4, 4)]);
        let ids: Vec<&str> = outcome.images.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, [files[0].id.as_str(), files[3].id.as_str()]);
        let [empty, mismatch] = &outcome.skipped[..] else { panic!("{:?}", outcome.skipped) };
        assert!(empty.contains(&files[1].image.display().to_string()) && empty.contains("empty"), "{empty}");
        assert!(mismatch.contains(&files[2].mask.display().to_string()) && mismatch.contains("7×5"), "{mismatch}");

        // The scores are those of the usable samples alone.
        let mut good = ds;
        good.samples.retain(|s| s.id == files[0].id || s.id == files[3].id);
        let alone = run(&model, good).unwrap();
        assert_eq!(outcome.confusion, alone.confusion);
        assert_eq!(outcome.images, alone.images);
        assert_eq!(outcome.val_loss, alone.val_loss);
        assert!(outcome.val_loss.is_finite() && alone.skipped.is_empty());
        assert!(outcome.ms_per_image > 0.0, "the usable images are timed");
    }

    #[test]
    fn a_split_without_a_usable_sample_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let ds = demo_val(dir.path());
        for s in &ds.samples {
            std::fs::write(&s.image, b"").unwrap();
        }
        let first = ds.samples[0].image.display().to_string();
        let root = ds.root.display().to_string();
        let msg = format!("{:#}", run(&untrained_model(), ds).unwrap_err());
        assert!(msg.contains("'val'") && msg.contains(&root) && msg.contains(&first), "{msg}");
    }
}
