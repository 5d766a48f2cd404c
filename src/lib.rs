//! segdistill: a desktop studio for knowledge distillation in semantic segmentation.
//!
//! Modules are layered, and each uses only the ones before it:
//! `util` (files, random numbers, devices) → `data` (datasets, transforms, loaders, downloads) →
//! `model` (networks, ops, weights files, ONNX) → `distill` (losses, teacher cache) → `train`
//! (engine, checkpoints, metrics, validation) → `eval` (browse, bench, selftest, teacher quality)
//! → `report` (comparison tables, plots, overlays) → `ui` (the desktop app) → `cli` (subcommands;
//! no subcommand starts the app). One exception: the download catalog in `data` names the model
//! each weights file belongs to. Nothing below `ui` knows about egui.

pub mod cli;
pub mod data;
pub mod distill;
pub mod eval;
pub mod model;
pub mod report;
pub mod train;
pub mod ui;
pub mod util;
