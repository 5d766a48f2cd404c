//! Every run writes TensorBoard event files: read back here record by record (both CRCs checked),
//! and — where the `tensorboard` package is installed — with TensorBoard's own reader.

mod common;

use segdistill::train::tensorboard::{read_records, tb_dir};

fn train(root: &std::path::Path, run: &std::path::Path, extra: &[&str]) {
    let out = common::tiny_train(root, run).epochs(3).default_workers().args(extra).run();
    assert!(out.status.success(), "{}", common::stderr(&out));
}

/// What a run logged, over all its event files.
struct Logged {
    /// (tag, step, value)
    scalars: Vec<(String, i64, f32)>,
    /// (tag, step)
    images: Vec<(String, i64)>,
    files: usize,
}

fn logged(run: &std::path::Path) -> Logged {
    let mut files: Vec<_> = std::fs::read_dir(tb_dir(run)).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let (mut scalars, mut images) = (Vec::new(), Vec::new());
    for f in &files {
        for e in read_records(f).unwrap() {
            for v in e.summary.iter().flat_map(|s| &s.value) {
                match (v.simple_value, &v.image) {
                    (Some(x), _) => scalars.push((v.tag.clone(), e.step, x)),
                    (None, Some(_)) => images.push((v.tag.clone(), e.step)),
                    _ => {}
                }
            }
        }
    }
    Logged { scalars, images, files: files.len() }
}

#[test]
fn a_run_logs_its_curves_and_overlays_for_tensorboard() {
    let (_data, root) = common::demo_dataset(8, 4, 64);
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("r");
    // Two sessions: stopped after the first epoch, then resumed.
    train(&root, &run, &["--stop-after-epoch", "1"]);
    let out = common::segdistill(&["train", "--resume", "--out", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let Logged { scalars, images, files } = logged(&run);
    assert_eq!(files, 2, "one event file per session");
    let steps: Vec<i64> = scalars.iter().filter(|s| s.0 == "train/loss").map(|s| s.1).collect();
    assert_eq!(steps, (1..=6).collect::<Vec<_>>(), "every step once: 3 epochs × 2 batches");
    let metrics = segdistill::train::metrics_log::read(&run.join("metrics.csv")).unwrap();
    let csv_loss: Vec<f32> =
        metrics.iter().filter(|r| r["kind"] == "step").map(|r| r["loss"].parse::<f64>().unwrap() as f32).collect();
    let tb_loss: Vec<f32> = scalars.iter().filter(|s| s.0 == "train/loss").map(|s| s.2).collect();
    assert_eq!(tb_loss, csv_loss, "the same values as metrics.csv");
    for tag in ["val/mIoU", "val/loss", "val/pixel_accuracy", "train/lr", "train/ce"] {
        assert!(scalars.iter().any(|s| s.0 == tag), "{tag}");
    }
    assert_eq!(scalars.iter().filter(|s| s.0 == "val/mIoU").count(), 3, "one evaluation per epoch");
    assert!(scalars.iter().any(|s| s.0.starts_with("val_IoU/")), "per-class IoU");
    for tag in ["overlays/best", "overlays/worst"] {
        assert_eq!(images.iter().filter(|i| i.0 == tag).count(), 3, "{tag}: one per evaluation");
    }

    // TensorBoard's own reader, where installed (SEGDISTILL_PYTHON, else python3).
    let Some(python) = common::python_with(&["tensorboard"]) else {
        println!("TensorBoard's reader skipped: no `tensorboard` (set SEGDISTILL_PYTHON)");
        return;
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/tensorboard_check.py");
    let out = std::process::Command::new(&python).arg(script).arg(&run).output().unwrap();
    let text = common::stdout(&out);
    println!("{text}");
    assert!(out.status.success(), "{text}{}", common::stderr(&out));
    assert!(text.contains("scalar train/loss: 6 points"), "{text}");
}
