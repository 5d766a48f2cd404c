//! torchvision's own outputs (`parity.safetensors` with its weights files or hashed-weights listing)
//! and PyTorch's loss-term fixtures (`kd/`), against this build's models and losses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};

use super::checker::{Checker, argmax_disagreement};
use super::{BUILTIN_LISTING, BUILTIN_PARITY, FCN_FILE, LRASPP_FILE, MBV3S_FILE, PARITY_FILE, WEIGHTS_LISTING};
use crate::distill::{KdForm, PixelAverage, Target, ce, feature, kd};
use crate::model::mobilenet_v3::{MobileNetV3Classifier, MobileNetV3Config};
use crate::model::weights::StateDict;
use crate::model::{Mode, ModelKind, load_state_dict_for_inference, ops};

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

pub(super) fn fixture_checks(fx: &Fixtures, device: &Device, checker: &mut Checker, skipped: &mut Vec<String>) {
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
pub(super) fn kd_checks(dir: &Path, device: &Device, checker: &mut Checker) -> anyhow::Result<()> {
    let files = crate::diagnostics::kd_parity::fixture_files(dir)?;
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
pub(super) fn kd_check(name: &str, source: &str, bytes: &[u8], device: &Device, checker: &mut Checker) {
    checker.case("kd", name, |c| {
        let p = crate::diagnostics::kd_parity::check_fixture_bytes(name, source, bytes, device)?;
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
