//! Weights files: both torch formats and safetensors load with names and shapes checked; every
//! kind of malformed file is an error naming the file.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use common::*;
use segdistill::model::weights::{StateDict, WeightsError, WeightsFormat, save_safetensors};
use segdistill::model::{Model, ModelKind, build_trainable, load_backbone, load_for_inference, load_student_weights};

fn fixture(name: &str) -> PathBuf {
    shared_dir().join("fixtures/torchvision").join(name)
}

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
    let path = fixture("mobilenet_v3_small_random.pth");
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
    assert_eq!(ours.len() + ours.skipped.len(), 244, "torchvision's mobilenet_v3_small has 244 keys");
}

#[test]
fn legacy_file_has_every_key_of_fcn_with_aux() {
    let d = StateDict::load(&fixture("fcn_resnet50_random_legacy.pth")).unwrap();
    assert_eq!(d.format, WeightsFormat::TorchLegacy);
    assert_eq!(d.len() + d.skipped.len(), 334);
    assert!(d.skipped.iter().all(|k| k.ends_with("num_batches_tracked")));
    assert_eq!(d.get("backbone.layer4.2.conv3.weight").unwrap().dims(), [2048, 512, 1, 1]);
    assert_eq!(d.get("aux_classifier.4.bias").unwrap().dims(), [21]);
}

#[test]
fn truncated_files_are_reported_as_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let legacy = fixture("fcn_resnet50_random_legacy.pth");
    // Cut inside the pickled state dict, and inside the raw storage data.
    for (len, name) in [(20_000, "cut_pickle.pth"), (100_000_000, "cut_data.pth")] {
        let p = tmp.path().join(name);
        write_prefix(&legacy, len, &p);
        assert!(matches!(load_err(&p), WeightsError::Truncated { .. }), "{name}");
    }
    let zip = fixture("mobilenet_v3_small_random.pth");
    let p = tmp.path().join("cut.zip.pth");
    write_prefix(&zip, 5_000_000, &p);
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
    let e = load_for_inference(ModelKind::Mbv3sAspp, &fixture("mobilenet_v3_small_random.pth"), &dev).err().unwrap();
    let msg = format!("{e:#}");
    assert!(msg.contains("mobilenet_v3_small_random.pth") && msg.contains("lacks 263 weight(s)"), "{msg}");
    // LR-ASPP weights loaded as the teacher.
    let e = load_for_inference(ModelKind::FcnResnet50, &fixture("lraspp_mobilenet_v3_large_random.pth"), &dev)
        .err()
        .unwrap();
    assert!(e.downcast_ref::<WeightsError>().is_some_and(|w| matches!(w, WeightsError::MissingKeys { .. })), "{e:#}");

    let tmp = tempfile::tempdir().unwrap();
    let base = StateDict::load(&fixture("lraspp_mobilenet_v3_large_random.pth")).unwrap();
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
    let base = StateDict::load(&fixture("lraspp_mobilenet_v3_large_random.pth")).unwrap();
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
    let other = Arc::new(StateDict::load(&fixture("lraspp_mobilenet_v3_large_random.pth")).unwrap());
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
    let legacy = fixture("fcn_resnet50_random_legacy.pth");
    let key = "aux_classifier.4.bias";
    let mut bytes = std::fs::read(&legacy).unwrap();
    let at = find_values(&bytes, &values_of(&StateDict::load(&legacy).unwrap(), key));
    bytes[at + 4 * 3..at + 4 * 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let p = tmp.path().join("nan_legacy.pth");
    std::fs::write(&p, &bytes).unwrap();
    assert_non_finite(&p, key, 3);

    // Zip torch file: the storage entry is patched and its CRC updated.
    let zip = fixture("mobilenet_v3_small_random.pth");
    let key = "classifier.3.bias";
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
    let file = fixture("mobilenet_v3_small_random.pth");
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
    let e = load_backbone(
        &build_trainable(ModelKind::Mbv3sAspp, 21, 0, &dev).unwrap().varmap,
        &fixture("lraspp_mobilenet_v3_large_random.pth"),
    );
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
