//! segdistill: a desktop studio for knowledge distillation in semantic segmentation.
//!
//! Data flows one way: `data` (datasets, transforms, loaders) → `eval` (metrics) → `ui` / `cli`.
//! Nothing below `ui` knows about egui.

pub mod cli;
pub mod data;
pub mod distill;
pub mod eval;
pub mod model;
pub mod report;
pub mod train;
pub mod ui;
pub mod util;
