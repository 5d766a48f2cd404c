//! Evaluating a model over a dataset split: confusion matrix at the original mask resolution
//! (logits are resized back to each image, the usual protocol), validation loss, per-image
//! scores and the model's inference time.

use std::sync::Arc;

use candle_core::Device;

use super::metrics::{ConfusionMatrix, ImageScore, score_image};
use super::predict::predict;
use crate::data::loader::{BatchSource, Loader, LoaderConfig};
use crate::data::transforms::Resize;
use crate::data::{DataError, Dataset, Sample};
use crate::distill::{Target, ce::cross_entropy};
use crate::model::Model;

/// Decodes samples on loader threads, one per batch (images differ in size).
struct DecodedSamples(Arc<Dataset>);

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
    /// Per-image scores, in dataset order.
    pub images: Vec<ImageScore>,
    /// Cross-entropy over all labelled pixels of the split.
    pub val_loss: f64,
    /// Mean forward time at batch 1, in milliseconds, warm-up images excluded.
    pub ms_per_image: f64,
}

/// Images whose timing is discarded (allocator and kernel warm-up).
fn warmup_images(n: usize) -> usize {
    2.min(n / 2)
}

/// Evaluates `model` on every sample of `dataset`; `on_image(done, total)` reports progress.
pub fn evaluate(
    model: &Model,
    dataset: Arc<Dataset>,
    resize: Resize,
    device: &Device,
    on_image: &dyn Fn(usize, usize),
) -> anyhow::Result<EvalOutcome> {
    let n = dataset.len();
    let classes = model.num_classes();
    let mut confusion = ConfusionMatrix::new(classes);
    let mut images = Vec::with_capacity(n);
    let (mut forward_seconds, mut timed) = (0.0, 0usize);
    let (mut loss_sum, mut labelled) = (0.0, 0usize);
    let loader = Loader::new(Arc::new(DecodedSamples(dataset)), &LoaderConfig::eval(1), 0);
    for (i, sample) in loader.enumerate() {
        let sample = sample?;
        let pred = predict(model, &sample.image, resize, device)?;
        if i >= warmup_images(n) {
            forward_seconds += pred.forward_seconds;
            timed += 1;
        }
        let (w, h) = (sample.mask.width as usize, sample.mask.height as usize);
        let target = Target::new(&sample.mask.data, (1, h, w), None, device)?;
        if target.num_valid > 0 {
            let ce =
                cross_entropy(&pred.full_logits, &target)?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            loss_sum += ce * target.num_valid as f64;
            labelled += target.num_valid;
        }
        let (score, cm) = score_image(&sample.id, &pred.mask.data, &sample.mask.data, classes);
        confusion.merge(&cm);
        images.push(score);
        on_image(i + 1, n);
    }
    Ok(EvalOutcome {
        confusion,
        images,
        val_loss: if labelled > 0 { loss_sum / labelled as f64 } else { f64::NAN },
        ms_per_image: 1e3 * forward_seconds / timed.max(1) as f64,
    })
}
