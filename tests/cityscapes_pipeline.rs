//! Cityscapes end to end at toy scale, on the real frame in `tests/fixtures/cityscapes`: a
//! DeepLabV3-MobileNetV3-Large teacher trained from ImageNet backbone weights (19 train ids), a
//! student distilled from that run, and the comparison report with the teacher row and the
//! low-complexity FoM column. The ImageNet file is torchvision's `mobilenet_v3_large` layout filled
//! by the hashed formula (`tests/fixtures/zoo`); real weights come from `download weights --only
//! mobilenet-v3-large`.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A Cityscapes folder whose train split holds the real frame twice (two names) and whose val
/// split holds it once.
fn toy_cityscapes(root: &Path) {
    let real = cityscapes();
    let frame = "frankfurt_000000_000294";
    for (split, names) in
        [("train", &["frankfurt_000000_000001", "frankfurt_000000_000002"][..]), ("val", &[frame][..])]
    {
        for name in names {
            for (dir, suffix) in [("leftImg8bit", "leftImg8bit"), ("gtFine", "gtFine_labelIds")] {
                let from = real.join(format!("{dir}/val/frankfurt/{frame}_{suffix}.png"));
                let to = root.join(format!("{dir}/{split}/frankfurt/{name}_{suffix}.png"));
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
            }
        }
    }
}

fn imagenet_mobilenet_v3_large(dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zoo/zoo.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let listing: Vec<(String, Vec<usize>)> = json["listings"]["mobilenet_v3_large"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap().into(),
                e[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect(),
            )
        })
        .collect();
    let dict = segdistill::model::weights::hashed::hashed_state_dict(&listing, &candle_core::Device::Cpu).unwrap();
    let path = dir.join("mobilenet_v3_large-imagenet.safetensors");
    segdistill::model::weights::save_safetensors(&dict, &path).unwrap();
    path
}

fn train(data: &Path, out: &Path, model: &str, extra: &[&str]) -> std::process::Output {
    tiny_train(data, out).model(model).batch(2).args(["--dataset", "cityscapes"]).args(extra).run()
}

#[test]
fn cityscapes_teacher_from_imagenet_weights_then_a_distilled_student_then_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cityscapes");
    toy_cityscapes(&data);

    let teacher = tmp.path().join("runs/teacher");
    let backbone = imagenet_mobilenet_v3_large(tmp.path());
    let out = train(&data, &teacher, "deeplabv3-mbv3l", &["--backbone-weights", s(&backbone)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("ImageNet backbone tensors"), "{}", stderr(&out));
    let weights = segdistill::model::load_for_inference(
        segdistill::model::ModelKind::DeeplabV3Mbv3l,
        &teacher.join("student.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(weights.model.num_classes(), 19, "Cityscapes' 19 train ids");

    let student = tmp.path().join("runs/student");
    let out = train(&data, &student, "mbv3s-tiny", &["--distill", "response", "--teacher-run", s(&teacher)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("from deeplabv3-mbv3l"), "{}", stderr(&out));

    let report = tmp.path().join("report");
    let out = segdistill(&["report", s(&teacher), s(&student), "--out", s(&report), "--overlays", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("| FoM |"), "{md}");
    let teacher_row =
        md.lines().find(|l| l.starts_with("| teacher |")).unwrap_or_else(|| panic!("no teacher row: {md}"));
    assert!(teacher_row.contains("deeplabv3-mbv3l"), "{teacher_row}");
    assert!(md.lines().any(|l| l.contains("mbv3s-tiny") && l.contains("response")), "{md}");
    // The teacher's evaluation went to the cache the app reads (`<runs>/teacher-eval/`).
    let cached = std::fs::read_dir(tmp.path().join("runs/teacher-eval")).unwrap().count();
    assert_eq!(cached, 1);
}
