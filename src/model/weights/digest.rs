//! Content digests of tensor files. segdistill stores, in the metadata of every safetensors file
//! it writes (student weights, checkpoints), a SHA-256 over its tensors; reading the file checks
//! it, so a flipped bit, a torn copy or a file from another epoch is found before a model trains
//! on it or a report measures it. The digest covers names, element types, shapes and bytes, in
//! name order: the same tensors give the same digest whatever file or map they come from.

use std::collections::{BTreeMap, HashMap};

use sha2::Digest as _;

/// The safetensors metadata key holding the digest.
pub const METADATA_KEY: &str = "segdistill.digest";

/// The digest of named tensors (any order in; hashed in name order).
pub fn of_views<N: AsRef<str>, V: safetensors::View>(tensors: impl IntoIterator<Item = (N, V)>) -> String {
    let mut all: Vec<(N, V)> = tensors.into_iter().collect();
    all.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    let mut h = sha2::Sha256::new();
    for (name, view) in &all {
        let name = name.as_ref();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(view.dtype().to_string().as_bytes());
        h.update((view.shape().len() as u64).to_le_bytes());
        for d in view.shape() {
            h.update((*d as u64).to_le_bytes());
        }
        let data = view.data();
        h.update((data.len() as u64).to_le_bytes());
        h.update(&data);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest of a map of candle tensors (each made contiguous on the CPU first).
pub fn of_tensors(tensors: &BTreeMap<String, candle_core::Tensor>) -> candle_core::Result<String> {
    let cpu: Vec<(&str, candle_core::Tensor)> = tensors
        .iter()
        .map(|(k, v)| Ok((k.as_str(), v.to_device(&candle_core::Device::Cpu)?.contiguous()?)))
        .collect::<candle_core::Result<_>>()?;
    Ok(of_views(cpu.iter().map(|(k, v)| (*k, v))))
}

/// Checks a parsed safetensors file against the digest in its metadata. `Ok(None)`: the file
/// carries none (written by another tool or an older segdistill); `Err`: it does not match.
pub fn verify(
    st: &safetensors::SafeTensors,
    metadata: Option<&HashMap<String, String>>,
) -> Result<Option<String>, String> {
    let Some(stored) = metadata.and_then(|m| m.get(METADATA_KEY)) else { return Ok(None) };
    let actual = of_views(st.tensors());
    if &actual == stored {
        Ok(Some(actual))
    } else {
        Err("its tensors do not match the digest stored with them (the file was damaged after it was written)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn the_digest_follows_names_shapes_and_bytes_not_order() {
        let t = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, &Device::Cpu).unwrap();
        let mut a = BTreeMap::new();
        a.insert("x".to_string(), t(&[1., 2., 3., 4.], &[2, 2]));
        a.insert("y".to_string(), t(&[5.], &[1]));
        let base = of_tensors(&a).unwrap();
        assert_eq!(base.len(), 64);
        let views: Vec<(&str, &Tensor)> = a.iter().rev().map(|(k, v)| (k.as_str(), v)).collect();
        assert_eq!(of_views(views), base, "order does not matter");
        let mut b = a.clone();
        b.insert("x".to_string(), t(&[1., 2., 3., 4.], &[4]));
        assert_ne!(of_tensors(&b).unwrap(), base, "shape matters");
        b.insert("x".to_string(), t(&[1., 2., 3., 4.000001], &[2, 2]));
        assert_ne!(of_tensors(&b).unwrap(), base, "every bit matters");
        let mut c = a.clone();
        let y = c.remove("y").unwrap();
        c.insert("z".to_string(), y);
        assert_ne!(of_tensors(&c).unwrap(), base, "names matter");
    }
}
