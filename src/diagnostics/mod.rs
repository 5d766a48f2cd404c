//! Diagnostics of trained models and of the engine itself: browsing predictions image by image,
//! a teacher's quality on a dataset, benchmarks, the self-test and the loss terms against
//! PyTorch's fixtures. The metrics live below, in `metrics`; the prediction and validation the
//! training loop needs, in `train` (`predict`, `validate`).

pub mod bench;
pub mod browse;
pub mod kd_parity;
pub mod selftest;
pub mod teacher_quality;
