//! Every on-disk layout without a download: `demo-data --layout voc|folder|ade20k|camvid|cityscapes`
//! writes the demo scenes in the real layout, which is then detected, checked, trained a few
//! steps, evaluated and browsed at the layout's own class count (ADE20K's 150, CamVid's 11,
//! Cityscapes' 19). Tiny on purpose (six 32-px images per layout).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use common::*;
use segdistill::data::transforms::Resize;
use segdistill::data::{Dataset, DatasetKind, VOID};
use segdistill::diagnostics::browse::{BrowseModel, BrowseMsg, BrowseRequest, start};
use segdistill::model::ModelKind;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: &std::process::Output) -> String {
    let text = format!("{}{}", stdout(out), stderr(out));
    assert!(out.status.success(), "exit {:?}: {text}", out.status.code());
    text
}

/// What one layout must look like once written.
struct Expected {
    layout: &'static str,
    kind: DatasetKind,
    /// The folder under --out the dataset is written to.
    root: &'static str,
    classes: usize,
    /// A class name check-data prints for the demo's people (its most common object class set).
    a_class: &'static str,
}

/// Writes the layout, then detects, checks, trains, evaluates and browses it.
fn round_trip(e: Expected) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let text = ok(&segdistill(&[
        "demo-data",
        "--layout",
        e.layout,
        "--out",
        s(&data),
        "--train",
        "4",
        "--val",
        "2",
        "--size",
        "32",
    ]));
    let root = if e.root.is_empty() { data.clone() } else { data.join(e.root) };
    assert!(text.contains(s(&root)), "{text}");

    // Detected from the folder a user would pass (the one demo-data was told to write into).
    assert_eq!(DatasetKind::detect(&data), e.kind, "{}", e.layout);
    let train = Dataset::open(&data, None, "train").unwrap();
    assert_eq!((train.kind, train.len(), train.num_classes()), (e.kind, 4, e.classes));
    assert_eq!(train.root, root);
    let val = Dataset::open(&data, None, "val").unwrap();
    assert_eq!(val.len(), 2);
    for i in 0..val.len() {
        let m = val.load(i).unwrap().mask;
        assert!(m.data.iter().all(|&v| (v as usize) < e.classes || v == VOID), "{}: mask values", e.layout);
        assert!(m.data.contains(&VOID), "{}: the demo's void borders read as void", e.layout);
    }

    let text = ok(&segdistill(&["check-data", "--data", s(&data)]));
    assert!(text.contains(&format!("{} dataset", e.kind.name())), "{text}");
    assert!(text.contains("OK: all 4 samples"), "{text}");
    assert!(text.contains(e.a_class), "{}: class names in the report: {text}", e.layout);

    let run = tmp.path().join("run");
    ok(&segdistill(&[
        "train",
        "--data",
        s(&data),
        "--model",
        "mbv3s-tiny",
        "--epochs",
        "1",
        "--batch",
        "2",
        "--size",
        "32",
        "--workers",
        "1",
        "--out",
        s(&run),
    ]));
    let out = segdistill(&["test", "--run", s(&run), "--json"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(v["pixel_acc"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{v}");
    assert_eq!(v["iou"].as_array().map(|a| a.len()), Some(e.classes), "per-class IoU: {v}");

    let job = start(
        BrowseRequest {
            dataset: Arc::new(val),
            student: Some(BrowseModel {
                kind: ModelKind::Mbv3sTiny,
                weights: run.join("student.safetensors"),
                cache_dir: None,
            }),
            teacher: None,
            resize: Resize::ShorterSide(32),
            device: Device::Cpu,
            thumbnail_height: 16,
        },
        || {},
    );
    let mut items = Vec::new();
    for msg in job.rx.iter() {
        match msg {
            BrowseMsg::Item(i) => items.push(*i),
            BrowseMsg::Error(err) => panic!("{}: browse: {err}", e.layout),
            BrowseMsg::Done => break,
            BrowseMsg::Started { .. } => {}
        }
    }
    assert_eq!(items.len(), 2, "{}: both val images browsed", e.layout);
    for item in &items {
        let view = item.student.as_ref().expect("a student prediction");
        let mask = view.mask.unpack().unwrap();
        assert!(mask.data.iter().all(|&p| (p as usize) < e.classes), "{}: predictions in range", e.layout);
        assert!(view.confusions.iter().all(|&(t, p, _)| (t as usize) < e.classes && (p as usize) < e.classes));
    }
}

#[test]
fn voc() {
    round_trip(Expected {
        layout: "voc",
        kind: DatasetKind::Voc,
        root: "VOCdevkit/VOC2012",
        classes: 21,
        a_class: "person",
    });
}

#[test]
fn plain_folder() {
    round_trip(Expected { layout: "folder", kind: DatasetKind::Folder, root: "", classes: 21, a_class: "person" });
}

#[test]
fn ade20k_with_150_classes() {
    round_trip(Expected {
        layout: "ade20k",
        kind: DatasetKind::Ade20k,
        root: "ADEChallengeData2016",
        classes: 150,
        a_class: "television receiver",
    });
}

#[test]
fn camvid_with_11_classes() {
    round_trip(Expected {
        layout: "camvid",
        kind: DatasetKind::Camvid,
        root: "CamVid",
        classes: 11,
        a_class: "pedestrian",
    });
}

#[test]
fn cityscapes_with_label_ids() {
    round_trip(Expected {
        layout: "cityscapes",
        kind: DatasetKind::Cityscapes,
        root: "cityscapes",
        classes: 19,
        a_class: "motorcycle",
    });
}

/// ADE20K's files are where the real archive puts them, with its value convention: 0 = other,
/// the classes 1–150.
#[test]
fn ade20k_files_use_the_archives_names_and_values() {
    let tmp = tempfile::tempdir().unwrap();
    ok(&segdistill(&[
        "demo-data",
        "--layout",
        "ade20k",
        "--out",
        s(tmp.path()),
        "--train",
        "1",
        "--val",
        "1",
        "--size",
        "32",
    ]));
    let root: PathBuf = tmp.path().join("ADEChallengeData2016");
    let annotation = root.join("annotations/validation/ADE_val_00000001.png");
    assert!(root.join("images/training/ADE_train_00000001.jpg").is_file());
    let raw = image::open(&annotation).unwrap().into_luma8();
    assert!(raw.pixels().any(|p| p.0[0] == 0), "void borders are written as 0 (other)");
    assert!(raw.pixels().all(|p| p.0[0] <= 150));
    // A second run without --force is refused; with it, the dataset is replaced.
    let again = segdistill(&["demo-data", "--layout", "ade20k", "--out", s(tmp.path()), "--size", "32"]);
    assert!(!again.status.success() && stderr(&again).contains("--force"), "{}", stderr(&again));
}

/// `train --val-fraction` draws and writes down the split of a folder without lists; a folder
/// with lists keeps them and says so; a layout with its own splits refuses the flag.
#[test]
fn train_val_fraction_splits_a_folder_without_lists_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("mine");
    ok(&segdistill(&[
        "demo-data",
        "--layout",
        "folder",
        "--out",
        s(&data),
        "--train",
        "4",
        "--val",
        "2",
        "--size",
        "32",
    ]));
    std::fs::remove_file(data.join("train.txt")).unwrap();
    std::fs::remove_file(data.join("val.txt")).unwrap();
    let train = |run: &str, fraction: &str| {
        segdistill(&[
            "train",
            "--data",
            s(&data),
            "--model",
            "mbv3s-tiny",
            "--epochs",
            "1",
            "--batch",
            "2",
            "--size",
            "32",
            "--workers",
            "1",
            "--val-fraction",
            fraction,
            "--out",
            s(&tmp.path().join(run)),
        ])
    };
    let text = ok(&train("a", "0.5"));
    assert!(text.contains("with 0.5 to val"), "{text}");
    let lines = |f: &str| std::fs::read_to_string(data.join(f)).unwrap().lines().count();
    assert_eq!((lines("train.txt"), lines("val.txt")), (3, 3));
    let text = ok(&train("b", "0.2"));
    assert!(text.contains("--val-fraction is not used"), "{text}");
    assert_eq!(lines("val.txt"), 3, "the written split stays");

    let voc = tmp.path().join("voc");
    ok(&segdistill(&["demo-data", "--out", s(&voc), "--train", "2", "--val", "1", "--size", "32"]));
    let out = segdistill(&["train", "--data", s(&voc), "--val-fraction", "0.3", "--out", s(&tmp.path().join("c"))]);
    assert!(!out.status.success() && stderr(&out).contains("its own splits"), "{}", stderr(&out));
}

/// Weights trained for VOC's 21 classes start a CamVid (11-class) run: everything but the final
/// classifier layers is loaded, those start afresh, and the log says so once.
#[test]
fn init_weights_with_another_class_count_get_a_new_classifier() {
    use segdistill::model::{build_trainable, load_student_weights};
    let tmp = tempfile::tempdir().unwrap();
    let voc_weights = tmp.path().join("voc21.safetensors");
    let dev = Device::Cpu;
    build_trainable(ModelKind::Mbv3sTiny, 21, 5, &dev).unwrap().varmap.save(&voc_weights).unwrap();

    let fresh = build_trainable(ModelKind::Mbv3sTiny, 11, 0, &dev).unwrap();
    let target = build_trainable(ModelKind::Mbv3sTiny, 11, 0, &dev).unwrap();
    let loaded = load_student_weights(&target.varmap, &voc_weights).unwrap();
    let c = loaded.new_classifier.expect("a new classifier");
    assert_eq!((c.file_classes, c.model_classes), (21, 11));
    assert!(!c.keys.is_empty() && c.keys.iter().all(|k| k.contains("classifier")), "{:?}", c.keys);
    let file = candle_core::safetensors::load(&voc_weights, &dev).unwrap();
    let vars = |v: &candle_nn::VarMap| segdistill::model::weights::varmap_tensors(v);
    let (now, before) = (vars(&target.varmap), vars(&fresh.varmap));
    let same = |a: &candle_core::Tensor, b: &candle_core::Tensor| {
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap() == b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    for (key, t) in &now {
        if c.keys.contains(key) {
            assert!(same(t, &before[key]), "{key} keeps its fresh initialisation");
        } else {
            assert!(same(t, &file[key]), "{key} comes from the file");
        }
    }
    assert_eq!(loaded.loaded + c.keys.len(), now.len());

    let data = tmp.path().join("data");
    ok(&segdistill(&[
        "demo-data",
        "--layout",
        "camvid",
        "--out",
        s(&data),
        "--train",
        "2",
        "--val",
        "1",
        "--size",
        "32",
    ]));
    let text = ok(&segdistill(&[
        "train",
        "--data",
        s(&data),
        "--model",
        "mbv3s-tiny",
        "--epochs",
        "1",
        "--batch",
        "2",
        "--size",
        "32",
        "--workers",
        "1",
        "--init-weights",
        s(&voc_weights),
        "--out",
        s(&tmp.path().join("run")),
    ]));
    assert_eq!(text.matches("predicts 21 classes and this dataset has 11").count(), 1, "{text}");
}
