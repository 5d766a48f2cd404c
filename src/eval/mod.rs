//! Evaluation: metrics over whole datasets and per image.

pub mod metrics;

pub use metrics::{ConfusionMatrix, ImageScore, Scores};
