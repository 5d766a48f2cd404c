//! The training loop. It runs on its own thread ([`start`]) or inline ([`run`]), talks only
//! through [`TrainEvent`]s and polls [`Control`] between steps. Everything random is derived from
//! the seed and the step/epoch/sample index, and all state lives in the checkpoint, so a run
//! stopped anywhere and resumed ends bit-identical to one that never stopped.

mod epoch_end;
mod resume;
mod run_loop;
mod setup;
mod tensorboard_sink;

use resume::{check_export, fresh_start, resume_point};
use setup::Datasets;
pub(super) use setup::open_split;
pub(crate) use setup::trainable;

use super::tensorboard::EventWriter;
use crate::metrics::ImageScore;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use crossbeam_channel::Sender;

use super::batches::{TrainBatch, TrainBatches, UnlabeledBatches};
use super::checkpoint::{self, BestRecord, Checkpoint, CheckpointState, EpochRecord, InputDigests};
use super::config::TrainConfig;
use super::control::{Control, TrainHandle};
use super::events::*;
use super::metrics_log::MetricsLog;
use super::optim::{Optimizer, OptimizerState};
use super::run_folder::{self, RunFolder};
use super::schedule::Schedule;
use super::step::{LossValues, StepBatch, StepModel, StepOutcome, optimization_step};
use crate::data::loader::{Loader, LoaderConfig, SegmentationBatches, batches_per_epoch};
use crate::data::transforms::{Augment, ColorJitter, Resize};
use crate::data::{DataError, Dataset};
use crate::distill::loss_terms::TermsDistiller;
use crate::distill::teacher_cache::{self, CacheLocation, CacheSpec, Prepared, TeacherCache};
use crate::distill::{self, FeatureDistiller, Target, TeacherSignal};
use crate::model::weights::init::seeded_var_builder;
use crate::model::weights::{save_safetensors, varmap_tensors};
use crate::model::{Mode, Model, build_trainable, load_backbone, load_for_inference, load_student_weights};
use crate::train::validate::{EvalOutcome, evaluate};
use crate::util::Rng;
use crate::util::device::{Precision, describe};

/// Starts a run on its own thread. With `resume`, continues the run in `config.run_dir()` from
/// its last checkpoint.
pub fn start(config: TrainConfig, resume: bool) -> TrainHandle {
    let (tx, rx) = crossbeam_channel::unbounded();
    let control = Control::default();
    let ctl = control.clone();
    let thread = std::thread::Builder::new()
        .name("train-engine".into())
        .spawn(move || {
            let run_dir = config.run_dir();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(config, resume, &ctl, &tx)));
            let last = match outcome {
                Ok(Ok(summary)) => TrainEvent::Finished(summary),
                Ok(Err(e)) => TrainEvent::Failed { message: format!("{e:#}"), run_dir },
                Err(p) => {
                    let msg =
                        p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    TrainEvent::Failed { message: format!("internal error: {}", msg.unwrap_or_default()), run_dir }
                }
            };
            tx.send(last).ok(); // nobody listening any more: the outcome is in the run folder anyway
        })
        .expect("spawning the training thread");
    TrainHandle::new(control, rx, thread)
}

/// A loss that is NaN or infinite: the run stops; the message says exactly what was kept.
#[derive(Debug, thiserror::Error)]
#[error(
    "the loss became {value} at epoch {epoch}, step {step} (learning rate {lr:.3e}); training stopped. {kept} {advice}"
)]
pub struct NonFiniteLoss {
    pub value: f64,
    /// 1-based, as shown to the user.
    pub epoch: usize,
    pub step: usize,
    pub lr: f64,
    /// What of the run is kept (the last checkpoint and its epoch, or that none was written yet).
    pub kept: String,
    /// What to change: depends on whether gradient clipping is already on.
    pub advice: String,
}

impl NonFiniteLoss {
    fn new(value: f64, step: usize, lr: f64, session: &Session) -> Self {
        let last = checkpoint::last_path(&session.run_dir);
        let kept = match checkpoint::load_state(&last) {
            Ok(state) => format!(
                "The last checkpoint, {} (epoch {}, step {}), is kept.",
                last.display(),
                state.epoch,
                state.step
            ),
            Err(_) => "No checkpoint had been written yet (the first is written at the end of epoch 1).".into(),
        };
        let advice = match session.cfg.optimizer.grad_clip {
            Some(max) => format!(
                "Lower the learning rate (--lr; gradient clipping is already on at norm {max}, --grad-clip lowers it) \
                 and resume."
            ),
            None => "Lower the learning rate (--lr) or turn gradient clipping on (--grad-clip 5), and resume.".into(),
        };
        Self { value, epoch: session.state.epoch + 1, step, lr, kept, advice }
    }
}

fn send(events: &Sender<TrainEvent>, e: TrainEvent) {
    events.send(e).ok(); // a consumer that went away does not stop training
}

/// Everything the loop works with.
struct Session<'a> {
    cfg: TrainConfig,
    run_dir: PathBuf,
    device: Device,
    /// The precision in effect on `device`.
    precision: Precision,
    events: &'a Sender<TrainEvent>,
    control: &'a Control,
    /// The claim on the run folder: every write by path checks it still names the folder claimed.
    folder: &'a RunFolder,
    student: Model,
    student_vars: VarMap,
    teacher: Option<Model>,
    distiller: Option<FeatureDistiller>,
    /// The loss as a term list (`--loss`), with its adapters.
    terms: Option<TermsDistiller>,
    adapter_vars: VarMap,
    optimizer: Optimizer,
    schedule: Schedule,
    class_weights: Option<Vec<f32>>,
    data: Datasets,
    steps_per_epoch: usize,
    total_steps: usize,
    state: CheckpointState,
    log: MetricsLog,
    /// This session's TensorBoard event file (`None` if it could not be written: the run goes on).
    tensorboard: Option<EventWriter>,
    /// Samples left out because their files could not be used: training (dataset index →
    /// message) and validation (messages), each reported once.
    skipped_train: BTreeMap<usize, String>,
    skipped_val: Vec<String>,
    /// Unlabelled images left out (dataset index → message), each reported once.
    skipped_unlabeled: BTreeMap<usize, String>,
}

/// Runs a whole training session on the calling thread. The run folder is locked for the whole
/// session (one writer per folder), and claimed (its `config.json`) before any long work. A start
/// that fails before training leaves nothing behind.
pub fn run(cfg: TrainConfig, resume: bool, control: &Control, events: &Sender<TrainEvent>) -> anyhow::Result<Summary> {
    let cfg = cfg.with_absolute_paths();
    cfg.validate()?;
    let run_dir = cfg.run_dir();
    let folder = RunFolder::claim(&run_dir)?;
    let started = start_session(cfg, &run_dir, resume, &folder, control, events);
    let mut session = match started {
        Ok(s) => s,
        Err(e) => {
            // Removes only what this start added: never an earlier session's files, never the
            // user's.
            folder.abandon_untrained();
            return Err(e);
        }
    };
    session.train()
}

/// Everything before the first step: the configuration to train with (on resume: the run's own,
/// with what may change), the claim written, the session built.
fn start_session<'a>(
    cfg: TrainConfig,
    run_dir: &Path,
    resume: bool,
    folder: &'a RunFolder,
    control: &'a Control,
    events: &'a Sender<TrainEvent>,
) -> anyhow::Result<Session<'a>> {
    let (cfg, resumed) = if resume { resume_point(cfg, run_dir, events)? } else { (fresh_start(cfg, run_dir)?, None) };
    check_export(&cfg)?;
    std::fs::create_dir_all(checkpoint::checkpoints_dir(run_dir))
        .with_context(|| format!("cannot create {}", checkpoint::checkpoints_dir(run_dir).display()))?;
    checkpoint::remove_stale_temp_files(&checkpoint::checkpoints_dir(run_dir));
    checkpoint::remove_stale_temp_files(run_dir);
    let config_path = run_folder::config_path(run_dir);
    crate::util::fs::write_atomic(&config_path, serde_json::to_string_pretty(&cfg)?.as_bytes())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    Session::new(cfg, run_dir.to_path_buf(), resumed, folder, control, events)
}

impl Session<'_> {
    fn emit(&self, e: TrainEvent) {
        send(self.events, e);
    }

    fn summary(&self, reason: EndReason) -> Summary {
        Summary {
            reason,
            run_dir: self.run_dir.clone(),
            epochs_done: self.state.epoch,
            steps_done: self.state.step,
            best_miou: self.state.best.as_ref().map(|b| b.miou),
            best_epoch: self.state.best.as_ref().map(|b| b.epoch),
            train_seconds: self.state.train_seconds,
            skipped_samples: self.skipped_train.values().chain(&self.skipped_val).cloned().collect(),
        }
    }
}
