//! Weights files: both torch formats and safetensors load with names and shapes checked; every
//! kind of malformed file is an error naming the file.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::*;
use segdistill::model::weights::{StateDict, WeightsError, WeightsFormat, save_safetensors};
use segdistill::model::{ModelKind, build_trainable, load_backbone, load_for_inference};

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
    // A backbone-only file for a segmentation model: the classifier key is missing.
    let e = load_for_inference(ModelKind::Mbv3sAspp, &fixture("mobilenet_v3_small_random.pth"), &dev).err().unwrap();
    let msg = format!("{e:#}");
    assert!(msg.contains("mobilenet_v3_small_random.pth") && msg.contains("decoder.classifier.weight"), "{msg}");
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
