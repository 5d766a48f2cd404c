//! `segdistill bench`: training-step, teacher and inference throughput, in the JSON shape of
//! `bench/pytorch_reference.py` so the two can be compared (`--compare torch.json`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::diagnostics::bench::{BenchConfig, BenchReport, BenchResult, ratios, run as run_bench};
use crate::distill::DistillMode;
use crate::distill::loss_terms::{LossTerms, TermKind, TermSpec};
use crate::model::ModelKind;
use crate::model::ops::gemm::GemmLibrary;
use crate::util::device::{DeviceChoice, Precision, describe};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Arithmetic of GPU matrix products and convolutions; when left out, tf32 on a GPU (as PyTorch's
    /// convolutions) and fp32 on the CPU, which always computes in fp32.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Only this student (default: every student).
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// Only these distillation modes (repeatable; default: none, response, feature, combined, or
    /// none at all when --loss or --loss-terms is given).
    #[arg(long, value_enum)]
    pub mode: Vec<DistillMode>,
    /// Also time a step whose loss is this term list (repeatable; the syntax of `train --loss`).
    #[arg(long)]
    pub loss: Vec<LossTerms>,
    /// Time a step with CE alone, then with CE and each distillation term at its default weight:
    /// what each term costs per step beside no KD (docs/distillation.md).
    #[arg(long)]
    pub loss_terms: bool,
    /// The teacher the distillation steps and the teacher row use (random weights: only its size
    /// matters). The demo's: mbv3s-aspp.
    #[arg(long, value_enum, default_value = "fcn-resnet50")]
    pub teacher: ModelKind,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Skip the teacher-forward measurement.
    #[arg(long)]
    pub no_teacher: bool,
    /// Skip the batch-1 inference measurements.
    #[arg(long)]
    pub no_infer: bool,
    /// Print the JSON report on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// A PyTorch reference report (`bench/pytorch_reference.py --json`): print segdistill/PyTorch ratios.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Also time whole training epochs on this dataset through the real engine: `epoch/<model>/none`,
    /// `epoch/<model>/<mode>` with the teacher cache (its one-off build as `teacher_cache_build/…`)
    /// and `epoch/<model>/<mode>-live` without it. Needs --teacher-weights for distillation modes.
    #[arg(long)]
    pub epoch_data: Option<PathBuf>,
    /// Teacher weights for the epoch measurements.
    #[arg(long)]
    pub teacher_weights: Option<PathBuf>,
    /// Training images per measured epoch.
    #[arg(long, default_value_t = 64)]
    pub epoch_images: usize,
    /// CPU threads (default: every core, or RAYON_NUM_THREADS); PyTorch's side takes the same
    /// `--threads`.
    #[arg(long)]
    pub threads: Option<usize>,
    /// The CPU matrix-product library for the convolutions (default: SEGDISTILL_GEMM, else
    /// matrixmultiply).
    #[arg(long, value_enum)]
    pub gemm: Option<GemmLibrary>,
}

fn line(r: &BenchResult) -> String {
    let memory = r.peak_rss_mib.map_or(String::new(), |m| format!("  peak {m:>6.0} MiB"));
    let speed = r.gflops_per_sec().map_or(String::new(), |g| format!("  {g:.1} GFLOP/s"));
    format!(
        "{:<38} batch {:>2} {:>4}px  median {:>9.1} ms  (min {:>8.1}, max {:>8.1})  {:>8.1} img/s{memory}{speed}",
        r.name,
        r.batch,
        r.size,
        r.median_ms,
        r.min_ms,
        r.max_ms,
        r.images_per_sec()
    )
}

/// The epoch measurements (`--epoch-data`), one run each.
fn epochs(
    args: &BenchArgs,
    cfg: &BenchConfig,
    data: &std::path::Path,
    on_result: &mut dyn FnMut(&BenchResult),
) -> anyhow::Result<Vec<BenchResult>> {
    use crate::diagnostics::bench::epoch;
    use crate::train::TrainConfig;
    let mut out = Vec::new();
    let mut push = |name: String, secs: f64| {
        let ms = secs * 1000.0;
        let r = BenchResult {
            name,
            batch: cfg.batch,
            size: cfg.size,
            median_ms: ms,
            min_ms: ms,
            max_ms: ms,
            peak_rss_mib: None,
            flops: None,
        };
        on_result(&r);
        out.push(r);
    };
    for &model in &cfg.models {
        for &mode in &cfg.modes {
            let variants: &[(bool, &str)] =
                if mode.needs_teacher() { &[(true, ""), (false, "-live")] } else { &[(false, "")] };
            for &(cache, suffix) in variants {
                if mode.needs_teacher() && args.teacher_weights.is_none() {
                    anyhow::bail!("--epoch-data with distillation mode `{}` needs --teacher-weights", mode.name());
                }
                let run = TrainConfig {
                    name: format!("{}-{}{suffix}", model.name(), mode.name()),
                    data: data.to_path_buf(),
                    model,
                    distill: mode,
                    teacher_weights: args.teacher_weights.clone(),
                    batch: cfg.batch,
                    size: cfg.size as u32,
                    train_limit: Some(args.epoch_images),
                    device: args.device,
                    precision: args.precision,
                    teacher_cache: cache,
                    ..Default::default()
                };
                let t = epoch(run)?;
                if t.prepare_secs > 0.0 && cache {
                    push(format!("teacher_cache_build/{}/{}-images", mode.name(), args.epoch_images), t.prepare_secs);
                }
                push(format!("epoch/{}/{}{suffix}", model.name(), mode.name()), t.train_secs);
            }
        }
    }
    Ok(out)
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.batch >= 1 && args.size >= 32, "--batch must be ≥ 1 and --size ≥ 32");
    if let Some(lib) = args.gemm {
        crate::model::ops::gemm::set_library(lib);
    }
    match args.threads {
        Some(n) => {
            anyhow::ensure!(n >= 1, "--threads must be at least 1");
            let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build()?;
            pool.install(|| measure(args, n))
        }
        None => measure(args, rayon::current_num_threads()),
    }
}

fn measure(args: BenchArgs, threads: usize) -> anyhow::Result<ExitCode> {
    let device = args.device.resolve()?;
    let precision = Precision::apply(args.precision, &device)?;
    let mut loss_terms = args.loss.clone();
    if args.loss_terms {
        loss_terms.push(LossTerms(vec![TermSpec::new(TermKind::Ce, 1.0)]));
        for kind in TermKind::ALL.into_iter().filter(|k| *k != TermKind::Ce) {
            loss_terms
                .push(LossTerms(vec![TermSpec::new(TermKind::Ce, 1.0), TermSpec::new(kind, kind.default_weight())]));
        }
    }
    let modes = if !args.mode.is_empty() {
        args.mode.clone()
    } else if !loss_terms.is_empty() {
        Vec::new()
    } else {
        vec![DistillMode::None, DistillMode::Response, DistillMode::Feature, DistillMode::Combined]
    };
    let cfg = BenchConfig {
        models: args.model.map_or_else(|| ModelKind::STUDENTS.to_vec(), |m| vec![m]),
        modes,
        loss_terms,
        teacher_model: args.teacher,
        batch: args.batch,
        size: args.size,
        warmup: args.warmup,
        repeats: args.repeats,
        teacher: !args.no_teacher,
        infer: !args.no_infer,
        num_classes: 21,
        precision,
    };
    let lib = crate::model::ops::gemm::library();
    eprintln!(
        "segdistill bench on {}, precision {precision}, {threads} threads, CPU matrix products: {} ({} kernels)",
        describe(&device),
        lib.name(),
        lib.kernel()
    );
    let mut results = run_bench(&cfg, &device, &mut |r| eprintln!("{}", line(r)))?;
    if let Some(data) = &args.epoch_data {
        results.extend(epochs(&args, &cfg, data, &mut |r| eprintln!("{}", line(r)))?);
    }
    let report = BenchReport { device: format!("{}, {precision}", describe(&device)), threads, results };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if let Some(path) = &args.compare {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let theirs: BenchReport = serde_json::from_str(&text).with_context(|| {
            format!("{} is not a bench report (run bench/pytorch_reference.py --json)", path.display())
        })?;
        let out = ratios(&report, &theirs);
        anyhow::ensure!(!out.is_empty(), "{} shares no measurement (name, batch, size) with this run", path.display());
        let mut table = String::from(
            "| measurement | segdistill ms | PyTorch ms | ratio | segdistill peak MiB | PyTorch peak MiB |\n|---|---:|---:|---:|---:|---:|\n",
        );
        let mib = |m: Option<f64>| m.map_or("—".to_string(), |m| format!("{m:.0}"));
        for r in out {
            table += &format!(
                "| {} | {:.1} | {:.1} | {:.2}× | {} | {} |\n",
                r.name,
                r.ours.median_ms,
                r.theirs.median_ms,
                r.ratio,
                mib(r.ours.peak_rss_mib),
                mib(r.theirs.peak_rss_mib)
            );
        }
        if args.json { eprint!("{table}") } else { print!("{table}") }
    }
    Ok(ExitCode::SUCCESS)
}
