//! What the app remembers between starts (persisted through eframe's storage under
//! `eframe::APP_KEY`). Runtime machinery (threads, channels, textures) lives in the panels.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::DatasetKind;
use crate::model::ModelKind;
use crate::train::TrainConfig;
use crate::train::config::{OptimizerConfig, OptimizerKind, ScheduleKind};
use crate::ui::train::TermsForm;
use crate::util::device::DeviceChoice;

/// The tabs of the main window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Tab {
    #[default]
    Train,
    Runs,
    Browse,
}

impl Tab {
    pub const ALL: [Tab; 3] = [Tab::Train, Tab::Runs, Tab::Browse];

    pub fn label(self) -> &'static str {
        match self {
            Tab::Train => "Train",
            Tab::Runs => "Runs",
            Tab::Browse => "Browse",
        }
    }
}

/// The Train tab's form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainForm {
    pub name: String,
    pub model: ModelKind,
    /// The Distillation section: the loss's terms.
    pub terms: TermsForm,
    pub lr: f64,
    pub epochs: usize,
    pub batch: usize,
    pub size: u32,
    pub schedule: ScheduleKind,
    pub optimizer: OptimizerKind,
    pub seed: u64,
    pub device: DeviceChoice,
    pub class_weights: bool,
    /// The teacher's architecture (a torchvision file's, or a finished run's model).
    pub teacher_model: ModelKind,
    pub teacher_weights: String,
    pub backbone_weights: String,
    /// Cache the teacher's outputs once per image instead of running it every step.
    pub teacher_cache: bool,
}

impl Default for TrainForm {
    /// Every value from [`TrainConfig::default`]: the CLI and the app start from the same run.
    fn default() -> Self {
        let c = TrainConfig::default();
        Self {
            name: String::new(),
            model: c.model,
            terms: TermsForm::default(),
            lr: c.optimizer.lr,
            epochs: c.epochs,
            batch: c.batch,
            size: c.size,
            schedule: c.schedule.kind,
            optimizer: c.optimizer.kind,
            seed: c.seed,
            device: c.device,
            class_weights: c.class_weights,
            teacher_model: c.teacher,
            teacher_weights: String::new(),
            backbone_weights: String::new(),
            teacher_cache: c.teacher_cache,
        }
    }
}

fn path_or_none(s: &str) -> Option<PathBuf> {
    let t = s.trim();
    (!t.is_empty()).then(|| PathBuf::from(t))
}

impl TrainForm {
    /// Switches the optimiser as [`OptimizerConfig::set_kind`] does for every run.
    pub fn set_optimizer(&mut self, kind: OptimizerKind) {
        let mut o = OptimizerConfig { kind: self.optimizer, lr: self.lr, ..Default::default() };
        o.set_kind(kind);
        (self.optimizer, self.lr) = (o.kind, o.lr);
    }

    pub fn teacher_path(&self) -> Option<PathBuf> {
        path_or_none(&self.teacher_weights)
    }

    /// The teacher's architecture and weights, when a file is chosen.
    pub fn teacher(&self) -> Option<(ModelKind, PathBuf)> {
        self.teacher_path().map(|p| (self.teacher_model, p))
    }

    pub fn backbone_path(&self) -> Option<PathBuf> {
        path_or_none(&self.backbone_weights)
    }

    /// The run configuration this form describes: the same as the command line's with the same
    /// settings (the Distillation section as `--distill` or `--loss`, see [`TermsForm`]).
    pub fn to_config(
        &self,
        data: PathBuf,
        dataset: Option<DatasetKind>,
        runs_dir: PathBuf,
        name: String,
    ) -> TrainConfig {
        let (distill, loss, loss_terms) = self.terms.to_loss();
        let mut c = TrainConfig {
            name,
            runs_dir,
            data,
            dataset,
            model: self.model,
            distill,
            loss,
            loss_terms,
            teacher: self.teacher_model,
            teacher_weights: self.terms.needs_teacher().then(|| self.teacher_path()).flatten(),
            backbone_weights: self.backbone_path(),
            epochs: self.epochs,
            batch: self.batch,
            size: self.size,
            class_weights: self.class_weights,
            seed: self.seed,
            device: self.device,
            teacher_cache: self.teacher_cache,
            ..Default::default()
        };
        c.optimizer.kind = self.optimizer;
        c.optimizer.lr = self.lr;
        c.schedule.kind = self.schedule;
        c
    }
}

/// Settings of the Browse tab.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrowseSettings {
    /// The run whose student is browsed (a folder under the runs folder).
    pub run: Option<PathBuf>,
    pub split: String,
    pub opacity: f32,
}

impl Default for BrowseSettings {
    fn default() -> Self {
        Self { run: None, split: "val".into(), opacity: 0.55 }
    }
}

/// Where the app downloads data and weights, and from where (empty addresses: the official ones).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DownloadSettings {
    /// VOC is unpacked into `<data_dir>/VOCdevkit/VOC2012`.
    pub data_dir: PathBuf,
    pub weights_dir: PathBuf,
    /// A mirror of VOCtrainval_11-May-2012.tar.
    pub voc_url: String,
    /// Its MD5 when it differs from the published one (empty: the published one).
    pub voc_md5: String,
    /// A mirror of https://download.pytorch.org/models.
    pub weights_base_url: String,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            weights_dir: PathBuf::from("weights"),
            voc_url: String::new(),
            voc_md5: String::new(),
            weights_base_url: String::new(),
        }
    }
}

/// Everything persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppState {
    pub tab: Tab,
    /// Dataset folder as typed (empty: none configured).
    pub data_dir: String,
    pub dataset_kind: Option<DatasetKind>,
    pub runs_dir: PathBuf,
    /// Where the demo dataset is generated (default: next to the app's settings).
    pub demo_dir: Option<PathBuf>,
    pub train: TrainForm,
    pub browse: BrowseSettings,
    pub downloads: DownloadSettings,
    /// The run last started or resumed here: its curves are shown again on the next start.
    pub last_run: Option<PathBuf>,
    /// TensorBoard-style smoothing of loss curves (0 = raw), shared by the Train and Runs tabs.
    pub smoothing: f64,
    /// The Runs tab's comparison baseline per student architecture (model name → run folder):
    /// a completed run without distillation. Unset: the most recent such run.
    pub baselines: std::collections::BTreeMap<String, PathBuf>,
}

impl Default for AppState {
    fn default() -> Self {
        Self {
            tab: Tab::Train,
            data_dir: String::new(),
            dataset_kind: None,
            runs_dir: app_data_dir().join("runs"),
            demo_dir: None,
            train: TrainForm::default(),
            browse: BrowseSettings::default(),
            downloads: DownloadSettings::default(),
            last_run: None,
            smoothing: 0.6,
            baselines: Default::default(),
        }
    }
}

impl AppState {
    pub fn data_path(&self) -> Option<PathBuf> {
        path_or_none(&self.data_dir)
    }

    pub fn demo_path(&self) -> PathBuf {
        self.demo_dir.clone().unwrap_or_else(demo_data_dir)
    }

    /// The settings with every stored folder absolute. Settings of older versions held folders
    /// relative to wherever the app happened to start; they are pinned to this start's directory
    /// once, and saved absolute from then on, so the app works the same from any directory.
    pub fn with_absolute_paths(mut self) -> Self {
        use crate::util::fs::absolute;
        for dir in [&mut self.runs_dir, &mut self.downloads.data_dir, &mut self.downloads.weights_dir] {
            if dir.as_os_str().is_empty() {
                continue;
            }
            *dir = absolute(dir);
        }
        self
    }
}

/// The app's own folder for what it makes (runs, the demo dataset): the per-user data folder
/// (`~/.local/share/segdistill` on Linux), else `segdistill-data` in the current directory.
pub fn app_data_dir() -> PathBuf {
    eframe::storage_dir("segdistill")
        .unwrap_or_else(|| crate::util::fs::absolute(std::path::Path::new("segdistill-data")))
}

/// Where the app keeps the demo dataset it generates (next to its settings).
pub fn demo_data_dir() -> PathBuf {
    app_data_dir().join("demo-data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_json_and_tolerates_unknown_or_missing_fields() {
        let mut s = AppState { data_dir: "/data/voc".into(), ..Default::default() };
        s.train.terms = TermsForm::preset(crate::distill::DistillMode::Feature);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<AppState>(&json).unwrap(), s);
        // Settings from an older/newer version decode to defaults where they differ.
        let partial: AppState = serde_json::from_str(r#"{"data_dir": "/x", "future_field": 3}"#).unwrap();
        assert_eq!(partial.data_dir, "/x");
        assert_eq!(partial.train, TrainForm::default());
    }

    #[test]
    fn defaults_are_the_engines_and_folders_are_absolute() {
        let form = TrainForm::default();
        let config = form.to_config("/d".into(), None, "/runs".into(), "r".into());
        let defaults =
            TrainConfig { data: "/d".into(), runs_dir: "/runs".into(), name: "r".into(), ..Default::default() };
        assert_eq!(config, defaults, "the app's form starts from TrainConfig::default");
        let state = AppState::default();
        assert!(state.runs_dir.is_absolute(), "{}", state.runs_dir.display());
        let old = AppState { runs_dir: "runs".into(), ..Default::default() }.with_absolute_paths();
        assert_eq!(old.runs_dir, std::env::current_dir().unwrap().join("runs"));
        assert!(old.downloads.weights_dir.is_absolute());
    }

    #[test]
    fn form_maps_to_a_config() {
        use crate::distill::DistillMode;
        use crate::distill::loss_terms::TermKind;
        let terms = TermsForm::preset(DistillMode::Response);
        let mut f = TrainForm { terms, teacher_weights: " /w/t.pth ".into(), ..Default::default() };
        f.terms.row_mut(TermKind::Response).unwrap().weight = 0.7;
        let c = f.to_config("/d".into(), None, "/runs".into(), "r1".into());
        assert_eq!(c.teacher_weights, Some(PathBuf::from("/w/t.pth")));
        assert_eq!(c.loss.beta, 0.7);
        assert_eq!(c.run_dir(), PathBuf::from("/runs/r1"));
        f.terms = TermsForm::preset(DistillMode::None);
        assert_eq!(f.to_config("/d".into(), None, "/runs".into(), "r".into()).teacher_weights, None);
    }
}
