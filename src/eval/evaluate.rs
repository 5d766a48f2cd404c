//! Evaluating a model over a dataset split: confusion matrix at the original mask resolution
//! (logits are resized back to each image, the usual protocol), per-image scores, timing.

use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;

use super::metrics::{ConfusionMatrix, ImageScore, score_image};
use super::predict::predict;
use crate::data::loader::{BatchSource, Loader, LoaderConfig};
use crate::data::transforms::Resize;
use crate::data::{DataError, Dataset, Sample};
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
    /// Mean model time per image (forward + resize back + argmax), in milliseconds.
    pub ms_per_image: f64,
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
    let mut model_seconds = 0.0;
    let loader = Loader::new(Arc::new(DecodedSamples(dataset)), &LoaderConfig::eval(1), 0);
    for (i, sample) in loader.enumerate() {
        let sample = sample?;
        let start = Instant::now();
        let pred = predict(model, &sample.image, resize, device)?;
        model_seconds += start.elapsed().as_secs_f64();
        let (score, cm) = score_image(&sample.id, &pred.mask.data, &sample.mask.data, classes);
        confusion.merge(&cm);
        images.push(score);
        on_image(i + 1, n);
    }
    Ok(EvalOutcome { confusion, images, ms_per_image: 1e3 * model_seconds / n.max(1) as f64 })
}
