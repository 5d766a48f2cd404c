//! Distillation on images without masks (`train --unlabeled`): the demo's unlabelled pool, a
//! VOC-layout `unlabeled` split, a plain folder and a folder of bare images; the teacher cache
//! covers them; a stopped run resumes to the same weights; bad requests are refused clearly.

mod common;

use std::path::{Path, PathBuf};

use common::{segdistill, stderr};
use segdistill::data::demo::{DemoConfig, generate, generate_folder};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "failed: {}", stderr(o));
}

/// A demo dataset with an unlabelled pool (VOC layout) and a teacher trained on it for one epoch.
fn demo_with_teacher(dir: &Path) -> (PathBuf, PathBuf) {
    let cfg = DemoConfig { train: 8, val: 2, unlabeled: 6, size: 48, seed: 4, ..Default::default() };
    let data = generate(&dir.join("demo"), &cfg, &|| {}).unwrap();
    let teacher = dir.join("teacher");
    ok(&common::tiny_train(&data, &teacher).size(48).run());
    (data, teacher)
}

fn student_args<'a>(data: &'a str, teacher: &'a str, run: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        data,
        "--model",
        "mbv3s-tiny",
        "--teacher-run",
        teacher,
        "--loss",
        "ce=1,kd=0.5",
        "--unlabeled",
        "unlabeled",
        "--unlabeled-ratio",
        "0.5",
        "--epochs",
        epochs,
        "--batch",
        "4",
        "--size",
        "48",
        "--out",
        run,
    ]
}

#[test]
fn the_unlabelled_split_trains_through_the_teacher_cache_and_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, teacher) = demo_with_teacher(tmp.path());
    let listing = segdistill(&["splits", "--data", s(&data)]);
    ok(&listing);
    assert!(
        common::stdout(&listing).contains("unlabeled") && common::stdout(&listing).contains("6 images without masks")
    );

    let whole = tmp.path().join("whole");
    let out = segdistill(&student_args(s(&data), s(&teacher), s(&whole), "2"));
    ok(&out);
    let log = stderr(&out);
    assert!(log.contains("8 train (+ 6 unlabelled) / 2 val images"), "{log}");
    assert!(log.contains("cached for split 'unlabeled'"), "{log}");
    // The cache holds an entry for every unlabelled image (ids demo_000011 … demo_000016).
    let cache_root = tmp.path().join("teacher-cache");
    let entries: Vec<String> =
        walk(&cache_root).iter().filter_map(|p| Some(p.file_name()?.to_str()?.to_string())).collect();
    for i in 11..=16 {
        assert!(
            entries.iter().any(|e| e.starts_with(&format!("demo_{i:06}"))),
            "no cache entry for image {i}: {entries:?}"
        );
    }

    // Stopped after one epoch and resumed: the unlabelled walk depends on the step alone.
    let parts = tmp.path().join("parts");
    let mut first = student_args(s(&data), s(&teacher), s(&parts), "2");
    first.extend(["--stop-after-epoch", "1"]);
    ok(&segdistill(&first));
    ok(&segdistill(&["train", "--resume", "--out", s(&parts)]));
    let last = |run: &Path| std::fs::read(run.join("student.safetensors")).unwrap();
    let (a, b) = (last(&whole), last(&parts));
    assert!(a == b, "a resumed run with unlabelled images differs from the uninterrupted one");
}

#[test]
fn a_folder_of_bare_images_and_a_plain_folders_images_without_masks_are_unlabelled_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let (voc, teacher) = demo_with_teacher(tmp.path());
    // A folder of bare images: the unlabelled JPEGs copied out.
    let bare = tmp.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    for i in 11..=13 {
        let name = format!("demo_{i:06}.jpg");
        std::fs::copy(voc.join("JPEGImages").join(&name), bare.join(&name)).unwrap();
    }
    let run = tmp.path().join("bare-run");
    let mut args = student_args(s(&voc), s(&teacher), s(&run), "1");
    let at = args.iter().position(|a| *a == "unlabeled").unwrap();
    args[at] = s(&bare);
    let out = segdistill(&args);
    ok(&out);
    assert!(stderr(&out).contains("(+ 3 unlabelled)"), "{}", stderr(&out));

    // A plain folder: images/ files with no mask in masks/ form its `unlabeled` split.
    let folder = tmp.path().join("folder");
    let cfg = DemoConfig { train: 8, val: 2, unlabeled: 5, size: 48, seed: 4, ..Default::default() };
    generate_folder(&folder, &cfg, &|| {}).unwrap();
    let run = tmp.path().join("folder-run");
    let out = segdistill(&student_args(s(&folder), s(&teacher), s(&run), "1"));
    ok(&out);
    assert!(stderr(&out).contains("(+ 5 unlabelled)"), "{}", stderr(&out));
}

#[test]
fn unlabelled_images_without_distillation_or_that_do_not_exist_are_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, teacher) = demo_with_teacher(tmp.path());
    let run = tmp.path().join("r");
    let base =
        ["train", "--data", s(&data), "--model", "mbv3s-tiny", "--epochs", "1", "--size", "48", "--out", s(&run)];
    let out = segdistill(&[&base[..], &["--unlabeled", "unlabeled"]].concat());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no distillation term"), "{}", stderr(&out));
    let distil = ["--teacher-run", s(&teacher), "--distill", "response"];
    let out = segdistill(&[&base[..], &distil, &["--unlabeled", "/no/such/folder"]].concat());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/no/such/folder") && stderr(&out).contains("no such folder"), "{}", stderr(&out));
    let out = segdistill(&[&base[..], &distil, &["--unlabeled", "unlabeled", "--unlabeled-ratio", "0"]].concat());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unlabeled ratio 0 is out of range"), "{}", stderr(&out));
    assert!(!run.exists(), "a refused start leaves nothing behind");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
