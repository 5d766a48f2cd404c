//! Evaluation of trained models and of the engine itself: browsing predictions image by image,
//! a teacher's quality on a dataset, benchmarks and the self-test. The metrics, prediction and
//! validation the training loop needs live below, in `train` (`metrics`, `predict`, `validate`).

pub mod bench;
pub mod browse;
pub mod kd_parity;
pub mod selftest;
pub mod teacher_quality;
