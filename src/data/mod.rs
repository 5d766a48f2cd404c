//! Datasets on disk, decoding, augmentation and batching. Host-side only: nothing here touches a
//! compute device, so loaders run on plain worker threads.

pub mod ade20k;
pub mod camvid;
pub mod check;
pub mod cityscapes;
pub mod classes;
pub mod dataset;
pub mod demo;
pub mod demo_layouts;
pub mod download;
pub mod error;
pub mod folder;
pub mod image;
pub mod loader;
pub mod mask;
pub mod overlay;
pub mod resample;
pub mod transforms;
pub mod unlabeled;
pub mod voc;

pub use classes::{ClassSet, VOID};
pub use dataset::{Dataset, DatasetKind, Sample, SampleFiles};
pub use error::DataError;
pub use mask::Mask;
