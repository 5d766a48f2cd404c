//! What the training loop consumes: augmented batches, with the teacher's targets cut from the
//! teacher cache by the loader's workers when a cache is in use.

use std::sync::Arc;

use crate::data::DataError;
use crate::data::loader::{Batch, BatchSource, LoaderConfig, SegmentationBatches, epoch_order};
use crate::distill::teacher_cache::{TeacherCache, TeacherTargets};

/// One training batch and, with a teacher cache, the teacher's targets for exactly these views.
pub struct TrainBatch {
    pub batch: Batch,
    pub teacher: Option<TeacherTargets>,
}

pub struct TrainBatches {
    pub images: SegmentationBatches,
    pub cache: Option<Arc<TeacherCache>>,
}

impl BatchSource for TrainBatches {
    type Item = TrainBatch;

    fn num_items(&self) -> usize {
        self.images.num_items()
    }

    /// Samples whose image or cache entry cannot be used are left out (listed in
    /// [`Batch::skipped`](crate::data::loader::Batch)); the entries are read before the images
    /// so a damaged one costs no decoding.
    fn make_batch(&self, indices: &[usize], epoch: u64, seed: u64) -> Result<TrainBatch, DataError> {
        let Some(cache) = &self.cache else {
            return Ok(TrainBatch { batch: self.images.make_batch(indices, epoch, seed)?, teacher: None });
        };
        let (mut entries, mut usable, mut unusable) = (Vec::new(), Vec::new(), Vec::new());
        for &i in indices {
            match cache.read(i, None) {
                Ok(entry) => {
                    entries.push((i, entry));
                    usable.push(i);
                }
                Err(e) => unusable.push((i, cache.unusable_reason(i).map_or_else(|| e.to_string(), String::from))),
            }
        }
        let mut batch = self.images.make_batch(&usable, epoch, seed)?;
        batch.skipped.extend(unusable);
        // Entries of the samples whose images loaded, in batch order.
        entries.retain(|(i, _)| batch.indices.contains(i));
        let entries: Vec<_> = entries.into_iter().map(|(_, e)| e).collect();
        let items: Vec<_> = batch.indices.iter().copied().zip(batch.geometries.iter().copied()).collect();
        let teacher = cache.targets_from(&entries, &items, (batch.height, batch.width))?;
        Ok(TrainBatch { batch, teacher: Some(teacher) })
    }
}

/// The unlabelled images of each step, as a [`BatchSource`] for one labelled epoch: item `v` of
/// epoch `e` is position `(e · steps_per_epoch · per_step + v)` of an endless walk through the
/// unlabelled images, each pass in its own seeded order. What a step sees depends on its place in
/// the run alone, so a resumed run sees the same images, and the unlabelled set may be larger or
/// smaller than the labelled one.
pub struct UnlabeledBatches {
    pub images: TrainBatches,
    /// Unlabelled images per step.
    pub per_step: usize,
    /// Steps of one labelled epoch.
    pub steps_per_epoch: usize,
}

/// Decorrelates the unlabelled walk's order from the labelled epoch's.
const UNLABELED_ORDER_SALT: u64 = 0x0E1A_BE11;

impl UnlabeledBatches {
    /// The loader settings that walk one labelled epoch's worth of steps: one batch per step,
    /// in order (the order is this source's).
    pub fn loader_config(&self, labeled: &LoaderConfig) -> LoaderConfig {
        LoaderConfig { batch_size: self.per_step, shuffle: false, drop_last: false, ..labeled.clone() }
    }
}

impl BatchSource for UnlabeledBatches {
    type Item = TrainBatch;

    fn num_items(&self) -> usize {
        self.steps_per_epoch * self.per_step
    }

    fn make_batch(&self, positions: &[usize], epoch: u64, seed: u64) -> Result<TrainBatch, DataError> {
        let first = epoch as usize * self.num_items();
        let (indices, pass) = unlabeled_walk(positions, first, self.images.num_items(), seed);
        // Augmentation is seeded per pass, so an image seen again is cut differently.
        self.images.make_batch(&indices, pass, seed)
    }
}

/// The images at `positions` (offset by `first`) of the walk through `n` images, each pass in
/// its own seeded order, and the pass the batch ends in.
fn unlabeled_walk(positions: &[usize], first: usize, n: usize, seed: u64) -> (Vec<usize>, u64) {
    let n = n.max(1);
    // A batch crosses at most a few pass boundaries: each pass's order is computed once.
    let mut orders: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut pass = 0;
    let indices = positions
        .iter()
        .map(|&v| {
            let g = first + v;
            pass = g / n;
            if !orders.iter().any(|(p, _)| *p == pass) {
                orders.push((pass, epoch_order(n, true, seed ^ UNLABELED_ORDER_SALT, pass as u64)));
            }
            orders.iter().find(|(p, _)| *p == pass).map_or(g % n, |(_, o)| o[g % n])
        })
        .collect();
    (indices, pass as u64)
}

impl TrainBatch {
    /// One step's batch: the labelled images followed by `unlabeled`'s; returns it with the
    /// number of unlabelled images at its end. Both must be cut to the same size (the training
    /// crop), and both carry teacher targets or neither does.
    pub fn joined(labeled: &TrainBatch, unlabeled: &TrainBatch) -> anyhow::Result<(TrainBatch, usize)> {
        let (l, u) = (&labeled.batch, &unlabeled.batch);
        if u.batch_size == 0 {
            return Ok((TrainBatch { batch: l.clone(), teacher: labeled.teacher.clone() }, 0));
        }
        anyhow::ensure!(
            (l.height, l.width) == (u.height, u.width),
            "labelled batch of {}×{} but unlabelled batch of {}×{}: both must be cut to the training crop",
            l.width,
            l.height,
            u.width,
            u.height
        );
        let batch = Batch {
            images: [l.images.as_slice(), &u.images].concat(),
            masks: [l.masks.as_slice(), &u.masks].concat(),
            batch_size: l.batch_size + u.batch_size,
            height: l.height,
            width: l.width,
            // Unlabelled images are named by their own dataset's indices and ids.
            indices: [l.indices.as_slice(), &u.indices].concat(),
            ids: [l.ids.clone(), u.ids.clone()].concat(),
            geometries: [l.geometries.clone(), u.geometries.clone()].concat(),
            skipped: Vec::new(),
        };
        let teacher = match (&labeled.teacher, &unlabeled.teacher) {
            (None, None) => None,
            (Some(a), Some(b)) => Some(a.joined(b)?),
            _ => anyhow::bail!("teacher targets for only part of a step's images"),
        };
        Ok((TrainBatch { batch, teacher }, u.batch_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unlabelled_walk_visits_every_image_once_per_pass_and_depends_on_the_position_alone() {
        let n = 7;
        // Three steps of 3 images from position 0: passes 0 and 1 (9 positions over 7 images).
        let (a, _) = unlabeled_walk(&[0, 1, 2, 3, 4, 5, 6], 0, n, 5);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..7).collect::<Vec<_>>(), "one pass is a permutation");
        let (b, pass) = unlabeled_walk(&[7, 8, 9], 0, n, 5);
        assert_eq!(pass, 1);
        let (b2, _) = unlabeled_walk(&[0, 1, 2], 7, n, 5);
        assert_eq!(b, b2, "the same place in the run gives the same images");
        let (next_pass, _) = unlabeled_walk(&(7..14).collect::<Vec<_>>(), 0, n, 5);
        assert_ne!(a, next_pass, "each pass has its own order");
        let (other_seed, _) = unlabeled_walk(&[0, 1, 2, 3, 4, 5, 6], 0, n, 6);
        assert_ne!(a, other_seed);
    }
}
