//! The distillation loss terms against PyTorch: one fixture file per term under a `kd/` folder,
//! written by `bench/make_kd_fixtures.py` (format in `tests/fixtures/README.md`, section `kd/`).
//!
//! A file `<term>[.<variant>].safetensors` holds `student` (the student's input to the term),
//! `teacher`, optionally `labels` (int64, void = 255), `adapter.weight` / `adapter.bias` (a 1×1
//! projection of the student to the teacher's channels), `param.<name>` hyper-parameters (each a
//! one-element float32 tensor), `loss` (the value) and `grad` (∂loss/∂student). Feature terms
//! resize the teacher bilinearly to the student's grid first, as training does. `cirkd-region`
//! also holds its memory before the batch (`memory`, `memory.next`, `memory.filled`) and after
//! it (`….after`): the memory the batch leaves is checked too.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};

use super::selftest::relative_error;
use crate::distill::cirkd_region::{self, RegionMemory};
use crate::distill::{Target, terms};
use crate::model::ops::resize_bilinear;

/// The sub-folder of a fixtures folder that holds the loss-term fixtures.
pub const KD_DIR: &str = "kd";

/// One fixture's result: max relative error of the value and of the gradient.
#[derive(Clone, Debug)]
pub struct TermParity {
    /// The file's stem, e.g. `cwd-logits` or `dist.tau4`.
    pub name: String,
    pub loss_error: f64,
    pub grad_error: f64,
    /// Terms with a memory: max relative error of the memory the batch leaves (its counters must
    /// match exactly, or the check fails).
    pub memory_error: Option<f64>,
}

/// The `*.safetensors` files of a `kd/` folder, sorted.
pub fn fixture_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    Ok(files)
}

/// Evaluates the term a fixture names on `device` and compares it with the stored value and
/// gradient.
pub fn check_fixture(path: &Path, device: &Device) -> anyhow::Result<TermParity> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    check_fixture_bytes(stem, &path.display().to_string(), &bytes, device)
}

/// The fixtures of `tests/fixtures/kd`, built into the binary: `selftest` checks them by default.
pub const BUILTIN: &[(&str, &[u8])] = &[
    ("at", include_bytes!("../../tests/fixtures/kd/at.safetensors")),
    ("cirkd", include_bytes!("../../tests/fixtures/kd/cirkd.safetensors")),
    ("cirkd-region", include_bytes!("../../tests/fixtures/kd/cirkd-region.safetensors")),
    ("cwd-features", include_bytes!("../../tests/fixtures/kd/cwd-features.safetensors")),
    ("cwd-logits", include_bytes!("../../tests/fixtures/kd/cwd-logits.safetensors")),
    ("dist", include_bytes!("../../tests/fixtures/kd/dist.safetensors")),
    ("dist.tau4", include_bytes!("../../tests/fixtures/kd/dist.tau4.safetensors")),
    ("fitnet", include_bytes!("../../tests/fixtures/kd/fitnet.safetensors")),
    ("ifvd", include_bytes!("../../tests/fixtures/kd/ifvd.safetensors")),
    ("kd", include_bytes!("../../tests/fixtures/kd/kd.safetensors")),
    ("pairwise", include_bytes!("../../tests/fixtures/kd/pairwise.safetensors")),
];

/// [`check_fixture`] on a fixture's bytes; `stem` names the term (`dist.tau4`: term `dist`),
/// `source` the fixture in messages.
pub fn check_fixture_bytes(stem: &str, source: &str, bytes: &[u8], device: &Device) -> anyhow::Result<TermParity> {
    let stem = stem.to_string();
    let term = stem.split('.').next().unwrap_or_default().to_string();
    let fx = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| anyhow::anyhow!("cannot read {source}: {e}"))?;
    let get = |name: &str| -> anyhow::Result<Tensor> {
        fx.get(name)
            .ok_or_else(|| anyhow::anyhow!("{source} has no tensor `{name}`"))?
            .to_device(device)
            .map_err(Into::into)
    };
    let param = |name: &str| -> anyhow::Result<f64> {
        Ok(get(&format!("param.{name}"))?.flatten_all()?.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?[0])
    };
    let student = Var::from_tensor(&get("student")?)?;
    let s = student.as_tensor();
    let teacher = get("teacher")?;
    let (_, _, h, w) = s.dims4()?;
    let teacher_on_grid = || resize_bilinear(&teacher, h, w);
    let adapted = || -> anyhow::Result<Tensor> {
        let weight = get("adapter.weight")?;
        let y = s.conv2d(&weight, 0, 1, 1, 1)?;
        Ok(match fx.contains_key("adapter.bias") {
            true => {
                let bias = get("adapter.bias")?;
                let c = bias.dim(0)?;
                y.broadcast_add(&bias.reshape((1, c, 1, 1))?)?
            }
            false => y,
        })
    };
    let target = || -> anyhow::Result<Target> { Ok(Target::from_tensor(&get("labels")?, None)?) };
    let mut memory_error = None;
    let loss = match term.as_str() {
        "kd" => terms::kd(s, &teacher, param("tau")?, &target()?)?,
        "cwd-logits" => terms::cwd(s, &teacher, param("tau")?)?,
        "cwd-features" => terms::cwd(&adapted()?, &teacher_on_grid()?, param("tau")?)?,
        "fitnet" => terms::fitnet(&adapted()?, &teacher_on_grid()?)?,
        "pairwise" => terms::pairwise(s, &teacher_on_grid()?, param("scale")?)?,
        "ifvd" => {
            let labels = terms::labels_nearest(&target()?, h, w)?;
            terms::ifvd(s, &teacher_on_grid()?, &labels, param("classes")? as usize)?
        }
        "cirkd" => terms::cirkd_pixel(s, &teacher_on_grid()?, param("tau")?)?,
        "cirkd-region" => {
            let classes = param("classes")? as usize;
            let labels = terms::labels_nearest(&target()?, h, w)?;
            let t = teacher_on_grid()?;
            let mut memory = RegionMemory::from_tensors(&get("memory")?, &get("memory.next")?, &get("memory.filled")?)?;
            memory.enqueue(&t, &labels)?;
            let [after, next, filled] = memory.to_tensors(device)?;
            for (name, ours) in [("memory.next.after", &next), ("memory.filled.after", &filled)] {
                let (ours, theirs) = (ours.to_vec1::<f32>()?, get(name)?.to_vec1::<f32>()?);
                anyhow::ensure!(ours == theirs, "{source}: `{name}` is {ours:?}, PyTorch's {theirs:?}");
            }
            memory_error = Some(relative_error(&after, &get("memory.after")?)?);
            let regions = memory.regions(device)?;
            cirkd_region::cirkd_region(&adapted()?, &t, &labels, classes, regions.as_ref(), param("tau")?)?
        }
        "at" => terms::attention_transfer(s, &teacher_on_grid()?)?,
        "dist" => terms::dist(s, &teacher, param("tau")?, param("beta")?, param("gamma")?)?,
        other => anyhow::bail!("{source}: no loss term `{other}`"),
    };
    let grads = loss.backward()?;
    let grad = grads.get(&student).ok_or_else(|| anyhow::anyhow!("{stem}: the loss has no gradient"))?;
    Ok(TermParity {
        name: stem,
        loss_error: relative_error(&loss, &get("loss")?)?,
        grad_error: relative_error(grad, &get("grad")?)?,
        memory_error,
    })
}
