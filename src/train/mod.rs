//! Training: configuration, the engine loop on its own thread, events, control, optimisers,
//! schedules, checkpoints, the metrics log, and validation (`validate`: prediction at evaluation
//! size with `predict`, scored by the crate's `metrics`) which the loop runs every epoch.

pub mod batches;
pub mod best_weights;
pub mod checkpoint;
pub mod checkpoint_policy;
pub mod config;
pub mod control;
pub mod engine;
pub mod events;
pub mod memory_budget;
pub mod metrics_log;
pub mod optim;
pub mod predict;
pub mod relocate;
pub mod run_folder;
pub mod schedule;
pub mod step;
pub mod tensorboard;
pub mod validate;

pub use config::TrainConfig;
pub use control::{Control, TrainHandle};
pub use engine::{run, start};
pub use events::TrainEvent;
