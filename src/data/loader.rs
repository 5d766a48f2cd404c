//! Batching on worker threads, ahead of the consumer, through a bounded queue.
//!
//! Workers claim batch numbers from a shared counter and build whole batches; the consumer
//! reorders them, so batches come out in the same order whatever the thread timing. Each sample's
//! randomness comes from `Rng::for_item(seed, epoch, index)`: a seeded epoch is the same with 1 or
//! 8 workers. Dropping the loader stops the workers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, bounded};

use super::classes::VOID;
use super::dataset::Dataset;
use super::error::{DataError, Result};
use super::transforms::{Augment, Geometry, normalize_into};
use crate::util::Rng;

/// A batch of normalised images and masks, host-side.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Normalised images, (B, 3, H, W) row-major.
    pub images: Vec<f32>,
    /// Class masks, (B, H, W); 255 = void and padding.
    pub masks: Vec<u8>,
    pub batch_size: usize,
    pub height: usize,
    pub width: usize,
    /// Dataset index of each item.
    pub indices: Vec<usize>,
    pub ids: Vec<String>,
    /// How each item was cut from its source image.
    pub geometries: Vec<Geometry>,
    /// Samples of this batch left out because their files could not be used: (dataset index,
    /// message naming the file). The batch holds the others (possibly none).
    pub skipped: Vec<(usize, String)>,
}

/// Builds one batch from dataset indices. Implemented by [`SegmentationBatches`]; other sources
/// (e.g. batches that carry cached teacher outputs) implement it too.
pub trait BatchSource: Send + Sync + 'static {
    type Item: Send + 'static;
    /// Number of items (dataset samples) the source can batch.
    fn num_items(&self) -> usize;
    fn make_batch(&self, indices: &[usize], epoch: u64, seed: u64) -> Result<Self::Item>;
}

/// Decodes, augments and collates samples of a dataset.
pub struct SegmentationBatches {
    pub dataset: Arc<Dataset>,
    pub augment: Augment,
}

impl BatchSource for SegmentationBatches {
    type Item = Batch;

    fn num_items(&self) -> usize {
        self.dataset.len()
    }

    /// A sample whose files cannot be used is left out of the batch and listed in
    /// [`Batch::skipped`]: one bad file costs one sample, not the run. (Each sample's randomness
    /// depends on its own index only, so the others are augmented exactly as before.)
    fn make_batch(&self, indices: &[usize], epoch: u64, seed: u64) -> Result<Batch> {
        let mut items = Vec::with_capacity(indices.len());
        let (mut used, mut skipped) = (Vec::with_capacity(indices.len()), Vec::new());
        for &i in indices {
            match self.dataset.load(i) {
                Ok(sample) => {
                    let mut rng = Rng::for_item(seed, epoch, i as u64);
                    items.push(self.augment.apply(sample, &mut rng));
                    used.push(i);
                }
                Err(e) => skipped.push((i, e.to_string())),
            }
        }
        let mut batch = collate(&used, items);
        batch.skipped = skipped;
        Ok(batch)
    }
}

/// Stacks samples into a batch, padding smaller ones on the right/bottom (image 0 after
/// normalisation, mask void) to the largest height and width present.
pub fn collate(indices: &[usize], items: Vec<(super::dataset::Sample, Geometry)>) -> Batch {
    let height = items.iter().map(|(s, _)| s.image.height()).max().unwrap_or(0) as usize;
    let width = items.iter().map(|(s, _)| s.image.width()).max().unwrap_or(0) as usize;
    let b = items.len();
    let mut images = vec![0.0f32; b * 3 * height * width];
    let mut masks = vec![VOID; b * height * width];
    let mut ids = Vec::with_capacity(b);
    let mut geometries = Vec::with_capacity(b);
    for (k, (sample, geom)) in items.into_iter().enumerate() {
        let (w, h) = (sample.image.width() as usize, sample.image.height() as usize);
        let chw = {
            let mut v = vec![0.0; 3 * w * h];
            normalize_into(&sample.image, &mut v);
            v
        };
        for c in 0..3 {
            for y in 0..h {
                let dst = ((k * 3 + c) * height + y) * width;
                images[dst..dst + w].copy_from_slice(&chw[(c * h + y) * w..(c * h + y + 1) * w]);
            }
        }
        for y in 0..h {
            let dst = (k * height + y) * width;
            masks[dst..dst + w].copy_from_slice(&sample.mask.data[y * w..(y + 1) * w]);
        }
        ids.push(sample.id);
        geometries.push(geom);
    }
    Batch {
        images,
        masks,
        batch_size: b,
        height,
        width,
        indices: indices.to_vec(),
        ids,
        geometries,
        skipped: Vec::new(),
    }
}

/// How a loader walks the data.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub shuffle: bool,
    /// Drop a last, smaller batch (training with batch norm dislikes a batch of 1).
    pub drop_last: bool,
    pub workers: usize,
    /// Batches buffered ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
}

impl LoaderConfig {
    pub fn train(batch_size: usize, seed: u64) -> Self {
        let workers = crate::util::available_threads();
        Self { batch_size, shuffle: true, drop_last: true, workers, prefetch: 2 * workers, seed }
    }

    pub fn eval(batch_size: usize) -> Self {
        let workers = crate::util::available_threads();
        Self { batch_size, shuffle: false, drop_last: false, workers, prefetch: 2 * workers, seed: 0 }
    }
}

/// The dataset order of one epoch: identity, or a shuffle seeded by (seed, epoch).
pub fn epoch_order(len: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if shuffle {
        Rng::for_item(seed, epoch, u64::MAX).shuffle(&mut order);
    }
    order
}

/// Number of batches an epoch of `len` items yields.
pub fn batches_per_epoch(len: usize, batch_size: usize, drop_last: bool) -> usize {
    let bs = batch_size.max(1);
    if drop_last { len / bs } else { len.div_ceil(bs) }
}

/// Iterator over one epoch's batches, produced on worker threads.
pub struct Loader<S: BatchSource> {
    rx: Option<Receiver<(usize, Result<S::Item>)>>,
    pending: BTreeMap<usize, Result<S::Item>>,
    next_batch: usize,
    num_batches: usize,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl<S: BatchSource> Loader<S> {
    pub fn new(source: Arc<S>, config: &LoaderConfig, epoch: u64) -> Self {
        Self::with_order(source, config, epoch, None)
    }

    /// Like [`Loader::new`], optionally skipping the first `skip_batches` batches of the epoch
    /// (to resume mid-epoch without decoding what was already seen).
    pub fn with_order(source: Arc<S>, config: &LoaderConfig, epoch: u64, skip_batches: Option<usize>) -> Self {
        let order = Arc::new(epoch_order(source.num_items(), config.shuffle, config.seed, epoch));
        let bs = config.batch_size.max(1);
        let num_batches = batches_per_epoch(order.len(), bs, config.drop_last);
        let first = skip_batches.unwrap_or(0).min(num_batches);
        let (tx, rx) = bounded(config.prefetch.max(1));
        let counter = Arc::new(AtomicUsize::new(first));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..config.workers.max(1))
            .map(|w| {
                let (tx, counter, stop, order, source) =
                    (tx.clone(), counter.clone(), stop.clone(), order.clone(), source.clone());
                let seed = config.seed;
                std::thread::Builder::new()
                    .name(format!("loader-{w}"))
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            let b = counter.fetch_add(1, Ordering::Relaxed);
                            if b >= num_batches {
                                break;
                            }
                            let end = ((b + 1) * bs).min(order.len());
                            let result = source.make_batch(&order[b * bs..end], epoch, seed);
                            if tx.send((b, result)).is_err() {
                                break; // the consumer is gone
                            }
                        }
                    })
                    .expect("spawning a loader thread")
            })
            .collect();
        Self { rx: Some(rx), pending: BTreeMap::new(), next_batch: first, num_batches, stop, workers }
    }

    pub fn num_batches(&self) -> usize {
        self.num_batches
    }
}

impl<S: BatchSource> Iterator for Loader<S> {
    type Item = Result<S::Item>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next_batch >= self.num_batches {
            return None;
        }
        loop {
            if let Some(item) = self.pending.remove(&self.next_batch) {
                self.next_batch += 1;
                return Some(item);
            }
            match self.rx.as_ref()?.recv() {
                Ok((b, item)) => {
                    self.pending.insert(b, item);
                }
                Err(_) => {
                    self.next_batch = self.num_batches;
                    return Some(Err(DataError::decode(
                        "<data loader>",
                        "a loader thread stopped unexpectedly (see the log above)",
                    )));
                }
            }
        }
    }
}

impl<S: BatchSource> Drop for Loader<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.take(); // unblocks workers waiting on a full queue
        for w in self.workers.drain(..) {
            w.join().ok(); // a panicked worker has already reported through the channel closing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Numbers(usize);

    impl BatchSource for Numbers {
        type Item = Vec<usize>;
        fn num_items(&self) -> usize {
            self.0
        }
        fn make_batch(&self, indices: &[usize], _epoch: u64, _seed: u64) -> Result<Vec<usize>> {
            // Uneven work so workers finish out of order.
            std::thread::sleep(std::time::Duration::from_millis((indices[0] % 3) as u64));
            Ok(indices.to_vec())
        }
    }

    #[test]
    fn batches_come_in_order_whatever_the_worker_count() {
        let src = Arc::new(Numbers(23));
        let mut results = Vec::new();
        for workers in [1, 2, 4] {
            let cfg = LoaderConfig { batch_size: 4, shuffle: true, drop_last: false, workers, prefetch: 2, seed: 9 };
            let batches: Vec<Vec<usize>> = Loader::new(src.clone(), &cfg, 3).map(|b| b.unwrap()).collect();
            assert_eq!(batches.len(), 6);
            let mut all: Vec<usize> = batches.concat();
            results.push(batches);
            all.sort();
            assert_eq!(all, (0..23).collect::<Vec<_>>(), "every item once");
        }
        assert_eq!(results[0], results[1]);
        assert_eq!(results[0], results[2]);
    }

    #[test]
    fn drop_last_skip_and_early_drop() {
        let src = Arc::new(Numbers(10));
        let cfg = LoaderConfig { batch_size: 4, shuffle: false, drop_last: true, workers: 2, prefetch: 1, seed: 0 };
        let all: Vec<_> = Loader::new(src.clone(), &cfg, 0).map(|b| b.unwrap()).collect();
        assert_eq!(all, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
        let skipped: Vec<_> = Loader::with_order(src.clone(), &cfg, 0, Some(1)).map(|b| b.unwrap()).collect();
        assert_eq!(skipped, vec![vec![4, 5, 6, 7]]);
        let mut l = Loader::new(src, &cfg, 0);
        l.next();
        drop(l); // must not hang with workers blocked on a full queue
    }

    #[test]
    fn epochs_shuffle_differently_but_repeat_per_seed() {
        assert_eq!(epoch_order(50, true, 1, 0), epoch_order(50, true, 1, 0));
        assert_ne!(epoch_order(50, true, 1, 0), epoch_order(50, true, 1, 1));
        assert_eq!(epoch_order(5, false, 1, 3), vec![0, 1, 2, 3, 4]);
    }
}
