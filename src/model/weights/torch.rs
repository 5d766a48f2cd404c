//! Reading `torch.save` state dicts without Python, in both on-disk formats:
//!
//! * **zip** (torch ≥ 1.6): `<prefix>/data.pkl` (the pickled state dict) plus one entry
//!   `<prefix>/data/<key>` of raw little-endian bytes per storage.
//! * **legacy** (torch < 1.6, e.g. torchvision's `fcn_resnet50_coco-1167a1af.pth` era): five pickles
//!   back to back — magic number, protocol, sys_info, the state dict, the sorted list of storage
//!   keys — then, for each key in that list, an int64 element count and the raw data.
//!
//! In both, a tensor is pickled as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
//! …)` with the storage as a persistent id `('storage', <StorageType>, key, location, numel[, view])`.
//! Pickles are parsed with candle's pickle VM; the interpretation is ours so both formats share it
//! and every failure names the file.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{Device, Tensor};

use super::error::WeightsError;

/// Element type of a torch storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageType {
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F64 | Self::F16 | Self::BF16)
    }

    /// The element type as messages name it (candle's names: `f32`, `i64`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F64 => "f64",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::I64 => "i64",
            Self::I32 => "i32",
            Self::I16 => "i16",
            Self::I8 => "i8",
            Self::U8 => "u8",
            Self::Bool => "bool",
        }
    }

    /// Decodes little-endian bytes as f32 (floating types only).
    fn to_f32(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            Self::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Self::F64 => {
                bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32).collect()
            }
            Self::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Self::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Where a tensor's values live in a storage.
#[derive(Clone, Debug)]
struct TensorRecord {
    name: String,
    storage_key: String,
    storage_type: StorageType,
    storage_numel: usize,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

/// The float tensors of a state dict (as f32 on the CPU) and the entries skipped because they are
/// not floats (`num_batches_tracked` and the like), with their element type.
pub struct LoadedTensors {
    pub tensors: BTreeMap<String, Tensor>,
    pub skipped: Vec<(String, StorageType)>,
}

const LEGACY_MAGIC_PICKLE: [u8; 15] =
    [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e];

/// True if the bytes start like a legacy `torch.save` file.
pub fn is_legacy(head: &[u8]) -> bool {
    head.starts_with(&LEGACY_MAGIC_PICKLE[..4])
}

/// True if the bytes start like a zip archive.
pub fn is_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
}

fn read_pickle<R: BufRead>(r: &mut R, path: &Path, what: &str) -> Result<Object, WeightsError> {
    let mut stack = Stack::empty();
    stack.read_loop(r).map_err(|e| pickle_error(path, what, e))?;
    stack.finalize().map_err(|e| WeightsError::malformed(path, format!("{what}: {e}")))
}

fn pickle_error(path: &Path, what: &str, e: candle_core::Error) -> WeightsError {
    // The first line only: candle appends a backtrace when RUST_BACKTRACE is set.
    let full = e.to_string();
    let msg = full.lines().next().unwrap_or_default();
    // A cut between two opcodes ends at the next opcode's byte ("unexpected end of file"); a cut
    // inside an argument ends inside a read_exact ("failed to fill whole buffer").
    let eof = ["failed to fill whole buffer", "UnexpectedEof", "unexpected end of file"];
    if eof.iter().any(|m| msg.contains(m)) {
        WeightsError::truncated(path, format!("the file ends inside the {what}"))
    } else {
        WeightsError::malformed(path, format!("cannot parse the {what}: {msg}"))
    }
}

/// Reads a legacy-format file.
pub fn read_legacy(path: &Path) -> Result<LoadedTensors, WeightsError> {
    let file = std::fs::File::open(path).map_err(|e| WeightsError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| WeightsError::io(path, e))?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    // The magic number is an 80-bit integer that candle's pickle VM cannot hold: compare bytes.
    let mut magic = [0u8; 15];
    read_exact(&mut r, &mut magic, path, "the magic number")?;
    if magic != LEGACY_MAGIC_PICKLE {
        return Err(WeightsError::NotWeights { path: path.into(), reason: "wrong legacy torch magic number".into() });
    }
    let protocol = read_pickle(&mut r, path, "protocol version")?;
    if !matches!(protocol, Object::Int(1001) | Object::Long(1001)) {
        return Err(WeightsError::malformed(path, format!("unsupported legacy protocol {protocol:?}")));
    }
    let _sys_info = read_pickle(&mut r, path, "system info")?;
    let state = read_pickle(&mut r, path, "state dict")?;
    let keys = match read_pickle(&mut r, path, "storage key list")? {
        Object::List(v) | Object::Tuple(v) => v
            .into_iter()
            .map(|k| k.unicode().map_err(|o| WeightsError::malformed(path, format!("storage key {o:?}"))))
            .collect::<Result<Vec<String>, _>>()?,
        o => {
            return Err(WeightsError::malformed(path, format!("storage key list is {o:?}")));
        }
    };
    let records = state_dict_records(state, path)?;
    let types = storage_types(&records, path)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in &keys {
        // Keys come from the file: escaped, so a damaged one cannot put its bytes in a message.
        let key_shown = key.escape_debug();
        let mut count = [0u8; 8];
        read_exact(&mut r, &mut count, path, &format!("storage {key_shown}"))?;
        let numel = i64::from_le_bytes(count);
        let Some(&(ty, expected)) = types.get(key) else {
            return Err(WeightsError::malformed(path, format!("storage {key_shown} is not used by any tensor")));
        };
        if numel < 0 || numel as usize != expected {
            return Err(WeightsError::malformed(
                path,
                format!("storage {key_shown}: {numel} elements, pickle says {expected}"),
            ));
        }
        let len = fits_in_file(numel as usize, ty, file_len, path, key)?;
        let mut bytes = vec![0u8; len];
        read_exact(&mut r, &mut bytes, path, &format!("storage {key_shown}"))?;
        storages.insert(key.clone(), bytes);
    }
    build_tensors(records, &storages, path)
}

/// Bytes of a legacy storage of `numel` elements, refused when more than the whole file holds (a
/// damaged count must not size an allocation).
fn fits_in_file(numel: usize, ty: StorageType, file_len: u64, path: &Path, key: &str) -> Result<usize, WeightsError> {
    let key_shown = key.escape_debug();
    match numel.checked_mul(ty.size()) {
        Some(len) if (len as u64) <= file_len => Ok(len),
        _ => Err(WeightsError::truncated(
            path,
            format!("storage {key_shown} claims {numel} elements, more than the {file_len}-byte file holds"),
        )),
    }
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8], path: &Path, what: &str) -> Result<(), WeightsError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => WeightsError::truncated(path, format!("the file ends inside {what}")),
        _ => WeightsError::io(path, e),
    })
}

/// Reads a zip-format file.
pub fn read_zip(path: &Path) -> Result<LoadedTensors, WeightsError> {
    let file = std::fs::File::open(path).map_err(|e| WeightsError::io(path, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| WeightsError::truncated(path, format!("the zip archive's directory cannot be read ({e})")))?;
    let pkl_name =
        zip.file_names().filter_map(|n| n.ok()).find(|n| n.ends_with("data.pkl")).map(|n| n.into_owned()).ok_or_else(
            || WeightsError::NotWeights { path: path.into(), reason: "a zip archive without data.pkl".into() },
        )?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let state = {
        let entry = zip.by_name(&pkl_name).map_err(|e| WeightsError::malformed(path, e))?;
        read_pickle(&mut BufReader::new(entry), path, "state dict")?
    };
    let records = state_dict_records(state, path)?;
    let types = storage_types(&records, path)?;
    let mut storages = HashMap::new();
    for (key, (ty, numel)) in types {
        let name = format!("{prefix}data/{key}");
        let name_shown = name.escape_debug();
        let mut entry = zip
            .by_name(&name)
            .map_err(|e| WeightsError::malformed(path, format!("storage entry {name_shown}: {e}")))?;
        // The pickle's element count is only a claim: the entry's own size bounds what is read, so a
        // damaged count cannot size an allocation.
        let needed = numel.saturating_mul(ty.size());
        let mut bytes =
            Vec::with_capacity(needed.min(usize::try_from(entry.size()).unwrap_or(usize::MAX)).min(1 << 30));
        entry
            .by_ref()
            .take(needed as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| WeightsError::truncated(path, format!("storage {name_shown}: {e}")))?;
        if bytes.len() < needed {
            return Err(WeightsError::truncated(
                path,
                format!("storage {name_shown} holds {} of {needed} bytes", bytes.len()),
            ));
        }
        storages.insert(key, bytes);
    }
    build_tensors(records, &storages, path)
}

/// Storage key → (type, element count), checking that tensors agree.
fn storage_types(records: &[TensorRecord], path: &Path) -> Result<HashMap<String, (StorageType, usize)>, WeightsError> {
    let mut types: HashMap<String, (StorageType, usize)> = HashMap::new();
    for r in records {
        let entry = types.entry(r.storage_key.clone()).or_insert((r.storage_type, r.storage_numel));
        if entry.0 != r.storage_type {
            return Err(WeightsError::malformed(path, format!("storage {} has two types", r.storage_key)));
        }
    }
    Ok(types)
}

/// Finds the state dict inside the unpickled object (a plain state dict, or a checkpoint dict
/// holding one under `state_dict` / `model`) and turns its tensors into records.
fn state_dict_records(obj: Object, path: &Path) -> Result<Vec<TensorRecord>, WeightsError> {
    let entries = match obj {
        Object::Dict(entries) => entries,
        Object::Build { callable, .. } => match *callable {
            Object::Dict(entries) => entries,
            o => {
                return Err(WeightsError::malformed(path, format!("expected a state dict, found {}", describe(&o))));
            }
        },
        o => {
            return Err(WeightsError::malformed(path, format!("expected a state dict, found {}", describe(&o))));
        }
    };
    let nested = entries.iter().find_map(|(k, v)| match (k, v) {
        (Object::Unicode(k), Object::Dict(_)) if k == "state_dict" || k == "model" => Some(v.clone()),
        _ => None,
    });
    if let Some(inner) = nested {
        return state_dict_records(inner, path);
    }
    let mut records = Vec::new();
    for (k, v) in entries {
        let Object::Unicode(name) = k else { continue };
        match tensor_record(&name, v) {
            Some(Ok(r)) => records.push(r),
            Some(Err(detail)) => {
                return Err(WeightsError::malformed(path, format!("tensor `{name}`: {detail}")));
            }
            None => {} // not a tensor (e.g. `_metadata`)
        }
    }
    if !records.iter().any(|r| r.storage_type.is_float()) {
        return Err(WeightsError::malformed(path, "no float tensors in the state dict"));
    }
    Ok(records)
}

fn describe(o: &Object) -> String {
    let s = format!("{o:?}");
    if s.len() > 80 { format!("{}…", &s[..80]) } else { s }
}

fn class_name(o: &Object) -> Option<(&str, &str)> {
    match o {
        Object::Class { module_name, class_name } => Some((module_name, class_name)),
        _ => None,
    }
}

fn as_usize(o: &Object) -> Option<usize> {
    match o {
        Object::Int(i) if *i >= 0 => Some(*i as usize),
        Object::Long(i) if *i >= 0 => Some(*i as usize),
        _ => None,
    }
}

fn as_usizes(o: &Object) -> Option<Vec<usize>> {
    match o {
        Object::Tuple(v) | Object::List(v) => v.iter().map(as_usize).collect(),
        _ => None,
    }
}

/// `None` if `value` is not a pickled tensor; `Some(Err)` if it is one we cannot read.
fn tensor_record(name: &str, value: Object) -> Option<Result<TensorRecord, String>> {
    let Object::Reduce { callable, args } = value else {
        return None;
    };
    match class_name(&callable)? {
        ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
            let Object::Tuple(mut a) = *args else {
                return Some(Err("bad _rebuild_parameter args".into()));
            };
            if a.is_empty() {
                return Some(Err("empty _rebuild_parameter args".into()));
            }
            tensor_record(name, a.swap_remove(0))
        }
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            Some(rebuild_tensor(name, *args))
        }
        _ => None,
    }
}

fn rebuild_tensor(name: &str, args: Object) -> Result<TensorRecord, String> {
    let Object::Tuple(a) = args else {
        return Err("arguments are not a tuple".into());
    };
    if a.len() < 4 {
        return Err(format!("{} arguments to _rebuild_tensor", a.len()));
    }
    let Object::PersistentLoad(pid) = &a[0] else {
        return Err("storage is not a persistent id".into());
    };
    let Object::Tuple(pid) = pid.as_ref() else {
        return Err("persistent id is not a tuple".into());
    };
    // ('storage', StorageType, key, location, numel) in zip files; legacy files add a view field.
    if pid.len() < 5 || pid[0] != Object::Unicode("storage".into()) {
        return Err(format!("unexpected persistent id {pid:?}"));
    }
    let (_, type_name) = class_name(&pid[1]).ok_or("storage type is not a class")?;
    let storage_type = StorageType::from_class(type_name)
        .ok_or_else(|| format!("unsupported storage type {}", type_name.escape_debug()))?;
    let storage_key = match &pid[2] {
        Object::Unicode(k) => k.clone(),
        Object::Int(i) => i.to_string(),
        Object::Long(i) => i.to_string(),
        o => return Err(format!("storage key {o:?}")),
    };
    let storage_numel = as_usize(&pid[4]).ok_or("storage size is not an integer")?;
    let offset = as_usize(&a[1]).ok_or("storage offset is not an integer")?;
    let size = as_usizes(&a[2]).ok_or("size is not a tuple of integers")?;
    let stride = as_usizes(&a[3]).ok_or("stride is not a tuple of integers")?;
    if size.len() != stride.len() {
        return Err("size and stride have different ranks".into());
    }
    let last = size.iter().zip(&stride).map(|(s, st)| s.saturating_sub(1) * st).sum::<usize>();
    let numel: usize = size.iter().product();
    if numel > 0 && offset + last >= storage_numel {
        return Err(format!("reaches element {} of a storage of {storage_numel}", offset + last));
    }
    Ok(TensorRecord { name: name.to_string(), storage_key, storage_type, storage_numel, offset, size, stride })
}

/// Float tensors from their storages; other dtypes are listed as skipped.
fn build_tensors(
    records: Vec<TensorRecord>,
    storages: &HashMap<String, Vec<u8>>,
    path: &Path,
) -> Result<LoadedTensors, WeightsError> {
    let mut decoded: HashMap<&str, Vec<f32>> = HashMap::new();
    let mut tensors = BTreeMap::new();
    let mut skipped = Vec::new();
    for r in &records {
        if !r.storage_type.is_float() {
            skipped.push((r.name.clone(), r.storage_type));
            continue;
        }
        if !decoded.contains_key(r.storage_key.as_str()) {
            let bytes = storages
                .get(&r.storage_key)
                .ok_or_else(|| WeightsError::malformed(path, format!("storage {} is missing", r.storage_key)))?;
            decoded.insert(&r.storage_key, r.storage_type.to_f32(bytes));
        }
        let data = &decoded[r.storage_key.as_str()];
        let values = gather_strided(data, r.offset, &r.size, &r.stride);
        let t = Tensor::from_vec(values, r.size.clone(), &Device::Cpu)
            .map_err(|e| WeightsError::malformed(path, format!("tensor `{}`: {e}", r.name)))?;
        tensors.insert(r.name.clone(), t);
    }
    Ok(LoadedTensors { tensors, skipped })
}

/// Copies a strided view into a contiguous row-major vector.
fn gather_strided(data: &[f32], offset: usize, size: &[usize], stride: &[usize]) -> Vec<f32> {
    let numel: usize = size.iter().product();
    let contiguous = {
        let mut expect = 1;
        size.iter().zip(stride).rev().all(|(&s, &st)| {
            let ok = s == 1 || st == expect;
            expect *= s;
            ok
        })
    };
    if contiguous {
        return data[offset..offset + numel].to_vec();
    }
    let mut out = Vec::with_capacity(numel);
    let mut index = vec![0usize; size.len()];
    for _ in 0..numel {
        let pos: usize = offset + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        out.push(data[pos]);
        for d in (0..size.len()).rev() {
            index[d] += 1;
            if index[d] < size[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_views_are_gathered_row_major() {
        let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
        // A 3×2 transpose of a 2×3 matrix at offset 0.
        assert_eq!(gather_strided(&data, 0, &[3, 2], &[1, 3]), [0., 3., 1., 4., 2., 5.]);
        assert_eq!(gather_strided(&data, 6, &[2, 3], &[3, 1]), [6., 7., 8., 9., 10., 11.]);
        assert_eq!(gather_strided(&data, 2, &[], &[]), [2.]);
    }

    fn record(name: &str, storage_key: &str, storage_type: StorageType, size: Vec<usize>) -> TensorRecord {
        let numel = size.iter().product();
        let stride = (0..size.len()).map(|d| size[d + 1..].iter().product()).collect();
        let storage_key = storage_key.to_string();
        TensorRecord { name: name.into(), storage_key, storage_type, storage_numel: numel, offset: 0, size, stride }
    }

    #[test]
    fn integer_tensors_are_skipped_with_their_element_type() {
        let records = vec![
            record("conv.weight", "0", StorageType::F32, vec![2]),
            record("bn.num_batches_tracked", "1", StorageType::I64, vec![]),
            record("mask", "2", StorageType::Bool, vec![3]),
        ];
        let storages = HashMap::from([
            ("0".to_string(), [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("1".to_string(), 7i64.to_le_bytes().to_vec()),
            ("2".to_string(), vec![1, 0, 1]),
        ]);
        let loaded = build_tensors(records, &storages, Path::new("w.pth")).unwrap();
        assert_eq!(loaded.tensors["conv.weight"].to_vec1::<f32>().unwrap(), [1.5, -2.0]);
        let skipped: Vec<(&str, &str)> = loaded.skipped.iter().map(|(n, t)| (n.as_str(), t.name())).collect();
        assert_eq!(skipped, [("bn.num_batches_tracked", "i64"), ("mask", "bool")]);
    }
}
