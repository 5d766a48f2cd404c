//! segdistill: a desktop studio for knowledge distillation in semantic segmentation.
//!
//! Modules are layered, and each uses only the ones before it:
//! `util` (files, random numbers, devices) → `data` (datasets, transforms, loaders, downloads,
//! class-colour overlays) → `model` (networks, ops, weights files, ONNX) → `distill` (losses,
//! teacher cache) → `metrics` (confusion matrix, IoU, mIoU) → `train` (engine, checkpoints,
//! validation) → `diagnostics` (browse, bench, selftest, teacher quality, loss-term parity) →
//! `report` (comparison tables, plots, overlays) → `ui` (the desktop app) → `cli` (subcommands;
//! no subcommand starts the app). Nothing below `ui` knows about egui.

pub mod cli;
pub mod data;
pub mod diagnostics;
pub mod distill;
pub mod metrics;
pub mod model;
pub mod report;
pub mod train;
pub mod ui;
pub mod util;
