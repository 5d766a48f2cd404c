//! Loading weights into models whose parameter names equal torchvision's `state_dict` keys.
//!
//! Formats: `torch.save` zip and legacy files (see [`torch`]) and safetensors (what segdistill
//! writes). Every key, shape and element type is checked against what the model asks for, and
//! every float value must be finite; non-float entries the model does not ask for
//! (`num_batches_tracked`) are tolerated. Two ways in:
//! * [`StateDict::var_builder`]: a `VarBuilder` over plain (non-trainable) tensors, for the frozen
//!   teacher and for inference;
//! * [`load_into_varmap`]: copies values into a trainable model's `VarMap` (students, resume).

pub mod digest;
pub mod error;
mod finite;
pub mod hashed;
pub mod init;
pub mod torch;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
    /// The element type of each skipped entry, so a model asking for one hears "wrong dtype",
    /// not "missing".
    skipped_dtypes: HashMap<String, String>,
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

/// What a reader found in a file: the float tensors (as f32), and the other entries with the name
/// of their element type.
#[derive(Default)]
struct FileEntries {
    tensors: BTreeMap<String, Tensor>,
    skipped: Vec<(String, String)>,
}

impl From<torch::LoadedTensors> for FileEntries {
    fn from(loaded: torch::LoadedTensors) -> Self {
        let skipped = loaded.skipped.into_iter().map(|(name, ty)| (name, ty.name().to_string())).collect();
        Self { tensors: loaded.tensors, skipped }
    }
}

fn read_safetensors(path: &Path) -> Result<FileEntries, WeightsError> {
    use candle_core::safetensors::Load as _;
    let bytes = crate::util::fs::read_regular(path).map_err(|e| WeightsError::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| safetensors_error(path, &bytes, e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| safetensors_error(path, &bytes, e))?;
    digest::verify(&st, header.metadata().as_ref()).map_err(|detail| WeightsError::malformed(path, detail))?;
    let mut entries = FileEntries::default();
    for (name, view) in st.tensors() {
        use safetensors::Dtype as D;
        // Decided on the header's type: candle cannot load some integer types (bool, i8) at all.
        if !matches!(view.dtype(), D::F16 | D::BF16 | D::F32 | D::F64) {
            entries.skipped.push((name, view.dtype().to_string().to_lowercase()));
            continue;
        }
        let t = view.load(&Device::Cpu).map_err(|e| WeightsError::malformed(path, format!("tensor `{name}`: {e}")))?;
        let t = t.to_dtype(DType::F32).map_err(|e| WeightsError::malformed(path, format!("tensor `{name}`: {e}")))?;
        entries.tensors.insert(name, t);
    }
    Ok(entries)
}

/// What is wrong with a safetensors file that does not parse: shorter than its header says
/// ("truncated"), longer ("N unexpected bytes after its data"), or otherwise malformed.
pub fn safetensors_error(path: &Path, bytes: &[u8], e: safetensors::SafeTensorError) -> WeightsError {
    match safetensors_extent(bytes) {
        Some(expected) if (bytes.len() as u64) < expected => WeightsError::truncated(
            path,
            format!("{} bytes of the {expected} its header describes", bytes.len()),
        ),
        Some(expected) if (bytes.len() as u64) > expected => WeightsError::malformed(
            path,
            format!("it has {} unexpected bytes after its data (something was appended to it)", bytes.len() as u64 - expected),
        ),
        Some(_) => WeightsError::malformed(path, e.to_string()),
        None if bytes.len() < 8 => WeightsError::truncated(path, format!("{} bytes, shorter than a header", bytes.len())),
        None => match e {
            safetensors::SafeTensorError::MetadataIncompleteBuffer | safetensors::SafeTensorError::HeaderTooSmall => {
                WeightsError::truncated(path, e.to_string())
            }
            // A header of a plausible length that the file ends inside: cut short, not malformed.
            safetensors::SafeTensorError::InvalidHeaderLength if header_cut(bytes) => WeightsError::truncated(
                path,
                format!("{} bytes, ending inside its header", bytes.len()),
            ),
            e => WeightsError::malformed(path, e.to_string()),
        },
    }
}

/// Whether the file ends inside a header whose declared length is plausible (at most the 100 MB
/// the safetensors format allows).
fn header_cut(bytes: &[u8]) -> bool {
    let Some(n) = bytes.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes) else { return false };
    n <= 100_000_000 && n + 8 > bytes.len() as u64
}

/// The length a safetensors file should have by its header (8 + header + the furthest data
/// offset), when the header itself is readable.
fn safetensors_extent(bytes: &[u8]) -> Option<u64> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header = bytes.get(8..usize::try_from(n.checked_add(8)?).ok()?)?;
    let json: serde_json::Value = serde_json::from_slice(header).ok()?;
    let end = json
        .as_object()?
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    (8 + n).checked_add(end)
}

impl StateDict {
    /// Reads a weights file, detecting its format from the content (not the extension). Every
    /// format ends here, so this is where NaN and infinite values are rejected.
    pub fn load(path: &Path) -> Result<Self, WeightsError> {
        let format = detect_format(path)?;
        let entries = match format {
            WeightsFormat::TorchZip => torch::read_zip(path)?.into(),
            WeightsFormat::TorchLegacy => torch::read_legacy(path)?.into(),
            WeightsFormat::Safetensors => read_safetensors(path)?,
        };
        finite::check_finite(path, &entries.tensors)?;
        Ok(Self::with_entries(path.to_path_buf(), format, entries))
    }

    /// A state dict built in memory (tests, conversions).
    pub fn from_tensors(path: impl Into<PathBuf>, tensors: BTreeMap<String, Tensor>) -> Self {
        Self::with_entries(path.into(), WeightsFormat::Safetensors, FileEntries { tensors, skipped: Vec::new() })
    }

    fn with_entries(path: PathBuf, format: WeightsFormat, entries: FileEntries) -> Self {
        let FileEntries { tensors, skipped } = entries;
        let names = skipped.iter().map(|(name, _)| name.clone()).collect();
        Self { path, format, tensors, skipped: names, skipped_dtypes: skipped.into_iter().collect() }
    }

    /// The element type of a non-float entry the loader skipped (`None` for floats and absent keys).
    pub fn skipped_dtype(&self, key: &str) -> Option<&str> {
        self.skipped_dtypes.get(key).map(String::as_str)
    }

    /// The error for a key the file has no float tensor for: wrong dtype if it holds a non-float
    /// one under that name, missing otherwise.
    fn absent_key_error(&self, key: &str, expected: DType) -> WeightsError {
        match self.skipped_dtype(key) {
            Some(found) => WeightsError::WrongDtype {
                path: self.path.clone(),
                key: key.to_string(),
                found: found.to_string(),
                expected: expected.as_str().to_string(),
            },
            None => WeightsError::missing_keys(&self.path, vec![key.to_string()]),
        }
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

    /// Keeps the entries `rename` maps to a new name (dropping those it maps to `None`); skipped
    /// non-float entries are renamed alike.
    pub fn renamed(self, rename: impl Fn(&str) -> Option<String>) -> Self {
        let tensors = self.tensors.into_iter().filter_map(|(k, v)| rename(&k).map(|k| (k, v))).collect();
        let mut skipped: Vec<(String, String)> =
            self.skipped_dtypes.into_iter().filter_map(|(k, dtype)| rename(&k).map(|k| (k, dtype))).collect();
        skipped.sort();
        Self::with_entries(self.path, self.format, FileEntries { tensors, skipped })
    }

    /// A `VarBuilder` that hands out this file's tensors (non-trainable) on `device`, checking
    /// each requested name, shape and element type. A missing weight does not stop the model's
    /// construction (it gets a NaN placeholder) so that every missing name is known: always call
    /// [`UsedKeys::check_all_used`] after building the model, which reports them and rejects
    /// files with extra weights.
    pub fn var_builder(self: &Arc<Self>, device: &Device) -> (VarBuilder<'static>, UsedKeys) {
        let requests = Arc::new(Mutex::new(Requests::default()));
        let backend = CheckedBackend { dict: self.clone(), requests: requests.clone() };
        (
            VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone()),
            UsedKeys { dict: self.clone(), requests },
        )
    }
}

/// What a model asked a [`StateDict`] for while it was built.
#[derive(Default)]
struct Requests {
    used: HashSet<String>,
    /// Names the model asked for and the file lacks.
    missing: BTreeSet<String>,
    /// The first error that stopped the construction.
    error: Option<WeightsError>,
}

/// Which keys of a state dict a model asked for, which were missing, and the first loading error.
pub struct UsedKeys {
    dict: Arc<StateDict>,
    requests: Arc<Mutex<Requests>>,
}

impl UsedKeys {
    fn requests(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The typed error behind a failed model construction (candle's error type only keeps the
    /// message): the error that stopped it, else every missing weight, if any.
    pub fn take_error(&self) -> Option<WeightsError> {
        let mut requests = self.requests();
        requests.error.take().or_else(|| self.missing_error(&requests))
    }

    fn missing_error(&self, requests: &Requests) -> Option<WeightsError> {
        let missing: Vec<String> = requests.missing.iter().cloned().collect();
        (!missing.is_empty()).then(|| WeightsError::missing_keys(&self.dict.path, missing))
    }

    /// Errors if the model asked for weights the file lacks (naming all of them), or if the file
    /// holds weights the model did not ask for, except names starting with one of
    /// `ignored_prefixes` (e.g. an ImageNet classifier when loading a backbone).
    pub fn check_all_used(&self, ignored_prefixes: &[&str]) -> Result<(), WeightsError> {
        let requests = self.requests();
        if let Some(e) = self.missing_error(&requests) {
            return Err(e);
        }
        let extra: Vec<String> = self
            .dict
            .keys()
            .filter(|k| !requests.used.contains(*k) && !ignored_prefixes.iter().any(|p| k.starts_with(p)))
            .map(String::from)
            .collect();
        if extra.is_empty() { Ok(()) } else { Err(WeightsError::unexpected_keys(&self.dict.path, extra)) }
    }
}

struct CheckedBackend {
    dict: Arc<StateDict>,
    requests: Arc<Mutex<Requests>>,
}

impl CheckedBackend {
    fn requests(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the first error for [`UsedKeys::take_error`] and turns it into a candle error.
    fn fail(&self, e: WeightsError) -> candle_core::Error {
        let msg = e.to_string();
        self.requests().error.get_or_insert(e);
        candle_core::Error::Msg(msg)
    }

    fn fetch(&self, t: &Tensor, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.requests().used.insert(name.to_string());
        t.to_dtype(dtype)?.to_device(dev)
    }

    /// A weight the file lacks: noted, and replaced by NaN so that construction goes on to find
    /// the other missing ones, while a model used despite the error computes NaN, not plausible
    /// numbers.
    fn placeholder(&self, s: Shape, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.requests().missing.insert(name.to_string());
        Tensor::full(f32::NAN, s, dev)?.to_dtype(dtype)
    }
}

impl candle_nn::var_builder::SimpleBackend for CheckedBackend {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let Some(t) = self.dict.get(name) else {
            if self.dict.skipped_dtype(name).is_some() {
                return Err(self.fail(self.dict.absent_key_error(name, dtype)));
            }
            return self.placeholder(s, name, dtype, dev);
        };
        if t.shape() != &s {
            return Err(self.fail(WeightsError::ShapeMismatch {
                path: self.dict.path.clone(),
                key: name.to_string(),
                expected: s.dims().to_vec(),
                found: t.dims().to_vec(),
            }));
        }
        self.fetch(t, name, dtype, dev)
    }

    /// Without a shape there is no placeholder: the construction stops here, naming this weight
    /// and those found missing before it.
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let Some(t) = self.dict.get(name) else {
            let e = match self.dict.absent_key_error(name, dtype) {
                WeightsError::MissingKeys { all, .. } => {
                    let mut keys: Vec<String> = self.requests().missing.iter().cloned().collect();
                    keys.extend(all);
                    WeightsError::missing_keys(&self.dict.path, keys)
                }
                e => e,
            };
            return Err(self.fail(e));
        };
        self.fetch(t, name, dtype, dev)
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
            if dict.skipped_dtype(name).is_some() {
                return Err(dict.absent_key_error(name, var.dtype()));
            }
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
    let digest = digest::of_views(data.iter().map(|(k, v)| (k.as_str(), v)));
    let metadata = HashMap::from([(digest::METADATA_KEY.to_string(), digest)]);
    let bytes = safetensors::serialize(data.iter().map(|(k, v)| (k.as_str(), v)), Some(metadata))?;
    crate::util::fs::write_atomic(path, &bytes)?;
    Ok(())
}

/// All variables of a varmap as named tensors (sorted by name).
pub fn varmap_tensors(varmap: &candle_nn::VarMap) -> BTreeMap<String, Tensor> {
    let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(floats: &[(&str, usize)], integers: &[(&str, &str)]) -> Arc<StateDict> {
        let tensors = floats
            .iter()
            .map(|&(name, n)| (name.to_string(), Tensor::ones(n, DType::F32, &Device::Cpu).unwrap()))
            .collect();
        let skipped = integers.iter().map(|&(name, dtype)| (name.to_string(), dtype.to_string())).collect();
        Arc::new(StateDict::with_entries("w.pth".into(), WeightsFormat::TorchZip, FileEntries { tensors, skipped }))
    }

    #[test]
    fn every_missing_weight_is_reported_not_just_the_first() {
        let dict = dict(&[("fc1.bias", 2)], &[]);
        let (vb, used) = dict.var_builder(&Device::Cpu);
        // Construction goes on past the first missing weight so that all of them are found.
        let layers = candle_nn::linear(3, 2, vb.pp("fc1")).and_then(|_| candle_nn::linear(2, 4, vb.pp("fc2")));
        assert!(layers.is_ok());
        let e = used.check_all_used(&[]).unwrap_err();
        let WeightsError::MissingKeys { count, all, .. } = &e else { panic!("{e}") };
        assert_eq!(*count, 3);
        assert_eq!(all, &["fc1.weight", "fc2.bias", "fc2.weight"]);
        assert!(e.to_string().contains("lacks 3 weight(s)"), "{e}");
        assert!(matches!(used.take_error(), Some(WeightsError::MissingKeys { count: 3, .. })));
    }

    #[test]
    fn an_integer_entry_where_a_float_weight_is_expected_is_a_wrong_dtype() {
        let dict = dict(&[("fc.bias", 2)], &[("fc.weight", "i64")]);
        let (vb, used) = dict.var_builder(&Device::Cpu);
        assert!(candle_nn::linear(3, 2, vb.pp("fc")).is_err());
        let e = used.take_error().unwrap();
        assert!(
            matches!(&e, WeightsError::WrongDtype { key, found, expected, .. }
                if key == "fc.weight" && found == "i64" && expected == "f32"),
            "{e}"
        );
        assert!(e.to_string().starts_with("w.pth: `fc.weight` is stored as i64"), "{e}");
    }

    #[test]
    fn loading_into_a_varmap_reports_wrong_dtypes_too() {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        candle_nn::linear(3, 2, vb.pp("fc")).unwrap();
        let dict = dict(&[("fc.bias", 2)], &[("fc.weight", "u8")]);
        let e = load_into_varmap(&varmap, &dict).unwrap_err();
        assert!(
            matches!(&e, WeightsError::WrongDtype { key, found, .. } if key == "fc.weight" && found == "u8"),
            "{e}"
        );
        // Renaming keeps the element type of skipped entries.
        let renamed = (*dict).clone().renamed(|k| Some(format!("head.{k}")));
        assert_eq!(renamed.skipped_dtype("head.fc.weight"), Some("u8"));
        assert_eq!(renamed.skipped, ["head.fc.weight"]);
    }
}
