//! What the app remembers between starts (persisted through eframe's storage under
//! `eframe::APP_KEY`). Runtime machinery (threads, channels, textures) lives in the panels.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::DatasetKind;
use crate::model::ModelKind;
use crate::train::TrainConfig;
use crate::ui::train::TermsForm;

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

/// The Train tab's form, as it persists: the run's settings as the configuration every run is
/// made of, and the weights files as typed (a path may be half typed, and the teacher stays
/// chosen while a mode without one is on). The configuration's `name` is the run name as typed
/// (empty: an automatic one); its dataset, runs folder and weights are filled in when a run starts
/// ([`Self::to_config`]). Settings saved by versions that stored the form field by field load as
/// the defaults, keeping their weights files.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainForm {
    pub config: TrainConfig,
    /// The Distillation section's term list (with the weights of the terms not ticked, so that
    /// ticking one again brings its weight back); the form writes it into `config`'s loss
    /// ([`TermsForm::to_loss`]) as it is edited.
    pub terms: TermsForm,
    pub teacher_weights: String,
    pub backbone_weights: String,
}

fn path_or_none(s: &str) -> Option<PathBuf> {
    let t = s.trim();
    (!t.is_empty()).then(|| PathBuf::from(t))
}

impl TrainForm {
    pub fn teacher_path(&self) -> Option<PathBuf> {
        path_or_none(&self.teacher_weights)
    }

    /// The teacher's architecture and weights, when a file is chosen.
    pub fn teacher(&self) -> Option<(ModelKind, PathBuf)> {
        self.teacher_path().map(|p| (self.config.teacher, p))
    }

    pub fn backbone_path(&self) -> Option<PathBuf> {
        path_or_none(&self.backbone_weights)
    }

    /// The run configuration this form describes.
    pub fn to_config(
        &self,
        data: PathBuf,
        dataset: Option<DatasetKind>,
        runs_dir: PathBuf,
        name: String,
    ) -> TrainConfig {
        TrainConfig {
            name,
            runs_dir,
            data,
            dataset,
            teacher_weights: self.config.needs_teacher().then(|| self.teacher_path()).flatten(),
            backbone_weights: self.backbone_path(),
            // Images without masks teach through the teacher only.
            unlabeled: self.config.needs_teacher().then(|| self.config.unlabeled.clone()).flatten(),
            ..self.config.clone()
        }
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
    use crate::distill::DistillMode;

    #[test]
    fn state_survives_json_and_tolerates_unknown_or_missing_fields() {
        let mut s = AppState { data_dir: "/data/voc".into(), ..Default::default() };
        s.train.config.distill = DistillMode::Feature;
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<AppState>(&json).unwrap(), s);
        // Settings from an older/newer version decode to defaults where they differ.
        let partial: AppState = serde_json::from_str(r#"{"data_dir": "/x", "future_field": 3}"#).unwrap();
        assert_eq!(partial.data_dir, "/x");
        assert_eq!(partial.train, TrainForm::default());
        // The form as older versions stored it, field by field: the defaults, with its files.
        let old: AppState = serde_json::from_str(
            r#"{"train": {"name": "r", "model": "mbv3s-tiny", "mode": "Response", "lr": 0.5, "epochs": 3,
                "teacher_weights": "/w/t.pth", "backbone_weights": ""}}"#,
        )
        .unwrap();
        assert_eq!(old.train, TrainForm { teacher_weights: "/w/t.pth".into(), ..Default::default() });
        // A form that does not decode at all is the app's whole settings failing to decode:
        // `SegdistillApp::new` starts from the defaults then.
        assert!(serde_json::from_str::<AppState>(r#"{"train": {"config": {"epochs": "many"}}}"#).is_err());
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
        let mut f = TrainForm { teacher_weights: " /w/t.pth ".into(), ..Default::default() };
        f.config.distill = DistillMode::Response;
        f.config.loss.beta = 0.7;
        let c = f.to_config("/d".into(), None, "/runs".into(), "r1".into());
        assert_eq!(c.teacher_weights, Some(PathBuf::from("/w/t.pth")));
        assert_eq!(c.loss.beta, 0.7);
        assert_eq!(c.run_dir(), PathBuf::from("/runs/r1"));
        f.config.distill = DistillMode::None;
        assert_eq!(f.to_config("/d".into(), None, "/runs".into(), "r".into()).teacher_weights, None);
    }
}
