//! Rejecting weights that hold NaN or infinite values: a model built from them would train or
//! predict NaN without saying why, so every file is checked once, when it is read.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Storage, Tensor};

use super::error::WeightsError;

/// The NaN or infinite values of one tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
struct NonFiniteValues {
    count: usize,
    first_index: usize,
    first_value: f32,
}

/// One pass over `values`: how many are NaN or infinite, and the first of them.
fn scan(values: &[f32]) -> Option<NonFiniteValues> {
    let mut found: Option<NonFiniteValues> = None;
    for (index, &value) in values.iter().enumerate() {
        if value.is_finite() {
            continue;
        }
        match &mut found {
            Some(f) => f.count += 1,
            None => found = Some(NonFiniteValues { count: 1, first_index: index, first_value: value }),
        }
    }
    found
}

/// Scans an f32 tensor in place when its values are one contiguous CPU slice (what every reader
/// produces), copying them out only otherwise.
fn scan_tensor(t: &Tensor) -> candle_core::Result<Option<NonFiniteValues>> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(cpu), Some((start, end)), DType::F32) = (&*storage, layout.contiguous_offsets(), t.dtype())
        {
            return Ok(scan(&cpu.as_slice::<f32>()?[start..end]));
        }
    }
    Ok(scan(&t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?))
}

/// Errors naming the first tensor (by name) with a NaN or infinite value, and listing the others.
pub fn check_finite(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<(), WeightsError> {
    let mut first: Option<(&str, NonFiniteValues)> = None;
    let mut other_keys = Vec::new();
    for (key, t) in tensors {
        let found = scan_tensor(t).map_err(|e| WeightsError::malformed(path, format!("tensor `{key}`: {e}")))?;
        match (found, first) {
            (None, _) => {}
            (Some(values), None) => first = Some((key, values)),
            (Some(_), Some(_)) => other_keys.push(key.clone()),
        }
    }
    let Some((key, values)) = first else {
        return Ok(());
    };
    Err(WeightsError::NonFinite {
        path: path.into(),
        key: key.to_string(),
        count: values.count,
        first_index: values.first_index,
        first_value: values.first_value,
        other_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn scan_counts_nan_and_both_infinities_and_keeps_the_first() {
        assert_eq!(scan(&[0.0, -1.5, f32::MAX, f32::MIN_POSITIVE]), None);
        let found = scan(&[1.0, f32::INFINITY, 2.0, f32::NAN, f32::NEG_INFINITY]).unwrap();
        assert_eq!((found.count, found.first_index, found.first_value), (3, 1, f32::INFINITY));
    }

    #[test]
    fn check_names_the_file_the_first_bad_tensor_and_the_others() {
        let dev = Device::Cpu;
        let mut tensors = BTreeMap::new();
        tensors.insert("a.weight".to_string(), Tensor::new(&[1f32, 2., 3.], &dev).unwrap());
        assert!(check_finite(Path::new("w.pth"), &tensors).is_ok());
        tensors.insert("b.bias".to_string(), Tensor::new(&[0f32, f32::NAN], &dev).unwrap());
        // A non-contiguous view takes the copying path.
        let t = Tensor::new(&[[1f32, f32::NEG_INFINITY], [3., 4.]], &dev).unwrap().t().unwrap();
        tensors.insert("c.weight".to_string(), t);
        let e = check_finite(Path::new("w.pth"), &tensors).unwrap_err();
        let WeightsError::NonFinite { key, count, first_index, other_keys, .. } = &e else { panic!("{e}") };
        assert_eq!((key.as_str(), *count, *first_index), ("b.bias", 1, 1));
        assert_eq!(other_keys, &["c.weight"]);
        let msg = e.to_string();
        assert!(msg.starts_with("w.pth: `b.bias` holds 1 NaN") && msg.contains("`c.weight`"), "{msg}");
    }
}
