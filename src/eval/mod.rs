//! Evaluation: metrics over whole datasets and per image, prediction, and dataset evaluation.

pub mod bench;
pub mod browse;
pub mod evaluate;
pub mod metrics;
pub mod predict;
pub mod selftest;
pub mod teacher_quality;

pub use metrics::{ConfusionMatrix, ImageScore, Scores};
