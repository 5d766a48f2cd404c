//! Everything that defines a training run, serialised to `runs/<name>/config.json` and into every
//! checkpoint. The CLI's flags and the app's Train tab both produce a [`TrainConfig`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::DatasetKind;
use crate::distill::loss_terms::LossTerms;
use crate::distill::{DistillMode, LossConfig};
use crate::model::ModelKind;
use crate::util::device::{DeviceChoice, Precision};

/// Which optimiser, with its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adamw,
    Sgd,
}

impl OptimizerKind {
    /// The learning rate a run gets when none is given.
    pub fn default_lr(self) -> f64 {
        match self {
            Self::Adamw => 1e-3,
            Self::Sgd => 0.01,
        }
    }
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

impl OptimizerConfig {
    /// Switches the optimiser. A learning rate still at the old optimiser's default moves to the
    /// new one's (AdamW 1e-3, SGD 0.01), so a run started from the app or the CLI trains at the
    /// same rate; a rate the user chose stays.
    pub fn set_kind(&mut self, kind: OptimizerKind) {
        if self.lr == self.kind.default_lr() {
            self.lr = kind.default_lr();
        }
        self.kind = kind;
    }
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adamw,
            lr: OptimizerKind::Adamw.default_lr(),
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
    /// Dataset folder, in any layout [`crate::data::DatasetKind`] names.
    pub data: PathBuf,
    pub dataset: Option<DatasetKind>,
    pub train_split: String,
    pub val_split: String,
    /// Use at most this many training / validation samples (quick runs).
    pub train_limit: Option<usize>,
    pub val_limit: Option<usize>,
    /// Images without masks that join training for the distillation terms only: a folder of
    /// images, or a split of the dataset such as `unlabeled` (its images that have no mask); see
    /// [`crate::data::unlabeled`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlabeled: Option<String>,
    /// Unlabelled images per labelled image in each batch (`unlabeled`'s share).
    pub unlabeled_ratio: f64,
    pub model: ModelKind,
    pub distill: DistillMode,
    pub loss: LossConfig,
    /// The loss as a list of weighted terms (`--loss`); `None`: the `distill` preset with the
    /// weights of `loss` (run folders written before term lists existed read as `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_terms: Option<LossTerms>,
    pub teacher: ModelKind,
    pub teacher_weights: Option<PathBuf>,
    /// ImageNet weights for the backbone (MobileNetV3 or ResNet-50; `None`: from scratch).
    pub backbone_weights: Option<PathBuf>,
    /// A complete model file to start from (fine-tuning): torchvision's published weights of the
    /// same architecture, or a run's `student.safetensors`.
    pub init_weights: Option<PathBuf>,
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
    /// Frozen batch norm: every batch-norm layer normalises with its running statistics, which
    /// stay as loaded, and its scale and shift do not learn (torchvision's `FrozenBatchNorm2d`).
    /// For fine-tuning a pretrained network with batches too small for reliable statistics.
    pub freeze_bn: bool,
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleConfig,
    pub seed: u64,
    pub device: DeviceChoice,
    /// Arithmetic of GPU products (`None`: tf32 on a GPU, fp32 on the CPU).
    pub precision: Option<Precision>,
    /// Data-loading threads (0: one per core).
    pub workers: usize,
    /// Also keep a checkpoint every N epochs (0: only `last` and `best`).
    pub checkpoint_every: usize,
    /// Stop cleanly (with a checkpoint) after this many epochs of this session; `--resume`
    /// continues. Lets a long schedule be split across sessions.
    pub stop_after_epoch: Option<usize>,
    /// When the run ends, the best student weights are copied here (`.safetensors`) or written
    /// as an ONNX graph (`.onnx`).
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
            unlabeled: None,
            unlabeled_ratio: 1.0,
            model: ModelKind::Mbv3sAspp,
            distill: DistillMode::None,
            loss: LossConfig::default(),
            loss_terms: None,
            teacher: ModelKind::FcnResnet50,
            teacher_weights: None,
            backbone_weights: None,
            init_weights: None,
            epochs: 30,
            batch: 8,
            size: 256,
            scale: (0.5, 2.0),
            val_size: None,
            hflip: true,
            color_jitter: true,
            class_weights: false,
            freeze_bn: false,
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            seed: 0,
            device: DeviceChoice::Auto,
            precision: None,
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

/// The teacher recipe's crop on the generated demo data: its images are 128 pixels wide by
/// default, so the crop holds the whole scale-1 image; a larger crop only adds padding.
pub const DEMO_TEACHER_CROP: u32 = 128;

/// Largest training or validation size accepted (pixels of the shorter side / crop).
pub const MAX_SIZE: u32 = 4096;

/// Ranges a configuration is checked against (one table for the CLI, the app's form and
/// [`TrainConfig::validate`]).
pub struct Limits {
    pub epochs: std::ops::RangeInclusive<usize>,
    pub batch: std::ops::RangeInclusive<usize>,
    /// Training and validation size (pixels of the crop / shorter side).
    pub size: std::ops::RangeInclusive<u32>,
    /// α, β, γ and the auxiliary head's weight.
    pub loss_weight: std::ops::RangeInclusive<f64>,
    pub tau: std::ops::RangeInclusive<f64>,
    pub warmup_steps_max: usize,
    /// Unlabelled images per labelled one in a batch.
    pub unlabeled_ratio: std::ops::RangeInclusive<f64>,
}

pub const LIMITS: Limits = Limits {
    epochs: 1..=100_000,
    batch: 1..=4096,
    size: 32..=MAX_SIZE,
    loss_weight: 0.0..=1000.0,
    tau: 0.01..=100.0,
    warmup_steps_max: 10_000_000,
    unlabeled_ratio: 0.05..=16.0,
};
/// Largest input batch accepted, in bytes of f32 (batch × 3 × size²): beyond this no machine
/// here trains, and the allocation would abort the process instead of saying why.
const MAX_BATCH_BYTES: u64 = 16 << 30;

/// Where runs under `runs_dir` keep their teacher caches unless told otherwise.
pub fn default_teacher_cache_root(runs_dir: &std::path::Path) -> PathBuf {
    runs_dir.join("teacher-cache")
}

/// Settings a resumed run may change, as (path into the JSON form of [`TrainConfig`], the flag
/// that sets it); every other setting is the run's own and stays as it was saved (except inputs
/// that moved with the same content, and the batch size: `relocate`).
pub const RESUMABLE: &[(&str, &str)] = &[
    ("name", "--out"),
    ("runs_dir", "--out"),
    ("epochs", "--epochs"),
    ("stop_after_epoch", "--stop-after-epoch"),
    ("device", "--device"),
    ("precision", "--precision"),
    ("workers", "--workers"),
    ("export", "--export"),
    ("checkpoint_every", "--checkpoint-every"),
    ("optimizer.lr", "--lr"),
    ("teacher_cache", "--no-teacher-cache"),
    ("teacher_cache_dir", "--teacher-cache-dir"),
    ("teacher_cache_gb", "--teacher-cache-gb"),
];

/// Settings outside [`RESUMABLE`] that a resume may still change once `relocate` has checked
/// the change against the run's records (inputs that moved with the same content, the batch
/// size), with the flag that sets each.
pub const RELOCATABLE: &[(&str, &str)] = &[
    ("data", "--data"),
    ("teacher_weights", "--teacher-weights"),
    ("backbone_weights", "--backbone-weights"),
    ("init_weights", "--init-weights"),
    ("batch", "--batch"),
];

/// The flags [`RESUMABLE`] lets a resume change, plus the batch size and moved inputs, in words:
/// the one source of every message (and the README line) that lists them.
pub fn resumable_in_words() -> String {
    let mut flags: Vec<&str> = Vec::new();
    for (_, flag) in RESUMABLE {
        if !flags.contains(flag) && *flag != "--out" {
            flags.push(flag);
        }
    }
    format!(
        "{}, --batch (the schedule is re-laid over the new step count), and --data / --teacher-weights pointing \
         to the same content in a new place",
        flags.join(", ")
    )
}

/// One setting that differs between two configurations.
#[derive(Clone, Debug, PartialEq)]
pub struct SettingChange {
    /// Path into the JSON form (`model`, `optimizer.lr`, …).
    pub setting: String,
    pub old: String,
    pub new: String,
}

impl SettingChange {
    pub fn resumable(&self) -> bool {
        RESUMABLE.iter().any(|(setting, _)| *setting == self.setting)
    }

    /// No resume may make this change: it is neither in [`RESUMABLE`] nor in [`RELOCATABLE`].
    pub fn refused_on_resume(&self) -> bool {
        !self.resumable() && !RELOCATABLE.iter().any(|(setting, _)| *setting == self.setting)
    }
}

/// The one check of what a resume may change that needs nothing but the two configurations: the
/// first change from the run's `saved` settings to `requested` that no resume may make. The engine
/// refuses such a resume; the CLI asks flag by flag first, to name the flag.
pub fn refused_resume_change(saved: &TrainConfig, requested: &TrainConfig) -> Option<SettingChange> {
    saved.changes_to(requested).into_iter().find(SettingChange::refused_on_resume)
}

impl TrainConfig {
    /// The terms the run's loss is made of: `loss_terms`, else the `distill` preset's.
    pub fn terms(&self) -> LossTerms {
        self.loss_terms.clone().unwrap_or_else(|| LossTerms::preset(self.distill, &self.loss))
    }

    /// The run reads a teacher.
    pub fn needs_teacher(&self) -> bool {
        self.loss_terms.as_ref().map_or(self.distill.needs_teacher(), |t| t.needs_teacher())
    }

    /// The run reads the teacher's logits.
    pub fn uses_teacher_logits(&self) -> bool {
        self.loss_terms.as_ref().map_or(self.distill.uses_logits(), |t| t.uses_logits())
    }

    /// The run reads the teacher's feature maps.
    pub fn uses_teacher_features(&self) -> bool {
        self.loss_terms.as_ref().map_or(self.distill.uses_features(), |t| t.uses_features())
    }

    /// Unlabelled images in each batch: `batch × unlabeled_ratio`, at least one (0 without
    /// `unlabeled`).
    pub fn unlabeled_per_batch(&self) -> usize {
        match self.unlabeled {
            Some(_) => ((self.batch as f64 * self.unlabeled_ratio).round() as usize).max(1),
            None => 0,
        }
    }

    /// Images a training step reads: the labelled batch and its unlabelled share.
    pub fn images_per_step(&self) -> usize {
        self.batch + self.unlabeled_per_batch()
    }

    /// The distillation's name for messages: the preset's, or the term list.
    pub fn loss_name(&self) -> String {
        match &self.loss_terms {
            Some(t) => t.to_string(),
            None => self.distill.name().to_string(),
        }
    }

    /// The recipe of "Train a teacher for this dataset": MobileNetV3-Small + ASPP + stride-4
    /// decoder (1.6 M parameters, 8× the compact student) trained on the labels alone with a
    /// learning rate that converges from scratch: 30 epochs at the form's crop size, or on the
    /// generated demo data 20 epochs at its own crop ([`DEMO_TEACHER_CROP`]), which take a few
    /// minutes on two CPU cores. Chosen by measurement on the demo dataset
    /// (docs/distillation.md): the zoo's DeepLabV3 heads work at output stride 16, too coarse for
    /// small images and objects, and learn far slower on a CPU.
    pub fn teacher_recipe(self) -> Self {
        let on_demo = crate::data::demo::is_demo_dataset(&self.data);
        let (epochs, size) = if on_demo { (20, DEMO_TEACHER_CROP) } else { (30, self.size) };
        let mut c = Self { model: ModelKind::Mbv3sAspp, distill: DistillMode::None, epochs, size, ..self };
        c.loss_terms = None;
        c.unlabeled = None;
        c.teacher_weights = None;
        c.init_weights = None;
        c.backbone_weights = None;
        c.optimizer.lr = 5e-3;
        c
    }

    pub fn run_dir(&self) -> PathBuf {
        self.runs_dir.join(&self.name)
    }

    pub fn teacher_cache_root(&self) -> PathBuf {
        self.teacher_cache_dir.clone().unwrap_or_else(|| default_teacher_cache_root(&self.runs_dir))
    }

    /// The same configuration with every path absolute (and canonical where the file exists),
    /// so the run folder works from any directory: `test`, `report`, `--resume`, the app.
    pub fn with_absolute_paths(mut self) -> Self {
        use crate::util::fs::absolute;
        let abs_opt = |p: &mut Option<PathBuf>| {
            if let Some(path) = p.as_mut() {
                *path = absolute(path);
            }
        };
        self.runs_dir = absolute(&self.runs_dir);
        if !self.data.as_os_str().is_empty() {
            self.data = absolute(&self.data);
        }
        abs_opt(&mut self.teacher_weights);
        abs_opt(&mut self.backbone_weights);
        abs_opt(&mut self.init_weights);
        abs_opt(&mut self.export);
        abs_opt(&mut self.teacher_cache_dir);
        // A folder of unlabelled images (a split name stays a name).
        if let Some(u) = &self.unlabeled
            && Path::new(u).is_dir()
        {
            self.unlabeled = Some(absolute(Path::new(u)).to_string_lossy().into_owned());
        }
        self
    }

    /// Every setting whose value differs from `other`'s (`self` old, `other` new).
    pub fn changes_to(&self, other: &TrainConfig) -> Vec<SettingChange> {
        let (a, b) = (serde_json::to_value(self).unwrap_or_default(), serde_json::to_value(other).unwrap_or_default());
        let mut out = Vec::new();
        diff_values("", &a, &b, &mut out);
        out
    }

    /// Checks what can be checked before any file is read.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            LIMITS.epochs.contains(&self.epochs),
            "epochs {} is out of range: use {} to {}",
            self.epochs,
            LIMITS.epochs.start(),
            LIMITS.epochs.end()
        );
        anyhow::ensure!(
            self.schedule.warmup_steps <= LIMITS.warmup_steps_max,
            "warm-up steps {} is out of range: use 0 to {} (a warm-up longer than the run keeps the learning rate low \
             throughout)",
            self.schedule.warmup_steps,
            LIMITS.warmup_steps_max
        );
        if let Some(n) = self.stop_after_epoch {
            anyhow::ensure!(
                n >= 1,
                "stop after epoch {n} is out of range: use 1 or more epochs of this training session (leave it out to \
                 train to the end)"
            );
        }
        let batch = &LIMITS.batch;
        anyhow::ensure!(
            batch.contains(&self.batch),
            "batch {} is out of range: use {} to {}",
            self.batch,
            batch.start(),
            batch.end()
        );
        for (what, size) in [("size", Some(self.size)), ("val size", self.val_size)] {
            if let Some(size) = size {
                let range = &LIMITS.size;
                anyhow::ensure!(
                    range.contains(&size),
                    "{what} {size} is out of range: use {} to {} pixels",
                    range.start(),
                    range.end()
                );
            }
        }
        if self.unlabeled.is_some() {
            let ratio = &LIMITS.unlabeled_ratio;
            anyhow::ensure!(
                ratio.contains(&self.unlabeled_ratio),
                "unlabeled ratio {} is out of range: use {} to {} unlabelled images per labelled one",
                self.unlabeled_ratio,
                ratio.start(),
                ratio.end()
            );
            anyhow::ensure!(
                self.needs_teacher(),
                "unlabelled images teach the student through the teacher only, and this run has no distillation \
                 term: add one (e.g. --distill response, or --loss ce=1,kd=0.5) or leave out --unlabeled"
            );
        }
        let batch_bytes = self.images_per_step() as u64 * 3 * 4 * u64::from(self.size).pow(2);
        anyhow::ensure!(
            batch_bytes <= MAX_BATCH_BYTES,
            "batch {} of {}×{} crops needs {} for the input alone; lower --batch or --size",
            self.images_per_step(),
            self.size,
            self.size,
            crate::util::fmt::human_bytes(batch_bytes)
        );
        anyhow::ensure!(self.optimizer.lr > 0.0 && self.optimizer.lr.is_finite(), "lr must be a positive number");
        anyhow::ensure!(
            self.scale.0 > 0.0 && self.scale.1 >= self.scale.0 && self.scale.1.is_finite(),
            "scale range must be 0 < min ≤ max"
        );
        let tau = &LIMITS.tau;
        anyhow::ensure!(
            tau.contains(&self.loss.tau),
            "tau {} is out of range: use {} to {}",
            self.loss.tau,
            tau.start(),
            tau.end()
        );
        for (what, v) in [
            ("alpha", self.loss.alpha),
            ("beta", self.loss.beta),
            ("gamma", self.loss.gamma),
            ("aux weight", self.loss.aux_weight),
        ] {
            let range = &LIMITS.loss_weight;
            anyhow::ensure!(range.contains(&v), "{what} {v} is out of range: use {} to {}", range.start(), range.end());
        }
        for (what, v) in [
            ("weight decay", self.optimizer.weight_decay),
            ("momentum", self.optimizer.momentum),
            ("teacher cache budget (GB)", self.teacher_cache_gb),
        ] {
            anyhow::ensure!(v.is_finite() && v >= 0.0, "{what} must be a number ≥ 0, got {v}");
        }
        if let Some(clip) = self.optimizer.grad_clip {
            anyhow::ensure!(
                clip.is_finite() && clip > 0.0,
                "gradient clipping norm must be a positive number, got {clip}"
            );
        }
        anyhow::ensure!(
            !self.name.is_empty() && !self.name.contains(['/', '\\']) && self.name != "." && self.name != "..",
            "run name `{}` must be a plain folder name",
            self.name
        );
        if let Some(terms) = &self.loss_terms {
            terms.validate().map_err(|e| anyhow::anyhow!("--loss: {e}"))?;
        }
        if self.needs_teacher() {
            anyhow::ensure!(
                self.teacher_weights.is_some(),
                "distillation `{}` needs --teacher-weights (e.g. weights/fcn_resnet50_coco-1167a1af.pth; \
                 `segdistill download weights` fetches it)",
                self.loss_name()
            );
        }
        Ok(())
    }
}

/// Collects the leaves (objects are walked; arrays and scalars compared whole) that differ.
fn diff_values(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<SettingChange>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                diff_values(&path, x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), out);
            }
        }
        _ if a != b => out.push(SettingChange { setting: prefix.to_string(), old: show(a), new: show(b) }),
        _ => {}
    }
}

fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "none".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a resume may change is decided by the two tables alone: a setting in neither is
    /// refused, one in RELOCATABLE is left to the engine's check of the run's records.
    #[test]
    fn a_resume_refuses_exactly_the_settings_in_neither_table() {
        assert!(RESUMABLE.iter().all(|(s, _)| !RELOCATABLE.iter().any(|(r, _)| r == s)), "the tables overlap");
        let saved = TrainConfig::default();
        let with = |f: fn(&mut TrainConfig)| {
            let mut c = saved.clone();
            f(&mut c);
            refused_resume_change(&saved, &c).map(|c| c.setting)
        };
        assert_eq!(with(|c| c.model = ModelKind::Mbv3sTiny), Some("model".into()));
        assert_eq!(with(|c| c.loss.tau = 2.0), Some("loss.tau".into()));
        assert_eq!(with(|c| (c.epochs, c.optimizer.lr) = (3, 0.5)), None, "resumable");
        assert_eq!(with(|c| (c.data, c.batch) = ("/elsewhere".into(), 2)), None, "the engine checks these");
    }

    /// The limits table is what `validate` enforces (the app's form draws its fields from the
    /// same table): each bound is accepted, one step past it refused with the range.
    #[test]
    fn the_limits_table_is_what_validate_enforces() {
        let ok = |c: TrainConfig| c.validate().map(|_| ()).map_err(|e| e.to_string());
        let base = || TrainConfig { name: "x".into(), ..Default::default() };
        for batch in [*LIMITS.batch.start(), 64] {
            ok(TrainConfig { batch, size: 32, ..base() }).unwrap();
        }
        assert!(ok(TrainConfig { batch: LIMITS.batch.end() + 1, size: 32, ..base() }).unwrap_err().contains("batch"));
        for size in [*LIMITS.size.start(), *LIMITS.size.end()] {
            ok(TrainConfig { size, batch: 1, ..base() }).unwrap();
        }
        for size in [LIMITS.size.start() - 1, LIMITS.size.end() + 1] {
            let err = ok(TrainConfig { size, batch: 1, ..base() }).unwrap_err();
            assert!(err.contains(&format!("use {} to {}", LIMITS.size.start(), LIMITS.size.end())), "{err}");
        }
        let mut c = base();
        c.loss.tau = *LIMITS.tau.end();
        c.loss.beta = *LIMITS.loss_weight.end();
        ok(c.clone()).unwrap();
        c.loss.beta = LIMITS.loss_weight.end() * 1.01;
        assert!(ok(c.clone()).unwrap_err().contains("beta"));
        c.loss.beta = 0.5;
        c.loss.tau = LIMITS.tau.start() / 2.0;
        assert!(ok(c).unwrap_err().contains("tau"));
    }

    /// The README's list of what a resume may change is the table's own words.
    #[test]
    fn the_readme_lists_what_a_resume_may_change_from_the_table() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let flat = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat(readme).contains(&flat(&resumable_in_words())), "README.md should say: {}", resumable_in_words());
    }

    #[test]
    fn the_teacher_recipe_keeps_the_data_and_drops_distillation() {
        let form = TrainConfig {
            data: "/d".into(),
            size: 96,
            distill: DistillMode::Response,
            teacher_weights: Some("/t.pth".into()),
            init_weights: Some("/i.safetensors".into()),
            ..Default::default()
        };
        let t = form.teacher_recipe();
        assert_eq!((t.model, t.distill, t.epochs, t.optimizer.lr), (ModelKind::Mbv3sAspp, DistillMode::None, 30, 5e-3));
        assert_eq!((t.data.as_path(), t.size), (std::path::Path::new("/d"), 96));
        assert!(t.teacher_weights.is_none() && t.init_weights.is_none());
        assert!(t.validate().is_ok());
    }

    #[test]
    fn on_the_demo_data_the_teacher_recipe_brings_its_own_crop_and_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let demo = crate::data::demo::DemoConfig { train: 2, val: 1, size: 48, ..Default::default() };
        crate::data::demo::generate(dir.path(), &demo, &|| {}).unwrap();
        let form = TrainConfig {
            data: dir.path().into(),
            size: 512,
            unlabeled: Some("unlabeled".into()),
            distill: DistillMode::Response,
            ..Default::default()
        };
        let t = form.teacher_recipe();
        assert_eq!((t.size, t.epochs, t.unlabeled.as_deref()), (DEMO_TEACHER_CROP, 20, None));
    }

    #[test]
    fn changes_name_the_setting_and_both_values() {
        let a = TrainConfig::default();
        let mut b = a.clone();
        b.model = ModelKind::Mbv3sTiny;
        b.optimizer.lr = 0.5;
        let changes = a.changes_to(&b);
        assert_eq!(changes.len(), 2, "{changes:?}");
        let model = changes.iter().find(|c| c.setting == "model").unwrap();
        assert_eq!((model.old.as_str(), model.new.as_str(), model.resumable()), ("mbv3s-aspp", "mbv3s-tiny", false));
        assert!(changes.iter().any(|c| c.setting == "optimizer.lr" && c.resumable()));
    }

    #[test]
    fn loss_terms_are_optional_in_saved_configs_and_round_trip() {
        // A config.json written before term lists existed has no `loss_terms`: the preset stands.
        let old = serde_json::to_value(TrainConfig::default()).unwrap();
        assert!(old.get("loss_terms").is_none(), "a preset run writes the same config.json as before");
        let read: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!(read.loss_terms, None);
        assert_eq!(read.terms().to_string(), "ce=1");
        let with = TrainConfig {
            loss_terms: Some("ce=1,kd=0.5,pairwise=0.5:scale=0.5".parse().unwrap()),
            teacher_weights: Some("t.pth".into()),
            ..Default::default()
        };
        let back: TrainConfig = serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back, with);
        assert!(with.needs_teacher() && with.uses_teacher_features() && with.uses_teacher_logits());
        assert_eq!(with.loss_name(), "ce=1,kd=0.5,pairwise=0.5:scale=0.5");
    }

    #[test]
    fn absurd_or_non_finite_settings_are_refused() {
        let bad: [fn(&mut TrainConfig); 5] = [
            |c| c.size = 100_000,
            |c| c.teacher_cache_gb = f64::NAN,
            |c| c.loss.beta = f64::INFINITY,
            |c| c.val_size = Some(8),
            |c| c.batch = 1_000_000,
        ];
        for (i, f) in bad.iter().enumerate() {
            let mut c = TrainConfig::default();
            f(&mut c);
            assert!(c.validate().is_err(), "case {i} accepted");
        }
        TrainConfig::default().validate().unwrap();
    }
}
