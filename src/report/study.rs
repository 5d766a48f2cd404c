//! A study's summary: the runs of a study folder grouped by method (cell), each cell's best
//! validation mIoU as mean ± standard deviation over its seeds, the difference to the no-KD cell
//! with Welch's t-test, and what the study can resolve (the pooled spread and the smallest
//! difference it would detect).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::distill::DistillMode;
use crate::distill::loss_terms::LossTerms;
use crate::train::TrainConfig;
use crate::train::run_folder::{RunRecord, RunStatus};

/// The folder name of a study's run: `<cell>-seed<seed>`.
pub fn run_name(cell: &str, seed: u64) -> String {
    format!("{cell}-seed{seed}")
}

/// What a study's `--method` value trains: a preset or a term list.
#[derive(Clone, Debug)]
pub enum Method {
    Preset(DistillMode),
    Terms(LossTerms),
}

impl Method {
    /// A preset's name (`none`, `response`, `feature`, `combined`) or a term list as `train
    /// --loss` takes it (`ce=1,kd=0.5`).
    pub fn parse(method: &str) -> anyhow::Result<Self> {
        match <DistillMode as clap::ValueEnum>::from_str(method, false) {
            Ok(mode) => Ok(Self::Preset(mode)),
            Err(_) => method.parse::<LossTerms>().map(Self::Terms).map_err(|e| anyhow::anyhow!("method {method}: {e}")),
        }
    }

    /// A term list without the cross-entropy: its students learn from the teacher alone (the
    /// labels unused), which is rarely what `--method kd` was meant to compare.
    pub fn ignores_labels(&self) -> bool {
        match self {
            Self::Preset(_) => false,
            Self::Terms(terms) => !terms.0.iter().any(|t| t.kind == crate::distill::loss_terms::TermKind::Ce),
        }
    }

    /// `config` made to train this method (the baseline without its teacher and unlabelled
    /// images: it learns from labels alone).
    pub fn apply(&self, config: &mut TrainConfig) {
        match self {
            Self::Preset(mode) => (config.distill, config.loss_terms) = (*mode, None),
            Self::Terms(terms) => config.loss_terms = Some(terms.clone()),
        }
        if matches!(self, Self::Preset(DistillMode::None)) {
            (config.teacher_weights, config.unlabeled) = (None, None);
        }
    }
}

/// A method's folder-safe cell name: `none`, `ce1-kd0.5`.
pub fn cell_name(method: &str) -> String {
    method.replace(['=', ':'], "").replace(',', "-").replace(['/', '\\', ' '], "_")
}

/// The cell and seed of a study run's folder name.
fn parse_run_name(name: &str) -> Option<(&str, u64)> {
    let (cell, seed) = name.rsplit_once("-seed")?;
    Some((cell, seed.parse().ok()?))
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Welch's two-sample t-test: (t, degrees of freedom, two-sided p). `None` with fewer than two
/// values on a side, or no spread at all.
pub fn welch(a: &[f64], b: &[f64]) -> Option<(f64, f64, f64)> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let ((ma, sa), (mb, sb)) = (mean_sd(a), mean_sd(b));
    let (va, vb) = (sa * sa / a.len() as f64, sb * sb / b.len() as f64);
    if va + vb <= 0.0 {
        return None;
    }
    let t = (ma - mb) / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va * va / (a.len() as f64 - 1.0) + vb * vb / (b.len() as f64 - 1.0));
    Some((t, df, two_sided_p(t, df)))
}

/// Two-sided p-value of Student's t with `df` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2).
pub fn two_sided_p(t: f64, df: f64) -> f64 {
    regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// I_x(a, b) by its continued fraction (Numerical Recipes' `betacf`, Lentz's method).
fn regularized_incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    // The fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    d = if d.abs() < TINY { TINY } else { d };
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        for aa in [m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))] {
            d = 1.0 + aa * d;
            d = if d.abs() < TINY { TINY } else { d };
            c = 1.0 + aa / c;
            c = if c.abs() < TINY { TINY } else { c };
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9: about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let series = C[1..].iter().enumerate().fold(C[0], |s, (i, c)| s + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

/// Where one run of a study grid stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Its folder is not there yet, or it holds no checkpoint.
    NotStarted,
    /// A process trains it now.
    Training,
    /// Stopped with a checkpoint (the study resumes it).
    Stopped,
    Completed,
}

impl Progress {
    fn of(record: &RunRecord) -> Self {
        match record.status() {
            _ if record.training_now.is_some() => Self::Training,
            RunStatus::Completed { .. } => Self::Completed,
            RunStatus::Stopped { .. } => Self::Stopped,
            RunStatus::NotStarted => Self::NotStarted,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::NotStarted => "not started",
            Self::Training => "training",
            Self::Stopped => "stopped",
            Self::Completed => "completed",
        }
    }
}

/// One method of a study: its seeds' best mIoU and curves.
#[derive(Clone, Debug)]
pub struct Cell {
    pub name: String,
    /// (seed, best validation mIoU) of each completed run.
    pub results: Vec<(u64, f64)>,
    /// Runs of the cell that are not completed yet.
    pub unfinished: Vec<PathBuf>,
    /// Every run folder of the cell by seed, and where it stands.
    pub progress: BTreeMap<u64, Progress>,
    /// Validation mIoU per epoch of each completed run.
    pub curves: Vec<Vec<f64>>,
}

impl Cell {
    pub fn values(&self) -> Vec<f64> {
        self.results.iter().map(|r| r.1).collect()
    }
}

/// Whether `dir` is a study folder: not a run itself, and holding at least one
/// `<method>-seed<k>` run folder.
pub fn is_study(dir: &Path) -> bool {
    if crate::train::run_folder::holds_run(dir) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let path = e.path();
        path.file_name().and_then(|n| n.to_str()).and_then(parse_run_name).is_some()
            && crate::train::run_folder::holds_run(&path)
    })
}

/// The cells of the study in `dir`, by name.
pub fn cells(dir: &Path) -> anyhow::Result<BTreeMap<String, Cell>> {
    let mut cells: BTreeMap<String, Cell> = BTreeMap::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("cannot read the study folder {}: {e}", dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for run in dirs {
        let Some(name) = run.file_name().and_then(|n| n.to_str()) else { continue };
        let Some((cell, seed)) = parse_run_name(name) else { continue };
        let Ok(Some(record)) = RunRecord::open(&run) else { continue };
        let entry = cells.entry(cell.to_string()).or_insert_with(|| Cell {
            name: cell.to_string(),
            results: Vec::new(),
            unfinished: Vec::new(),
            progress: BTreeMap::new(),
            curves: Vec::new(),
        });
        entry.progress.insert(seed, Progress::of(&record));
        match (record.status(), record.state.as_ref()) {
            (RunStatus::Completed { .. }, Some(state)) if state.best.is_some() => {
                entry.results.push((seed, state.best.as_ref().map_or(0.0, |b| b.miou)));
                entry.curves.push(state.history.iter().map(|h| h.miou).collect());
            }
            _ => entry.unfinished.push(run.clone()),
        }
    }
    Ok(cells)
}

/// The baseline cell: no distillation.
pub const BASELINE: &str = "none";

/// One line of a study's summary.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    pub name: String,
    /// Completed runs.
    pub runs: usize,
    pub unfinished: usize,
    /// Mean and sample sd of the completed runs' best validation mIoU.
    pub mean_sd: Option<(f64, f64)>,
    /// Mean difference to the baseline and Welch's two-sided p (where both sides allow it).
    pub delta: Option<f64>,
    pub p: Option<f64>,
}

impl SummaryRow {
    pub fn significant(&self) -> bool {
        self.p.is_some_and(|p| p < SIGNIFICANCE)
    }
}

/// The significance level of the Δ column.
pub const SIGNIFICANCE: f64 = 0.05;

/// What the study can resolve: the pooled seed-to-seed sd over cells of `runs` runs, and the
/// smallest difference it detects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resolution {
    pub pooled_sd: f64,
    pub runs: usize,
    pub detectable: f64,
}

/// The summary's rows, one per cell in name order.
pub fn summary_rows(cells: &BTreeMap<String, Cell>) -> Vec<SummaryRow> {
    let baseline = cells.get(BASELINE).map(Cell::values).unwrap_or_default();
    cells
        .values()
        .map(|cell| {
            let values = cell.values();
            let mean_sd = (!values.is_empty()).then(|| mean_sd(&values));
            let compare = cell.name != BASELINE && !baseline.is_empty() && !values.is_empty();
            SummaryRow {
                name: cell.name.clone(),
                runs: values.len(),
                unfinished: cell.unfinished.len(),
                mean_sd,
                delta: compare.then(|| mean_sd.map_or(0.0, |m| m.0) - self::mean_sd(&baseline).0),
                p: if compare { welch(&values, &baseline).map(|w| w.2) } else { None },
            }
        })
        .collect()
}

/// The study's resolution, once some cell has two or more completed runs.
pub fn resolution(cells: &BTreeMap<String, Cell>) -> Option<Resolution> {
    let (pooled, runs) = pooled_sd(cells);
    // Two-sided α = 0.05 and 80 % power: z-values 1.96 + 0.84 (a normal approximation).
    pooled.map(|pooled_sd| Resolution { pooled_sd, runs, detectable: 2.8 * pooled_sd * (2.0 / runs as f64).sqrt() })
}

/// The study's summary as a Markdown table with what it can resolve.
pub fn summary_markdown(cells: &BTreeMap<String, Cell>) -> String {
    let mut out = String::from(
        "| method | runs | best val mIoU (mean ± sd) | Δ vs none | p (Welch) | |\n|---|---|---|---|---|---|\n",
    );
    for row in summary_rows(cells) {
        let Some((mean, sd)) = row.mean_sd else {
            out.push_str(&format!("| {} | 0 ({} unfinished) | — | — | — | |\n", row.name, row.unfinished));
            continue;
        };
        let unfinished = if row.unfinished == 0 { String::new() } else { format!(" (+{} unfinished)", row.unfinished) };
        out.push_str(&format!(
            "| {} | {}{unfinished} | {mean:.4} ± {sd:.4} | {} | {} | {} |\n",
            row.name,
            row.runs,
            row.delta.map_or("—".into(), |d| format!("{d:+.4}")),
            row.p.map_or("—".into(), |p| format!("{p:.3}")),
            if row.significant() { "significant (p < 0.05)" } else { "" }
        ));
    }
    if let Some(r) = resolution(cells) {
        out.push_str(&format!(
            "\nPooled seed-to-seed sd {:.4} over cells of {} runs: a difference of about {:.4} mIoU \
             is the smallest this study detects (α 0.05, power 0.8); smaller ones need more seeds or a larger \
             validation set.\n",
            r.pooled_sd, r.runs, r.detectable
        ));
    }
    out
}

/// The pooled standard deviation of the cells with two or more runs, and their typical size.
fn pooled_sd(cells: &BTreeMap<String, Cell>) -> (Option<f64>, usize) {
    let (mut ss, mut dof, mut sizes) = (0.0, 0usize, Vec::new());
    for values in cells.values().map(Cell::values).filter(|v| v.len() >= 2) {
        let (_, sd) = mean_sd(&values);
        ss += sd * sd * (values.len() - 1) as f64;
        dof += values.len() - 1;
        sizes.push(values.len());
    }
    if dof == 0 {
        return (None, 0);
    }
    sizes.sort_unstable();
    (Some((ss / dof as f64).sqrt()), sizes[sizes.len() / 2])
}

/// Mean and sd per epoch across runs, over the epochs every run has (the shortest run's):
/// `(epoch, mean, sd)` with epochs counted from 1. Empty without runs.
pub fn epoch_band(curves: &[Vec<f64>]) -> Vec<(usize, f64, f64)> {
    let epochs = curves.iter().map(Vec::len).min().unwrap_or(0);
    (0..epochs)
        .map(|e| {
            let (mean, sd) = mean_sd(&curves.iter().map(|c| c[e]).collect::<Vec<_>>());
            (e + 1, mean, sd)
        })
        .collect()
}

/// The file name of the study's curve plot.
pub const PLOT_FILE: &str = "study-miou.png";

/// Writes `study-miou.png` into `dir`: validation mIoU per epoch, one line per cell (the mean
/// over its completed runs) with a shaded ±1 sd band.
pub fn write_plot(cells: &BTreeMap<String, Cell>, dir: &Path) -> anyhow::Result<PathBuf> {
    let bands: Vec<super::plots::Band> = cells
        .values()
        .filter(|c| !c.curves.is_empty())
        .map(|c| super::plots::Band {
            name: format!("{} (n={})", c.name, c.curves.len()),
            points: epoch_band(&c.curves).into_iter().map(|(e, m, sd)| (e as f64, m, sd)).collect(),
        })
        .collect();
    let path = dir.join(PLOT_FILE);
    super::plots::band_chart(&path, "Validation mIoU (mean ± 1 sd over seeds)", "epoch", "mIoU", &bands)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from scipy.stats (ttest_ind with equal_var=False; t.sf).
    #[test]
    fn welch_and_the_t_distribution_match_scipy() {
        let (t, df, p) = welch(&[0.61, 0.63, 0.60, 0.64], &[0.58, 0.57, 0.60, 0.56]).unwrap();
        assert!((t - 3.4).abs() < 1e-12 && (df - 5.973451327433627).abs() < 1e-9, "{t} {df}");
        assert!((p - 0.014595725345927093).abs() < 1e-9, "{p}");
        for (t, df, want) in
            [(2.0, 10.0, 0.07338803477074037), (0.5, 3.3, 0.6485350763995584), (4.0, 1.5, 0.08983252695432825)]
        {
            let p = two_sided_p(t, df);
            assert!((p - want).abs() < 1e-9, "t {t} df {df}: {p} vs {want}");
        }
        assert!(welch(&[0.5], &[0.4, 0.3]).is_none() && welch(&[0.5, 0.5], &[0.4, 0.4]).is_none());
    }

    #[test]
    fn the_band_spans_the_epochs_every_run_has() {
        let band = epoch_band(&[vec![0.1, 0.3, 0.5], vec![0.3, 0.5], vec![0.2, 0.4, 0.9, 1.0]]);
        assert_eq!(band.len(), 2);
        let sd = |m: f64, v: [f64; 3]| (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 2.0).sqrt();
        for ((epoch, mean, s), (want_epoch, values)) in band.iter().zip([(1, [0.1, 0.3, 0.2]), (2, [0.3, 0.5, 0.4])]) {
            let want_mean = values.iter().sum::<f64>() / 3.0;
            assert_eq!(*epoch, want_epoch);
            assert!((mean - want_mean).abs() < 1e-12 && (s - sd(want_mean, values)).abs() < 1e-12, "{band:?}");
        }
        assert!((band[0].2 - 0.1).abs() < 1e-12, "sd of 0.1, 0.3, 0.2 is 0.1");
        assert!(epoch_band(&[]).is_empty());
        assert_eq!(epoch_band(&[vec![0.5, 0.6]]), vec![(1, 0.5, 0.0), (2, 0.6, 0.0)]);
    }

    #[test]
    fn study_run_names_round_trip() {
        assert_eq!(parse_run_name(&run_name("ce1-kd0.5", 3)), Some(("ce1-kd0.5", 3)));
        assert_eq!(parse_run_name("teacher-cache"), None);
    }

    #[test]
    fn a_term_list_without_the_cross_entropy_is_told_apart() {
        let ignores = |m: &str| Method::parse(m).unwrap().ignores_labels();
        assert!(ignores("kd") && ignores("kd=1,dist=1"));
        assert!(!ignores("ce,kd") && !ignores("response") && !ignores("none"));
    }
}
