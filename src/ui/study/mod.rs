//! Studies in the Runs tab: a folder under the runs folder whose subfolders are `<method>-seed<k>`
//! runs is shown as a study — its grid (methods × seeds, where each run stands) and its summary
//! (the numbers of `study.md`, from [`crate::report::study`]). The New study form trains the grid
//! over the Train form's settings through the app's engine (`queue`), or gives the
//! `segdistill study` command that does the same. This file holds the state and the pure logic;
//! the drawing is in `view`.

mod queue;
mod view;

pub use queue::StudyQueue;
pub use view::{studies_ui, summary_cells};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::distill::DistillMode;
use crate::distill::loss_terms::TermKind;
use crate::report::study::{self, Cell, Progress, Resolution, SummaryRow};
use crate::train::TrainConfig;

/// One study folder as read by a scan.
#[derive(Clone, Debug)]
pub struct StudyView {
    pub dir: PathBuf,
    pub name: String,
    pub cells: BTreeMap<String, Cell>,
    /// Every seed any cell has a run folder for, ascending (the grid's columns).
    pub seeds: Vec<u64>,
    pub rows: Vec<SummaryRow>,
    pub resolution: Option<Resolution>,
}

impl StudyView {
    /// The study in `dir`; `None` when it is no study or cannot be read.
    pub fn load(dir: &Path) -> Option<Self> {
        let cells = study::cells(dir).ok().filter(|c| !c.is_empty())?;
        let seeds: BTreeSet<u64> = cells.values().flat_map(|c| c.progress.keys().copied()).collect();
        Some(Self {
            dir: dir.to_path_buf(),
            name: crate::ui::app::run_name(dir),
            seeds: seeds.into_iter().collect(),
            rows: study::summary_rows(&cells),
            resolution: study::resolution(&cells),
            cells,
        })
    }

    /// Where the run of `cell` with `seed` stands (no folder yet: not started).
    pub fn progress(&self, cell: &str, seed: u64) -> Progress {
        self.cells.get(cell).and_then(|c| c.progress.get(&seed)).copied().unwrap_or(Progress::NotStarted)
    }

    /// Completed runs out of the grid's size.
    pub fn completed(&self) -> (usize, usize) {
        let done = self.cells.values().flat_map(|c| c.progress.values()).filter(|p| **p == Progress::Completed);
        (done.count(), self.cells.len() * self.seeds.len())
    }
}

/// The studies under `runs_dir`, by name.
pub fn scan_studies(runs_dir: &Path) -> Vec<StudyView> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| study::is_study(p)).collect();
    dirs.sort();
    dirs.iter().filter_map(|d| StudyView::load(d)).collect()
}

/// A method the New study form offers: its label and the `--method` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodChoice {
    pub label: String,
    pub method: String,
}

/// The presets, then each distillation term alone with cross-entropy (`ce=1,<term>=1`). The
/// terms that are presets already (response, feature) and cross-entropy itself are left out.
pub fn method_choices() -> Vec<MethodChoice> {
    let presets = <DistillMode as clap::ValueEnum>::value_variants()
        .iter()
        .map(|m| MethodChoice { label: format!("{} (preset)", m.name()), method: m.name().to_string() });
    let terms = TermKind::ALL
        .iter()
        .filter(|t| !matches!(t, TermKind::Ce | TermKind::Response | TermKind::Feature))
        .map(|t| MethodChoice { label: format!("CE + {}", t.name()), method: format!("ce=1,{}=1", t.name()) });
    presets.chain(terms).collect()
}

/// The New study form.
#[derive(Clone, Debug, PartialEq)]
pub struct NewStudyForm {
    pub name: String,
    /// The chosen `--method` values (`none`, the baseline, is always run).
    pub methods: BTreeSet<String>,
    pub seeds: u64,
    /// Whether the form is open.
    pub open: bool,
}

impl Default for NewStudyForm {
    fn default() -> Self {
        Self { name: "study".into(), methods: ["response".to_string()].into(), seeds: 3, open: false }
    }
}

impl NewStudyForm {
    /// The `segdistill study` command that runs this study with `config`'s settings (the Train
    /// form's) in `<runs>/<name>`; it resumes where it stopped when run again.
    pub fn command_line(&self, config: &TrainConfig, runs_dir: &Path) -> String {
        let mut args: Vec<String> = vec!["segdistill".into(), "study".into()];
        let mut arg = |flag: &str, value: String| {
            args.push(flag.into());
            args.push(shell_quote(&value));
        };
        arg("--data", config.data.display().to_string());
        if let Some(kind) = config.dataset {
            arg("--dataset", kind.to_string());
        }
        arg("--model", config.model.to_string());
        if let Some(weights) = &config.teacher_weights {
            arg("--teacher-weights", weights.display().to_string());
            arg("--teacher-model", config.teacher.to_string());
        }
        if let Some(unlabeled) = &config.unlabeled {
            arg("--unlabeled", unlabeled.clone());
            arg("--unlabeled-ratio", config.unlabeled_ratio.to_string());
        }
        arg("--epochs", config.epochs.to_string());
        arg("--batch", config.batch.to_string());
        arg("--size", config.size.to_string());
        arg("--lr", config.optimizer.lr.to_string());
        arg("--seed", config.seed.to_string());
        arg("--seeds", self.seeds.to_string());
        for method in self.methods.iter().filter(|m| m.as_str() != study::BASELINE) {
            arg("--method", method.clone());
        }
        arg("--out", runs_dir.join(self.name.trim()).display().to_string());
        args.join(" ")
    }

    /// Why the form cannot make a study yet.
    pub fn problem(&self, config: &TrainConfig, runs_dir: &Path) -> Option<String> {
        let name = self.name.trim();
        if name.is_empty() || name.contains(['/', '\\']) {
            return Some("give the study a folder name (no slashes)".into());
        }
        if crate::train::run_folder::holds_run(&runs_dir.join(name)) {
            return Some(format!("{name} is a run folder: choose another name"));
        }
        if self.methods.iter().all(|m| m == study::BASELINE) {
            return Some("choose at least one method to compare with none".into());
        }
        if self.seeds < 2 {
            return Some("two seeds or more: the table needs a spread".into());
        }
        if config.data.as_os_str().is_empty() {
            return Some("choose a dataset in the Train tab first".into());
        }
        if config.teacher_weights.is_none() {
            return Some("choose a teacher in the Train tab first".into());
        }
        None
    }
}

/// `value` as one POSIX shell word.
fn shell_quote(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_=.,/:+@%".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_names_each_method_once_and_quotes_paths() {
        let mut config = TrainConfig {
            data: PathBuf::from("/data/my voc"),
            teacher_weights: Some(PathBuf::from("/t/teacher.safetensors")),
            ..TrainConfig::default()
        };
        config.seed = 5;
        let form = NewStudyForm {
            name: "kd".into(),
            methods: ["none".to_string(), "response".into(), "ce=1,kd=1".into()].into(),
            seeds: 4,
            open: true,
        };
        let cmd = form.command_line(&config, Path::new("/runs"));
        assert!(cmd.starts_with("segdistill study --data '/data/my voc' "), "{cmd}");
        assert!(cmd.contains("--seed 5 --seeds 4 --method ce=1,kd=1 --method response --out /runs/kd"), "{cmd}");
        assert!(!cmd.contains("--method none"), "the baseline is implied: {cmd}");
        assert_eq!(form.problem(&config, Path::new("/runs")), None);
        let lone = NewStudyForm { methods: ["none".to_string()].into(), ..form.clone() };
        assert!(lone.problem(&config, Path::new("/runs")).is_some());
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_choices_are_the_presets_and_every_other_term() {
        let choices = method_choices();
        assert_eq!(choices[0].method, "none");
        assert!(choices.iter().any(|c| c.method == "ce=1,cwd-logits=1"));
        assert!(choices.iter().all(|c| c.method.parse::<crate::distill::loss_terms::LossTerms>().is_ok()
            || <DistillMode as clap::ValueEnum>::from_str(&c.method, false).is_ok()));
        assert_eq!(choices.len(), 4 + TermKind::ALL.len() - 3);
    }
}
