//! `predict` and `eval` end to end on torchvision architectures (hashed weights, every key of
//! their state dicts; `tests/fixtures/torchvision`) and real VOC images (`tests/fixtures/voc2012`).

mod common;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use common::*;
use segdistill::data::image::read_rgb;
use segdistill::data::mask::{LabelEncoding, read_mask};
use segdistill::model::{Mode, ModelKind, load_for_inference};
use segdistill::train::predict::image_tensor;

fn fixture(name: &str) -> String {
    torchvision_weights(name).display().to_string()
}

fn real_image() -> PathBuf {
    voc().join("JPEGImages/2011_000003.jpg")
}

fn read_logits(path: &std::path::Path) -> Tensor {
    let t = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    t.get("logits").expect("tensor `logits`").clone()
}

#[test]
fn predict_writes_mask_overlay_and_the_models_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let (mask, ov, logits) = (tmp.path().join("m.png"), tmp.path().join("o.png"), tmp.path().join("l.safetensors"));
    let out = segdistill(&[
        "predict",
        "--model",
        "lraspp-mbv3l",
        "--weights",
        &fixture("lraspp_mobilenet_v3_large_random.pth"),
        "--image",
        real_image().to_str().unwrap(),
        "--resize",
        "none",
        "--out",
        mask.to_str().unwrap(),
        "--overlay",
        ov.to_str().unwrap(),
        "--logits",
        logits.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let l = read_logits(&logits);
    assert_eq!(l.dims(), [1, 21, 338, 500]);
    assert_eq!(l.dtype(), candle_core::DType::F32);
    // The mask is the argmax of the logits.
    let m = read_mask(&mask, LabelEncoding::Plain { num_classes: 21 }).unwrap();
    let argmax: Vec<u8> =
        l.argmax(1).unwrap().flatten_all().unwrap().to_vec1::<u32>().unwrap().iter().map(|&v| v as u8).collect();
    assert_eq!((m.width, m.height), (500, 338));
    assert!(m.data == argmax, "mask = argmax(logits)");
    assert_eq!(image::open(&ov).unwrap().to_rgb8().dimensions(), (500, 338));
    // Same logits as running the model in-process on the same decoded pixels.
    let model = load_for_inference(
        ModelKind::LrasppMbv3l,
        std::path::Path::new(&fixture("lraspp_mobilenet_v3_large_random.pth")),
        &Device::Cpu,
    )
    .unwrap();
    let x = image_tensor(&read_rgb(&real_image()).unwrap(), &Device::Cpu).unwrap();
    let direct = model.model.forward(&x, Mode::Eval).unwrap().logits;
    let d = (direct - &l).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(d, 0.0);
}

#[test]
fn predict_with_resize_and_the_fcn_teacher() {
    let tmp = tempfile::tempdir().unwrap();
    let (mask, logits) = (tmp.path().join("m.png"), tmp.path().join("l.safetensors"));
    let out = segdistill(&[
        "predict",
        "--model",
        "fcn-resnet50",
        "--weights",
        &fixture("fcn_resnet50_random_legacy.pth"),
        "--image",
        real_image().to_str().unwrap(),
        "--resize",
        "64",
        "--out",
        mask.to_str().unwrap(),
        "--logits",
        logits.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_logits(&logits).dims(), [1, 21, 64, 94], "torchvision Resize(64): long side int(64·500/338) = 94");
    let m = read_mask(&mask, LabelEncoding::Plain { num_classes: 21 }).unwrap();
    assert_eq!((m.width, m.height), (500, 338), "mask at the image's size");
}

#[test]
fn predict_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.pth");
    std::fs::write(&bad, b"<html>404</html>").unwrap();
    let mask = tmp.path().join("m.png");
    let out = segdistill(&[
        "predict",
        "--model",
        "mbv3s-tiny",
        "--weights",
        bad.to_str().unwrap(),
        "--image",
        real_image().to_str().unwrap(),
        "--out",
        mask.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.pth") && stderr(&out).contains("HTML"), "{}", stderr(&out));
    let out = segdistill(&[
        "predict",
        "--model",
        "lraspp-mbv3l",
        "--weights",
        &fixture("lraspp_mobilenet_v3_large_random.pth"),
        "--image",
        "/nonexistent/photo.jpg",
        "--out",
        mask.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/photo.jpg"), "{}", stderr(&out));
    assert!(!mask.exists(), "nothing written on error");
}

#[test]
fn eval_scores_the_real_pairs() {
    let out = segdistill(&[
        "eval",
        "--model",
        "lraspp-mbv3l",
        "--weights",
        &fixture("lraspp_mobilenet_v3_large_random.pth"),
        "--data",
        voc().to_str().unwrap(),
        "--split",
        "train",
        "--resize",
        "none",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["images"], 4);
    let miou = v["miou"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&miou));
    assert_eq!(v["iou"].as_array().unwrap().len(), 21);
    assert!(stderr(&out).contains("6 of 10"), "missing samples are reported: {}", stderr(&out));
    // A split with no usable sample is an error, not a score of nothing.
    let out = segdistill(&[
        "eval",
        "--model",
        "lraspp-mbv3l",
        "--weights",
        &fixture("lraspp_mobilenet_v3_large_random.pth"),
        "--data",
        voc().to_str().unwrap(),
        "--split",
        "val",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no usable samples"), "{}", stderr(&out));
}
