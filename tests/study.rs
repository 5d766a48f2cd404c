//! `segdistill study`: a grid of methods × seeds as ordinary run folders, summarised with error
//! bars; a second call resumes (nothing completed is trained again).

mod common;

use common::*;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// `segdistill study` over `data` with one-epoch students at 48 px, plus `extra`.
fn study_args<'a>(
    data: &'a std::path::Path,
    teacher: &'a std::path::Path,
    out: &'a std::path::Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args =
        vec!["study", "--data", s(data), "--teacher-run", s(teacher), "--model", "mbv3s-tiny", "--out", s(out)];
    args.extend(["--epochs", "1", "--batch", "4", "--size", "48", "--workers", "1"]);
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_study_trains_its_grid_once_and_summarises_it_with_error_bars() {
    let (_d, data) = demo_dataset(12, 4, 48);
    let tmp = tempfile::tempdir().unwrap();
    let teacher = tmp.path().join("teacher");
    let out = tiny_train(&data, &teacher).size(48).run();
    assert!(out.status.success(), "{}", stderr(&out));
    let study = tmp.path().join("study");
    let args =
        study_args(&data, &teacher, &study, &["--seeds", "2", "--method", "response", "--method", "ce=1,cwd-logits=3"]);
    let out = segdistill(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    for run in [
        "none-seed0",
        "none-seed1",
        "response-seed0",
        "response-seed1",
        "ce1-cwd-logits3-seed0",
        "ce1-cwd-logits3-seed1",
    ] {
        assert!(study.join(run).join("student.safetensors").is_file(), "{run} was trained");
    }
    let table = std::fs::read_to_string(study.join("study.md")).unwrap();
    for row in ["| none | 2 |", "| response | 2 |", "| ce1-cwd-logits3 | 2 |", "Pooled seed-to-seed sd"] {
        assert!(table.contains(row), "{row} in:\n{table}");
    }
    assert!(table.contains(" ± ") && table.contains("](study-miou.png)"), "{table}");
    let plot = image::open(study.join("study-miou.png")).expect("study-miou.png decodes");
    assert!(plot.width() > 100 && plot.height() > 100);
    // Again: every run is completed, nothing is trained twice; --report only summarises.
    let again = segdistill(&args);
    assert!(again.status.success() && stderr(&again).matches("completed already").count() == 6, "{}", stderr(&again));
    let report = segdistill(&["study", "--report", "--out", s(&study)]);
    assert!(report.status.success() && stdout(&report).contains("| response | 2 |"), "{}", stderr(&report));
    std::fs::remove_file(study.join("study-miou.png")).unwrap();
    let report = segdistill(&["study", "--report", "--out", s(&study)]);
    assert!(report.status.success() && image::open(study.join("study-miou.png")).is_ok(), "{}", stderr(&report));
}

/// `--vary unlabeled-ratio=0,1`: each method on the labelled images alone and with the pool of
/// images without masks, one cell per value, the baseline once; the runs' settings say which.
#[test]
fn a_study_sweeps_one_setting_with_a_cell_per_value_and_one_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        segdistill::data::demo::DemoConfig { train: 8, val: 2, unlabeled: 6, size: 48, seed: 4, ..Default::default() };
    let data = segdistill::data::demo::generate(dir.path(), &cfg, &|| {}).unwrap();
    let teacher = dir.path().join("teacher");
    let out = tiny_train(&data, &teacher).size(48).run();
    assert!(out.status.success(), "{}", stderr(&out));
    let study = dir.path().join("study");
    let base = study_args(&data, &teacher, &study, &["--seeds", "1", "--method", "ce,kd"]);
    // Refused before anything trains: a ratio sweep without images to mix in, a τ sweep of a
    // method without a temperature.
    let out = segdistill(&[&base[..], &["--vary", "unlabeled-ratio=0,1"]].concat());
    assert!(!out.status.success() && stderr(&out).contains("needs --unlabeled"), "{}", stderr(&out));
    let out = segdistill(&[&base[..], &["--method", "ce,fitnet", "--vary", "tau=1,2"]].concat());
    assert!(!out.status.success() && stderr(&out).contains("has no term with a temperature"), "{}", stderr(&out));
    assert!(!study.exists(), "nothing was trained");

    let args = [&base[..], &["--unlabeled", "unlabeled", "--vary", "unlabeled-ratio=0,1"]].concat();
    let out = segdistill(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut runs: Vec<String> = std::fs::read_dir(&study)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("student.safetensors").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    runs.sort();
    assert_eq!(runs, ["ce-kd@unlabeled-ratio0-seed0", "ce-kd@unlabeled-ratio1-seed0", "none-seed0"]);
    let config = |run: &str| segdistill::train::run_folder::read_config(&study.join(run)).unwrap();
    assert_eq!(config("ce-kd@unlabeled-ratio0-seed0").unlabeled, None);
    assert_eq!(config("ce-kd@unlabeled-ratio1-seed0").unlabeled.as_deref(), Some("unlabeled"));
    assert_eq!(config("none-seed0").unlabeled, None);
    let table = std::fs::read_to_string(study.join("study.md")).unwrap();
    for row in ["| ce-kd@unlabeled-ratio0 | 1 |", "| ce-kd@unlabeled-ratio1 | 1 |", "| none | 1 |"] {
        assert!(table.contains(row), "{row} in:\n{table}");
    }
}
