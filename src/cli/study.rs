//! `segdistill study`: which distillation helps, with error bars. A grid of methods × seeds over
//! one dataset, teacher and student, run back to back as ordinary run folders under the study
//! folder (`<method>-seed<k>`: resumable, the teacher cache shared), then summarised: mean ± sd
//! per method, Δ vs no KD with Welch's t-test, the smallest difference the study resolves, and
//! the mIoU curves with ±1 sd bands (`study-miou.png`).

use std::path::Path;
use std::process::ExitCode;

use crate::distill::loss_terms::LossTerms;
use crate::report::study;
use crate::report::sweep::{Sweep, Swept};
use crate::train::run_folder::{RunRecord, RunStatus};

#[derive(Debug, clap::Args)]
pub struct StudyArgs {
    /// A method to compare: a preset (`none`, `response`, `feature`, `combined`) or a term list as
    /// `train --loss` takes it (`ce=1,kd=0.5`, `ce=1,cwd-logits=3`). Repeat for each; `none` (the
    /// baseline) is always included.
    #[arg(long = "method", required_unless_present = "report")]
    pub methods: Vec<String>,
    /// One setting to sweep, with its values: `unlabeled-ratio=0,1,2` (0: the labelled images
    /// alone; needs --unlabeled), `tau=1,2,4` (every term with a temperature) or
    /// `weight-scale=0.5,1,2` (a factor on every distillation term's weight). Each method runs at
    /// each value, a cell `<method>@<setting><value>`; the no-KD baseline runs once.
    #[arg(long, value_name = "SETTING=V1,V2,…")]
    pub vary: Option<Sweep>,
    /// Seeds per method (the runs use seeds --seed … --seed + N − 1).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Only summarise the study in --out (runs nothing).
    #[arg(long)]
    pub report: bool,
    /// Every other setting, as `train` takes it (`--out` is the study folder).
    #[command(flatten)]
    pub train: super::train::TrainArgs,
}

pub fn run(args: StudyArgs) -> anyhow::Result<ExitCode> {
    let dir = args.train.out.clone().ok_or_else(|| anyhow::anyhow!("--out is required: the study folder"))?;
    anyhow::ensure!(
        args.train.distill.is_none() && args.train.loss.is_none() && !args.train.resume,
        "a study sets each run's loss from --method and resumes what it finds: leave out --distill, --loss and --resume"
    );
    if !args.report {
        let code = run_grid(&args, &dir)?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    }
    let cells = study::cells(&dir)?;
    anyhow::ensure!(!cells.is_empty(), "{} holds no study runs (`<method>-seed<k>` folders)", dir.display());
    let summary = study::summary_markdown(&cells);
    crate::report::plots::register_fonts();
    let plot = study::write_plot(&cells, &dir)?;
    let path = dir.join("study.md");
    let markdown = format!("{summary}\n![Validation mIoU per epoch, mean ± 1 sd over seeds]({})\n", study::PLOT_FILE);
    crate::util::fs::write_atomic(&path, markdown.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    println!("{summary}");
    eprintln!("summary written to {}, curves to {}", path.display(), plot.display());
    Ok(ExitCode::SUCCESS)
}

/// Trains every cell that is not completed yet, one after the other (stopped ones resume).
fn run_grid(args: &StudyArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    let mut methods: Vec<String> = vec![study::BASELINE.to_string()];
    methods.extend(args.methods.iter().filter(|m| m.as_str() != study::BASELINE).cloned());
    for method in &methods {
        if study::Method::parse(method).is_ok_and(|m| m.ignores_labels()) {
            eprintln!(
                "note: method `{method}` has no `ce` term: its students learn from the teacher alone, without the \
                 labels (write `ce,{method}` to distil beside the labels)"
            );
        }
    }
    if args.vary.as_ref().is_some_and(|v| v.setting == Swept::UnlabeledRatio) {
        anyhow::ensure!(
            args.train.unlabeled.is_some(),
            "--vary unlabeled-ratio needs --unlabeled SPLIT_OR_FOLDER: the images without masks to mix in"
        );
    }
    // Every cell, checked before the first run trains: (method, swept value).
    let mut grid: Vec<(&String, Option<f64>)> = Vec::new();
    for method in &methods {
        match &args.vary {
            Some(sweep) if method != study::BASELINE => grid.extend(sweep.values.iter().map(|v| (method, Some(*v)))),
            _ => grid.push((method, None)),
        }
    }
    for (method, value) in &grid {
        if let (Some(sweep), Some(value)) = (&args.vary, value) {
            loss_at(&args.train, method, sweep.setting, *value)?;
        }
    }
    let base_seed = args.train.seed.unwrap_or(0);
    let signals = super::signals::StopSignals::install();
    let total = grid.len() as u64 * args.seeds;
    let mut done = 0;
    for (method, value) in grid {
        let sweep = args.vary.as_ref().zip(value);
        let cell_name = match sweep {
            Some((sweep, value)) => sweep.cell_name(&study::cell_name(method), value),
            None => study::cell_name(method),
        };
        let at = sweep.map_or(String::new(), |(s, v)| format!(" at {} {v}", s.setting.name()));
        for seed in base_seed..base_seed + args.seeds {
            done += 1;
            let run = dir.join(study::run_name(&cell_name, seed));
            let status = RunRecord::open(&run).ok().flatten().map(|r| r.status());
            if matches!(status, Some(RunStatus::Completed { .. })) {
                eprintln!("[{done}/{total}] {} completed already", run.display());
                continue;
            }
            eprintln!("[{done}/{total}] {method}{at}, seed {seed}: {}", run.display());
            let mut cell = args.train.clone();
            cell.out = Some(run.clone());
            cell.seed = Some(seed);
            cell.resume = status.is_some_and(|s| s.is_resumable());
            cell.teacher_cache_dir =
                cell.teacher_cache_dir.or_else(|| Some(crate::train::config::default_teacher_cache_root(dir)));
            match study::Method::parse(method).map_err(|e| anyhow::anyhow!("--{e:#}"))? {
                study::Method::Preset(mode) => cell.distill = Some(mode),
                study::Method::Terms(terms) => cell.loss = Some(terms),
            }
            match sweep {
                Some((sweep, value)) if sweep.setting == Swept::UnlabeledRatio && value == 0.0 => cell.unlabeled = None,
                Some((sweep, value)) if sweep.setting == Swept::UnlabeledRatio => cell.unlabeled_ratio = Some(value),
                Some((sweep, value)) => {
                    (cell.distill, cell.loss) = (None, Some(loss_at(&args.train, method, sweep.setting, value)?))
                }
                None => {}
            }
            if method == study::BASELINE {
                // The baseline learns from labels alone: no teacher to load or cache, and no
                // unlabelled images (they teach through the teacher only).
                (cell.teacher_run, cell.teacher_weights, cell.teacher_model) = (None, None, None);
                cell.unlabeled = None;
            }
            let code = super::train::run_with_signals(cell, &signals)?;
            if code != ExitCode::SUCCESS {
                eprintln!("the study stopped at {}; run the same command again to continue", run.display());
                return Ok(code);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `method`'s term list with `setting` at `value` (a preset spelled out with the weights the flags give).
fn loss_at(train: &super::train::TrainArgs, method: &str, setting: Swept, value: f64) -> anyhow::Result<LossTerms> {
    let terms = match study::Method::parse(method).map_err(|e| anyhow::anyhow!("--{e:#}"))? {
        study::Method::Terms(terms) => terms,
        study::Method::Preset(mode) => LossTerms::preset(mode, &train.loss_config()),
    };
    setting.terms_at(&terms, value).map_err(|e| anyhow::anyhow!("method {method}: {e}"))
}
