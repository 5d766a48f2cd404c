//! Everything that defines a training run, serialised to `runs/<name>/config.json` and into every
//! checkpoint. The CLI's flags and the app's Train tab both produce a [`TrainConfig`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::DatasetKind;
use crate::distill::{DistillMode, LossConfig};
use crate::model::ModelKind;
use crate::util::device::DeviceChoice;

/// Which optimiser, with its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adamw,
    Sgd,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    /// Decoupled (AdamW) or L2 (SGD) weight decay; never applied to norms and biases.
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    pub grad_clip: Option<f64>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adamw,
            lr: 1e-3,
            weight_decay: 1e-4,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            grad_clip: Some(5.0),
        }
    }
}

/// Learning-rate schedule after the warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// lr·(1 − t/T)^power over all steps (torchvision's segmentation reference).
    Poly,
    /// Half a cosine from lr to 0.
    Cosine,
    /// lr·gamma^⌊epoch/step_epochs⌋.
    Step,
    /// lr·factor whenever val mIoU has not improved for `patience` epochs.
    Plateau,
    Constant,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScheduleConfig {
    pub kind: ScheduleKind,
    /// Linear warm-up from `warmup_start`·lr over this many steps.
    pub warmup_steps: usize,
    pub warmup_start: f64,
    pub power: f64,
    pub step_epochs: usize,
    pub gamma: f64,
    pub patience: usize,
    pub factor: f64,
    pub min_lr: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Poly,
            warmup_steps: 0,
            warmup_start: 0.1,
            power: 0.9,
            step_epochs: 10,
            gamma: 0.1,
            patience: 3,
            factor: 0.5,
            min_lr: 0.0,
        }
    }
}

/// The whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Run name: the folder `runs_dir/<name>`.
    pub name: String,
    pub runs_dir: PathBuf,
    /// Dataset folder (VOC or Cityscapes layout).
    pub data: PathBuf,
    pub dataset: Option<DatasetKind>,
    pub train_split: String,
    pub val_split: String,
    /// Use at most this many training / validation samples (quick runs).
    pub train_limit: Option<usize>,
    pub val_limit: Option<usize>,
    pub model: ModelKind,
    pub distill: DistillMode,
    pub loss: LossConfig,
    pub teacher: ModelKind,
    pub teacher_weights: Option<PathBuf>,
    /// ImageNet weights for the student's MobileNetV3 backbone (`None`: from scratch).
    pub backbone_weights: Option<PathBuf>,
    pub epochs: usize,
    pub batch: usize,
    /// Training crop size (square); images are scaled so the shorter side is this, times a
    /// random factor in `scale`.
    pub size: u32,
    pub scale: (f32, f32),
    /// Shorter side of validation images fed to the model (`None`: the training size).
    pub val_size: Option<u32>,
    pub hflip: bool,
    pub color_jitter: bool,
    /// Weight the cross-entropy by median-frequency class weights from the training masks.
    pub class_weights: bool,
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleConfig,
    pub seed: u64,
    pub device: DeviceChoice,
    /// Data-loading threads (0: one per core).
    pub workers: usize,
    /// Also keep a checkpoint every N epochs (0: only `last` and `best`).
    pub checkpoint_every: usize,
    /// Stop cleanly (with a checkpoint) after this many epochs of this session; `--resume`
    /// continues. Lets a long schedule be split across sessions.
    pub stop_after_epoch: Option<usize>,
    /// Copy the best student weights here when the run ends.
    pub export: Option<PathBuf>,
    /// Compute the teacher's outputs once per training image and reuse them every epoch (cut to
    /// each augmented view) instead of running the teacher at every step.
    pub teacher_cache: bool,
    /// Where cached teacher outputs are kept (`None`: `<runs_dir>/teacher-cache`), shared by runs.
    pub teacher_cache_dir: Option<PathBuf>,
    /// Largest teacher cache to build, in GB; a larger one (feature maps of a big dataset) is not
    /// built and the teacher runs live.
    pub teacher_cache_gb: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            name: "run".into(),
            runs_dir: PathBuf::from("runs"),
            data: PathBuf::new(),
            dataset: None,
            train_split: "train".into(),
            val_split: "val".into(),
            train_limit: None,
            val_limit: None,
            model: ModelKind::Mbv3sAspp,
            distill: DistillMode::None,
            loss: LossConfig::default(),
            teacher: ModelKind::FcnResnet50,
            teacher_weights: None,
            backbone_weights: None,
            epochs: 30,
            batch: 8,
            size: 256,
            scale: (0.5, 2.0),
            val_size: None,
            hflip: true,
            color_jitter: true,
            class_weights: false,
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            seed: 0,
            device: DeviceChoice::Auto,
            workers: 0,
            checkpoint_every: 0,
            stop_after_epoch: None,
            export: None,
            teacher_cache: true,
            teacher_cache_dir: None,
            teacher_cache_gb: 16.0,
        }
    }
}

impl TrainConfig {
    pub fn run_dir(&self) -> PathBuf {
        self.runs_dir.join(&self.name)
    }

    pub fn teacher_cache_root(&self) -> PathBuf {
        self.teacher_cache_dir.clone().unwrap_or_else(|| self.runs_dir.join("teacher-cache"))
    }

    /// Checks what can be checked before any file is read.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.epochs > 0, "epochs must be at least 1");
        anyhow::ensure!(self.batch > 0, "batch must be at least 1");
        anyhow::ensure!(self.size >= 32, "size must be at least 32 pixels");
        anyhow::ensure!(self.optimizer.lr > 0.0 && self.optimizer.lr.is_finite(), "lr must be a positive number");
        anyhow::ensure!(self.scale.0 > 0.0 && self.scale.1 >= self.scale.0, "scale range must be 0 < min ≤ max");
        anyhow::ensure!(self.model != ModelKind::FcnResnet50, "fcn-resnet50 is the teacher; pick a student model");
        anyhow::ensure!(self.loss.tau > 0.0, "tau must be positive");
        anyhow::ensure!(
            !self.name.is_empty() && !self.name.contains(['/', '\\']) && self.name != "." && self.name != "..",
            "run name `{}` must be a plain folder name",
            self.name
        );
        if self.distill.needs_teacher() {
            anyhow::ensure!(
                self.teacher_weights.is_some(),
                "distillation mode `{}` needs --teacher-weights (e.g. weights/fcn_resnet50_coco-1167a1af.pth; \
                 `segdistill download weights` fetches it)",
                self.distill.name()
            );
        }
        Ok(())
    }
}
