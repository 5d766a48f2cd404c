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

    fn make_batch(&self, indices: &[usize], epoch: u64, seed: u64) -> Result<TrainBatch, DataError> {
        let batch = self.images.make_batch(indices, epoch, seed)?;
        let teacher = match &self.cache {
            Some(cache) => {
                let items: Vec<_> = batch.indices.iter().copied().zip(batch.geometries.iter().copied()).collect();
                Some(cache.targets(&items, (batch.height, batch.width))?)
            }
            None => None,
        };
        Ok(TrainBatch { batch, teacher })
    }
}
