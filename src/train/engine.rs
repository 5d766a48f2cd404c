//! The training loop. It runs on its own thread ([`start`]) or inline ([`run`]), talks only
//! through [`TrainEvent`]s and polls [`Control`] between steps. Everything random is derived from
//! the seed and the step/epoch/sample index, and all state lives in the checkpoint, so a run
//! stopped anywhere and resumed ends bit-identical to one that never stopped.

use super::metrics::ImageScore;
use super::tensorboard::EventWriter;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use crossbeam_channel::Sender;

use super::batches::{TrainBatch, TrainBatches};
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
use crate::distill::teacher_cache::{self, CacheLocation, CacheSpec, Prepared};
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

struct Datasets {
    train: Arc<Dataset>,
    val: Arc<Dataset>,
}

pub(super) fn open_split(
    cfg: &TrainConfig,
    split: &str,
    limit: Option<usize>,
    events: &Sender<TrainEvent>,
) -> anyhow::Result<Arc<Dataset>> {
    let mut ds = Dataset::open(&cfg.data, cfg.dataset, split)?;
    if ds.kind == crate::data::DatasetKind::Voc
        && let Ok(list) = crate::data::voc::read_split_list(&ds.root, split)
    {
        for d in &list.duplicates {
            send(events, TrainEvent::Message(d.to_error().to_string()));
        }
    }
    let dropped = ds.retain_present();
    if !dropped.is_empty() {
        send(
            events,
            TrainEvent::Message(format!(
                "{} of {} ids in split '{split}' have no image or mask and are skipped (`segdistill check-data` lists them)",
                dropped.len(),
                dropped.len() + ds.len()
            )),
        );
    }
    if let Some(n) = limit {
        ds.truncate(n);
    }
    anyhow::ensure!(!ds.is_empty(), "split '{split}' of {} has no usable samples", ds.root.display());
    Ok(Arc::new(ds))
}

fn send(events: &Sender<TrainEvent>, e: TrainEvent) {
    events.send(e).ok(); // a consumer that went away does not stop training
}

/// Median-frequency class weights from the training masks (decoded on all cores). Masks that
/// cannot be read are left out (training skips their samples and says so).
fn class_weights(ds: &Dataset) -> Vec<f32> {
    let hists = crate::util::par::par_map(ds.len(), |i| ds.load_mask(i).map(|m| m.histogram()));
    let mut counts = vec![0u64; ds.num_classes()];
    for h in hists.into_iter().flatten() {
        for (c, n) in counts.iter_mut().enumerate() {
            *n += h[c];
        }
    }
    distill::ce::class_weights_from_counts(&counts)
}

/// The variables an optimiser updates: everything but batch-norm running statistics.
pub(crate) fn trainable(varmap: &VarMap, prefix: &str) -> Vec<(String, Var)> {
    let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut v: Vec<(String, Var)> = vars
        .iter()
        .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
        .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Whether variable `name` is a batch norm's scale or shift: a `weight`/`bias` beside a
/// `running_mean` (the layer's keys in torchvision's layout).
fn is_batch_norm_affine(varmap: &VarMap, name: &str) -> bool {
    let Some(layer) = name.strip_suffix(".weight").or_else(|| name.strip_suffix(".bias")) else { return false };
    varmap.data().lock().unwrap_or_else(|p| p.into_inner()).contains_key(&format!("{layer}.running_mean"))
}

fn load_varmap(varmap: &VarMap, tensors: &BTreeMap<String, Tensor>, what: &str, path: &Path) -> anyhow::Result<()> {
    let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    for (name, var) in vars.iter() {
        let t = tensors.get(name).with_context(|| format!("{} lacks {what} variable {name}", path.display()))?;
        var.set(&t.to_device(var.device())?)?;
    }
    Ok(())
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

/// A new run needs a folder that is new, empty, or holds nothing but an unfinished claim of no run.
fn fresh_start(cfg: TrainConfig, run_dir: &Path) -> anyhow::Result<TrainConfig> {
    let last = checkpoint::last_path(run_dir);
    if let Ok(state) = checkpoint::load_state(&last) {
        anyhow::bail!(
            "run folder {} already holds a run ({} of {} epochs done): pass --resume to continue it, or choose \
             another --out",
            run_dir.display(),
            state.epoch,
            state.config.epochs
        );
    }
    if last.exists() {
        anyhow::bail!(
            "run folder {} already holds a run whose last checkpoint cannot be read: pass --resume to continue it \
             from its newest intact checkpoint, or choose another --out",
            run_dir.display()
        );
    }
    if run_folder::holds_run(run_dir) {
        if run_folder::read_config(run_dir).is_some_and(|c| !c.data.as_os_str().is_empty()) {
            anyhow::bail!(
                "run folder {} already holds a run that has not finished an epoch yet: pass --resume to continue \
                 it with its saved settings, or choose another --out",
                run_dir.display()
            );
        }
        anyhow::bail!(
            "{} holds a config.json that is not a segdistill run's (it names no dataset); choose another folder \
             for --out (the folder is left as it is)",
            run_dir.display()
        );
    }
    let foreign = run_folder::foreign_entries(run_dir);
    if !foreign.is_empty() {
        anyhow::bail!(
            "{} is not empty and not a run folder (it holds {}{}); choose a new or empty folder for --out",
            run_dir.display(),
            foreign.iter().take(3).map(|n| crate::util::fmt::escaped(n)).collect::<Vec<_>>().join(", "),
            if foreign.len() > 3 { format!(" and {} more", foreign.len() - 3) } else { String::new() }
        );
    }
    Ok(cfg)
}

/// Where a resumed run continues from, and with which configuration: the run's own, where
/// `requested` may only change the settings in [`RESUMABLE`](super::config::RESUMABLE), point to
/// inputs that moved (same content), or change the batch size.
fn resume_point(
    requested: TrainConfig,
    run_dir: &Path,
    events: &Sender<TrainEvent>,
) -> anyhow::Result<(TrainConfig, Option<Checkpoint>)> {
    let any_checkpoint = checkpoint::last_path(run_dir).exists() || checkpoint::best_path(run_dir).exists();
    let (saved, ckpt) = if any_checkpoint {
        let (ckpt, note) = checkpoint::load_resumable(run_dir)?;
        if let Some(note) = note {
            send(events, TrainEvent::Message(note));
        }
        let reconciled = super::best_weights::reconcile(run_dir, &ckpt.state)?;
        for note in reconciled.notes {
            send(events, TrainEvent::Message(note));
        }
        (ckpt.state.config.clone(), Some(ckpt))
    } else {
        let saved = run_folder::saved_config(run_dir)?.with_context(|| {
            format!("nothing to resume: {} holds no run (start one without --resume)", run_dir.display())
        })?;
        anyhow::ensure!(
            !saved.data.as_os_str().is_empty(),
            "nothing to resume: {} names no dataset, so it is not a segdistill run (start a new run elsewhere)",
            run_folder::config_path(run_dir).display()
        );
        send(
            events,
            TrainEvent::Message("no checkpoint yet: the run starts from its beginning with its saved settings".into()),
        );
        (saved, None)
    };
    // Runs of older versions stored paths as typed; they are read from the current directory.
    let changes = saved.with_absolute_paths().changes_to(&requested);
    let inputs = ckpt.as_ref().map(|c| c.state.inputs.clone()).unwrap_or_default();
    for c in changes.iter().filter(|c| !c.resumable()) {
        let open_splits = |cfg: &TrainConfig| {
            let (quiet, _) = crossbeam_channel::unbounded();
            Ok((open_split(cfg, &cfg.train_split, cfg.train_limit, &quiet)?, open_split(cfg, &cfg.val_split, cfg.val_limit, &quiet)?))
        };
        let note = super::relocate::allowed_change(c, &requested, &inputs, &open_splits).map_err(|why| {
            anyhow::anyhow!(
                "cannot resume {} with {} {}: the run was made with {} {}{why} (only {} can change on resume)",
                run_dir.display(),
                super::relocate::flag_of(&c.setting).unwrap_or(&c.setting),
                c.new,
                c.setting,
                c.old,
                super::config::resumable_in_words()
            )
        })?;
        send(events, TrainEvent::Message(note));
    }
    for c in changes.iter().filter(|c| c.resumable() && c.setting != "name" && c.setting != "runs_dir") {
        send(events, TrainEvent::Message(format!("resuming with {} {} (was {})", c.setting, c.new, c.old)));
    }
    Ok((requested, ckpt))
}

/// The export target is checked before training, not after hours of it.
fn check_export(cfg: &TrainConfig) -> anyhow::Result<()> {
    let Some(export) = &cfg.export else { return Ok(()) };
    run_folder::check_export_path(export, &cfg.run_dir())?;
    let mut inputs: Vec<(&str, &Path)> = Vec::new();
    if let Some(p) = &cfg.teacher_weights {
        inputs.push(("--teacher-weights", p));
    }
    if let Some(p) = &cfg.backbone_weights {
        inputs.push(("--backbone-weights", p));
    }
    if let Some(p) = &cfg.init_weights {
        inputs.push(("--init-weights", p));
    }
    let output = crate::util::fs::Output { flag: "--export", path: export, extensions: &["safetensors", "onnx"] };
    crate::util::fs::check_outputs(&inputs, &[output])?;
    crate::util::fs::check_writable("--export", export)
}

impl<'a> Session<'a> {
    fn new(
        cfg: TrainConfig,
        run_dir: PathBuf,
        resumed: Option<Checkpoint>,
        folder: &'a RunFolder,
        control: &'a Control,
        events: &'a Sender<TrainEvent>,
    ) -> anyhow::Result<Self> {
        let device = cfg.device.resolve()?;
        super::memory_budget::check_here(&cfg, &device)?;
        let precision = Precision::apply(cfg.precision, &device)?;
        let data = Datasets {
            train: open_split(&cfg, &cfg.train_split, cfg.train_limit, events)?,
            val: open_split(&cfg, &cfg.val_split, cfg.val_limit, events)?,
        };
        let num_classes = data.train.num_classes();
        let trainable_student = build_trainable(cfg.model, num_classes, cfg.seed, &device)?;
        let (student, student_vars) = (trainable_student.model, trainable_student.varmap);
        let teacher = match (&cfg.teacher_weights, cfg.needs_teacher()) {
            (Some(path), true) => {
                let t = load_for_inference(cfg.teacher, path, &device).context("loading the teacher")?;
                anyhow::ensure!(
                    !cfg.uses_teacher_logits() || t.model.num_classes() == num_classes,
                    "the teacher {} predicts {} classes but the dataset has {num_classes}",
                    path.display(),
                    t.model.num_classes()
                );
                Some(t.model)
            }
            _ => None,
        };
        let adapter_vars = VarMap::new();
        let (distiller, terms) = match (&cfg.loss_terms, &teacher) {
            (Some(list), _) => {
                let vb = seeded_var_builder(&adapter_vars, cfg.seed ^ 0xADA9, &device);
                let teacher_taps = teacher.as_ref().map(|t| t.feature_taps()).unwrap_or_default();
                (None, Some(TermsDistiller::new(list.clone(), vb, &student.feature_taps(), &teacher_taps)?))
            }
            (None, Some(t)) if cfg.distill.uses_features() => {
                let vb = seeded_var_builder(&adapter_vars, cfg.seed ^ 0xADA9, &device);
                (Some(FeatureDistiller::new(vb, &student.feature_taps(), &t.feature_taps())?), None)
            }
            _ => (None, None),
        };
        let class_weights = cfg.class_weights.then(|| class_weights(&data.train));
        let drop_last = data.train.len() >= cfg.batch;
        let steps_per_epoch = batches_per_epoch(data.train.len(), cfg.batch, drop_last);
        let total_steps = steps_per_epoch * cfg.epochs;
        let mut params = trainable(&student_vars, "model/");
        if cfg.freeze_bn {
            params.retain(|(name, _)| !is_batch_norm_affine(&student_vars, name.trim_start_matches("model/")));
        }
        params.extend(trainable(&adapter_vars, "adapters/"));
        let mut optimizer = Optimizer::new(cfg.optimizer.clone(), params);
        let mut schedule = Schedule::new(cfg.schedule.clone(), cfg.optimizer.lr, total_steps, steps_per_epoch);

        // Rows of metrics.csv are kept up to where the checkpoint stood when it was written.
        let mut log_until = None;
        let state = match resumed {
            Some(ckpt) => {
                log_until = Some((ckpt.state.epoch, ckpt.state.step));
                let path = checkpoint::last_path(&run_dir);
                load_varmap(&student_vars, &ckpt.model, "student", &path)?;
                load_varmap(&adapter_vars, &ckpt.adapters, "adapter", &path)?;
                optimizer.load_moments(&ckpt.moments, ckpt.state.optimizer.clone())?;
                schedule.plateau = ckpt.state.plateau.clone();
                let mut state = CheckpointState { config: cfg.clone(), ..ckpt.state };
                let old_batch = ckpt.state.config.batch;
                if old_batch != cfg.batch {
                    let old_drop_last = data.train.len() >= old_batch;
                    let old_steps = batches_per_epoch(data.train.len(), old_batch, old_drop_last).max(1);
                    let (step_before, batch_before) = (state.step, state.batch_in_epoch);
                    // The same place in the epoch (in samples) and in the schedule (in epochs).
                    state.batch_in_epoch = state.batch_in_epoch * old_batch / cfg.batch;
                    state.step = state.epoch * steps_per_epoch + state.batch_in_epoch;
                    send(
                        events,
                        TrainEvent::Message(format!(
                            "batch size {} (was {old_batch}): {steps_per_epoch} steps per epoch instead of {old_steps}; \
                             the learning-rate schedule is re-laid over {total_steps} steps and continues at the same \
                             point (step {step_before} → {}, batch {batch_before} → {} of this epoch); the result is \
                             not bit-identical to a run trained at one batch size",
                            cfg.batch,
                            state.step,
                            state.batch_in_epoch
                        )),
                    );
                }
                state
            }
            None => {
                if let Some(path) = &cfg.backbone_weights {
                    let n = load_backbone(&student_vars, path).context("loading the backbone weights")?;
                    send(
                        events,
                        TrainEvent::Message(format!("loaded {n} ImageNet backbone tensors from {}", path.display())),
                    );
                }
                if let Some(path) = &cfg.init_weights {
                    let n = load_student_weights(&student_vars, path).context("loading the initial weights")?;
                    send(events, TrainEvent::Message(format!("started from {n} tensors of {}", path.display())));
                }
                CheckpointState {
                    version: checkpoint::FORMAT_VERSION,
                    config: cfg.clone(),
                    epoch: 0,
                    batch_in_epoch: 0,
                    step: 0,
                    epoch_loss_sum: 0.0,
                    epoch_loss_count: 0,
                    optimizer: OptimizerState::default(),
                    plateau: Default::default(),
                    best: None,
                    history: Vec::new(),
                    train_seconds: 0.0,
                    cache_seconds: 0.0,
                    inputs: InputDigests {
                        data: Some(super::relocate::data_digest(&data.train, &data.val)),
                        teacher: match (&teacher, &cfg.teacher_weights) {
                            (Some(_), Some(path)) => Some(super::relocate::file_digest(path)?),
                            _ => None,
                        },
                    },
                }
            }
        };
        let (log, log_note) =
            MetricsLog::open(&run_dir.join("metrics.csv"), Some(log_until.unwrap_or((state.epoch, state.step))), &{
                let names: Option<Vec<String>> =
                    cfg.loss_terms.as_ref().map(|t| t.0.iter().map(|t| t.kind.name().to_string()).collect());
                names.unwrap_or_default()
            })?;
        if let Some(note) = log_note {
            send(events, TrainEvent::Message(note));
        }
        let tensorboard = match EventWriter::create(&run_dir, (state.step > 0).then_some(state.step)) {
            Ok(w) => Some(w),
            Err(e) => {
                send(events, TrainEvent::Message(format!("no TensorBoard log this session: {e:#}")));
                None
            }
        };
        Ok(Self {
            cfg,
            run_dir,
            device,
            precision,
            events,
            control,
            folder,
            student,
            student_vars,
            teacher,
            distiller,
            terms,
            adapter_vars,
            optimizer,
            schedule,
            class_weights,
            data,
            steps_per_epoch,
            total_steps,
            state,
            log,
            tensorboard,
            skipped_train: BTreeMap::new(),
            skipped_val: Vec::new(),
        })
    }

    fn emit(&self, e: TrainEvent) {
        send(self.events, e);
    }

    fn augment(&self) -> Augment {
        Augment {
            resize: Resize::ShorterSide(self.cfg.size),
            scale_range: self.cfg.scale,
            crop: Some((self.cfg.size, self.cfg.size)),
            hflip: self.cfg.hflip,
            jitter: self.cfg.color_jitter.then(ColorJitter::default),
        }
    }

    fn loader_config(&self) -> LoaderConfig {
        let workers = if self.cfg.workers == 0 { crate::util::available_threads() } else { self.cfg.workers };
        LoaderConfig {
            batch_size: self.cfg.batch,
            shuffle: true,
            drop_last: self.data.train.len() >= self.cfg.batch,
            workers,
            prefetch: 2 * workers,
            seed: self.cfg.seed,
        }
    }

    fn train(&mut self) -> anyhow::Result<Summary> {
        let resumed_from = (self.state.step > 0).then_some((self.state.epoch, self.state.step));
        let info = RunInfo {
            run_dir: self.run_dir.clone(),
            model: self.cfg.model.name().into(),
            params: {
                let vars = self.student_vars.data().lock().unwrap_or_else(|p| p.into_inner());
                crate::model::count_params(vars.iter().map(|(k, v)| (k.as_str(), v.elem_count())))
            },
            teacher: self.cfg.needs_teacher().then(|| self.cfg.teacher.name().to_string()),
            mode: self.cfg.loss_name(),
            device: format!("{}, {}", describe(&self.device), self.precision),
            train_images: self.data.train.len(),
            val_images: self.data.val.len(),
            total_steps: self.total_steps,
            steps_per_epoch: self.steps_per_epoch,
            class_names: self.data.train.classes().names.clone(),
            resumed_from,
        };
        self.emit(TrainEvent::Started(info));
        let cache = match self.prepare_teacher_cache()? {
            Some(Prepared::Stopped) => return Ok(self.summary(EndReason::Stopped)),
            Some(Prepared::Ready(cache)) => {
                if !cache.unusable().is_empty() {
                    self.emit(TrainEvent::Message(format!(
                        "{} training image(s) could not be decoded for the teacher cache; training skips them",
                        cache.unusable().len()
                    )));
                }
                Some(Arc::new(cache))
            }
            Some(Prepared::Skipped(why)) => {
                self.emit(TrainEvent::Message(why));
                None
            }
            None => None,
        };
        let images = SegmentationBatches { dataset: self.data.train.clone(), augment: self.augment() };
        let source = Arc::new(TrainBatches { images, cache });
        let loader_cfg = self.loader_config();
        let session_start = Instant::now();
        let seconds_before = self.state.train_seconds;
        let first_epoch = self.state.epoch;
        let mut step_time_ema: Option<f64> = None;
        let mut eval_seconds: Option<f64> = None;

        for epoch in first_epoch..self.cfg.epochs {
            // Mid-epoch resume: skip the batches already trained on (their order is seeded).
            let skip = self.state.batch_in_epoch;
            let loader = Loader::with_order(source.clone(), &loader_cfg, epoch as u64, Some(skip));
            for batch in loader {
                if !self.wait_while_paused() {
                    return self.stop(session_start, seconds_before);
                }
                let batch = batch.map_err(|e: DataError| anyhow::anyhow!(e))?;
                self.note_skipped(&batch.batch.skipped)?;
                if batch.batch.batch_size == 0 {
                    // Every sample of this batch was skipped: nothing to learn from, but the batch
                    // counts, so a resume skips the same batches.
                    self.state.batch_in_epoch += 1;
                    continue;
                }
                let t0 = Instant::now();
                let metrics = self.train_step(&batch, epoch)?;
                let batch = &batch.batch;
                let dt = t0.elapsed().as_secs_f64();
                let ema = step_time_ema.map_or(dt, |e| 0.9 * e + 0.1 * dt);
                step_time_ema = Some(ema);
                let remaining_steps = self.total_steps.saturating_sub(self.state.step) as f64;
                let remaining_evals = (self.cfg.epochs - epoch) as f64;
                let m = StepMetrics {
                    images_per_sec: batch.batch_size as f64 / ema,
                    eta_secs: remaining_steps * ema + remaining_evals * eval_seconds.unwrap_or(0.0),
                    ..metrics
                };
                self.log.step(&m, seconds_before + session_start.elapsed().as_secs_f64())?;
                self.log_step_scalars(&m);
                self.emit(TrainEvent::Step(m));
            }
            let t_eval = Instant::now();
            self.end_epoch(epoch, seconds_before + session_start.elapsed().as_secs_f64())?;
            eval_seconds = Some(t_eval.elapsed().as_secs_f64());
            let session_epochs = epoch + 1 - first_epoch;
            let stop_here =
                self.cfg.stop_after_epoch.is_some_and(|n| session_epochs >= n && epoch + 1 < self.cfg.epochs);
            if self.control.stop_requested() || stop_here {
                return Ok(self.summary(EndReason::Stopped));
            }
        }
        self.export()?;
        Ok(self.summary(EndReason::Completed))
    }

    /// Builds or opens the teacher cache when the run distils and the cache is on (`None`
    /// otherwise). Once the cache is ready the teacher itself is dropped: it is not needed again.
    fn prepare_teacher_cache(&mut self) -> anyhow::Result<Option<Prepared>> {
        let (Some(teacher), Some(weights)) = (&self.teacher, &self.cfg.teacher_weights) else { return Ok(None) };
        if !self.cfg.teacher_cache {
            return Ok(None);
        }
        let maps = match (&self.distiller, &self.terms) {
            (Some(d), _) => Some(d.teacher_maps()),
            (None, Some(t)) => Some(t.teacher_maps()),
            (None, None) => None,
        };
        let features = match maps {
            Some(maps) => {
                let taps = teacher.feature_taps();
                maps.iter().filter_map(|n| taps.iter().find(|t| t.name == *n)).map(|t| (t.name, t.stride)).collect()
            }
            None => Vec::new(),
        };
        let spec =
            CacheSpec { base: Resize::ShorterSide(self.cfg.size), logits: self.cfg.uses_teacher_logits(), features };
        let location = CacheLocation {
            root: self.cfg.teacher_cache_root(),
            budget_bytes: (self.cfg.teacher_cache_gb.max(0.0) * 1e9) as u64,
        };
        let what = "teacher cache".to_string();
        let events = self.events;
        let mut progress = |done, total| send(events, TrainEvent::Preparing { what: what.clone(), done, total });
        let t0 = Instant::now();
        let prepared = teacher_cache::prepare(
            teacher,
            weights,
            &self.data.train,
            spec,
            &location,
            &self.device,
            &mut progress,
            &|| self.wait_while_paused(),
        )
        .context("building the teacher cache")?;
        self.state.cache_seconds += t0.elapsed().as_secs_f64();
        if let Prepared::Ready(cache) = &prepared {
            self.emit(TrainEvent::Message(format!(
                "teacher outputs cached in {} ({:.0} s); the teacher no longer runs during training",
                cache.dir().display(),
                t0.elapsed().as_secs_f64()
            )));
            self.teacher = None;
        }
        Ok(Some(prepared))
    }

    /// Reports each newly skipped training sample once; fails only when no sample is left.
    fn note_skipped(&mut self, skipped: &[(usize, String)]) -> anyhow::Result<()> {
        for (index, message) in skipped {
            if self.skipped_train.insert(*index, message.clone()).is_none() {
                self.emit(TrainEvent::Message(format!("skipped training sample: {message}")));
            }
        }
        let total = self.data.train.len();
        if self.skipped_train.len() >= total {
            let first = self.skipped_train.values().next().cloned().unwrap_or_default();
            anyhow::bail!(
                "no usable sample left in split '{}' of {}: all {total} were skipped (first: {first}); \
                 `segdistill check-data` lists every problem",
                self.data.train.split,
                self.data.train.root.display()
            );
        }
        Ok(())
    }

    /// Blocks while paused; false if a stop was requested.
    fn wait_while_paused(&self) -> bool {
        if self.control.is_paused() && !self.control.stop_requested() {
            self.emit(TrainEvent::Paused);
            while self.control.is_paused() && !self.control.stop_requested() {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.emit(TrainEvent::Resumed);
        }
        !self.control.stop_requested()
    }

    fn stop(&mut self, session_start: Instant, seconds_before: f64) -> anyhow::Result<Summary> {
        self.state.train_seconds = seconds_before + session_start.elapsed().as_secs_f64();
        if self.state.step > 0 {
            self.save(checkpoint::last_path(&self.run_dir), CheckpointKind::Last)?;
        }
        Ok(self.summary(EndReason::Stopped))
    }

    fn train_step(&mut self, train_batch: &TrainBatch, epoch: usize) -> anyhow::Result<StepMetrics> {
        let batch = &train_batch.batch;
        let (b, h, w) = (batch.batch_size, batch.height, batch.width);
        // Under autocast (bf16) the networks take bf16 images; the losses get fp32 outputs back.
        let x =
            Tensor::from_slice(&batch.images, (b, 3, h, w), &self.device)?.to_dtype(self.precision.compute_dtype())?;
        let target = Target::new(&batch.masks, (b, h, w), self.class_weights.as_deref(), &self.device)?;
        let cached = train_batch.teacher.as_ref().map(|t| t.to_tensors(&self.device)).transpose()?;
        let teacher_out = match (&cached, &self.teacher) {
            (None, Some(t)) => Some(t.forward(&x, Mode::Eval)?),
            _ => None,
        };
        let signal = match (&cached, &teacher_out) {
            (Some(c), _) => Some(TeacherSignal { logits: c.logits.as_ref(), features: &c.features }),
            (None, Some(o)) => Some(TeacherSignal { logits: Some(&o.logits), features: &o.features }),
            (None, None) => None,
        };
        let step = self.state.step;
        let seed = Rng::for_item(self.cfg.seed, 0x5EED, step as u64).next_u64();
        let lr = self.schedule.lr(step);
        let model = StepModel {
            student: &self.student,
            distiller: self.distiller.as_ref(),
            terms: self.terms.as_ref(),
            optimizer: &mut self.optimizer,
            mode: self.cfg.distill,
            loss: &self.cfg.loss,
            grad_clip: self.cfg.optimizer.grad_clip,
            freeze_bn: self.cfg.freeze_bn,
        };
        let inputs = StepBatch { images: &x, target: &target, teacher: signal.as_ref(), dropout_seed: seed, lr };
        let LossValues { total: loss, ce, kd, feature, terms } = match optimization_step(model, inputs)? {
            StepOutcome::Updated(values) => values,
            StepOutcome::NonFiniteLoss(v) | StepOutcome::NonFiniteGradient(v) => {
                return Err(NonFiniteLoss::new(v, step + 1, lr, self).into());
            }
        };
        self.state.step += 1;
        self.state.batch_in_epoch += 1;
        self.state.epoch_loss_sum += loss;
        self.state.epoch_loss_count += 1;
        Ok(StepMetrics {
            epoch,
            step: self.state.step,
            total_steps: self.total_steps,
            steps_per_epoch: self.steps_per_epoch,
            loss,
            ce,
            kd,
            feature,
            terms: terms.into_iter().map(|(k, v)| (k.name().to_string(), v)).collect(),
            lr,
            images_per_sec: 0.0,
            eta_secs: 0.0,
        })
    }

    fn val_resize(&self) -> Resize {
        Resize::ShorterSide(self.cfg.val_size.unwrap_or(self.cfg.size))
    }

    /// Evaluates the finished epoch and writes its checkpoints: `last` first (the epoch is never
    /// lost, whatever happens after), then the best weights when they improved.
    fn end_epoch(&mut self, epoch: usize, elapsed: f64) -> anyhow::Result<()> {
        let evaluated = evaluate(&self.student, self.data.val.clone(), self.val_resize(), &self.device, &|_, _| {});
        let outcome: EvalOutcome = match evaluated {
            Ok(outcome) => outcome,
            Err(e) => {
                // The checkpoint still says "every batch of this epoch done": a resume goes straight
                // to this evaluation again.
                self.state.train_seconds = elapsed;
                let last = checkpoint::last_path(&self.run_dir);
                self.save(last.clone(), CheckpointKind::Last)?;
                return Err(e.context(format!(
                    "evaluating after epoch {} failed; the epoch's training is saved in {} and --resume evaluates it again",
                    epoch + 1,
                    last.display()
                )));
            }
        };
        for message in &outcome.skipped {
            if !self.skipped_val.contains(message) {
                self.emit(TrainEvent::Message(format!("skipped validation sample: {message}")));
                self.skipped_val.push(message.clone());
            }
        }
        let scores = outcome.confusion.scores();
        let lr = self.schedule.lr(self.state.step.saturating_sub(1));
        let train_loss = self.state.epoch_loss_sum / self.state.epoch_loss_count.max(1) as f64;
        let eval = EvalMetrics {
            epoch,
            step: self.state.step,
            val_loss: outcome.val_loss,
            miou: scores.miou,
            pixel_acc: scores.pixel_acc,
            iou: scores.iou.clone(),
            ms_per_image: outcome.ms_per_image,
        };
        self.log.epoch(train_loss, lr, &eval, elapsed)?;
        self.log_evaluation(&eval, &outcome.images);
        self.state.history.push(EpochRecord {
            epoch,
            step: self.state.step,
            train_loss,
            val_loss: outcome.val_loss,
            miou: scores.miou,
            pixel_acc: scores.pixel_acc,
            iou: scores.iou,
            lr,
            ms_per_image: outcome.ms_per_image,
        });
        self.schedule.on_epoch_end(scores.miou);
        self.state.plateau = self.schedule.plateau.clone();
        self.state.epoch = epoch + 1;
        self.state.batch_in_epoch = 0;
        self.state.epoch_loss_sum = 0.0;
        self.state.epoch_loss_count = 0;
        self.state.train_seconds = elapsed;
        self.emit(TrainEvent::Evaluated(eval));

        let improved = scores.miou.is_finite() && self.state.best.as_ref().is_none_or(|b| scores.miou > b.miou);
        let student_weights = varmap_tensors(&self.student_vars);
        if improved {
            let weights_digest = Some(crate::model::weights::digest::of_tensors(&student_weights)?);
            self.state.best = Some(BestRecord { miou: scores.miou, epoch, weights_digest });
        }
        // `last` first: it holds this epoch's weights, so whatever happens before the best files
        // are written, the recorded best is in a checkpoint (and `best_weights::reconcile` finds it).
        self.save(checkpoint::last_path(&self.run_dir), CheckpointKind::Last)?;
        if improved {
            self.save(checkpoint::best_path(&self.run_dir), CheckpointKind::Best)?;
            let student = checkpoint::student_path(&self.run_dir);
            self.folder.ensure_still_claimed()?;
            save_safetensors(&student_weights, &student)
                .with_context(|| format!("cannot write the best student weights {} (disk full?)", student.display()))?;
            let images_path = self.run_dir.join("best_images.json");
            self.folder.ensure_still_claimed()?;
            crate::util::fs::write_atomic(&images_path, serde_json::to_string(&outcome.images)?.as_bytes())
                .with_context(|| format!("cannot write {} (disk full?)", images_path.display()))?;
        }
        if self.cfg.checkpoint_every > 0 && (epoch + 1).is_multiple_of(self.cfg.checkpoint_every) {
            self.save(checkpoint::periodic_path(&self.run_dir, epoch + 1), CheckpointKind::Periodic)?;
        }
        Ok(())
    }

    fn save(&self, path: PathBuf, kind: CheckpointKind) -> anyhow::Result<()> {
        self.folder.ensure_still_claimed()?;
        let ckpt = Checkpoint {
            state: CheckpointState { optimizer: self.optimizer.state.clone(), ..self.state.clone() },
            model: varmap_tensors(&self.student_vars),
            adapters: varmap_tensors(&self.adapter_vars),
            moments: self.optimizer.moment_tensors(),
        };
        checkpoint::save(&path, &ckpt)?;
        self.emit(TrainEvent::CheckpointSaved { kind, path, epoch: self.state.epoch, step: self.state.step });
        Ok(())
    }

    /// `--export`: the best student's weights (`.safetensors`) or its ONNX graph (`.onnx`).
    fn export(&self) -> anyhow::Result<()> {
        let Some(dst) = &self.cfg.export else { return Ok(()) };
        let src = checkpoint::student_path(&self.run_dir);
        if dst.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
            let options = crate::model::onnx::ExportOptions::default();
            let done = crate::model::onnx::export_file(self.cfg.model, &src, dst, &options)?;
            self.emit(TrainEvent::Message(format!("best student exported as ONNX to {}", done.path.display())));
            return Ok(());
        }
        let bytes = std::fs::read(&src).with_context(|| format!("cannot read {}", src.display()))?;
        crate::util::fs::write_atomic(dst, &bytes).with_context(|| format!("cannot write {}", dst.display()))?;
        self.emit(TrainEvent::Message(format!("best student weights saved to {}", dst.display())));
        Ok(())
    }

    /// Writes to the TensorBoard log; the first failure is reported and ends the log, not the run.
    fn tensorboard_write(&mut self, write: impl FnOnce(&mut EventWriter) -> anyhow::Result<()>) {
        let Some(tb) = &mut self.tensorboard else { return };
        if let Err(e) = write(tb) {
            self.tensorboard = None;
            self.emit(TrainEvent::Message(format!("TensorBoard log stopped: {e:#}")));
        }
    }

    fn log_step_scalars(&mut self, m: &StepMetrics) {
        let mut values = vec![("train/loss".to_string(), m.loss), ("train/ce".into(), m.ce), ("train/lr".into(), m.lr)];
        values.extend(m.kd.map(|v| ("train/kd".to_string(), v)));
        values.extend(m.feature.map(|v| ("train/feature".to_string(), v)));
        // A term list logs every term by name (`ce`, `kd` and `feature` are above already).
        values.extend(
            m.terms
                .iter()
                .filter(|(n, _)| !matches!(n.as_str(), "ce" | "kd" | "feature"))
                .map(|(n, v)| (format!("train/{n}"), *v)),
        );
        self.tensorboard_write(|tb| tb.scalars(m.step, &values));
    }

    /// The evaluation's scalars (validation loss, mIoU, pixel accuracy, IoU per class) and the
    /// best and worst validation images (ground truth | prediction).
    fn log_evaluation(&mut self, eval: &EvalMetrics, images: &[ImageScore]) {
        if self.tensorboard.is_none() {
            return;
        }
        let names = self.data.val.classes().names.clone();
        let mut values = vec![
            ("val/loss".to_string(), eval.val_loss),
            ("val/mIoU".into(), eval.miou),
            ("val/pixel_accuracy".into(), eval.pixel_acc),
        ];
        for (c, iou) in eval.iou.iter().enumerate() {
            if let Some(v) = iou {
                values.push((format!("val_IoU/{}", names.get(c).map_or("?", String::as_str)), *v));
            }
        }
        self.tensorboard_write(|tb| tb.scalars(eval.step, &values));
        let ranked = || images.iter().filter(|s| s.miou.is_finite());
        let best = ranked().max_by(|a, b| a.miou.total_cmp(&b.miou));
        let worst = ranked().min_by(|a, b| a.miou.total_cmp(&b.miou));
        for (tag, score) in [("overlays/best", best), ("overlays/worst", worst)] {
            let Some(score) = score else { continue };
            match self.overlay_of(&score.id) {
                Ok(Some(img)) => self.tensorboard_write(|tb| tb.image(eval.step, tag, &img)),
                Ok(None) => {}
                Err(e) => self.emit(TrainEvent::Message(format!("no {tag} image for TensorBoard: {e:#}"))),
            }
        }
    }

    /// A validation image with its ground truth and the student's prediction blended over it,
    /// side by side.
    fn overlay_of(&self, id: &str) -> anyhow::Result<Option<image::RgbImage>> {
        let val = &self.data.val;
        let Some(index) = val.samples.iter().position(|s| s.id == id) else { return Ok(None) };
        let sample = val.load(index)?;
        let pred = crate::train::predict::predict(&self.student, &sample.image, self.val_resize(), &self.device)?;
        let classes = val.classes();
        let voc = classes.dataset == "voc";
        let truth = crate::train::predict::overlay(&sample.image, &sample.mask, classes, 0.55, voc);
        let predicted = crate::train::predict::overlay(&sample.image, &pred.mask, classes, 0.55, voc);
        let (w, h) = truth.dimensions();
        let mut both = image::RgbImage::new(2 * w, h);
        image::imageops::replace(&mut both, &truth, 0, 0);
        image::imageops::replace(&mut both, &predicted, w as i64, 0);
        Ok(Some(both))
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
