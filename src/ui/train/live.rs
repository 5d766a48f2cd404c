//! The view-model of the run on screen ([`LiveRun`]): its status ([`RunStatus`]), what the engine
//! reported (steps, evaluations, messages, the preparation before the first step), how each
//! [`TrainEvent`] changes them (its [`EventSink`], [`LiveRun::apply`]), and the same read back
//! from a run folder. No drawing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::ClassSet;
use crate::train::TrainConfig;
use crate::train::checkpoint::{self, CheckpointState};
use crate::train::events::{EndReason, EvalMetrics, EventSink, RunInfo, StepMetrics, Summary, TrainEvent};

/// Where the run on screen stands.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum RunStatus {
    #[default]
    Idle,
    Starting,
    Running,
    Paused,
    Finished(Summary),
    Failed(String),
}

/// What is known about the run on screen: live from the engine, or read back from its folder.
#[derive(Default)]
pub struct LiveRun {
    pub status: RunStatus,
    /// The run's folder (known before the engine starts it, and for a run read from disk).
    pub run_dir: Option<PathBuf>,
    pub info: Option<RunInfo>,
    pub steps: Vec<StepMetrics>,
    pub evals: Vec<EvalMetrics>,
    /// Engine messages of the current session (cleared when a run starts).
    pub messages: Vec<String>,
    /// Work before the first step (the teacher cache), while it runs.
    pub preparing: Option<Preparing>,
    /// Class names of the run's dataset (from the engine, or from the run's evaluations).
    pub class_names: Vec<String>,
}

impl LiveRun {
    /// A run's curves and status as its folder holds them (metrics.csv and the last checkpoint):
    /// what the app shows again after a restart, and the history a resumed run continues.
    pub fn from_folder(dir: &Path) -> Option<LiveRun> {
        let config = crate::train::run_folder::read_config(dir)?;
        let saved = checkpoint::load_state(&checkpoint::last_path(dir)).ok();
        let steps = crate::report::runs::saved_steps(dir, saved.as_ref().map_or(0, |s| s.step));
        let evals: Vec<EvalMetrics> = saved
            .iter()
            .flat_map(|s| &s.history)
            .map(|r| EvalMetrics {
                epoch: r.epoch,
                step: r.step,
                val_loss: r.val_loss,
                miou: r.miou,
                pixel_acc: r.pixel_acc,
                iou: r.iou.clone(),
                ms_per_image: r.ms_per_image,
            })
            .collect();
        let classes = evals.last().map_or(0, |e| e.iou.len());
        let class_names = if classes > 0 { ClassSet::for_num_classes(classes).names } else { Vec::new() };
        let status = match &saved {
            Some(s) => RunStatus::Finished(saved_summary(dir, s, &config)),
            None => RunStatus::Idle,
        };
        Some(LiveRun { status, run_dir: Some(dir.to_path_buf()), steps, evals, class_names, ..Default::default() })
    }

    /// Folds one engine event into the view-model and its status; true when the event ended the
    /// run (finished or failed). `now`: when it arrived (a preparation's ETA counts from the first
    /// of its events).
    pub fn apply(&mut self, event: &TrainEvent, now: Instant) -> bool {
        match event {
            TrainEvent::Started(info) => {
                self.class_names = info.class_names.clone();
                self.run_dir = Some(info.run_dir.clone());
                self.info = Some(info.clone());
                self.status = RunStatus::Running;
            }
            TrainEvent::Message(m) => self.messages.push(m.clone()),
            TrainEvent::Preparing { what, done, total } => {
                let started = self.preparing.as_ref().map_or(now, |p| p.started);
                let done_at_start = self.preparing.as_ref().map_or(*done, |p| p.done_at_start);
                self.preparing =
                    Some(Preparing { what: what.clone(), done: *done, total: *total, started, done_at_start });
            }
            TrainEvent::Step(s) => {
                // A resumed run replays nothing: drop saved rows this session trains again.
                self.steps.retain(|old| old.step < s.step);
                self.preparing = None;
                self.steps.push(s.clone());
            }
            TrainEvent::Evaluated(e) => {
                self.evals.retain(|old| old.epoch < e.epoch);
                self.evals.push(e.clone());
            }
            TrainEvent::CheckpointSaved { .. } => {}
            TrainEvent::Paused => self.status = RunStatus::Paused,
            TrainEvent::Resumed => self.status = RunStatus::Running,
            TrainEvent::Finished(s) => {
                self.preparing = None;
                self.status = RunStatus::Finished(s.clone());
            }
            TrainEvent::Failed { message, .. } => {
                self.preparing = None;
                self.status = RunStatus::Failed(message.clone());
            }
        }
        event.ends_run()
    }
}

impl EventSink for LiveRun {
    fn on_event(&mut self, event: &TrainEvent) {
        self.apply(event, Instant::now());
    }
}

fn saved_summary(dir: &Path, s: &CheckpointState, config: &TrainConfig) -> Summary {
    Summary {
        reason: if s.epoch >= config.epochs { EndReason::Completed } else { EndReason::Stopped },
        run_dir: dir.to_path_buf(),
        epochs_done: s.epoch,
        steps_done: s.step,
        best_miou: s.best.as_ref().map(|b| b.miou),
        best_epoch: s.best.as_ref().map(|b| b.epoch),
        train_seconds: s.train_seconds,
        skipped_samples: Vec::new(),
    }
}

/// Work before the first step (the teacher cache): how far it got, and since when.
#[derive(Clone, Debug)]
pub struct Preparing {
    pub what: String,
    pub done: usize,
    pub total: usize,
    pub started: Instant,
    /// Items already done when this session began (a resumed cache build), left out of the ETA.
    pub done_at_start: usize,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn step(step: usize) -> TrainEvent {
        TrainEvent::Step(StepMetrics {
            epoch: step / 10,
            step,
            total_steps: 100,
            steps_per_epoch: 10,
            loss: 1.0 / step as f64,
            ce: 1.0 / step as f64,
            kd: None,
            feature: None,
            terms: Vec::new(),
            lr: 1e-3,
            images_per_sec: 8.0,
            eta_secs: 60.0,
        })
    }

    fn evaluated(epoch: usize, miou: f64) -> TrainEvent {
        TrainEvent::Evaluated(EvalMetrics {
            epoch,
            step: (epoch + 1) * 10,
            val_loss: 0.5,
            miou,
            pixel_acc: 0.9,
            iou: vec![Some(miou)],
            ms_per_image: 3.0,
        })
    }

    fn started(dir: &str) -> TrainEvent {
        TrainEvent::Started(RunInfo {
            run_dir: PathBuf::from(dir),
            model: "mbv3s-tiny".into(),
            params: 1000,
            teacher: None,
            mode: "none".into(),
            device: "cpu".into(),
            train_images: 10,
            unlabeled_images: 0,
            val_images: 2,
            total_steps: 100,
            steps_per_epoch: 10,
            class_names: vec!["background".into(), "thing".into()],
            resumed_from: None,
        })
    }

    fn summary(reason: EndReason) -> Summary {
        Summary {
            reason,
            run_dir: PathBuf::from("runs/a"),
            epochs_done: 1,
            steps_done: 10,
            best_miou: Some(0.5),
            best_epoch: Some(0),
            train_seconds: 12.0,
            skipped_samples: Vec::new(),
        }
    }

    /// Folds `events` into a fresh view-model of a run starting; also returns which of them
    /// ended the run.
    fn fold(events: Vec<TrainEvent>) -> (LiveRun, RunStatus, Vec<bool>) {
        let mut live = LiveRun { status: RunStatus::Starting, ..Default::default() };
        let now = Instant::now();
        let ended = events.iter().map(|e| live.apply(e, now)).collect();
        let status = live.status.clone();
        (live, status, ended)
    }

    #[test]
    fn a_run_that_starts_trains_pauses_and_completes() {
        let events = vec![
            started("runs/a"),
            TrainEvent::Message("skipped 1 sample".into()),
            step(1),
            step(2),
            TrainEvent::Paused,
            TrainEvent::Resumed,
            evaluated(0, 0.4),
            TrainEvent::Finished(summary(EndReason::Completed)),
        ];
        let (live, status, ended) = fold(events);
        assert_eq!(ended, [false, false, false, false, false, false, false, true]);
        assert_eq!(status, RunStatus::Finished(summary(EndReason::Completed)));
        assert_eq!(live.run_dir.as_deref(), Some(Path::new("runs/a")));
        assert_eq!(live.class_names, ["background", "thing"]);
        assert_eq!(live.info.as_ref().map(|i| i.params), Some(1000));
        assert_eq!(live.messages, ["skipped 1 sample"]);
        assert_eq!(live.steps.iter().map(|s| s.step).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(live.evals.len(), 1);
        assert!(live.preparing.is_none());
    }

    #[test]
    fn pause_and_resume_set_the_status() {
        let mut live = LiveRun { status: RunStatus::Running, ..Default::default() };
        assert!(!live.apply(&TrainEvent::Paused, Instant::now()));
        assert_eq!(live.status, RunStatus::Paused);
        live.on_event(&TrainEvent::Resumed);
        assert_eq!(live.status, RunStatus::Running, "the sink folds as apply does");
    }

    #[test]
    fn a_resumed_run_replaces_the_rows_it_trains_again() {
        // Read from the folder: steps 1..=5 and evaluations of epochs 0 and 1 (saved after the
        // checkpoint the run resumes from, at step 3 / epoch 0).
        let mut live = LiveRun { status: RunStatus::Starting, ..Default::default() };
        for e in (1..=5).map(step).chain([evaluated(0, 0.3), evaluated(1, 0.35)]) {
            live.on_event(&e);
        }
        for e in [started("runs/a"), step(4), evaluated(1, 0.4)] {
            live.on_event(&e);
        }
        assert_eq!(live.steps.iter().map(|s| s.step).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(live.evals.iter().map(|e| (e.epoch, e.miou)).collect::<Vec<_>>(), [(0, 0.3), (1, 0.4)]);
        assert_eq!(live.status, RunStatus::Running);
    }

    #[test]
    fn preparation_keeps_its_start_and_ends_at_the_first_step() {
        let t0 = Instant::now();
        let mut live = LiveRun { status: RunStatus::Running, ..Default::default() };
        let preparing = |done| TrainEvent::Preparing { what: "teacher cache".into(), done, total: 10 };
        live.apply(&preparing(3), t0);
        live.apply(&preparing(5), t0 + Duration::from_secs(2));
        let p = live.preparing.clone().expect("preparing");
        assert_eq!((p.done, p.total, p.done_at_start, p.started), (5, 10, 3, t0), "ETA from the first event");
        live.apply(&step(1), t0 + Duration::from_secs(3));
        assert!(live.preparing.is_none());
    }

    #[test]
    fn a_failure_or_a_stop_ends_the_run_and_its_preparation() {
        let preparing = TrainEvent::Preparing { what: "teacher cache".into(), done: 1, total: 10 };
        let failed = TrainEvent::Failed { message: "out of memory".into(), run_dir: PathBuf::from("runs/a") };
        let (live, status, ended) = fold(vec![started("runs/a"), preparing.clone(), failed]);
        assert_eq!(ended, [false, false, true]);
        assert_eq!(status, RunStatus::Failed("out of memory".into()));
        assert!(live.preparing.is_none());
        let stopped = TrainEvent::Finished(summary(EndReason::Stopped));
        let (live, status, ended) = fold(vec![started("runs/a"), preparing, stopped]);
        assert_eq!(ended, [false, false, true]);
        assert!(matches!(status, RunStatus::Finished(s) if s.reason == EndReason::Stopped));
        assert!(live.preparing.is_none());
    }
}
