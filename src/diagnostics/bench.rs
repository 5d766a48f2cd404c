//! Throughput benchmarks, timed the way `bench/pytorch_reference.py` times PyTorch: after warm-up,
//! with the device synchronised around every repeat, reporting min / median / max.
//!
//! - `train_step/<model>/<mode>`: one optimisation step exactly as the engine runs it (teacher
//!   forward without gradients when the mode needs it, student forward in train mode, the
//!   distillation loss, backward, gradient-norm clipping, AdamW);
//! - `train_step/<model>/loss:<list>`: the same step with the loss as a term list (`--loss`), e.g.
//!   `loss:ce=1,cwd-logits=3`: beside `loss:ce=1`, what one distillation term costs;
//! - `teacher_forward/<teacher>`: the teacher alone, in eval mode;
//! - `infer/<model>`: a student at batch 1 in eval mode.
//!
//! Inputs are random (timing does not depend on the values); weights are freshly initialised, so
//! no download is needed.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::Serialize;

use crate::distill::loss_terms::{LossTerms, TermsDistiller};
use crate::distill::{DistillMode, FeatureDistiller, LossConfig, Target, TeacherSignal};
use crate::model::weights::init::seeded_var_builder;
use crate::model::weights::varmap_tensors;
use crate::model::{Mode, Model, ModelKind, build_trainable};
use crate::train::config::OptimizerConfig;
use crate::train::engine::trainable;
use crate::train::optim::Optimizer;
use crate::train::step::{StepBatch, StepModel, StepOutcome, optimization_step};
use crate::util::device::synchronize;
use crate::util::rng::Rng;

/// What to time.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub models: Vec<ModelKind>,
    pub modes: Vec<DistillMode>,
    /// Term lists to time a step with, after the modes.
    pub loss_terms: Vec<LossTerms>,
    /// The teacher the distillation steps read (random weights; only its size matters).
    pub teacher_model: ModelKind,
    pub batch: usize,
    pub size: usize,
    pub warmup: usize,
    pub repeats: usize,
    pub teacher: bool,
    pub infer: bool,
    pub num_classes: usize,
    /// The precision in effect (bf16: the networks run under autocast).
    pub precision: crate::util::device::Precision,
}

/// One measurement, in the JSON shape the PyTorch reference prints too.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct BenchResult {
    pub name: String,
    pub batch: usize,
    pub size: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Peak resident memory of the process while this row ran (warm-up included), in MiB: the
    /// peak is reset at the row's start, so it counts what the row needs plus what earlier rows
    /// left resident (allocators keep freed memory) — run one row per process for a clean figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// Floating-point operations of one repeat (2 × the convolutions' and linear layers'
    /// multiply-adds, as `model::layers::count_macs` counts them), where counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops: Option<f64>,
}

impl BenchResult {
    pub fn images_per_sec(&self) -> f64 {
        self.batch as f64 * 1000.0 / self.median_ms.max(1e-9)
    }

    /// Achieved GFLOP/s at the median time, where the row counted its operations.
    pub fn gflops_per_sec(&self) -> Option<f64> {
        self.flops.map(|f| f / (self.median_ms.max(1e-9) * 1e6))
    }
}

/// The JSON document `bench --json` prints.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct BenchReport {
    pub device: String,
    pub threads: usize,
    pub results: Vec<BenchResult>,
}

fn summarize(name: String, batch: usize, size: usize, timing: Timing) -> BenchResult {
    let Timing { mut ms, peak_rss_mib } = timing;
    ms.sort_by(f64::total_cmp);
    let median = if ms.is_empty() {
        f64::NAN
    } else if ms.len() % 2 == 1 {
        ms[ms.len() / 2]
    } else {
        (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0
    };
    BenchResult {
        name,
        batch,
        size,
        median_ms: median,
        min_ms: ms.first().copied().unwrap_or(f64::NAN),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
        peak_rss_mib,
        flops: None,
    }
}

/// What [`time`] measured: each timed repeat in ms, and the peak resident memory.
struct Timing {
    ms: Vec<f64>,
    peak_rss_mib: Option<f64>,
}

/// Runs `f` `warmup` times untimed, then `repeats` times timed (synchronising the device).
fn time(
    device: &Device,
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Timing> {
    let peak_known = crate::util::memory::reset_peak();
    for _ in 0..warmup {
        f()?;
        synchronize(device)?;
    }
    let mut ms = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        synchronize(device)?;
        let t0 = Instant::now();
        f()?;
        synchronize(device)?;
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let peak_rss_mib = if peak_known { crate::util::memory::peak_resident_mib() } else { None };
    Ok(Timing { ms, peak_rss_mib })
}

pub(crate) fn random_input(b: usize, size: usize, seed: u64, device: &Device) -> anyhow::Result<Tensor> {
    let mut rng = Rng::new(seed);
    let data: Vec<f32> = (0..b * 3 * size * size).map(|_| rng.normal()).collect();
    Ok(Tensor::from_vec(data, (b, 3, size, size), device)?)
}

pub(crate) fn random_labels(b: usize, size: usize, classes: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..b * size * size).map(|_| (rng.next_u64() % classes as u64) as u8).collect()
}

/// `kind` with seeded constant (non-variable) weights, as the engine loads a teacher and
/// `predict` loads a model from a file: nothing is recorded for backward.
pub(crate) fn frozen_model(kind: ModelKind, seed: u64, classes: usize, device: &Device) -> anyhow::Result<Model> {
    let varmap = VarMap::new();
    Model::new(kind, seeded_var_builder(&varmap, seed, device), classes, false)?;
    let tensors = varmap_tensors(&varmap).into_iter().map(|(k, t)| (k, t.detach())).collect();
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, device);
    Ok(Model::new(kind, vb, classes, false)?)
}

/// A student training on synthetic batches exactly as the engine's step runs (teacher forward
/// without gradients when the mode needs it, student forward in train mode, the distillation
/// loss, backward, gradient-norm clipping, AdamW), with seeded weights: what `bench` times and
/// what `selftest` runs on two devices to compare.
pub(crate) struct SyntheticTraining {
    student: crate::model::Trainable,
    distiller: Option<FeatureDistiller>,
    /// The loss as a term list (instead of `mode`'s preset).
    terms: Option<TermsDistiller>,
    optimizer: Optimizer,
    clip: Option<f64>,
    loss_cfg: LossConfig,
    mode: DistillMode,
    step: u64,
    /// The dtype images enter the networks in (bf16 under autocast).
    compute_dtype: DType,
}

impl SyntheticTraining {
    pub(crate) fn new(
        kind: ModelKind,
        mode: DistillMode,
        classes: usize,
        teacher: Option<&Model>,
        device: &Device,
    ) -> anyhow::Result<Self> {
        let student = build_trainable(kind, classes, 0, device)?;
        let adapters = VarMap::new();
        let distiller = match (teacher, mode.uses_features()) {
            (Some(t), true) => Some(FeatureDistiller::new(
                seeded_var_builder(&adapters, 1, device),
                &student.model.feature_taps(),
                &t.feature_taps(),
            )?),
            _ => None,
        };
        let mut params = trainable(&student.varmap, "model/");
        params.extend(trainable(&adapters, "adapters/"));
        let opt_cfg = OptimizerConfig::default();
        let clip = opt_cfg.grad_clip;
        let optimizer = Optimizer::new(opt_cfg, params);
        Ok(Self {
            student,
            distiller,
            terms: None,
            optimizer,
            clip,
            loss_cfg: LossConfig::default(),
            mode,
            step: 0,
            compute_dtype: DType::F32,
        })
    }

    /// A student whose loss is the term list `terms` (adapters and memory seeded as `new`'s).
    pub(crate) fn with_terms(
        kind: ModelKind,
        terms: &LossTerms,
        classes: usize,
        teacher: Option<&Model>,
        device: &Device,
    ) -> anyhow::Result<Self> {
        let student = build_trainable(kind, classes, 0, device)?;
        let adapters = VarMap::new();
        let teacher_taps = teacher.map(|t| t.feature_taps()).unwrap_or_default();
        let vb = seeded_var_builder(&adapters, 1, device);
        let distiller = TermsDistiller::new(terms.clone(), vb, &student.model.feature_taps(), &teacher_taps, classes)?;
        let mut params = trainable(&student.varmap, "model/");
        params.extend(trainable(&adapters, "adapters/"));
        let opt_cfg = OptimizerConfig::default();
        let clip = opt_cfg.grad_clip;
        Ok(Self {
            student,
            distiller: None,
            terms: Some(distiller),
            optimizer: Optimizer::new(opt_cfg, params),
            clip,
            loss_cfg: LossConfig::default(),
            mode: DistillMode::None,
            step: 0,
            compute_dtype: DType::F32,
        })
    }

    fn needs_teacher(&self) -> bool {
        match &self.terms {
            Some(t) => t.terms().needs_teacher(),
            None => self.mode.needs_teacher(),
        }
    }

    /// Runs the networks in `precision`'s dtype (bf16 autocast) from now on.
    pub(crate) fn with_precision(mut self, precision: crate::util::device::Precision) -> Self {
        self.compute_dtype = precision.compute_dtype();
        self
    }

    /// One step on images `x` (B, 3, H, W) with `labels` (B·H·W class indices), as the engine's
    /// ([`optimization_step`]); returns the loss. A non-finite loss or gradient is an error.
    pub(crate) fn step(&mut self, x: &Tensor, labels: &[u8], teacher: Option<&Model>) -> anyhow::Result<f64> {
        let (b, _, h, w) = x.dims4()?;
        let x = &x.to_dtype(self.compute_dtype)?;
        let target = Target::new(labels, (b, h, w), None, x.device())?;
        let teacher_out = match teacher.filter(|_| self.needs_teacher()) {
            Some(t) => Some(t.forward(x, Mode::Eval)?),
            None => None,
        };
        let signal = teacher_out.as_ref().map(|o| TeacherSignal { logits: Some(&o.logits), features: &o.features });
        let model = StepModel {
            student: &self.student.model,
            distiller: self.distiller.as_ref(),
            terms: self.terms.as_ref(),
            optimizer: &mut self.optimizer,
            mode: self.mode,
            loss: &self.loss_cfg,
            grad_clip: self.clip,
            freeze_bn: false,
        };
        let batch =
            StepBatch { images: x, target: &target, teacher: signal.as_ref(), dropout_seed: self.step, lr: 1e-3 };
        self.step += 1;
        match optimization_step(model, batch)? {
            StepOutcome::Updated(values) => Ok(values.total),
            StepOutcome::NonFiniteLoss(v) | StepOutcome::NonFiniteGradient(v) => {
                anyhow::bail!("step {}: non-finite loss or gradient norm ({v})", self.step)
            }
        }
    }
}

/// What a timed step's loss is: a `--distill` preset or a term list.
enum StepLoss<'a> {
    Mode(DistillMode),
    Terms(&'a LossTerms),
}

/// Times one training step of `kind` with `loss`.
fn train_step(
    cfg: &BenchConfig,
    kind: ModelKind,
    loss: StepLoss,
    teacher: Option<&Model>,
    device: &Device,
) -> anyhow::Result<BenchResult> {
    let (b, s, classes) = (cfg.batch, cfg.size, cfg.num_classes);
    let (training, what) = match loss {
        StepLoss::Mode(mode) => {
            (SyntheticTraining::new(kind, mode, classes, teacher, device)?, mode.name().to_string())
        }
        StepLoss::Terms(terms) => {
            (SyntheticTraining::with_terms(kind, terms, classes, teacher, device)?, format!("loss:{terms}"))
        }
    };
    let mut training = training.with_precision(cfg.precision);
    let x = random_input(b, s, 11, device)?;
    let labels = random_labels(b, s, classes, 12);
    let ms = time(device, cfg.warmup, cfg.repeats, || {
        training.step(&x, &labels, teacher)?;
        Ok(())
    })?;
    Ok(summarize(format!("train_step/{}/{what}", kind.name()), b, s, ms))
}

/// Runs every benchmark `cfg` asks for, handing each result to `on_result` as it lands.
pub fn run(
    cfg: &BenchConfig,
    device: &Device,
    on_result: &mut dyn FnMut(&BenchResult),
) -> anyhow::Result<Vec<BenchResult>> {
    let needs_teacher =
        cfg.teacher || cfg.modes.iter().any(|m| m.needs_teacher()) || cfg.loss_terms.iter().any(|t| t.needs_teacher());
    let teacher = if needs_teacher { Some(frozen_model(cfg.teacher_model, 7, cfg.num_classes, device)?) } else { None };
    let mut results = Vec::new();
    let mut push = |r: BenchResult, results: &mut Vec<BenchResult>| {
        on_result(&r);
        results.push(r);
    };
    for &kind in &cfg.models {
        for &mode in &cfg.modes {
            let r = train_step(cfg, kind, StepLoss::Mode(mode), teacher.as_ref(), device)?;
            push(r, &mut results);
        }
        for terms in &cfg.loss_terms {
            let r = train_step(cfg, kind, StepLoss::Terms(terms), teacher.as_ref(), device)?;
            push(r, &mut results);
        }
    }
    if cfg.teacher
        && let Some(t) = &teacher
    {
        let x = random_input(cfg.batch, cfg.size, 13, device)?.to_dtype(cfg.precision.compute_dtype())?;
        // The multiply-adds are tallied over the warm-up and timed calls themselves (on this
        // thread, where the layers count them), then divided by the number of calls.
        let (ms, macs) = crate::model::layers::count_macs(|| {
            time(device, cfg.warmup, cfg.repeats, || {
                t.forward(&x, Mode::Eval)?;
                Ok(())
            })
        });
        let calls = (cfg.warmup + cfg.repeats.max(1)) as f64;
        let row = summarize(format!("teacher_forward/{}", cfg.teacher_model.name()), cfg.batch, cfg.size, ms?);
        push(BenchResult { flops: Some(2.0 * macs as f64 / calls), ..row }, &mut results);
    }
    if cfg.infer {
        let x = random_input(1, cfg.size, 14, device)?.to_dtype(cfg.precision.compute_dtype())?;
        for &kind in &cfg.models {
            let model = frozen_model(kind, 0, cfg.num_classes, device)?;
            let ms = time(device, cfg.warmup, cfg.repeats, || {
                model.forward(&x, Mode::Eval)?;
                Ok(())
            })?;
            push(summarize(format!("infer/{}", kind.name()), 1, cfg.size, ms), &mut results);
        }
    }
    Ok(results)
}

/// `segdistill / PyTorch` ratios for the names both reports share.
pub fn ratios<'a>(ours: &'a BenchReport, theirs: &'a BenchReport) -> Vec<Pair<'a>> {
    ours.results
        .iter()
        .filter_map(|o| {
            let t = theirs.results.iter().find(|t| t.name == o.name && t.batch == o.batch && t.size == o.size)?;
            Some(Pair { name: &o.name, ours: o, theirs: t, ratio: o.median_ms / t.median_ms })
        })
        .collect()
}

/// The same measurement in both reports, and segdistill's median time over PyTorch's.
#[derive(Debug, PartialEq)]
pub struct Pair<'a> {
    pub name: &'a str,
    pub ours: &'a BenchResult,
    pub theirs: &'a BenchResult,
    pub ratio: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_min_median_max() {
        let t = |ms: Vec<f64>| Timing { ms, peak_rss_mib: None };
        let r = summarize("x".into(), 8, 64, t(vec![5.0, 1.0, 3.0, 100.0]));
        assert_eq!((r.min_ms, r.median_ms, r.max_ms), (1.0, 4.0, 100.0));
        assert_eq!(summarize("x".into(), 2, 64, t(vec![2.0, 9.0, 4.0])).median_ms, 4.0);
        assert!((r.images_per_sec() - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn a_tiny_bench_runs_every_kind_of_measurement() {
        let cfg = BenchConfig {
            models: vec![ModelKind::Mbv3sTiny],
            modes: vec![DistillMode::None, DistillMode::Feature],
            loss_terms: vec!["ce,cirkd-region".parse().unwrap()],
            teacher_model: ModelKind::FcnResnet50,
            batch: 1,
            size: 32,
            warmup: 0,
            repeats: 1,
            teacher: true,
            infer: true,
            num_classes: 21,
            precision: crate::util::device::Precision::Fp32,
        };
        let mut seen = 0;
        let results = run(&cfg, &Device::Cpu, &mut |_| seen += 1).unwrap();
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "train_step/mbv3s-tiny/none",
                "train_step/mbv3s-tiny/feature",
                "train_step/mbv3s-tiny/loss:ce=1,cirkd-region=0.1",
                "teacher_forward/fcn-resnet50",
                "infer/mbv3s-tiny"
            ]
        );
        assert_eq!(seen, 5);
        assert!(results.iter().all(|r| r.median_ms > 0.0 && r.min_ms <= r.median_ms && r.median_ms <= r.max_ms));
        assert_eq!(results[4].batch, 1);
        // FCN-ResNet50 at 32²: dozens of MFLOPs per image, counted for the teacher row only.
        assert!(results[3].flops.is_some_and(|f| f > 1e8), "{:?}", results[3].flops);
        assert!(results[0].flops.is_none());
        if cfg!(target_os = "linux") {
            assert!(results.iter().all(|r| r.peak_rss_mib.is_some_and(|m| m > 1.0)), "peak memory per row");
        }
    }

    /// Autocast (bf16 on a GPU) exercised on the CPU in f16, which candle's CPU products
    /// support: the networks run in the half type, the master weights stay f32 and receive
    /// gradients, the losses see f32, and the result tracks the f32 run.
    #[test]
    fn autocast_runs_the_networks_in_half_precision_and_trains_the_f32_weights() {
        let device = Device::Cpu;
        let teacher = frozen_model(ModelKind::FcnResnet50, 7, 21, &device).unwrap();
        let x = random_input(2, 64, 3, &device).unwrap();
        let labels = random_labels(2, 64, 21, 4);
        let mut full =
            SyntheticTraining::new(ModelKind::Mbv3sAspp, DistillMode::Combined, 21, Some(&teacher), &device).unwrap();
        let mut half =
            SyntheticTraining::new(ModelKind::Mbv3sAspp, DistillMode::Combined, 21, Some(&teacher), &device).unwrap();
        half.compute_dtype = DType::F16;
        let eval_full = full.student.model.forward(&x, Mode::Eval).unwrap().logits;
        let eval_half = half.student.model.forward(&x.to_dtype(DType::F16).unwrap(), Mode::Eval).unwrap().logits;
        assert_eq!(eval_half.dtype(), DType::F16, "the network ran in the half type");
        let diff = (eval_half.to_dtype(DType::F32).unwrap() - &eval_full).unwrap().abs().unwrap().max_all().unwrap();
        let scale = eval_full.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let rel = diff.to_scalar::<f32>().unwrap() / scale;
        assert!(rel < 2e-2, "f16 forward differs from f32 by {rel}");
        for _ in 0..3 {
            let a = full.step(&x, &labels, Some(&teacher)).unwrap();
            let b = half.step(&x, &labels, Some(&teacher)).unwrap();
            assert!((a - b).abs() <= 2e-2 * a.abs(), "loss f32 {a} vs autocast {b}");
        }
        let (full_vars, half_vars) =
            (full.student.varmap.data().lock().unwrap(), half.student.varmap.data().lock().unwrap());
        assert!(half_vars.values().all(|v| v.dtype() == DType::F32), "master weights stay f32");
        let moved = half_vars.iter().any(|(name, v)| {
            let before = full_vars[name].as_tensor();
            (before - v.as_tensor()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 0.0
        });
        assert!(moved, "the half-precision run took its own (slightly different) steps");
    }

    #[test]
    fn ratios_pair_results_by_name_batch_and_size() {
        let r = |name: &str, ms: f64| BenchResult {
            name: name.into(),
            batch: 8,
            size: 256,
            median_ms: ms,
            min_ms: ms,
            max_ms: ms,
            peak_rss_mib: None,
            flops: None,
        };
        let ours = BenchReport { device: "cpu".into(), threads: 2, results: vec![r("a", 30.0), r("b", 10.0)] };
        let theirs = BenchReport { device: "cpu".into(), threads: 2, results: vec![r("a", 20.0)] };
        let pairs = ratios(&ours, &theirs);
        assert_eq!(pairs.len(), 1);
        assert_eq!((pairs[0].name, pairs[0].ours.median_ms, pairs[0].theirs.median_ms), ("a", 30.0, 20.0));
        assert_eq!(pairs[0].ratio, 1.5);
    }
}

/// What [`epoch`] measured for one training configuration.
#[derive(Clone, Debug)]
pub struct EpochTiming {
    /// One epoch of training steps (data loading and teacher targets included; the evaluation
    /// after it and any teacher-cache build before it excluded).
    pub train_secs: f64,
    /// Building the teacher cache before the first step (0 when none was built).
    pub prepare_secs: f64,
    pub steps: usize,
}

/// Runs one epoch of `cfg` through the real training engine (in a scratch runs folder that is
/// removed afterwards) and times it from the event stream.
pub fn epoch(mut cfg: crate::train::TrainConfig) -> anyhow::Result<EpochTiming> {
    use crate::train::events::TrainEvent;
    use std::time::Instant;
    let scratch = std::env::temp_dir().join(format!("segdistill-bench-{}-{}", std::process::id(), cfg.name));
    cfg.runs_dir = scratch.clone();
    cfg.epochs = 1;
    cfg.val_limit = Some(1);
    if cfg.teacher_cache_dir.is_none() {
        cfg.teacher_cache_dir = Some(scratch.join("teacher-cache"));
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    // Events are stamped as they arrive, on their own thread, so the clock follows the engine.
    let stamps = std::thread::spawn(move || {
        let t0 = Instant::now();
        rx.iter().map(|e| (t0.elapsed().as_secs_f64(), e)).collect::<Vec<(f64, TrainEvent)>>()
    });
    let outcome = crate::train::run(cfg, false, &crate::train::Control::default(), &tx);
    drop(tx);
    let events = stamps.join().map_err(|_| anyhow::anyhow!("event thread panicked"))?;
    std::fs::remove_dir_all(&scratch).ok(); // scratch space; leftovers are harmless
    outcome?;
    let when = |f: &dyn Fn(&TrainEvent) -> bool| -> Vec<f64> {
        events.iter().filter(|(_, e)| f(e)).map(|(t, _)| *t).collect()
    };
    let started = when(&|e| matches!(e, TrainEvent::Started(_))).first().copied().unwrap_or(0.0);
    let prepared = when(&|e| matches!(e, TrainEvent::Preparing { .. })).last().copied();
    // The cache build ends with the message that follows its last progress event.
    let ready = when(&|e| matches!(e, TrainEvent::Message(m) if m.contains("teacher outputs cached"))).last().copied();
    let first = ready.or(prepared).unwrap_or(started);
    let steps = when(&|e| matches!(e, TrainEvent::Step(_)));
    let last = steps.last().copied().ok_or_else(|| anyhow::anyhow!("the epoch ran no training step"))?;
    Ok(EpochTiming { train_secs: last - first, prepare_secs: first - started, steps: steps.len() })
}
