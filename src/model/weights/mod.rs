//! Loading weights into models whose parameter names equal torchvision's `state_dict` keys.
//!
//! Formats: `torch.save` zip and legacy files (see [`torch`]) and safetensors (what segdistill
//! writes). Every key and shape is checked against what the model asks for; non-float entries
//! (`num_batches_tracked`) are tolerated. Two ways in:
//! * [`StateDict::var_builder`]: a `VarBuilder` over plain (non-trainable) tensors, for the frozen
//!   teacher and for inference;
//! * [`load_into_varmap`]: copies values into a trainable model's `VarMap` (students, resume).

pub mod error;
pub mod init;
pub mod torch;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;

pub use error::WeightsError;

/// On-disk format of a weights file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsFormat {
    TorchZip,
    TorchLegacy,
    Safetensors,
}

/// Named float tensors read from a weights file, kept on the CPU until a model takes them.
#[derive(Clone)]
pub struct StateDict {
    pub path: PathBuf,
    pub format: WeightsFormat,
    tensors: BTreeMap<String, Tensor>,
    /// Entries skipped because they are not floats (e.g. `num_batches_tracked`).
    pub skipped: Vec<String>,
}

impl std::fmt::Debug for StateDict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateDict({}, {:?}, {} tensors)", self.path.display(), self.format, self.tensors.len())
    }
}

fn detect_format(path: &Path) -> Result<WeightsFormat, WeightsError> {
    use std::io::Read;
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path).map_err(|e| WeightsError::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| WeightsError::io(path, e))?;
    let head = &head[..n];
    if n == 0 {
        return Err(WeightsError::NotWeights { path: path.into(), reason: "the file is empty".into() });
    }
    if torch::is_zip(head) {
        return Ok(WeightsFormat::TorchZip);
    }
    if torch::is_legacy(head) {
        return Ok(WeightsFormat::TorchLegacy);
    }
    // safetensors: u64 little-endian header length, then a JSON object.
    if n >= 9 && head[8] == b'{' {
        return Ok(WeightsFormat::Safetensors);
    }
    let reason = match head {
        [0xff, 0xd8, ..] => "it is a JPEG image".to_string(),
        [0x89, b'P', b'N', b'G', ..] => "it is a PNG image".to_string(),
        [b'<', ..] => "it looks like an HTML page (a failed download?)".to_string(),
        _ => "unrecognised header".to_string(),
    };
    Err(WeightsError::NotWeights { path: path.into(), reason })
}

fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    use candle_core::safetensors::Load as _;
    let bytes = std::fs::read(path).map_err(|e| WeightsError::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        use safetensors::SafeTensorError as E;
        match e {
            E::MetadataIncompleteBuffer | E::HeaderTooSmall | E::InvalidHeaderLength => {
                WeightsError::truncated(path, e.to_string())
            }
            e => WeightsError::malformed(path, e.to_string()),
        }
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let t = view.load(&Device::Cpu).map_err(|e| WeightsError::malformed(path, format!("tensor `{name}`: {e}")))?;
        if t.dtype().is_float() {
            let t = t.to_dtype(DType::F32).map_err(|e| WeightsError::malformed(path, e))?;
            out.insert(name, t);
        }
    }
    Ok(out)
}

impl StateDict {
    /// Reads a weights file, detecting its format from the content (not the extension).
    pub fn load(path: &Path) -> Result<Self, WeightsError> {
        let format = detect_format(path)?;
        let (tensors, skipped) = match format {
            WeightsFormat::TorchZip => {
                let t = torch::read_zip(path)?;
                (t.tensors, t.skipped)
            }
            WeightsFormat::TorchLegacy => {
                let t = torch::read_legacy(path)?;
                (t.tensors, t.skipped)
            }
            WeightsFormat::Safetensors => (read_safetensors(path)?, Vec::new()),
        };
        Ok(Self { path: path.to_path_buf(), format, tensors, skipped })
    }

    /// A state dict built in memory (tests, conversions).
    pub fn from_tensors(path: impl Into<PathBuf>, tensors: BTreeMap<String, Tensor>) -> Self {
        Self { path: path.into(), format: WeightsFormat::Safetensors, tensors, skipped: Vec::new() }
    }

    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|k| k.as_str())
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of float values.
    pub fn num_values(&self) -> usize {
        self.tensors.values().map(|t| t.elem_count()).sum()
    }

    /// Keeps the entries `rename` maps to a new name (dropping those it maps to `None`).
    pub fn renamed(self, rename: impl Fn(&str) -> Option<String>) -> Self {
        let tensors = self.tensors.into_iter().filter_map(|(k, v)| rename(&k).map(|k| (k, v))).collect();
        Self { tensors, ..self }
    }

    /// A `VarBuilder` that hands out this file's tensors (non-trainable) on `device`, checking
    /// each requested name and shape. Call [`UsedKeys::check_all_used`] after building the model
    /// to reject files with extra weights.
    pub fn var_builder(self: &Arc<Self>, device: &Device) -> (VarBuilder<'static>, UsedKeys) {
        let used = UsedKeys {
            dict: self.clone(),
            used: Arc::new(Mutex::new(HashSet::new())),
            error: Arc::new(Mutex::new(None)),
        };
        let backend = CheckedBackend { dict: self.clone(), used: used.used.clone(), error: used.error.clone() };
        (VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone()), used)
    }
}

/// Which keys of a state dict a model asked for, and the first loading error.
pub struct UsedKeys {
    dict: Arc<StateDict>,
    used: Arc<Mutex<HashSet<String>>>,
    error: Arc<Mutex<Option<WeightsError>>>,
}

impl UsedKeys {
    /// The typed error behind a failed model construction (candle's error type only keeps the
    /// message), if the failure came from the weights.
    pub fn take_error(&self) -> Option<WeightsError> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Errors if the file holds weights the model did not ask for, except names starting with
    /// one of `ignored_prefixes` (e.g. an ImageNet classifier when loading a backbone).
    pub fn check_all_used(&self, ignored_prefixes: &[&str]) -> Result<(), WeightsError> {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let extra: Vec<String> = self
            .dict
            .keys()
            .filter(|k| !used.contains(*k) && !ignored_prefixes.iter().any(|p| k.starts_with(p)))
            .map(String::from)
            .collect();
        if extra.is_empty() { Ok(()) } else { Err(WeightsError::unexpected_keys(&self.dict.path, extra)) }
    }
}

struct CheckedBackend {
    dict: Arc<StateDict>,
    used: Arc<Mutex<HashSet<String>>>,
    error: Arc<Mutex<Option<WeightsError>>>,
}

impl CheckedBackend {
    /// Records the first error for [`UsedKeys::take_error`] and turns it into a candle error.
    fn fail(&self, e: WeightsError) -> candle_core::Error {
        let msg = e.to_string();
        self.error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
        candle_core::Error::Msg(msg)
    }

    fn fetch(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self
            .dict
            .get(name)
            .ok_or_else(|| self.fail(WeightsError::missing_keys(&self.dict.path, vec![name.to_string()])))?;
        self.used.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string());
        t.to_dtype(dtype)?.to_device(dev)
    }
}

impl candle_nn::var_builder::SimpleBackend for CheckedBackend {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if let Some(t) = self.dict.get(name)
            && t.shape() != &s
        {
            return Err(self.fail(WeightsError::ShapeMismatch {
                path: self.dict.path.clone(),
                key: name.to_string(),
                expected: s.dims().to_vec(),
                found: t.dims().to_vec(),
            }));
        }
        self.fetch(name, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.fetch(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.dict.get(name).is_some()
    }
}

/// What [`load_into_varmap`] did.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: usize,
    /// Model variables the file did not provide (left as initialised).
    pub missing: Vec<String>,
    /// File entries the model has no variable for.
    pub unused: Vec<String>,
}

/// Copies `dict`'s values into the model variables of `varmap` with the same names. Shapes must
/// match; missing and unused names are reported (callers decide whether that is an error).
pub fn load_into_varmap(varmap: &candle_nn::VarMap, dict: &StateDict) -> Result<LoadReport, WeightsError> {
    let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut report = LoadReport::default();
    for (name, var) in vars.iter() {
        let Some(t) = dict.get(name) else {
            report.missing.push(name.clone());
            continue;
        };
        if t.shape() != var.shape() {
            return Err(WeightsError::ShapeMismatch {
                path: dict.path.clone(),
                key: name.clone(),
                expected: var.dims().to_vec(),
                found: t.dims().to_vec(),
            });
        }
        let value = t.to_dtype(var.dtype()).and_then(|t| t.to_device(var.device())).and_then(|t| var.set(&t));
        value.map_err(|e| WeightsError::malformed(&dict.path, format!("`{name}`: {e}")))?;
        report.loaded += 1;
    }
    report.unused = dict.keys().filter(|k| !vars.contains_key(*k)).map(String::from).collect();
    report.missing.sort();
    report.unused.sort();
    Ok(report)
}

/// Writes named tensors as safetensors, atomically.
pub fn save_safetensors(tensors: &BTreeMap<String, Tensor>, path: &Path) -> anyhow::Result<()> {
    let data: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<candle_core::Result<_>>()?;
    let bytes = safetensors::serialize(data.iter().map(|(k, v)| (k.as_str(), v)), None)?;
    crate::util::fs::write_atomic(path, &bytes)?;
    Ok(())
}

/// All variables of a varmap as named tensors (sorted by name).
pub fn varmap_tensors(varmap: &candle_nn::VarMap) -> BTreeMap<String, Tensor> {
    let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
}
