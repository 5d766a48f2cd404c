//! Evaluation: metrics over whole datasets and per image, prediction, and dataset evaluation.

pub mod evaluate;
pub mod metrics;
pub mod predict;

pub use metrics::{ConfusionMatrix, ImageScore, Scores};
