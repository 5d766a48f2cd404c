//! `segdistill train`: a headless training run with a progress bar (the lab's Steps 3 and 4).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::data::DatasetKind;
use crate::distill::{DistillMode, KdForm, PixelAverage};
use crate::model::{ModelKind, format_params};
use crate::train::config::{OptimizerKind, ScheduleKind};
use crate::train::events::{EndReason, TrainEvent};
use crate::train::{TrainConfig, start};
use crate::util::device::DeviceChoice;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Dataset folder (VOCdevkit / VOC2012 / a parent, or a Cityscapes root).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    #[arg(long, value_enum, default_value_t = ModelKind::Mbv3sAspp)]
    pub model: ModelKind,
    #[arg(long, value_enum, default_value_t = DistillMode::None)]
    pub distill: DistillMode,
    /// Teacher weights (torchvision's fcn_resnet50_coco-1167a1af.pth or a trained student).
    #[arg(long)]
    pub teacher_weights: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ModelKind::FcnResnet50)]
    pub teacher_model: ModelKind,
    /// ImageNet MobileNetV3 weights for the student's backbone (mobilenet_v3_small-047dcff4.pth).
    #[arg(long)]
    pub backbone_weights: Option<PathBuf>,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Learning rate (on --resume: overrides the saved one, e.g. after a divergence).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Training crop size in pixels (square).
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Shorter side of validation images (default: --size).
    #[arg(long)]
    pub val_size: Option<u32>,
    #[arg(long, default_value_t = 0.5)]
    pub scale_min: f32,
    #[arg(long, default_value_t = 2.0)]
    pub scale_max: f32,
    #[arg(long)]
    pub no_flip: bool,
    #[arg(long)]
    pub no_jitter: bool,
    /// CE weight α.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// KD weight β.
    #[arg(long, default_value_t = 0.5)]
    pub beta: f64,
    /// Feature-KD weight γ.
    #[arg(long, default_value_t = 0.3)]
    pub gamma: f64,
    /// KD temperature τ.
    #[arg(long, default_value_t = 4.0)]
    pub tau: f64,
    /// KD form: the lab's soft cross-entropy or Hinton's τ²·KL.
    #[arg(long, value_enum, default_value_t = KdForm::SoftCrossEntropy)]
    pub kd_form: KdForm,
    /// Average the KD term over labelled pixels only (default: all pixels).
    #[arg(long)]
    pub kd_labelled_only: bool,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adamw)]
    pub optimizer: OptimizerKind,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, value_enum, default_value_t = ScheduleKind::Poly)]
    pub schedule: ScheduleKind,
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    /// Clip the global gradient norm (0 disables).
    #[arg(long, default_value_t = 5.0)]
    pub grad_clip: f64,
    /// Weight the cross-entropy by median-frequency class weights from the training masks.
    #[arg(long)]
    pub class_weights: bool,
    #[arg(long, default_value = "train")]
    pub train_split: String,
    #[arg(long, default_value = "val")]
    pub val_split: String,
    #[arg(long)]
    pub train_limit: Option<usize>,
    #[arg(long)]
    pub val_limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Data-loading threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Run folder (default: runs/<model>-<distill>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Keep a checkpoint every N epochs besides `last` and `best`.
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Stop cleanly after N epochs of this session (resume later with --resume).
    #[arg(long)]
    pub stop_after_epoch: Option<usize>,
    /// Copy the best student weights to this file at the end (e.g. weights/student.safetensors).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Run the teacher at every step instead of caching its outputs once per image.
    #[arg(long)]
    pub no_teacher_cache: bool,
    /// Folder for cached teacher outputs (default: <runs folder>/teacher-cache; shared by runs).
    #[arg(long)]
    pub teacher_cache_dir: Option<PathBuf>,
    /// Largest teacher cache to build, in GB (feature maps of big datasets need the most).
    #[arg(long, default_value_t = 16.0)]
    pub teacher_cache_gb: f64,
    /// Print every event as a JSON line on stdout instead of the progress bar.
    #[arg(long)]
    pub events_json: bool,
}

impl TrainArgs {
    fn config(&self) -> TrainConfig {
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-{}", self.model, self.distill.name())));
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
        let runs_dir = out.parent().map(PathBuf::from).unwrap_or_default();
        let mut c = TrainConfig {
            name,
            runs_dir,
            data: self.data.clone(),
            dataset: self.dataset,
            train_split: self.train_split.clone(),
            val_split: self.val_split.clone(),
            train_limit: self.train_limit,
            val_limit: self.val_limit,
            model: self.model,
            distill: self.distill,
            teacher: self.teacher_model,
            teacher_weights: self.teacher_weights.clone(),
            backbone_weights: self.backbone_weights.clone(),
            epochs: self.epochs,
            batch: self.batch,
            size: self.size,
            scale: (self.scale_min, self.scale_max),
            val_size: self.val_size,
            hflip: !self.no_flip,
            color_jitter: !self.no_jitter,
            class_weights: self.class_weights,
            seed: self.seed,
            device: self.device,
            workers: self.workers,
            checkpoint_every: self.checkpoint_every,
            stop_after_epoch: self.stop_after_epoch,
            export: self.export.clone(),
            teacher_cache: !self.no_teacher_cache,
            teacher_cache_dir: self.teacher_cache_dir.clone(),
            teacher_cache_gb: self.teacher_cache_gb,
            ..Default::default()
        };
        c.loss.alpha = self.alpha;
        c.loss.beta = self.beta;
        c.loss.gamma = self.gamma;
        c.loss.tau = self.tau;
        c.loss.kd_form = self.kd_form;
        c.loss.kd_average = if self.kd_labelled_only { PixelAverage::Labelled } else { PixelAverage::All };
        c.optimizer.kind = self.optimizer;
        c.optimizer.lr = self.lr.unwrap_or(match self.optimizer {
            OptimizerKind::Adamw => 1e-3,
            OptimizerKind::Sgd => 0.01,
        });
        c.optimizer.weight_decay = self.weight_decay;
        c.optimizer.momentum = self.momentum;
        c.optimizer.grad_clip = (self.grad_clip > 0.0).then_some(self.grad_clip);
        c.schedule.kind = self.schedule;
        c.schedule.warmup_steps = self.warmup_steps;
        c
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.config();
    if args.resume && args.lr.is_none() {
        // Keep the saved learning rate unless one was given.
        if let Ok(ckpt) = crate::train::checkpoint::load(&crate::train::checkpoint::last_path(&config.run_dir())) {
            config.optimizer.lr = ckpt.state.config.optimizer.lr;
        }
    }
    let mut handle = start(config, args.resume);
    let control = handle.control.clone();
    let interrupts = std::sync::atomic::AtomicUsize::new(0);
    // First Ctrl-C: finish the step and checkpoint; second: leave at once.
    ctrlc::set_handler(move || {
        if interrupts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            eprintln!("\nstopping after this step (Ctrl-C again to abort without a checkpoint)");
            control.resume();
            control.stop();
        } else {
            std::process::exit(130);
        }
    })
    .ok(); // another handler may be installed (tests); training still works without it
    let mut printer = Printer::new(args.events_json);
    let mut code = ExitCode::SUCCESS;
    for event in handle.events.iter() {
        printer.show(&event);
        match event {
            TrainEvent::Failed { .. } => code = ExitCode::from(2),
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

    fn show(&mut self, e: &TrainEvent) {
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
                    "{} ({} parameters), distillation {}{} on {}; {} train / {} val images; {}",
                    i.model,
                    format_params(i.params),
                    i.mode,
                    i.teacher.as_ref().map(|t| format!(" from {t}")).unwrap_or_default(),
                    i.device,
                    i.train_images,
                    i.val_images,
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
            TrainEvent::Message(m) => self.println(format!("note: {m}")),
            TrainEvent::Preparing { what, done, total } => self.preparing(what, *done, *total),
            TrainEvent::Step(m) => {
                self.end_preparing();
                if let Some(b) = &self.bar {
                    b.set_position(m.step as u64);
                    let kd = m.kd.map(|v| format!(" kd {v:.3}")).unwrap_or_default();
                    let ft = m.feature.map(|v| format!(" feat {v:.3}")).unwrap_or_default();
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
            }
            TrainEvent::Failed { message, run_dir } => {
                self.end_preparing();
                if let Some(b) = self.bar.take() {
                    b.abandon();
                }
                eprintln!("error: {message}\n(run folder: {})", run_dir.display());
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

pub fn format_duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "?".into();
    }
    let s = secs.round() as u64;
    if s >= 3600 { format!("{}h{:02}m", s / 3600, s / 60 % 60) } else { format!("{}m{:02}s", s / 60, s % 60) }
}
