//! What the engine tells the world. Plain owned data (no tensors), so any thread can consume it:
//! the CLI's progress bar, the app's Train tab, tests; each consumer is an [`EventSink`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One optimisation step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 0-based epoch.
    pub epoch: usize,
    /// Global step, 1-based (steps done so far).
    pub step: usize,
    pub total_steps: usize,
    pub steps_per_epoch: usize,
    /// The weighted total α·CE + β·KD + γ·feat.
    pub loss: f64,
    pub ce: f64,
    pub kd: Option<f64>,
    pub feature: Option<f64>,
    /// With a term list (`--loss`): every term's unweighted value by name, in the list's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<(String, f64)>,
    pub lr: f64,
    /// Training throughput over the recent steps.
    pub images_per_sec: f64,
    /// Estimated seconds to the end of the run (evaluations included).
    pub eta_secs: f64,
}

/// One evaluation on the validation split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// 0-based epoch just finished.
    pub epoch: usize,
    pub step: usize,
    pub val_loss: f64,
    pub miou: f64,
    pub pixel_acc: f64,
    pub iou: Vec<Option<f64>>,
    /// Student inference time at batch 1 (warm-up excluded), milliseconds per image.
    pub ms_per_image: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    Last,
    Best,
    Periodic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    Completed,
    /// Stopped by the user (or `stop_after_epoch`); resumable.
    Stopped,
}

/// The end of a run that did not fail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub reason: EndReason,
    pub run_dir: PathBuf,
    pub epochs_done: usize,
    pub steps_done: usize,
    pub best_miou: Option<f64>,
    pub best_epoch: Option<usize>,
    pub train_seconds: f64,
    /// Samples left out of this session because their files could not be used (one message
    /// each, naming the file; training and validation).
    #[serde(default)]
    pub skipped_samples: Vec<String>,
}

/// Facts about the run, sent once when it starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_dir: PathBuf,
    pub model: String,
    pub params: usize,
    pub teacher: Option<String>,
    /// The distillation preset's name or the loss term list (`TrainConfig::loss_name`).
    pub mode: String,
    pub device: String,
    pub train_images: usize,
    /// Images without masks that join training for the distillation terms (`--unlabeled`).
    pub unlabeled_images: usize,
    pub val_images: usize,
    pub total_steps: usize,
    pub steps_per_epoch: usize,
    pub class_names: Vec<String>,
    /// (epoch, step) the run resumed from, if it did.
    pub resumed_from: Option<(usize, usize)>,
}

impl RunInfo {
    /// "300 train / 60 val images", with the unlabelled images when there are any.
    pub fn images_in_words(&self) -> String {
        let unlabeled = match self.unlabeled_images {
            0 => String::new(),
            n => format!(" (+ {n} unlabelled)"),
        };
        format!("{} train{unlabeled} / {} val images", self.train_images, self.val_images)
    }

    /// "response distillation from deeplabv3-mbv3l", or "no distillation" for the `none` preset
    /// and for a term list that learns from the labels alone (`ce`).
    pub fn distillation_in_words(&self) -> String {
        let labels_only = self.mode == crate::distill::DistillMode::None.name()
            || self.mode.parse::<crate::distill::loss_terms::LossTerms>().is_ok_and(|t| !t.needs_teacher());
        if labels_only {
            return "no distillation".into();
        }
        let teacher = self.teacher.as_ref().map(|t| format!(" from {t}")).unwrap_or_default();
        format!("{} distillation{teacher}", self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(mode: &str, teacher: Option<&str>) -> RunInfo {
        RunInfo {
            run_dir: PathBuf::from("runs/r"),
            model: "mbv3s-tiny".into(),
            params: 1000,
            teacher: teacher.map(String::from),
            mode: mode.into(),
            device: "cpu".into(),
            train_images: 10,
            unlabeled_images: 0,
            val_images: 2,
            total_steps: 10,
            steps_per_epoch: 10,
            class_names: vec![],
            resumed_from: None,
        }
    }

    #[test]
    fn a_run_on_the_labels_alone_reads_as_no_distillation() {
        assert_eq!(info("none", None).distillation_in_words(), "no distillation");
        assert_eq!(info("ce=1", None).distillation_in_words(), "no distillation");
        assert_eq!(info("response", Some("fcn")).distillation_in_words(), "response distillation from fcn");
        assert_eq!(info("ce=1,kd=0.5", Some("fcn")).distillation_in_words(), "ce=1,kd=0.5 distillation from fcn");
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TrainEvent {
    Started(RunInfo),
    /// A note for the user (skipped samples, cached teacher, …).
    Message(String),
    /// Work before the first step (building the teacher cache): `done` of `total` items.
    Preparing {
        what: String,
        done: usize,
        total: usize,
    },
    Step(StepMetrics),
    Evaluated(EvalMetrics),
    CheckpointSaved {
        kind: CheckpointKind,
        path: PathBuf,
        epoch: usize,
        step: usize,
    },
    Paused,
    Resumed,
    Finished(Summary),
    /// The run stopped on an error; the last good checkpoint is kept.
    Failed {
        message: String,
        run_dir: PathBuf,
    },
}

impl TrainEvent {
    /// The last event of a run: it finished (completed or stopped) or failed.
    pub fn ends_run(&self) -> bool {
        matches!(self, TrainEvent::Finished(_) | TrainEvent::Failed { .. })
    }
}

/// A consumer of the engine's events. The engine only emits them; each consumer folds or writes
/// them on the thread that receives them: the CLI's printer (`cli::train`), the app's view of the
/// run on screen (`ui::train::LiveRun`).
pub trait EventSink {
    fn on_event(&mut self, event: &TrainEvent);
}
