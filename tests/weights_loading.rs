//! Weights files: both torch formats and safetensors load with names and shapes checked; every
//! kind of malformed file is an error naming the file. The torch files are real `torch.save`
//! output (`tests/fixtures/torch`, a small model in the legacy and the zip format); the
//! torchvision architectures' files are their state dicts with hashed weights
//! (`tests/fixtures/torchvision/weights.json`), written as safetensors.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use common::*;
use segdistill::diagnostics::selftest::{LRASPP_FILE, MBV3S_FILE};
use segdistill::model::weights::hashed::hashed_values;
use segdistill::model::weights::{StateDict, WeightsError, WeightsFormat, save_safetensors};
use segdistill::model::{
    Mode, Model, ModelKind, build_trainable, load_backbone, load_for_inference, load_student_weights,
};

/// A torchvision architecture's weights (hashed values, every float key of its state dict).
fn fixture(file: &str) -> PathBuf {
    torchvision_weights(file)
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

const LEGACY: &str = "mbv3s_tiny_legacy.pth";
const ZIP: &str = "mbv3s_tiny_zip.pth";
/// `mbv3s-tiny`'s state dict in PyTorch: 179 keys, 25 of them batch-norm counters.
const TINY_KEYS: usize = 179;
const TINY_BATCH_NORMS: usize = 25;

fn write_prefix(src: &Path, len: usize, dst: &Path) {
    let bytes = std::fs::read(src).unwrap();
    std::fs::write(dst, &bytes[..len.min(bytes.len())]).unwrap();
}

fn load_err(path: &Path) -> WeightsError {
    match StateDict::load(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => {
            assert!(e.to_string().contains(&path.display().to_string()), "error names the file: {e}");
            e
        }
    }
}

#[test]
fn zip_reader_agrees_with_candles_own_reader() {
    let path = torch_file(ZIP);
    let ours = StateDict::load(&path).unwrap();
    assert_eq!(ours.format, WeightsFormat::TorchZip);
    let theirs = candle_core::pickle::read_all(&path).unwrap();
    let mut float_count = 0;
    for (name, t) in theirs {
        if t.dtype() != candle_core::DType::F32 {
            assert!(ours.skipped.contains(&name), "{name} skipped as non-float");
            continue;
        }
        float_count += 1;
        let o = ours.get(&name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(o.dims(), t.dims(), "{name}");
        let d = (o - &t).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0, "{name} values");
    }
    assert_eq!(float_count, ours.len());
    assert_eq!(ours.len() + ours.skipped.len(), TINY_KEYS, "mbv3s-tiny's state dict has {TINY_KEYS} keys");
}

#[test]
fn legacy_file_has_every_key_with_the_values_pytorch_saved() {
    let d = StateDict::load(&torch_file(LEGACY)).unwrap();
    assert_eq!(d.format, WeightsFormat::TorchLegacy);
    assert_eq!(d.len() + d.skipped.len(), TINY_KEYS);
    assert!(d.skipped.iter().all(|k| k.ends_with("num_batches_tracked")));
    assert_eq!(d.skipped.len(), TINY_BATCH_NORMS, "every batch norm's int64 counter tolerated");
    assert_eq!(d.get("backbone.3.block.2.0.weight").unwrap().dims(), [24, 88, 1, 1]);
    assert_eq!(d.get("classifier.low_classifier.bias").unwrap().dims(), [21]);
    // PyTorch wrote the hashed formula's values: each tensor read back bit for bit, in both formats.
    let z = StateDict::load(&torch_file(ZIP)).unwrap();
    assert_eq!(z.format, WeightsFormat::TorchZip);
    assert_eq!(d.keys().collect::<Vec<_>>(), z.keys().collect::<Vec<_>>());
    for k in d.keys() {
        let expected = hashed_values(k, d.get(k).unwrap().dims());
        for dict in [&d, &z] {
            let v = dict.get(k).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(v == expected, "{k} in {}: values differ from what PyTorch saved", dict.path.display());
        }
    }
}

#[test]
fn both_torch_formats_compute_what_pytorch_computed() {
    let reference = candle_core::safetensors::load(torch_file("reference.safetensors"), &Device::Cpu).unwrap();
    for name in [LEGACY, ZIP] {
        let loaded = load_for_inference(ModelKind::Mbv3sTiny, &torch_file(name), &Device::Cpu).unwrap();
        let out = loaded.model.forward(&reference["input"], Mode::Eval).unwrap().logits;
        let r = &reference["out"];
        assert_eq!(out.dims(), r.dims());
        let diff =
            (&out - r).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let scale = r.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(scale > 0.0 && diff <= 1e-4 * scale, "{name}: max |ours − PyTorch| = {diff:e} > 1e-4 · {scale}");
    }
}

#[test]
fn truncated_files_are_reported_as_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let legacy = torch_file(LEGACY);
    let size = std::fs::metadata(&legacy).unwrap().len() as usize;
    // Cut inside the pickled state dict (which ends at byte 28,664), and inside the raw storage data.
    for (len, name) in [(5_000, "cut_pickle.pth"), (20_000, "cut_pickle2.pth"), (size - 100_000, "cut_data.pth")] {
        let p = tmp.path().join(name);
        write_prefix(&legacy, len, &p);
        assert!(matches!(load_err(&p), WeightsError::Truncated { .. }), "{name}");
    }
    let zip = torch_file(ZIP);
    let p = tmp.path().join("cut.zip.pth");
    write_prefix(&zip, std::fs::metadata(&zip).unwrap().len() as usize / 2, &p);
    assert!(matches!(load_err(&p), WeightsError::Truncated { .. }));
    // A safetensors file cut short.
    let mut t = BTreeMap::new();
    t.insert("w".to_string(), Tensor::ones((64, 64), candle_core::DType::F32, &Device::Cpu).unwrap());
    let full = tmp.path().join("full.safetensors");
    save_safetensors(&t, &full).unwrap();
    let p = tmp.path().join("cut.safetensors");
    write_prefix(&full, 1000, &p);
    assert!(matches!(load_err(&p), WeightsError::Truncated { .. } | WeightsError::Malformed { .. }));
}

/// What the fuzzer found in the pickle readers, replayed on real `torch.save` output: each damaged
/// file is an error naming the file — no panic, and no allocation sized by a damaged field.
#[test]
fn fuzzer_findings_on_a_real_legacy_file_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let original = std::fs::read(torch_file(LEGACY)).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // A pickle string (BINUNICODE) whose u32 length asks for 4 GB: the first key's name.
    let key = b"backbone.0.0.weight";
    let mut head = vec![b'X'];
    head.extend((key.len() as u32).to_le_bytes());
    head.extend(key);
    let at = original.windows(head.len()).position(|w| w == head.as_slice()).expect("the first key in the pickle");
    let mut bytes = original.clone();
    bytes[at + 1..at + 5].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let e = load_err(&write("long_string.pth", &bytes));
    assert!(matches!(e, WeightsError::Truncated { .. } | WeightsError::Malformed { .. }), "{e}");
    // The protocol version as a LONG1 wider than 8 bytes (it fits no 64-bit integer).
    let protocol = b"\x80\x02M\xe9\x03.";
    assert_eq!(&original[15..21], protocol, "the magic number's pickle, then the protocol's");
    let mut bytes = original[..15].to_vec();
    bytes.extend(b"\x80\x02\x8a\x09");
    bytes.extend([1u8; 9]);
    bytes.push(b'.');
    bytes.extend(&original[21..]);
    let e = load_err(&write("long1.pth", &bytes));
    assert!(e.to_string().contains("64-bit"), "{e}");
    // A storage's element count (the 8 bytes before its data) far beyond the file.
    let dict = StateDict::load(&torch_file(LEGACY)).unwrap();
    let t = dict.get("backbone.0.0.weight").unwrap();
    let mut pattern = (t.elem_count() as i64).to_le_bytes().to_vec();
    pattern.extend(values_of(&dict, "backbone.0.0.weight")[0].to_le_bytes());
    let at = original.windows(pattern.len()).position(|w| w == pattern.as_slice()).expect("the storage's count");
    let mut bytes = original.clone();
    bytes[at..at + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
    let e = load_err(&write("huge_count.pth", &bytes));
    assert!(matches!(e, WeightsError::Malformed { .. } | WeightsError::Truncated { .. }), "{e}");
}

#[test]
fn non_weights_files_are_rejected_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("photo.pth", &[0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6], "JPEG"),
        ("page.pth", b"<!DOCTYPE html><html>Not found</html>", "HTML"),
        ("empty.pth", b"", "empty"),
        ("random.pth", b"\x01\x02\x03\x04 definitely not weights", "unrecognised"),
    ];
    for (name, bytes, reason) in cases {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = load_err(&p);
        assert!(matches!(e, WeightsError::NotWeights { .. }) && e.to_string().contains(reason), "{name}: {e}");
    }
    let e = load_err(&tmp.path().join("absent.pth"));
    assert!(matches!(e, WeightsError::Io { .. }));
}

#[test]
fn wrong_model_missing_keys_shapes_and_extra_keys_are_errors() {
    let dev = Device::Cpu;
    // A backbone-only file for a segmentation model: the classifier and the whole head are
    // missing, and all of them are counted (not only the first).
    let mbv3s = fixture(MBV3S_FILE);
    let e = load_for_inference(ModelKind::Mbv3sAspp, &mbv3s, &dev).err().unwrap();
    let msg = format!("{e:#}");
    assert!(msg.contains(&file_name(&mbv3s)) && msg.contains("lacks 263 weight(s)"), "{msg}");
    // LR-ASPP weights loaded as the teacher.
    let e = load_for_inference(ModelKind::FcnResnet50, &fixture(LRASPP_FILE), &dev).err().unwrap();
    assert!(e.downcast_ref::<WeightsError>().is_some_and(|w| matches!(w, WeightsError::MissingKeys { .. })), "{e:#}");

    let tmp = tempfile::tempdir().unwrap();
    let base = StateDict::load(&fixture(LRASPP_FILE)).unwrap();
    let mut tensors: BTreeMap<String, Tensor> =
        base.keys().map(|k| (k.to_string(), base.get(k).unwrap().clone())).collect();
    // A wrong shape (19-class high classifier with a 21-class low one).
    let mut bad = tensors.clone();
    bad.insert(
        "classifier.high_classifier.weight".into(),
        Tensor::zeros((19, 128, 1, 1), candle_core::DType::F32, &dev).unwrap(),
    );
    let p = tmp.path().join("shape.safetensors");
    save_safetensors(&bad, &p).unwrap();
    let e = load_for_inference(ModelKind::LrasppMbv3l, &p, &dev).err().unwrap();
    let w = e.downcast_ref::<WeightsError>().unwrap_or_else(|| panic!("{e:#}"));
    assert!(matches!(w, WeightsError::ShapeMismatch { key, .. } if key == "classifier.high_classifier.weight"), "{w}");
    // An extra key.
    tensors.insert("classifier.extra.weight".into(), Tensor::zeros(3, candle_core::DType::F32, &dev).unwrap());
    let p = tmp.path().join("extra.safetensors");
    save_safetensors(&tensors, &p).unwrap();
    let e = load_for_inference(ModelKind::LrasppMbv3l, &p, &dev).err().unwrap();
    assert!(format!("{e:#}").contains("classifier.extra.weight"), "{e:#}");
    // Our own safetensors round trip loads cleanly.
    tensors.remove("classifier.extra.weight");
    let p = tmp.path().join("ok.safetensors");
    save_safetensors(&tensors, &p).unwrap();
    assert_eq!(load_for_inference(ModelKind::LrasppMbv3l, &p, &dev).unwrap().num_params, 3_221_538);
}

/// The lraspp fixture's tensors, to edit and save as safetensors.
fn lraspp_tensors() -> BTreeMap<String, Tensor> {
    let base = StateDict::load(&fixture(LRASPP_FILE)).unwrap();
    base.keys().map(|k| (k.to_string(), base.get(k).unwrap().clone())).collect()
}

#[test]
fn every_missing_weight_is_counted_and_the_first_five_named() {
    let dev = Device::Cpu;
    let mut tensors = lraspp_tensors();
    let removed = [
        "backbone.0.0.weight",
        "backbone.1.block.0.0.weight",
        "backbone.16.1.running_var",
        "backbone.2.block.2.1.bias",
        "backbone.4.block.2.fc1.weight",
        "classifier.cbr.1.weight",
        "classifier.scale.1.weight",
    ];
    for key in removed {
        assert!(tensors.remove(key).is_some(), "{key} is in the fixture");
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("incomplete.safetensors");
    save_safetensors(&tensors, &p).unwrap();
    let e = load_for_inference(ModelKind::LrasppMbv3l, &p, &dev).err().unwrap();
    let w = e.downcast_ref::<WeightsError>().unwrap_or_else(|| panic!("{e:#}"));
    let WeightsError::MissingKeys { count, all, .. } = w else { panic!("{w}") };
    assert_eq!(*count, 7, "{w}");
    assert_eq!(all, &removed);
    let msg = w.to_string();
    let named = removed[..5].iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    assert!(msg.contains("incomplete.safetensors lacks 7 weight(s)"), "{msg}");
    assert!(msg.contains(&format!("{named} and 2 more")), "{msg}");

    // Another model's file: the whole teacher is built (missing weights are NaN placeholders) so
    // that every one of its missing weights is named, not just the first.
    let other = Arc::new(StateDict::load(&fixture(LRASPP_FILE)).unwrap());
    let (vb, used) = other.var_builder(&dev);
    assert!(Model::new(ModelKind::FcnResnet50, vb, 21, true).is_ok());
    let w = used.check_all_used(&[]).unwrap_err();
    let WeightsError::MissingKeys { count, all, .. } = &w else { panic!("{w}") };
    // All of them: torchvision's 334 keys less the 55 `num_batches_tracked`.
    assert_eq!((*count, all.len()), (279, 279), "{w}");
    assert!(all.iter().any(|k| k == "backbone.layer4.2.conv3.weight"), "{w}");
}

#[test]
fn an_integer_tensor_where_a_float_weight_belongs_is_a_wrong_dtype() {
    let dev = Device::Cpu;
    let mut tensors = lraspp_tensors();
    let key = "classifier.high_classifier.bias";
    let ints = tensors[key].to_dtype(candle_core::DType::I64).unwrap();
    tensors.insert(key.into(), ints);
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("int.safetensors");
    save_safetensors(&tensors, &p).unwrap();
    assert_eq!(StateDict::load(&p).unwrap().skipped_dtype(key), Some("i64"));
    let e = load_for_inference(ModelKind::LrasppMbv3l, &p, &dev).err().unwrap();
    let w = e.downcast_ref::<WeightsError>().unwrap_or_else(|| panic!("{e:#}"));
    assert!(
        matches!(w, WeightsError::WrongDtype { key: k, found, expected, .. } if k == key && found == "i64" && expected == "f32"),
        "{w}"
    );
    assert!(w.to_string().contains("int.safetensors") && !w.to_string().contains("lacks"), "{w}");
    // The same file as a student checkpoint (loaded into trainable variables).
    let student = build_trainable(ModelKind::LrasppMbv3l, 21, 0, &dev).unwrap();
    let e = load_student_weights(&student.varmap, &p).unwrap_err();
    assert!(e.downcast_ref::<WeightsError>().is_some_and(|w| matches!(w, WeightsError::WrongDtype { .. })), "{e:#}");
}

/// Where `values` (as little-endian f32) sit in `bytes`: the last match, as a random fixture may
/// repeat a short tensor's values inside an earlier, longer one (the assertions check the key).
fn find_values(bytes: &[u8], values: &[f32]) -> usize {
    let pattern: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let at = bytes.windows(pattern.len()).rposition(|w| w == pattern.as_slice());
    at.unwrap_or_else(|| panic!("{} values not found in the file", values.len()))
}

fn values_of(dict: &StateDict, key: &str) -> Vec<f32> {
    dict.get(key).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// The zip entries' CRC-32 (reflected, polynomial 0xEDB88320), to keep a patched archive valid.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn replace_all(bytes: &mut [u8], old: &[u8], new: &[u8]) -> usize {
    let mut count = 0;
    for i in 0..=bytes.len() - old.len() {
        if &bytes[i..i + old.len()] == old {
            bytes[i..i + old.len()].copy_from_slice(new);
            count += 1;
        }
    }
    count
}

fn assert_non_finite(path: &Path, key: &str, index: usize) {
    let e = load_err(path);
    assert!(
        matches!(&e, WeightsError::NonFinite { key: k, first_index, .. } if k == key && *first_index == index),
        "{e}"
    );
}

#[test]
fn nan_and_infinite_weights_are_rejected_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    // Legacy torch file: raw storage bytes, patched in place.
    let legacy = torch_file(LEGACY);
    let key = "classifier.low_classifier.bias";
    let mut bytes = std::fs::read(&legacy).unwrap();
    let at = find_values(&bytes, &values_of(&StateDict::load(&legacy).unwrap(), key));
    bytes[at + 4 * 3..at + 4 * 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let p = tmp.path().join("nan_legacy.pth");
    std::fs::write(&p, &bytes).unwrap();
    assert_non_finite(&p, key, 3);

    // Zip torch file: the storage entry is patched and its CRC updated.
    let zip = torch_file(ZIP);
    let key = "classifier.high_classifier.weight";
    let mut bytes = std::fs::read(&zip).unwrap();
    let values = values_of(&StateDict::load(&zip).unwrap(), key);
    let at = find_values(&bytes, &values);
    let len = 4 * values.len();
    let old_crc = crc32(&bytes[at..at + len]);
    bytes[at..at + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    let new_crc = crc32(&bytes[at..at + len]);
    // Once in the entry's local header, once in the central directory.
    assert_eq!(replace_all(&mut bytes, &old_crc.to_le_bytes(), &new_crc.to_le_bytes()), 2);
    let p = tmp.path().join("inf_zip.pth");
    std::fs::write(&p, &bytes).unwrap();
    assert_non_finite(&p, key, 0);

    // safetensors: two bad tensors, both named.
    let mut tensors = lraspp_tensors();
    let nan_at_5 = |t: &Tensor, v: f32| {
        let mut values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        values[5] = v;
        Tensor::from_vec(values, t.shape(), &Device::Cpu).unwrap()
    };
    for (key, value) in [("classifier.cbr.0.weight", f32::NAN), ("backbone.0.0.weight", f32::NEG_INFINITY)] {
        let bad = nan_at_5(&tensors[key], value);
        tensors.insert(key.into(), bad);
    }
    let p = tmp.path().join("diverged.safetensors");
    save_safetensors(&tensors, &p).unwrap();
    assert_non_finite(&p, "backbone.0.0.weight", 5);
    let msg = load_err(&p).to_string();
    assert!(msg.contains("1 other tensor(s) too: `classifier.cbr.0.weight`"), "{msg}");
}

#[test]
fn imagenet_backbone_loads_into_students() {
    let dev = Device::Cpu;
    let file = fixture(MBV3S_FILE);
    let reference = StateDict::load(&file).unwrap();
    for kind in [ModelKind::Mbv3sAspp, ModelKind::Mbv3sTiny] {
        let t = build_trainable(kind, 21, 0, &dev).unwrap();
        let loaded = load_backbone(&t.varmap, &file).unwrap();
        assert!(loaded > 50, "{kind}: {loaded} tensors");
        let vars = t.varmap.data().lock().unwrap();
        let w = vars["backbone.1.block.0.0.weight"].as_tensor();
        let r = reference.get("features.1.block.0.0.weight").unwrap();
        let d = (w - r).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0, "{kind}: backbone weights copied");
    }
    // The large backbone does not fit the small students.
    let e = load_backbone(&build_trainable(ModelKind::Mbv3sAspp, 21, 0, &dev).unwrap().varmap, &fixture(LRASPP_FILE));
    assert!(e.is_err());
}

#[test]
fn students_report_parameter_counts_and_tiny_is_tiny() {
    let dev = Device::Cpu;
    let mut counts = Vec::new();
    for kind in ModelKind::STUDENTS {
        let t = build_trainable(kind, 21, 0, &dev).unwrap();
        counts.push((kind, t.num_params));
    }
    eprintln!("{counts:?}");
    let get = |k| counts.iter().find(|(kind, _)| *kind == k).unwrap().1;
    assert!(get(ModelKind::Mbv3sTiny) <= 500_000, "mbv3s-tiny has {} parameters", get(ModelKind::Mbv3sTiny));
    assert_eq!(get(ModelKind::LrasppMbv3l), 3_221_538);
    assert!(get(ModelKind::Mbv3sAspp) > get(ModelKind::Mbv3sTiny));
}
