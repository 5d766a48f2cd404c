//! `selftest`: does this build, on this device and precision, compute what torchvision computes?
//!
//! Three groups of checks, each a row (max relative error, bound, ok):
//! - **fixtures**: torchvision's own outputs (`parity.safetensors` and the weights beside it,
//!   written by `bench/make_parity_fixtures.py`): FCN-ResNet50, MobileNetV3-Small, LR-ASPP, bilinear
//!   resizing, the losses and their gradients. Models also report how many pixels' arg-max class
//!   agrees with torchvision's. The weights are either files (`torch.save` output) or, in the small
//!   set built into the binary (`tests/fixtures/torchvision`), a listing of every key whose values
//!   come from the hashed formula (`model::weights::hashed`) that the script computes alike.
//! - **ops**: the layers as the models run them on the device (dense, strided, dilated and
//!   depthwise convolution; batch norm with its fused activation, in training and evaluation)
//!   against their textbook formula on the CPU, forward and every gradient. On a GPU also bilinear
//!   resizing against the CPU kernel (on the CPU that kernel *is* the reference, checked by the
//!   fixtures). Under bf16 autocast the inputs enter in bf16, as the networks see them.
//! - **kd**: the distillation loss terms (`kd/` beside the fixtures, written by
//!   `bench/make_kd_fixtures.py`): each term's value and gradient against PyTorch's. A fixtures
//!   folder holding only `kd/` checks just these.
//! - **training**: a short seeded run (synthetic batches, a student with combined distillation
//!   from a seeded teacher) on the device and on the CPU, loss compared step by step. On the CPU
//!   the second run is a repeat: it checks that training is deterministic.
//!
//! Error is `max |ours − ref| / max |ref|` over the whole tensor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::Serialize;

use crate::distill::{DistillMode, KdForm, PixelAverage, Target, ce, feature, kd};
use crate::eval::bench::{SyntheticTraining, frozen_model, random_input, random_labels};
use crate::model::layers::{Activation, BatchNorm2d, Conv2d, ConvOpts, bn_default};
use crate::model::mobilenet_v3::{MobileNetV3Classifier, MobileNetV3Config};
use crate::model::weights::StateDict;
use crate::model::{Mode, ModelKind, load_state_dict_for_inference, ops};
use crate::util::Rng;
use crate::util::device::Precision;

/// The parity fixtures' file names.
pub const PARITY_FILE: &str = "parity.safetensors";
pub const FCN_FILE: &str = "fcn_resnet50_random_legacy.pth";
pub const MBV3S_FILE: &str = "mobilenet_v3_small_random.pth";
pub const LRASPP_FILE: &str = "lraspp_mobilenet_v3_large_random.pth";
/// Where a fixture folder lists hashed weights instead of holding weights files.
pub const WEIGHTS_LISTING: &str = "weights.json";

/// The small set (`bench/make_parity_fixtures.py --small`), built in: the default fixtures.
const BUILTIN_PARITY: &[u8] = include_bytes!("../../tests/fixtures/torchvision/parity.safetensors");
const BUILTIN_LISTING: &str = include_str!("../../tests/fixtures/torchvision/weights.json");

/// Which torchvision fixtures the selftest compares with.
#[derive(Clone, Debug)]
pub enum FixtureSet {
    /// The small set built into the binary (hashed weights).
    Builtin,
    /// A folder written by `bench/make_parity_fixtures.py` (either kind).
    Folder(PathBuf),
    /// No fixture checks.
    Skip,
}

/// What to check.
#[derive(Clone, Debug)]
pub struct SelftestConfig {
    pub device: Device,
    pub precision: Precision,
    /// The torchvision fixtures to compare with.
    pub fixtures: FixtureSet,
    /// Steps of the seeded training comparison (0 skips it).
    pub train_steps: usize,
}

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub group: &'static str,
    pub name: String,
    /// max |ours − reference| / max |reference| (for `argmax` rows: the share of disagreeing pixels).
    pub error: f64,
    pub bound: f64,
    pub ok: bool,
    /// Why the check could not compute its value (then it failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// Every check's result.
#[derive(Clone, Debug, Serialize)]
pub struct SelftestReport {
    pub device: String,
    pub precision: Precision,
    pub checks: Vec<Check>,
    /// Groups not run, and why.
    pub skipped: Vec<String>,
}

impl SelftestReport {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
}

/// The bounds of each kind of check at a precision.
///
/// fp32 is the project's parity bound (1e-4 of the reference's largest value). tf32 rounds both
/// operands of every product to a 10-bit mantissa (unit round-off 2⁻¹¹ ≈ 4.9e-4) and accumulates in
/// fp32: one layer lands within a few round-offs of its largest value, and a 50-layer network
/// compounds that, so single ops get 5e-3, whole models 3e-2, and — the bound that matters for
/// segmentation — at most 0.1 % of pixels may change their arg-max class. Losses are fp32 in every
/// mode, but their inputs come from tf32 layers only in the training check.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    op: f64,
    model: f64,
    argmax: f64,
    loss: f64,
    training: f64,
}

impl Bounds {
    fn for_precision(p: Precision) -> Self {
        match p {
            // Training: 20 steps on two devices sum in different orders; AdamW's first steps
            // are sign-like (±lr), so a tiny difference can flip an update — still far below 1 %.
            Precision::Fp32 => Self { op: 1e-4, model: 1e-4, argmax: 1e-3, loss: 1e-4, training: 1e-3 },
            Precision::Tf32 => Self { op: 5e-3, model: 3e-2, argmax: 1e-3, loss: 1e-4, training: 2e-2 },
            // bf16 keeps 8 significant bits (unit round-off 2⁻⁸ ≈ 3.9e-3) on both operands and
            // on every activation between layers; products still accumulate in fp32.
            Precision::Bf16 => Self { op: 2e-2, model: 1e-1, argmax: 1e-3, loss: 1e-4, training: 5e-2 },
        }
    }
}

struct Checker<'a> {
    bounds: Bounds,
    /// The dtype inputs enter the networks and layers in (bf16 under autocast).
    dtype: DType,
    checks: Vec<Check>,
    on_check: &'a mut dyn FnMut(&Check),
}

impl Checker<'_> {
    fn push(&mut self, group: &'static str, name: String, error: f64, bound: f64) {
        let check = Check { group, name, error, bound, ok: error.is_finite() && error <= bound, error_message: None };
        (self.on_check)(&check);
        self.checks.push(check);
    }

    /// A check whose computation failed: a failed row carrying the reason.
    fn failed(&mut self, group: &'static str, name: String, why: &anyhow::Error) {
        let check =
            Check { group, name, error: f64::INFINITY, bound: 0.0, ok: false, error_message: Some(format!("{why:#}")) };
        (self.on_check)(&check);
        self.checks.push(check);
    }

    /// Runs one case; an error in it becomes a failed row named `name` instead of ending the run.
    fn case(&mut self, group: &'static str, name: &str, f: impl FnOnce(&mut Self) -> anyhow::Result<()>) {
        if let Err(e) = f(self) {
            self.failed(group, name.to_string(), &e);
        }
    }

    /// Compares `ours` (any device) with `reference` (CPU), which must have the same shape.
    fn compare(&mut self, group: &'static str, name: &str, ours: &Tensor, reference: &Tensor, bound: f64) {
        let error = relative_error(ours, reference).unwrap_or(f64::INFINITY);
        self.push(group, name.to_string(), error, bound);
    }
}

/// max |a − b| / max |b| (shapes must agree; scalars saved by torch as [1] are reshaped).
pub fn relative_error(ours: &Tensor, reference: &Tensor) -> anyhow::Result<f64> {
    let ours = ours.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let reference = reference.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let ours = if ours.elem_count() == reference.elem_count() { ours.reshape(reference.shape())? } else { ours };
    anyhow::ensure!(ours.dims() == reference.dims(), "shape {:?} vs reference {:?}", ours.dims(), reference.dims());
    let diff = (&ours - &reference)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
    let scale = reference.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
    Ok(if scale > 0.0 { diff / scale } else { diff })
}

/// The share of pixels whose arg-max over classes (dim 1) differs.
fn argmax_disagreement(ours: &Tensor, reference: &Tensor) -> anyhow::Result<f64> {
    let a = ours.to_device(&Device::Cpu)?.argmax(1)?.flatten_all()?.to_vec1::<u32>()?;
    let b = reference.argmax(1)?.flatten_all()?.to_vec1::<u32>()?;
    anyhow::ensure!(a.len() == b.len() && !a.is_empty(), "arg-max shapes differ");
    Ok(a.iter().zip(&b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64)
}

/// Runs every check `cfg` asks for, handing each row to `on_check` as it lands. An error is
/// returned only when a check cannot run at all (a missing or unreadable fixture file).
pub fn run(cfg: &SelftestConfig, on_check: &mut dyn FnMut(&Check)) -> anyhow::Result<SelftestReport> {
    let mut checker = Checker {
        bounds: Bounds::for_precision(cfg.precision),
        dtype: cfg.precision.compute_dtype(),
        checks: Vec::new(),
        on_check,
    };
    let mut skipped = Vec::new();
    match &cfg.fixtures {
        FixtureSet::Builtin => {
            fixture_checks(&Fixtures::builtin()?, &cfg.device, &mut checker, &mut skipped);
            for (name, bytes) in super::kd_parity::BUILTIN {
                kd_check(name, &format!("<built-in kd/{name}>"), bytes, &cfg.device, &mut checker);
            }
        }
        FixtureSet::Folder(dir) => {
            let kd_dir = dir.join(super::kd_parity::KD_DIR);
            // A folder with only the `kd/` loss-term fixtures checks just those.
            if dir.join(PARITY_FILE).is_file() || !kd_dir.is_dir() {
                fixture_checks(&Fixtures::load(dir)?, &cfg.device, &mut checker, &mut skipped);
            } else {
                skipped.push(format!("fixtures: no {PARITY_FILE} in {}", dir.display()));
            }
            if kd_dir.is_dir() {
                kd_checks(&kd_dir, &cfg.device, &mut checker)?;
            } else {
                skipped.push(format!("kd: no {} folder", kd_dir.display()));
            }
        }
        FixtureSet::Skip => skipped.push("fixtures: not asked for".into()),
    }
    op_checks(&cfg.device, &mut checker)?;
    if cfg.train_steps > 0 {
        checker.case("training", "seeded training", |checker| {
            training_check(&cfg.device, cfg.precision, cfg.train_steps, checker)
        });
    } else {
        skipped.push("training: 0 steps asked".into());
    }
    Ok(SelftestReport {
        device: crate::util::device::describe(&cfg.device),
        precision: cfg.precision,
        checks: checker.checks,
        skipped,
    })
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// One entry of a hashed-weights listing: name, shape, dtype (`F32`, or `I64` for the counters).
pub type ListingEntry = (String, Vec<usize>, String);

/// A fixture set: the reference tensors, and where each model's weights come from.
pub struct Fixtures {
    /// The folder (or, for the built-in set, the name shown in messages).
    dir: PathBuf,
    tensors: HashMap<String, Tensor>,
    /// Weights listings by file name (hashed weights), when the set has `weights.json`.
    listings: Option<HashMap<String, Vec<ListingEntry>>>,
}

/// Parses `weights.json`: `{"weights": "hashed", "files": {file: [[name, shape, dtype], …]}}`.
pub fn parse_listing(text: &str) -> anyhow::Result<HashMap<String, Vec<ListingEntry>>> {
    #[derive(serde::Deserialize)]
    struct Listing {
        weights: String,
        files: HashMap<String, Vec<ListingEntry>>,
    }
    let listing: Listing = serde_json::from_str(text)?;
    anyhow::ensure!(listing.weights == "hashed", "unknown weights kind `{}`", listing.weights);
    Ok(listing.files)
}

impl Fixtures {
    /// A folder written by `bench/make_parity_fixtures.py`, with weights files or `weights.json`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(PARITY_FILE);
        anyhow::ensure!(
            path.is_file(),
            "{} not found: point --fixtures at a folder written by bench/make_parity_fixtures.py",
            path.display()
        );
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let listing = dir.join(WEIGHTS_LISTING);
        let listings = if listing.is_file() {
            let text = std::fs::read_to_string(&listing)?;
            Some(parse_listing(&text).map_err(|e| anyhow::anyhow!("cannot read {}: {e:#}", listing.display()))?)
        } else {
            None
        };
        Ok(Self { dir: dir.to_path_buf(), tensors, listings })
    }

    /// The small set built into the binary.
    pub fn builtin() -> anyhow::Result<Self> {
        let tensors = candle_core::safetensors::load_buffer(BUILTIN_PARITY, &Device::Cpu)?;
        let listings = Some(parse_listing(BUILTIN_LISTING)?);
        Ok(Self { dir: PathBuf::from("<built-in fixtures>"), tensors, listings })
    }

    pub fn get(&self, name: &str) -> anyhow::Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("{} has no tensor `{name}`", self.dir.join(PARITY_FILE).display()))
    }

    /// Every reference tensor by name.
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    /// The listing of a weights file of the set, if its weights are hashed.
    pub fn listing(&self, file: &str) -> Option<&[ListingEntry]> {
        self.listings.as_ref()?.get(file).map(Vec::as_slice)
    }

    /// Whether the set has weights for `file` (the file itself, or its listing).
    pub fn has_weights(&self, file: &str) -> bool {
        self.dir.join(file).is_file() || self.listing(file).is_some()
    }

    /// The weights of `file`: read from the folder when the file is there, else built from the
    /// listing with the hashed formula (the int64 counters, unused in eval mode, left out).
    pub fn weights(&self, file: &str) -> anyhow::Result<StateDict> {
        let path = self.dir.join(file);
        if path.is_file() {
            return Ok(StateDict::load(&path)?);
        }
        let listing = self.listing(file).ok_or_else(|| anyhow::anyhow!("{} not found", path.display()))?;
        let floats: Vec<(String, Vec<usize>)> =
            listing.iter().filter(|(_, _, dtype)| dtype == "F32").map(|(n, s, _)| (n.clone(), s.clone())).collect();
        let tensors = crate::model::weights::hashed::hashed_state_dict(&floats, &Device::Cpu)?;
        Ok(StateDict::from_tensors(path, tensors))
    }
}

fn fixture_checks(fx: &Fixtures, device: &Device, checker: &mut Checker, skipped: &mut Vec<String>) {
    if fx.has_weights(FCN_FILE) {
        checker.case("fixtures", "fcn", |c| fcn_checks(fx, fx.weights(FCN_FILE)?, device, c));
    } else {
        skipped.push(format!("fcn: {} absent", fx.dir.join(FCN_FILE).display()));
    }
    checker.case("fixtures", "mbv3s", |c| mbv3s_checks(fx, fx.weights(MBV3S_FILE)?, device, c));
    checker.case("fixtures", "lraspp", |c| {
        let lraspp = load_state_dict_for_inference(ModelKind::LrasppMbv3l, fx.weights(LRASPP_FILE)?, device)?;
        let out = lraspp.model.forward(&fx.get("lraspp.input")?.to_device(device)?.to_dtype(c.dtype)?, Mode::Eval)?;
        model_rows(c, "lraspp.out", &out.logits, fx.get("lraspp.out")?);
        Ok(())
    });
    checker.case("fixtures", "bilinear", |c| {
        let x = fx.get("bilinear.input")?.to_device(device)?.to_dtype(c.dtype)?;
        let bound = c.bounds.op;
        c.compare(
            "fixtures",
            "bilinear.up_16x20",
            &ops::resize_bilinear(&x, 16, 20)?,
            fx.get("bilinear.up_16x20")?,
            bound,
        );
        c.compare(
            "fixtures",
            "bilinear.down_3x4",
            &ops::resize_bilinear(&x, 3, 4)?,
            fx.get("bilinear.down_3x4")?,
            bound,
        );
        Ok(())
    });
    checker.case("fixtures", "losses", |c| loss_checks(fx, device, c));
}

/// The distillation loss terms (`kd/<term>.safetensors`, from `bench/make_kd_fixtures.py`):
/// value and gradient of each against PyTorch.
fn kd_checks(dir: &Path, device: &Device, checker: &mut Checker) -> anyhow::Result<()> {
    let files = super::kd_parity::fixture_files(dir)?;
    anyhow::ensure!(!files.is_empty(), "{} holds no loss-term fixtures (*.safetensors)", dir.display());
    for f in files {
        let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        match std::fs::read(&f) {
            Ok(bytes) => kd_check(&name, &f.display().to_string(), &bytes, device, checker),
            Err(e) => checker.case("kd", &name, |_| anyhow::bail!("cannot read {}: {e}", f.display())),
        }
    }
    Ok(())
}

/// One loss term's value and gradient against its PyTorch fixture.
fn kd_check(name: &str, source: &str, bytes: &[u8], device: &Device, checker: &mut Checker) {
    checker.case("kd", name, |c| {
        let p = super::kd_parity::check_fixture_bytes(name, source, bytes, device)?;
        let bound = c.bounds.loss;
        c.push("kd", p.name.clone(), p.loss_error, bound);
        c.push("kd", format!("{}.grad", p.name), p.grad_error, bound);
        if let Some(error) = p.memory_error {
            c.push("kd", format!("{}.memory", p.name), error, bound);
        }
        Ok(())
    });
}

/// A model output's rows: the values, and the share of pixels whose class differs.
fn model_rows(checker: &mut Checker, name: &str, ours: &Tensor, reference: &Tensor) {
    let b = checker.bounds;
    checker.compare("fixtures", name, ours, reference, b.model);
    let error = argmax_disagreement(ours, reference).unwrap_or(f64::INFINITY);
    checker.push("fixtures", format!("{name} argmax"), error, b.argmax);
}

fn fcn_checks(fx: &Fixtures, weights: StateDict, device: &Device, checker: &mut Checker) -> anyhow::Result<()> {
    let bound = checker.bounds.model;
    let loaded = load_state_dict_for_inference(ModelKind::FcnResnet50, weights, device)?;
    let out = loaded.model.forward(&fx.get("fcn.input")?.to_device(device)?.to_dtype(checker.dtype)?, Mode::Eval)?;
    model_rows(checker, "fcn.out", &out.logits, fx.get("fcn.out")?);
    if let Some(aux) = &out.aux {
        checker.compare("fixtures", "fcn.aux", aux, fx.get("fcn.aux")?, bound);
    }
    for layer in ["layer1", "layer2", "layer3", "layer4"] {
        let name = format!("fcn.{layer}");
        let ours = out.feature(layer).ok_or_else(|| anyhow::anyhow!("FCN has no feature `{layer}`"))?;
        checker.compare("fixtures", &name, ours, fx.get(&name)?, bound);
    }
    Ok(())
}

fn mbv3s_checks(fx: &Fixtures, weights: StateDict, device: &Device, checker: &mut Checker) -> anyhow::Result<()> {
    let bound = checker.bounds.model;
    let dict = std::sync::Arc::new(weights);
    let (vb, _) = dict.var_builder(device);
    let mbv3s = MobileNetV3Classifier::new(vb, MobileNetV3Config::small(false), 1000)?;
    let (logits, feats) =
        mbv3s.forward(&fx.get("mbv3s.input")?.to_device(device)?.to_dtype(checker.dtype)?, Mode::Eval)?;
    for (i, f) in feats.iter().enumerate() {
        let name = format!("mbv3s.features.{i}");
        checker.compare("fixtures", &name, f, fx.get(&name)?, bound);
    }
    checker.compare("fixtures", "mbv3s.logits", &logits, fx.get("mbv3s.logits")?, bound);
    Ok(())
}

/// A loss of the student logits and its gradient, on `device`.
fn value_and_grad(
    student: &Tensor,
    device: &Device,
    f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> anyhow::Result<(Tensor, Tensor)> {
    let s = Var::from_tensor(&student.to_device(device)?)?;
    let loss = f(s.as_tensor())?;
    let grads = loss.backward()?;
    let grad = grads.get(&s).ok_or_else(|| anyhow::anyhow!("the loss has no gradient"))?.clone();
    Ok((loss, grad))
}

fn loss_checks(fx: &Fixtures, device: &Device, checker: &mut Checker) -> anyhow::Result<()> {
    let bound = checker.bounds.loss;
    let student = fx.get("loss.student")?;
    let teacher = fx.get("loss.teacher")?.to_device(device)?;
    let target = Target::from_tensor(&fx.get("loss.target")?.to_device(device)?, None)?;
    let mut rows = |name: &str, (loss, grad): (Tensor, Tensor), with_grad: bool| -> anyhow::Result<()> {
        checker.compare("fixtures", name, &loss, fx.get(name)?, bound);
        if with_grad {
            let g = format!("{name}.grad");
            checker.compare("fixtures", &g, &grad, fx.get(&g)?, bound);
        }
        Ok(())
    };
    rows("loss.ce_ignore255", value_and_grad(student, device, |s| ce::cross_entropy(s, &target))?, true)?;
    for tau in [1.0, 4.0] {
        let kl_all = |s: &Tensor| kd::response_kd(s, &teacher, tau, KdForm::KlDivergence, PixelAverage::All, None);
        rows(&format!("loss.kd_kl_allpix_T{tau}"), value_and_grad(student, device, kl_all)?, true)?;
        let kl_valid =
            |s: &Tensor| kd::response_kd(s, &teacher, tau, KdForm::KlDivergence, PixelAverage::Labelled, Some(&target));
        rows(&format!("loss.kd_kl_validpix_T{tau}"), value_and_grad(student, device, kl_valid)?, false)?;
        let soft = |s: &Tensor| kd::response_kd(s, &teacher, tau, KdForm::SoftCrossEntropy, PixelAverage::All, None);
        rows(&format!("loss.kd_soft_ce_allpix_T{tau}"), value_and_grad(student, device, soft)?, false)?;
    }
    let feat_teacher = fx.get("loss.feat_teacher")?.to_device(device)?;
    let cosine = value_and_grad(fx.get("loss.feat_student")?, device, |s| feature::cosine_loss(s, &feat_teacher))?;
    rows("loss.cosine", cosine, true)
}

// ---------------------------------------------------------------------------------------------
// Ops on the device against their formula on the CPU

/// Seeded normal values of `shape` on the CPU.
fn seeded(shape: &[usize], seed: u64) -> anyhow::Result<Tensor> {
    let mut rng = Rng::new(seed);
    let n = shape.iter().product();
    Ok(Tensor::from_vec((0..n).map(|_| rng.normal()).collect::<Vec<f32>>(), shape, &Device::Cpu)?)
}

/// Forward value and the gradients (input, then each parameter) of Σ mix·f(x), with `x` and the
/// `params` made variables on `device`; every result comes back on the CPU.
fn forward_backward(
    device: &Device,
    x: &Tensor,
    params: &[&Tensor],
    mix_seed: u64,
    f: &dyn Fn(&Tensor, &[Tensor]) -> anyhow::Result<Tensor>,
) -> anyhow::Result<Vec<Tensor>> {
    let xv = Var::from_tensor(&x.to_device(device)?)?;
    let pv: Vec<Var> = params.iter().map(|p| Var::from_tensor(&p.to_device(device)?)).collect::<Result<_, _>>()?;
    let pt: Vec<Tensor> = pv.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(xv.as_tensor(), &pt)?;
    let wrt: Vec<&Tensor> = std::iter::once(xv.as_tensor()).chain(&pt).collect();
    value_and_mixed_gradients(&y, &wrt, mix_seed)
}

/// `y` and the gradients of Σ mix·y (one seeded random weight per element, so every entry of
/// every gradient counts) with respect to each of `wrt`, all on the CPU.
fn value_and_mixed_gradients(y: &Tensor, wrt: &[&Tensor], mix_seed: u64) -> anyhow::Result<Vec<Tensor>> {
    let mix = seeded(y.dims(), mix_seed)?.to_device(y.device())?;
    let grads = (y * &mix)?.sum_all()?.backward()?;
    let mut out = vec![y.to_device(&Device::Cpu)?];
    for t in wrt {
        let g = grads.get(t).ok_or_else(|| anyhow::anyhow!("no gradient reached an input"))?;
        out.push(g.to_device(&Device::Cpu)?);
    }
    Ok(out)
}

/// A layer built by the model's own constructor on `device`, its variables set to `values`.
fn layer_with<L>(
    device: &Device,
    varmap: &VarMap,
    values: &[(&str, &Tensor)],
    build: impl FnOnce(VarBuilder) -> candle_core::Result<L>,
) -> anyhow::Result<L> {
    let layer = build(VarBuilder::from_varmap(varmap, DType::F32, device))?;
    let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    for (name, value) in values {
        let var = vars.get(*name).ok_or_else(|| anyhow::anyhow!("the layer has no variable `{name}`"))?;
        var.set(&value.to_device(device)?)?;
    }
    Ok(layer)
}

/// The convolution layer's forward value and its gradients (input, weight) of Σ mix·y on `device`.
fn conv_layer_grads(
    device: &Device,
    dtype: DType,
    x: &Tensor,
    weight: &Tensor,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<Conv2d>,
    mix_seed: u64,
) -> anyhow::Result<Vec<Tensor>> {
    let varmap = VarMap::new();
    let layer = layer_with(device, &varmap, &[("weight", weight)], build)?;
    let wv = varmap.data().lock().unwrap_or_else(|p| p.into_inner()).get("weight").cloned();
    let wv = wv.ok_or_else(|| anyhow::anyhow!("the convolution has no `weight`"))?;
    let xv = Var::from_tensor(&x.to_device(device)?.to_dtype(dtype)?)?;
    let y = candle_core::Module::forward(&layer, xv.as_tensor())?;
    value_and_mixed_gradients(&y, &[xv.as_tensor(), wv.as_tensor()], mix_seed)
}

/// A convolution to check: name, input dims, output channels, kernel, stride, dilation, depthwise.
type ConvCase = (&'static str, [usize; 4], usize, usize, usize, usize, bool);

fn op_checks(device: &Device, checker: &mut Checker) -> anyhow::Result<()> {
    let bound = checker.bounds.op;
    // (name, input N·Cin·H·W, Cout, K, stride, dilation, depthwise)
    let convs: [ConvCase; 6] = [
        ("conv 3x3", [2, 16, 19, 23], 24, 3, 1, 1, false),
        ("conv 3x3 stride 2", [2, 8, 33, 30], 16, 3, 2, 1, false),
        ("conv 3x3 dilation 2", [1, 12, 21, 17], 8, 3, 1, 2, false),
        ("conv 1x1", [2, 32, 11, 13], 40, 1, 1, 1, false),
        ("depthwise 3x3", [2, 24, 17, 19], 24, 3, 1, 1, true),
        ("depthwise 5x5 stride 2", [2, 16, 23, 21], 16, 5, 2, 1, true),
    ];
    for (i, (name, dims, cout, k, stride, dilation, depthwise)) in convs.into_iter().enumerate() {
        checker.case("ops", name, |checker| {
            let seed = 100 + 10 * i as u64;
            let x = seeded(&dims, seed)?;
            let cin = dims[1];
            let groups = if depthwise { cin } else { 1 };
            let w = (seeded(&[cout, cin / groups, k, k], seed + 1)? * (1.0 / ((cin / groups * k * k) as f64).sqrt()))?;
            let opts = ConvOpts { stride, dilation, groups, ..Default::default() };
            let pad = (k - 1) / 2 * dilation;
            let ours =
                conv_layer_grads(device, checker.dtype, &x, &w, |vb| Conv2d::new(vb, cin, cout, k, opts), seed + 2)?;
            let reference = forward_backward(&Device::Cpu, &x, &[&w], seed + 2, &|x, p| {
                Ok(reference_conv(x, &p[0], pad, stride, dilation, groups)?)
            })?;
            checker.compare("ops", &format!("{name} forward"), &ours[0], &reference[0], bound);
            checker.compare("ops", &format!("{name} grad input"), &ours[1], &reference[1], bound);
            checker.compare("ops", &format!("{name} grad weight"), &ours[2], &reference[2], bound);
            Ok(())
        });
    }

    for (i, act) in [Activation::Relu, Activation::Hardswish, Activation::None].into_iter().enumerate() {
        let name = format!("batch norm + {act:?} (train)").to_lowercase();
        checker.case("ops", &name.clone(), |checker| {
            let seed = 300 + 10 * i as u64;
            let (n, c, h, w) = (4, 12, 9, 11);
            let x = (seeded(&[n, c, h, w], seed)? * 2.0)?.broadcast_add(&seeded(&[1, c, 1, 1], seed + 1)?)?;
            let gamma = (seeded(&[c], seed + 2)?.abs()? + 0.5)?;
            let beta = seeded(&[c], seed + 3)?;
            let varmap = VarMap::new();
            let values = [("weight", &gamma), ("bias", &beta)];
            let bn = layer_with(device, &varmap, &values, |vb| BatchNorm2d::new(vb, c, bn_default()))?;
            let ours = bn_grads(device, checker.dtype, &bn, &x, act, Mode::train(0), seed + 4)?;
            let reference = forward_backward(&Device::Cpu, &x, &[&gamma, &beta], seed + 4, &|x, p| {
                reference_batch_norm(x, &p[0], &p[1], None, 1e-5, act)
            })?;
            checker.compare("ops", &format!("{name} forward"), &ours[0], &reference[0], bound);
            checker.compare("ops", &format!("{name} grad input"), &ours[1], &reference[1], bound);
            checker.compare("ops", &format!("{name} grad weight"), &ours[2], &reference[2], bound);
            checker.compare("ops", &format!("{name} grad bias"), &ours[3], &reference[3], bound);
            Ok(())
        });
    }

    checker.case("ops", "batch norm + hardswish (eval)", |checker| {
        let (n, c, h, w) = (2, 10, 7, 9);
        let x = seeded(&[n, c, h, w], 350)?;
        let gamma = (seeded(&[c], 351)?.abs()? + 0.5)?;
        let beta = seeded(&[c], 352)?;
        let mean = (seeded(&[c], 353)? * 0.5)?;
        let var = (seeded(&[c], 354)?.abs()? + 0.5)?;
        let varmap = VarMap::new();
        let values = [("weight", &gamma), ("bias", &beta), ("running_mean", &mean), ("running_var", &var)];
        let bn = layer_with(device, &varmap, &values, |vb| BatchNorm2d::new(vb, c, bn_default()))?;
        let act = Activation::Hardswish;
        let ours = bn_grads(device, checker.dtype, &bn, &x, act, Mode::Eval, 355)?;
        let reference = forward_backward(&Device::Cpu, &x, &[&gamma, &beta], 355, &|x, p| {
            reference_batch_norm(x, &p[0], &p[1], Some((&mean, &var)), 1e-5, act)
        })?;
        let name = "batch norm + hardswish (eval)";
        for (i, part) in ["forward", "grad input", "grad weight", "grad bias"].iter().enumerate() {
            checker.compare("ops", &format!("{name} {part}"), &ours[i], &reference[i], bound);
        }
        Ok(())
    });

    if !device.is_cpu() {
        checker.case("ops", "bilinear 13x17→40x31", |checker| {
            let x = seeded(&[2, 5, 13, 17], 400)?;
            let f = |x: &Tensor, _: &[Tensor]| Ok(ops::resize_bilinear(x, 40, 31)?);
            let ours = forward_backward(device, &x.to_dtype(checker.dtype)?, &[], 401, &f)?;
            let reference = forward_backward(&Device::Cpu, &x, &[], 401, &f)?;
            checker.compare("ops", "bilinear 13x17→40x31 forward", &ours[0], &reference[0], bound);
            checker.compare("ops", "bilinear 13x17→40x31 grad input", &ours[1], &reference[1], bound);
            Ok(())
        });
    }
    Ok(())
}

/// Convolution as candle computes it generically (im2col and a matrix product forward,
/// a transposed convolution backward): an implementation independent of ours.
fn reference_conv(
    x: &Tensor,
    w: &Tensor,
    pad: usize,
    stride: usize,
    dilation: usize,
    groups: usize,
) -> candle_core::Result<Tensor> {
    x.conv2d(w, pad, stride, dilation, groups)
}

/// Batch norm from its definition — training mode (biased batch variance) or with fixed
/// `running` statistics — then the activation;
/// ReLU's derivative at 0 is PyTorch's 0.
fn reference_batch_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running: Option<(&Tensor, &Tensor)>,
    eps: f64,
    act: Activation,
) -> anyhow::Result<Tensor> {
    let c = x.dim(1)?;
    let (centered, var) = match running {
        Some((mean, var)) => (x.broadcast_sub(&mean.reshape((1, c, 1, 1))?)?, var.reshape((1, c, 1, 1))?),
        None => {
            let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
            let centered = x.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
            (centered, var)
        }
    };
    let norm = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    let y = norm.broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?.broadcast_add(&beta.reshape((1, c, 1, 1))?)?;
    Ok(match act {
        Activation::Relu => y.relu()?,
        Activation::Hardswish => (&y * ((&y + 3.0)? / 6.0)?.clamp(0f32, 1f32)?)?,
        _ => y,
    })
}

/// The batch-norm layer's training forward and gradients (input, weight, bias) on `device`.
fn bn_grads(
    device: &Device,
    dtype: DType,
    bn: &BatchNorm2d,
    x: &Tensor,
    act: Activation,
    mode: Mode,
    seed: u64,
) -> anyhow::Result<Vec<Tensor>> {
    let xv = Var::from_tensor(&x.to_device(device)?.to_dtype(dtype)?)?;
    let y = bn.forward_act(xv.as_tensor(), mode, act)?;
    let (gamma, beta) = bn.weight_and_bias().ok_or_else(|| anyhow::anyhow!("batch norm without affine parameters"))?;
    value_and_mixed_gradients(&y, &[xv.as_tensor(), gamma, beta], seed)
}

// ---------------------------------------------------------------------------------------------
// A short training on two devices

/// The student, mode and batch of the training check: combined distillation (CE, response KD and
/// the feature loss through adapters) exercises every loss and the optimiser.
const TRAIN_STUDENT: ModelKind = ModelKind::Mbv3sTiny;
const TRAIN_MODE: DistillMode = DistillMode::Combined;
const TRAIN_SHAPE: (usize, usize) = (2, 64);

/// The loss of each step of a seeded training on `device`.
fn training_losses(device: &Device, precision: Precision, steps: usize) -> anyhow::Result<Vec<f64>> {
    let (batch, size) = TRAIN_SHAPE;
    let classes = 21;
    let teacher = frozen_model(ModelKind::FcnResnet50, 7, classes, device)?;
    let mut training =
        SyntheticTraining::new(TRAIN_STUDENT, TRAIN_MODE, classes, Some(&teacher), device)?.with_precision(precision);
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps as u64 {
        let x = random_input(batch, size, 1000 + step, device)?;
        let labels = random_labels(batch, size, classes, 2000 + step);
        losses.push(training.step(&x, &labels, Some(&teacher))?);
    }
    Ok(losses)
}

fn training_check(device: &Device, precision: Precision, steps: usize, checker: &mut Checker) -> anyhow::Result<()> {
    let ours = training_losses(device, precision, steps)?;
    let reference = training_losses(&Device::Cpu, Precision::Fp32, steps)?;
    let worst = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| if a.is_finite() && b.is_finite() { (a - b).abs() / b.abs().max(1e-12) } else { f64::INFINITY })
        .fold(0.0, f64::max);
    let against = if device.is_cpu() { "a second CPU run" } else { "the CPU" };
    let name = format!(
        "{steps} steps {} {} (batch {}, {}px) vs {against}: loss per step",
        TRAIN_STUDENT.name(),
        TRAIN_MODE.name(),
        TRAIN_SHAPE.0,
        TRAIN_SHAPE.1
    );
    checker.push("training", name, worst, checker.bounds.training);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_error_is_max_abs_diff_over_max_abs_reference() {
        let r = Tensor::new(&[1f32, -4.0, 2.0], &Device::Cpu).unwrap();
        let o = Tensor::new(&[1.5f32, -4.0, 2.0], &Device::Cpu).unwrap();
        assert!((relative_error(&o, &r).unwrap() - 0.125).abs() < 1e-12);
        assert!(relative_error(&o.reshape((3, 1)).unwrap(), &r).is_ok(), "same count, reshaped");
        assert!(relative_error(&Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(), &r).is_err());
    }

    #[test]
    fn a_wrong_layer_fails_its_check() {
        // The check must be able to fail: a batch norm whose reference is off by a little.
        let mut seen = Vec::new();
        let mut on = |c: &Check| seen.push(c.clone());
        let mut checker = Checker {
            bounds: Bounds::for_precision(Precision::Fp32),
            dtype: DType::F32,
            checks: Vec::new(),
            on_check: &mut on,
        };
        let x = seeded(&[2, 3, 4, 5], 1).unwrap();
        checker.compare("ops", "same", &x, &x, 1e-4);
        checker.compare("ops", "off", &(&x * 1.001).unwrap(), &x, 1e-4);
        assert!(checker.checks[0].ok && !checker.checks[1].ok);
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn cpu_ops_and_a_short_training_pass() {
        let cfg = SelftestConfig {
            device: Device::Cpu,
            precision: Precision::Fp32,
            fixtures: FixtureSet::Skip,
            train_steps: 3,
        };
        let report = run(&cfg, &mut |_| {}).unwrap();
        let failed: Vec<_> = report.checks.iter().filter(|c| !c.ok).collect();
        assert!(failed.is_empty(), "{failed:#?}");
        assert!(report.checks.iter().any(|c| c.group == "training"));
        assert!(report.checks.iter().filter(|c| c.group == "ops").count() >= 6 * 3 + 4 * 4);
        assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    }

    #[test]
    fn a_folder_with_only_kd_fixtures_checks_every_loss_term() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let cfg = SelftestConfig {
            device: Device::Cpu,
            precision: Precision::Fp32,
            fixtures: FixtureSet::Folder(dir),
            train_steps: 0,
        };
        let report = run(&cfg, &mut |_| {}).unwrap();
        let kd: Vec<_> = report.checks.iter().filter(|c| c.group == "kd").collect();
        assert_eq!(kd.len(), 2 * 11 + 1, "value and gradient of every fixture, and the region memory: {kd:#?}");
        assert!(kd.iter().all(|c| c.ok), "{kd:#?}");
        assert!(report.skipped.iter().any(|s| s.contains(PARITY_FILE)), "{:?}", report.skipped);
    }

    /// The loss-term fixtures built into the binary (what `selftest` checks by default) are the
    /// repository's, and pass.
    #[test]
    fn the_built_in_loss_term_fixtures_are_the_committed_ones_and_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(super::super::kd_parity::KD_DIR);
        assert_eq!(super::super::kd_parity::BUILTIN.len(), super::super::kd_parity::fixture_files(&dir).unwrap().len());
        for (name, bytes) in super::super::kd_parity::BUILTIN {
            let p = super::super::kd_parity::check_fixture_bytes(name, name, bytes, &Device::Cpu).unwrap();
            assert!(
                p.loss_error <= 1e-4 && p.grad_error <= 1e-4 && p.memory_error.unwrap_or(0.0) <= 1e-4,
                "{name}: {p:?}"
            );
        }
    }
}
