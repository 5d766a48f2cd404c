//! `segdistill train`: a headless training run with a progress bar (the lab's Steps 3 and 4).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::data::DatasetKind;
use crate::distill::loss_terms::LossTerms;
use crate::distill::{DistillMode, KdForm, PixelAverage};
use crate::model::{ModelKind, format_params};
use crate::train::config::{OptimizerKind, ScheduleKind};
use crate::train::events::{EndReason, EventSink, TrainEvent};
use crate::train::{TrainConfig, start};
use crate::util::device::{DeviceChoice, Precision};
use crate::util::fmt::format_duration;

/// Flags left out take their value from [`TrainConfig::default`] for a new run, and from the
/// run's saved configuration with `--resume`; that is why every setting here is optional.
#[derive(Clone, Debug, clap::Args)]
pub struct TrainArgs {
    #[arg(long, help = format!("{}. Required for a new run.", crate::data::dataset::DATASET_FOLDER_HELP))]
    pub data: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Student model [default: mbv3s-aspp].
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// Distillation mode [default: none]: a preset for `--loss` (none = ce, response = ce + response,
    /// feature = ce + feature, combined = all three, weighted by --alpha, --beta, --gamma).
    #[arg(long, value_enum)]
    pub distill: Option<DistillMode>,
    /// The loss as weighted terms instead of a --distill preset, e.g. `ce=1,kd=0.5,cwd-logits=3`;
    /// options after a colon: `kd=1:tau=2`, `dist=1:beta=1:gamma=2`, `pairwise=0.5:scale=0.5`.
    /// Terms: ce, response, feature, kd, cwd-logits, cwd-features, pairwise, ifvd, cirkd,
    /// cirkd-region, at, fitnet, dist (a name alone takes its default weight; docs/distillation.md).
    #[arg(long, conflicts_with = "distill")]
    pub loss: Option<LossTerms>,
    /// Teacher weights (torchvision's fcn_resnet50_coco-1167a1af.pth or a trained student).
    #[arg(long)]
    pub teacher_weights: Option<PathBuf>,
    /// Teacher architecture [default: fcn-resnet50].
    #[arg(long, value_enum)]
    pub teacher_model: Option<ModelKind>,
    /// A finished run as the teacher: its model and best weights (`<run>/student.safetensors`);
    /// instead of --teacher-model and --teacher-weights.
    #[arg(long, conflicts_with_all = ["teacher_model", "teacher_weights"])]
    pub teacher_run: Option<PathBuf>,
    /// ImageNet weights for the backbone: MobileNetV3 (mobilenet_v3_small-047dcff4.pth) for the
    /// students, ResNet-50 (resnet50-0676ba61.pth) for fcn-resnet50.
    #[arg(long)]
    pub backbone_weights: Option<PathBuf>,
    /// Start from a complete model file (fine-tuning): torchvision's published weights of the same
    /// architecture (fcn_resnet50_coco-1167a1af.pth, …) or a run's student.safetensors.
    #[arg(long, conflicts_with = "backbone_weights")]
    pub init_weights: Option<PathBuf>,
    /// Epochs in all [default: 30]; on --resume, extends or shortens the schedule.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size [default: 8].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Learning rate [default: 1e-3 for AdamW, 0.01 for SGD]; on --resume, overrides the saved one
    /// (e.g. after a divergence).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Training crop size in pixels (square) [default: 256].
    #[arg(long)]
    pub size: Option<u32>,
    /// Shorter side of validation images [default: --size].
    #[arg(long)]
    pub val_size: Option<u32>,
    /// Smallest random scale factor [default: 0.5].
    #[arg(long)]
    pub scale_min: Option<f32>,
    /// Largest random scale factor [default: 2].
    #[arg(long)]
    pub scale_max: Option<f32>,
    #[arg(long)]
    pub no_flip: bool,
    #[arg(long)]
    pub no_jitter: bool,
    /// CE weight α [default: 1].
    #[arg(long)]
    pub alpha: Option<f64>,
    /// KD weight β [default: 0.5].
    #[arg(long)]
    pub beta: Option<f64>,
    /// Feature-KD weight γ [default: 0.3].
    #[arg(long)]
    pub gamma: Option<f64>,
    /// KD temperature τ [default: 4].
    #[arg(long)]
    pub tau: Option<f64>,
    /// Weight of the auxiliary head's cross-entropy (FCN-ResNet50's layer3 head) [default: 0.5].
    #[arg(long)]
    pub aux_weight: Option<f64>,
    /// KD form: the lab's soft cross-entropy or Hinton's τ²·KL [default: soft-ce].
    #[arg(long, value_enum)]
    pub kd_form: Option<KdForm>,
    /// Average the KD term over labelled pixels only (default: all pixels).
    #[arg(long)]
    pub kd_labelled_only: bool,
    /// Optimiser [default: adamw].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Weight decay on conv/linear weights [default: 1e-4].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// SGD momentum [default: 0.9].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Learning-rate schedule [default: poly].
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleKind>,
    /// Linear warm-up steps [default: 0].
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// Clip the global gradient norm; 0 disables [default: 5].
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// Weight the cross-entropy by median-frequency class weights from the training masks.
    #[arg(long)]
    pub class_weights: bool,
    /// Frozen batch norm: running statistics as loaded, scale and shift fixed (fine-tuning a
    /// pretrained teacher with small batches, as torchvision's FrozenBatchNorm2d).
    #[arg(long)]
    pub freeze_bn: bool,
    /// Training split [default: train].
    #[arg(long)]
    pub train_split: Option<String>,
    /// Validation split [default: val].
    #[arg(long)]
    pub val_split: Option<String>,
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Images without masks that join training for the distillation terms only: a folder of
    /// images, or a split such as `unlabeled` (the dataset's images that have no mask;
    /// `segdistill splits` lists them).
    #[arg(long, value_name = "SPLIT_OR_FOLDER")]
    pub unlabeled: Option<String>,
    /// Unlabelled images per labelled image in each batch [default: 1].
    #[arg(long, value_name = "RATIO")]
    pub unlabeled_ratio: Option<f64>,
    #[arg(long)]
    pub val_limit: Option<usize>,
    /// Seed of data order, augmentation, dropout and initialisation [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device [default: auto].
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// Arithmetic of GPU matrix products and convolutions; when left out, tf32 on a GPU (as PyTorch's
    /// convolutions) and fp32 on the CPU, which always computes in fp32.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Data-loading threads; 0: one per core [default: 0].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Run folder (default: runs/<model>-<distill>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint, with its saved settings.
    #[arg(long)]
    pub resume: bool,
    /// Keep a checkpoint every N epochs besides `last` and `best` [default: 0, none].
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Stop cleanly after N epochs of this session (resume later with --resume).
    #[arg(long)]
    pub stop_after_epoch: Option<usize>,
    /// At the end, copy the best student weights to this file (`.safetensors`), or write them as
    /// an ONNX graph (`.onnx`, dynamic input; `segdistill export` for more options).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Run the teacher at every step instead of caching its outputs once per image.
    #[arg(long)]
    pub no_teacher_cache: bool,
    /// Folder for cached teacher outputs (default: <runs folder>/teacher-cache; shared by runs).
    #[arg(long)]
    pub teacher_cache_dir: Option<PathBuf>,
    /// Largest teacher cache to build, in GB [default: 16].
    #[arg(long)]
    pub teacher_cache_gb: Option<f64>,
    /// Print every event as a JSON line on stdout instead of the progress bar.
    #[arg(long)]
    pub events_json: bool,
    /// For a plain folder without train.txt/val.txt: the share of images that goes to val [default:
    /// 0.2]. The split is drawn with a fixed seed and written into the folder, so later runs (and
    /// --resume) see the same one; a folder that has its lists keeps them.
    #[arg(long)]
    pub val_fraction: Option<f64>,
}

/// Applies `value` when the flag was given; whether it was.
fn given<T>(value: &Option<T>, apply: impl FnOnce(&T)) -> bool {
    value.as_ref().map(apply).is_some()
}

/// Applies one flag to a configuration if it was given; returns whether it was.
type Setter = fn(&TrainArgs, &mut TrainConfig) -> bool;

/// The one mapping from flags onto [`TrainConfig`], used for new runs and resumed ones alike.
const FLAGS: &[(&str, Setter)] = &[
    ("--data", |a, c| given(&a.data, |v| c.data = v.clone())),
    ("--dataset", |a, c| given(&a.dataset, |v| c.dataset = Some(*v))),
    ("--model", |a, c| given(&a.model, |v| c.model = *v)),
    ("--distill", |a, c| given(&a.distill, |v| c.distill = *v)),
    ("--loss", |a, c| given(&a.loss, |v| c.loss_terms = Some(v.clone()))),
    ("--teacher-weights", |a, c| given(&a.teacher_weights, |v| c.teacher_weights = Some(v.clone()))),
    ("--teacher-model", |a, c| given(&a.teacher_model, |v| c.teacher = *v)),
    ("--backbone-weights", |a, c| given(&a.backbone_weights, |v| c.backbone_weights = Some(v.clone()))),
    ("--init-weights", |a, c| given(&a.init_weights, |v| c.init_weights = Some(v.clone()))),
    ("--epochs", |a, c| given(&a.epochs, |v| c.epochs = *v)),
    ("--batch", |a, c| given(&a.batch, |v| c.batch = *v)),
    // Before --lr: switching the optimiser moves a default rate to the new optimiser's default.
    ("--optimizer", |a, c| given(&a.optimizer, |v| c.optimizer.set_kind(*v))),
    ("--lr", |a, c| given(&a.lr, |v| c.optimizer.lr = *v)),
    ("--size", |a, c| given(&a.size, |v| c.size = *v)),
    ("--val-size", |a, c| given(&a.val_size, |v| c.val_size = Some(*v))),
    ("--scale-min", |a, c| given(&a.scale_min, |v| c.scale.0 = *v)),
    ("--scale-max", |a, c| given(&a.scale_max, |v| c.scale.1 = *v)),
    ("--no-flip", |a, c| {
        a.no_flip && {
            c.hflip = false;
            true
        }
    }),
    ("--no-jitter", |a, c| {
        a.no_jitter && {
            c.color_jitter = false;
            true
        }
    }),
    ("--alpha", |a, c| given(&a.alpha, |v| c.loss.alpha = *v)),
    ("--beta", |a, c| given(&a.beta, |v| c.loss.beta = *v)),
    ("--gamma", |a, c| given(&a.gamma, |v| c.loss.gamma = *v)),
    ("--tau", |a, c| given(&a.tau, |v| c.loss.tau = *v)),
    ("--aux-weight", |a, c| given(&a.aux_weight, |v| c.loss.aux_weight = *v)),
    ("--kd-form", |a, c| given(&a.kd_form, |v| c.loss.kd_form = *v)),
    ("--kd-labelled-only", |a, c| {
        a.kd_labelled_only && {
            c.loss.kd_average = PixelAverage::Labelled;
            true
        }
    }),
    ("--weight-decay", |a, c| given(&a.weight_decay, |v| c.optimizer.weight_decay = *v)),
    ("--momentum", |a, c| given(&a.momentum, |v| c.optimizer.momentum = *v)),
    ("--schedule", |a, c| given(&a.schedule, |v| c.schedule.kind = *v)),
    ("--warmup-steps", |a, c| given(&a.warmup_steps, |v| c.schedule.warmup_steps = *v)),
    // 0 turns clipping off; NaN is kept so that validation rejects it by name.
    ("--grad-clip", |a, c| given(&a.grad_clip, |v| c.optimizer.grad_clip = (*v != 0.0).then_some(*v))),
    ("--class-weights", |a, c| {
        a.class_weights && {
            c.class_weights = true;
            true
        }
    }),
    ("--freeze-bn", |a, c| {
        a.freeze_bn && {
            c.freeze_bn = true;
            true
        }
    }),
    ("--train-split", |a, c| given(&a.train_split, |v| c.train_split = v.clone())),
    ("--val-split", |a, c| given(&a.val_split, |v| c.val_split = v.clone())),
    ("--train-limit", |a, c| given(&a.train_limit, |v| c.train_limit = Some(*v))),
    ("--unlabeled", |a, c| given(&a.unlabeled, |v| c.unlabeled = Some(v.clone()))),
    ("--unlabeled-ratio", |a, c| given(&a.unlabeled_ratio, |v| c.unlabeled_ratio = *v)),
    ("--val-limit", |a, c| given(&a.val_limit, |v| c.val_limit = Some(*v))),
    ("--seed", |a, c| given(&a.seed, |v| c.seed = *v)),
    ("--device", |a, c| given(&a.device, |v| c.device = *v)),
    ("--precision", |a, c| given(&a.precision, |v| c.precision = Some(*v))),
    ("--workers", |a, c| given(&a.workers, |v| c.workers = *v)),
    ("--checkpoint-every", |a, c| given(&a.checkpoint_every, |v| c.checkpoint_every = *v)),
    ("--stop-after-epoch", |a, c| given(&a.stop_after_epoch, |v| c.stop_after_epoch = Some(*v))),
    ("--export", |a, c| given(&a.export, |v| c.export = Some(v.clone()))),
    ("--no-teacher-cache", |a, c| {
        a.no_teacher_cache && {
            c.teacher_cache = false;
            true
        }
    }),
    ("--teacher-cache-dir", |a, c| given(&a.teacher_cache_dir, |v| c.teacher_cache_dir = Some(v.clone()))),
    ("--teacher-cache-gb", |a, c| given(&a.teacher_cache_gb, |v| c.teacher_cache_gb = *v)),
];

impl TrainArgs {
    /// The run folder: `--out`, else `runs/<model>-<distill>` (`runs/<model>-<term>-<term>…` with `--loss`).
    fn run_dir(&self) -> PathBuf {
        let defaults = TrainConfig::default();
        self.out.clone().unwrap_or_else(|| {
            let (model, distill) = (self.model.unwrap_or(defaults.model), self.distill.unwrap_or(defaults.distill));
            let what = match &self.loss {
                // `--loss ce=1,kd=0.5` → `ce-kd`
                Some(l) => l.0.iter().map(|t| t.kind.name()).collect::<Vec<_>>().join("-"),
                None => distill.name().to_string(),
            };
            PathBuf::from("runs").join(format!("{model}-{what}"))
        })
    }

    /// Points `c` at the run folder (absolute, so the run works from any directory).
    fn place(&self, c: &mut TrainConfig) {
        let out = crate::util::fs::absolute(&self.run_dir());
        c.name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
        c.runs_dir = out.parent().map(PathBuf::from).unwrap_or_default();
    }

    /// The loss weights these flags give a new run (the defaults where a flag is not given).
    pub(super) fn loss_config(&self) -> crate::distill::LossConfig {
        let mut c = TrainConfig::default();
        for (_, set) in FLAGS {
            set(self, &mut c);
        }
        c.loss
    }

    /// A new run: the defaults with every given flag.
    fn new_config(&self) -> anyhow::Result<TrainConfig> {
        anyhow::ensure!(self.data.is_some(), "--data is required for a new run (the dataset folder)");
        let mut c = TrainConfig::default();
        for (_, set) in FLAGS {
            set(self, &mut c);
        }
        self.place(&mut c);
        Ok(c.with_absolute_paths())
    }

    /// A resumed run: its saved configuration with the given flags. A flag that would change a
    /// setting a run keeps is an error naming the flag and both values.
    fn resume_config(&self, saved: TrainConfig) -> anyhow::Result<TrainConfig> {
        let mut c = saved.with_absolute_paths();
        self.place(&mut c);
        // Where a session stops is the session's own, not the run's.
        c.stop_after_epoch = None;
        for (flag, set) in FLAGS {
            let before = c.clone();
            if !set(self, &mut c) {
                continue;
            }
            c = c.with_absolute_paths();
            // Moved inputs and a new batch size are the engine's to check: it reads the run's records.
            if let Some(change) = crate::train::config::refused_resume_change(&before, &c) {
                anyhow::bail!(
                    "{flag} {} differs from the run's {} {}: a resumed run keeps its data, model and training settings \
                     (only {} can change); leave {flag} out, or start a new run with another --out",
                    change.new,
                    change.setting,
                    change.old,
                    crate::train::config::resumable_in_words()
                );
            }
        }
        Ok(c)
    }

    /// A teacher given to a run that does not distil would be silently unused: refused, with the
    /// flag that makes it count (the app shows its teacher only when a distillation mode is on).
    fn check_teacher_is_used(&self) -> anyhow::Result<()> {
        let teacher_flag = match (&self.teacher_weights, &self.teacher_run) {
            (Some(_), _) => "--teacher-weights",
            (None, Some(_)) => "--teacher-run",
            (None, None) => return Ok(()),
        };
        if self.resume && self.distill.is_none() && self.loss.is_none() {
            return Ok(()); // the run's own mode decides; a change of teacher is checked there
        }
        anyhow::ensure!(
            self.distill.is_some_and(|d| d.needs_teacher()) || self.loss.as_ref().is_some_and(|l| l.needs_teacher()),
            "{teacher_flag} is given but the run does not distil (--distill is {}), so the teacher would not be \
             used; add --distill response (or feature, combined), or leave {teacher_flag} out",
            self.distill.map_or("none", |d| d.name())
        );
        Ok(())
    }

    fn config(&self) -> anyhow::Result<TrainConfig> {
        if let Some(run) = &self.teacher_run {
            // `--teacher-run` is shorthand for the two flags it replaces, so new runs and resumed
            // ones treat it exactly as they treat them.
            let (model, weights) = teacher_of_run(run)?;
            let args =
                Self { teacher_run: None, teacher_model: Some(model), teacher_weights: Some(weights), ..self.clone() };
            return args.config();
        }
        if !self.resume {
            return self.new_config();
        }
        let run_dir = crate::util::fs::absolute(&self.run_dir());
        match crate::train::run_folder::saved_config(&run_dir)? {
            Some(saved) => self.resume_config(saved),
            None => anyhow::bail!("nothing to resume: {} holds no run (start one without --resume)", run_dir.display()),
        }
    }
}

/// `--val-fraction`: draws and writes down a plain folder's split before the run opens it (the
/// engine then reads the lists like any folder's). Refused for layouts with their own splits; a
/// folder that already has both lists keeps them, and says so.
fn write_down_folder_split(config: &TrainConfig, fraction: f64) -> anyhow::Result<()> {
    use crate::data::folder;
    anyhow::ensure!((0.0..1.0).contains(&fraction), "--val-fraction must be at least 0 and below 1 (got {fraction})");
    let kind = config.dataset.unwrap_or_else(|| DatasetKind::detect(&config.data));
    anyhow::ensure!(
        kind == DatasetKind::Folder,
        "--val-fraction splits a plain folder without train.txt/val.txt; {} is a {kind} dataset with its own \
         splits (choose them with --train-split and --val-split)",
        config.data.display()
    );
    let root = folder::find_root(&config.data)?;
    let (train, val) = (folder::split_file(&root, "train"), folder::split_file(&root, "val"));
    if train.is_file() && val.is_file() {
        eprintln!(
            "note: --val-fraction is not used: {} and {} already split the folder (delete both to draw a new split)",
            train.display(),
            val.display()
        );
        return Ok(());
    }
    let ds = crate::data::Dataset::open_with(&config.data, Some(kind), &config.train_split, fraction)?;
    eprintln!("split {} with {fraction} to val: {} and {} written", ds.root.display(), train.display(), val.display());
    Ok(())
}

/// The model and best weights of the run in `dir`, for `--teacher-run`.
fn teacher_of_run(dir: &std::path::Path) -> anyhow::Result<(ModelKind, PathBuf)> {
    let dir = crate::util::fs::absolute(dir);
    let run = crate::train::best_weights::best_student(&dir)
        .map_err(|e| e.context(format!("--teacher-run {}", dir.display())))?;
    for note in &run.notes {
        eprintln!("note: {note}");
    }
    Ok((run.config.model, run.weights))
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    run_with_signals(args, &super::signals::StopSignals::install())
}

/// One training under signal handlers already installed (a study runs many in one process).
pub(super) fn run_with_signals(args: TrainArgs, signals: &super::signals::StopSignals) -> anyhow::Result<ExitCode> {
    args.check_teacher_is_used()?;
    let config = args.config()?;
    if let Some(fraction) = args.val_fraction {
        write_down_folder_split(&config, fraction)?;
    }
    let mut handle = start(config, args.resume);
    signals.attach(handle.control.clone());
    let mut printer = Printer::new(args.events_json);
    let mut code = ExitCode::SUCCESS;
    for event in handle.events.iter() {
        printer.on_event(&event);
        match &event {
            TrainEvent::Failed { .. } => code = ExitCode::from(2),
            // A run a signal stopped before its end did not finish: scripts must see that.
            TrainEvent::Finished(s) if s.reason != EndReason::Completed => {
                if let Some(status) = signals.exit_status() {
                    code = ExitCode::from(status);
                }
            }
            TrainEvent::Finished(_) => {}
            _ => continue,
        }
        break;
    }
    handle.join();
    Ok(code)
}

/// Renders events: a progress bar with per-epoch lines, or JSON lines.
struct Printer {
    json: bool,
    bar: Option<indicatif::ProgressBar>,
    /// Work before training (the teacher cache), while it runs; the training bar hides meanwhile.
    prep: Option<indicatif::ProgressBar>,
    epochs: usize,
}

impl Printer {
    fn new(json: bool) -> Self {
        Self { json, bar: None, prep: None, epochs: 0 }
    }

    fn println(&self, line: String) {
        match self.prep.as_ref().or(self.bar.as_ref()) {
            // A hidden bar (stderr is not a terminal) would swallow the line.
            Some(b) if !b.is_hidden() => b.println(line),
            _ => eprintln!("{line}"),
        }
    }
}

impl EventSink for Printer {
    fn on_event(&mut self, e: &TrainEvent) {
        if self.json {
            if let Ok(s) = serde_json::to_string(e) {
                println!("{s}");
            }
            return;
        }
        match e {
            TrainEvent::Started(i) => {
                self.epochs = i.total_steps / i.steps_per_epoch.max(1);
                eprintln!(
                    "{} ({} parameters), {} on {}; {}; {}",
                    i.model,
                    format_params(i.params),
                    i.distillation_in_words(),
                    i.device,
                    i.images_in_words(),
                    i.run_dir.display()
                );
                if let Some((e, s)) = i.resumed_from {
                    eprintln!("resuming after epoch {e}, step {s}");
                }
                let bar = super::progress::bar(i.total_steps as u64, "training");
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.set_position(i.resumed_from.map_or(0, |(_, s)| s as u64));
                self.bar = Some(bar);
            }
            TrainEvent::Message(m) => self.println(format!("note: {}", crate::util::fmt::escaped_message(m))),
            TrainEvent::Preparing { what, done, total } => self.preparing(what, *done, *total),
            TrainEvent::Step(m) => {
                self.end_preparing();
                if let Some(b) = &self.bar {
                    b.set_position(m.step as u64);
                    let kd = m.kd.map(|v| format!(" kd {v:.3}")).unwrap_or_default();
                    let ft = m.feature.map(|v| format!(" feat {v:.3}")).unwrap_or_default();
                    let ft: String = ft
                        + &m.terms
                            .iter()
                            .filter(|(n, _)| !matches!(n.as_str(), "ce" | "kd" | "response" | "feature"))
                            .map(|(n, v)| format!(" {n} {v:.3}"))
                            .collect::<String>();
                    b.set_message(format!(
                        "epoch {}/{} loss {:.4} (ce {:.3}{kd}{ft}) lr {:.2e} {:.1} img/s ETA {}",
                        m.epoch + 1,
                        self.epochs,
                        m.loss,
                        m.ce,
                        m.lr,
                        m.images_per_sec,
                        format_duration(m.eta_secs)
                    ));
                }
            }
            TrainEvent::Evaluated(m) => self.println(format!(
                "epoch {:>3}/{}: val loss {:.4}  mIoU {:.4}  pixel acc {:.4}  ({:.1} ms/image)",
                m.epoch + 1,
                self.epochs,
                m.val_loss,
                m.miou,
                m.pixel_acc,
                m.ms_per_image
            )),
            TrainEvent::CheckpointSaved { .. } => {}
            TrainEvent::Paused => self.println("paused".into()),
            TrainEvent::Resumed => self.println("resumed".into()),
            TrainEvent::Finished(s) => {
                self.end_preparing();
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                let best = match (s.best_miou, s.best_epoch) {
                    (Some(m), Some(e)) => format!("best mIoU {m:.4} at epoch {}", e + 1),
                    _ => "no evaluation yet".into(),
                };
                let how = match s.reason {
                    EndReason::Completed => "finished",
                    EndReason::Stopped => "stopped (continue with --resume)",
                };
                eprintln!(
                    "{how} after {} epochs, {} steps in {}; {best}; run folder {}",
                    s.epochs_done,
                    s.steps_done,
                    format_duration(s.train_seconds),
                    s.run_dir.display()
                );
                if !s.skipped_samples.is_empty() {
                    eprintln!(
                        "{} sample(s) were skipped because their files could not be used (listed above; \
                         `segdistill check-data` checks a whole split)",
                        s.skipped_samples.len()
                    );
                }
            }
            TrainEvent::Failed { message, run_dir } => {
                self.end_preparing();
                if let Some(b) = self.bar.take() {
                    b.abandon();
                }
                eprintln!("error: {}", crate::util::fmt::escaped_message(message));
                // Only a folder the run actually made is worth pointing at.
                if crate::train::run_folder::holds_run(run_dir) {
                    eprintln!("(run folder: {})", run_dir.display());
                }
            }
        }
    }
}

impl Printer {
    fn preparing(&mut self, what: &str, done: usize, total: usize) {
        let prep = self.prep.get_or_insert_with(|| {
            if let Some(b) = &self.bar {
                b.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let p = super::progress::bar(total as u64, what);
            p.set_position(done as u64);
            p.reset_eta();
            p
        });
        prep.set_position(done as u64);
        if done >= total {
            self.end_preparing();
        }
    }

    fn end_preparing(&mut self) {
        if let Some(p) = self.prep.take() {
            p.finish_and_clear();
            if let Some(b) = &self.bar {
                b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn config(flags: &[&str]) -> TrainConfig {
        let mut argv = vec!["train", "--data", "/d", "--out", "/runs/x"];
        argv.extend(flags);
        Cli::parse_from(argv).args.new_config().unwrap()
    }

    /// The help's "[default: …]" notes are documentation of `TrainConfig::default`; passing each
    /// documented value must give exactly the configuration that leaving the flag out gives.
    #[test]
    fn documented_defaults_are_the_defaults() {
        let base = config(&[]);
        let mut checked = 0;
        for arg in Cli::command().get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let Some(note) = help.split("[default: ").nth(1) else { continue };
            let value = note.split([' ', ',', ']']).next().unwrap_or_default();
            let Some(long) = arg.get_long() else { continue };
            if value.starts_with("--") {
                continue; // "default: --size": another flag's value
            }
            let flag = format!("--{long}");
            assert_eq!(config(&[&flag, value]), base, "{flag}: the help says the default is {value}");
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} documented defaults found");
    }

    /// The per-optimiser default learning rate lives in the configuration: an SGD run from the
    /// CLI and from the app's form train at the same rate, and a chosen rate stays.
    #[test]
    fn an_sgd_run_from_the_cli_and_from_the_app_trains_at_the_same_rate() {
        let cli = config(&["--optimizer", "sgd"]);
        let mut form = crate::ui::state::TrainForm::default();
        form.config.optimizer.set_kind(OptimizerKind::Sgd);
        let app = form.to_config("/d".into(), None, "/runs".into(), "x".into());
        assert_eq!((cli.optimizer.lr, app.optimizer.lr), (0.01, 0.01));
        assert_eq!(config(&["--optimizer", "sgd", "--lr", "0.001"]).optimizer.lr, 0.001, "a chosen rate stays");
        form.config.optimizer.lr = 0.05;
        form.config.optimizer.set_kind(OptimizerKind::Adamw);
        assert_eq!(form.config.optimizer.lr, 0.05, "a chosen rate stays in the form too");
    }

    #[test]
    fn loss_terms_come_from_loss_and_exclude_distill() {
        let c = config(&["--loss", "ce=1,kd=0.5:tau=2,cwd-logits"]);
        let terms = c.loss_terms.as_ref().unwrap();
        assert_eq!(terms.to_string(), "ce=1,kd=0.5:tau=2,cwd-logits=3");
        assert!(c.needs_teacher() && c.uses_teacher_logits() && !c.uses_teacher_features());
        assert_eq!(config(&[]).loss_terms, None, "without --loss the preset stands");
        let both = Cli::try_parse_from(["train", "--data", "/d", "--loss", "ce=1", "--distill", "response"]);
        let err = both.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--loss") && err.contains("--distill"), "{err}");
        let bad = Cli::try_parse_from(["train", "--data", "/d", "--loss", "ce=1,nope"]);
        let err = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("no loss term `nope`"), "{err}");
    }

    #[test]
    fn resume_applies_what_may_change_and_names_what_may_not() {
        let saved = config(&["--model", "mbv3s-tiny", "--batch", "4", "--stop-after-epoch", "1"]);
        let args = |flags: &[&str]| {
            let mut argv = vec!["train", "--resume", "--out", "/runs/x"];
            argv.extend(flags);
            Cli::parse_from(argv).args
        };
        let resumed = args(&["--epochs", "50", "--lr", "0.01"]).resume_config(saved.clone()).unwrap();
        assert_eq!((resumed.epochs, resumed.optimizer.lr, resumed.batch), (50, 0.01, 4));
        assert_eq!(resumed.model, ModelKind::Mbv3sTiny, "left-out flags keep the run's values, not the defaults");
        assert_eq!(resumed.stop_after_epoch, None, "where a session stops is not carried over");
        let err = args(&["--model", "mbv3s-aspp"]).resume_config(saved.clone()).unwrap_err().to_string();
        assert!(err.contains("--model mbv3s-aspp") && err.contains("mbv3s-tiny"), "{err}");
        let err = args(&["--no-flip"]).resume_config(saved).unwrap_err().to_string();
        assert!(err.contains("--no-flip") && err.contains("hflip"), "{err}");
    }
}
