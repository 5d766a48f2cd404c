//! What the training loop consumes: augmented batches, with the teacher's targets cut from the
//! teacher cache by the loader's workers when a cache is in use.

use std::sync::Arc;

use crate::data::DataError;
use crate::data::loader::{Batch, BatchSource, SegmentationBatches};
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
