//! A study started from the app: its cells as run configurations, trained one after another by
//! the app's training engine (what `segdistill study` does from the command line). Completed
//! cells are skipped and stopped ones resume, so starting the same study again continues it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::NewStudyForm;
use crate::report::study::{self, Method};
use crate::train::TrainConfig;
use crate::train::run_folder::{RunRecord, RunStatus};

/// The cells of a study still to train, in order.
#[derive(Debug)]
pub struct StudyQueue {
    pub dir: PathBuf,
    /// (configuration, whether it resumes a stopped run).
    pending: VecDeque<(TrainConfig, bool)>,
    /// Runs in the grid, and how many of them were started by this queue so far.
    pub total: usize,
    pub started: usize,
}

impl StudyQueue {
    /// The study `form` describes over `base` (the Train form's configuration: dataset, student,
    /// teacher, schedule), in `<runs_dir>/<name>`: the `none` baseline first, then each method,
    /// each over the seeds `base.seed …`. Refuses what the CLI would refuse.
    pub fn plan(form: &NewStudyForm, base: &TrainConfig, runs_dir: &Path) -> Result<Self, String> {
        if let Some(problem) = form.problem(base, runs_dir) {
            return Err(problem);
        }
        let dir = runs_dir.join(form.name.trim());
        let mut methods = vec![study::BASELINE.to_string()];
        methods.extend(form.methods.iter().filter(|m| m.as_str() != study::BASELINE).cloned());
        let mut pending = VecDeque::new();
        let mut total = 0;
        for method in &methods {
            let parsed = Method::parse(method).map_err(|e| format!("{e:#}"))?;
            for seed in base.seed..base.seed + form.seeds {
                total += 1;
                let name = study::run_name(&study::cell_name(method), seed);
                let status = RunRecord::open(&dir.join(&name)).ok().flatten().map(|r| r.status());
                if matches!(status, Some(RunStatus::Completed { .. })) {
                    continue;
                }
                let mut config = TrainConfig {
                    name,
                    runs_dir: dir.clone(),
                    seed,
                    teacher_cache_dir: Some(crate::train::config::default_teacher_cache_root(&dir)),
                    ..base.clone()
                };
                parsed.apply(&mut config);
                config.validate().map_err(|e| format!("{method}: {e:#}"))?;
                pending.push_back((config, status.is_some_and(|s| s.is_resumable())));
            }
        }
        Ok(Self { dir, pending, total, started: 0 })
    }

    /// The next cell to train (and whether it resumes); `None` once the grid is done.
    pub fn next_cell(&mut self) -> Option<(TrainConfig, bool)> {
        let next = self.pending.pop_front()?;
        self.started += 1;
        Some(next)
    }

    pub fn remaining(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_runs_the_baseline_first_without_its_teacher_and_each_method_over_the_seeds() {
        let runs = tempfile::tempdir().unwrap();
        let base = TrainConfig {
            data: PathBuf::from("data"),
            teacher_weights: Some(PathBuf::from("teacher.safetensors")),
            seed: 3,
            ..TrainConfig::default()
        };
        let form = NewStudyForm {
            name: "s".into(),
            methods: ["ce=1,kd=1".to_string(), "response".into()].into(),
            seeds: 2,
            open: true,
        };
        let mut queue = StudyQueue::plan(&form, &base, runs.path()).unwrap();
        assert_eq!((queue.total, queue.remaining()), (6, 6));
        let cells: Vec<TrainConfig> = std::iter::from_fn(|| queue.next_cell().map(|c| c.0)).collect();
        let names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["none-seed3", "none-seed4", "ce1-kd1-seed3", "ce1-kd1-seed4", "response-seed3", "response-seed4"]
        );
        assert!(cells[0].teacher_weights.is_none() && !cells[0].needs_teacher(), "the baseline learns from labels");
        assert!(cells[2].loss_terms.is_some() && cells[2].teacher_weights.is_some());
        assert_eq!(cells[4].distill, crate::distill::DistillMode::Response);
        assert!(cells.iter().all(|c| c.runs_dir == runs.path().join("s")));
        let bad = NewStudyForm { methods: ["ce=1,nonsense=1".to_string()].into(), ..form };
        assert!(StudyQueue::plan(&bad, &base, runs.path()).is_err());
    }
}
