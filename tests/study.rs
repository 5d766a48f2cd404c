//! `segdistill study`: a grid of methods × seeds as ordinary run folders, summarised with error
//! bars; a second call resumes (nothing completed is trained again).

mod common;

use common::*;

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_study_trains_its_grid_once_and_summarises_it_with_error_bars() {
    let (_d, data) = demo_dataset(12, 4, 48);
    let tmp = tempfile::tempdir().unwrap();
    let teacher = tmp.path().join("teacher");
    let tiny = ["--epochs", "1", "--batch", "4", "--size", "48", "--workers", "1"];
    let out = tiny_train(&data, &teacher).size(48).run();
    assert!(out.status.success(), "{}", stderr(&out));
    let study = tmp.path().join("study");
    let mut args = vec![
        "study",
        "--data",
        s(&data),
        "--teacher-run",
        s(&teacher),
        "--model",
        "mbv3s-tiny",
        "--seeds",
        "2",
        "--method",
        "response",
        "--method",
        "ce=1,cwd-logits=3",
        "--out",
        s(&study),
    ];
    args.extend(tiny);
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
