//! Nothing lost, ever: one writer per run folder, runs that work from any directory, outputs that
//! never replace inputs, resume flags that are applied or refused (never dropped), one bad file
//! costing one sample, and messages that say exactly what happened. Each test drives the real
//! binary the way a user does.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use segdistill::train::checkpoint;

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segdistill")).args(args).current_dir(dir).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_second_writer_is_refused_and_the_first_run_completes_intact() {
    let (_d, data) = demo_dataset(12, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("shared-run");
    let mut first =
        tiny_train(&data, &run).epochs(40).command().stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // The folder is claimed before any long work: wait for the claim, then contend.
    let t0 = Instant::now();
    while !run.join("config.json").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "the first run never claimed its folder");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = tiny_train(&data, &run).epochs(3).run();
    let resumed = tiny_train(&data, &run).epochs(40).args(["--resume"]).run();
    let status = first.wait().unwrap();
    let first_err = {
        use std::io::Read as _;
        let mut e = String::new();
        first.stderr.take().unwrap().read_to_string(&mut e).unwrap();
        e
    };
    assert!(status.success(), "the first run failed: {first_err}");
    for (what, out) in [("a second run", &second), ("a resume", &resumed)] {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(2), "{what} was accepted: {err}");
        assert!(
            err.contains("in use by another training") && err.contains(s(&run)) && err.contains("process"),
            "{err}"
        );
    }
    let state = checkpoint::load_state(&checkpoint::last_path(&run)).unwrap();
    assert_eq!((state.epoch, state.config.epochs), (40, 40), "the first run's checkpoint is its own, complete");
    assert!(checkpoint::student_path(&run).is_file());
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().filter(|l| l.starts_with("epoch,")).count(), 40, "one epoch row per epoch");
}

#[test]
fn a_run_made_in_one_directory_is_tested_reported_and_resumed_from_another() {
    let home = tempfile::tempdir().unwrap();
    let made_in = home.path().join("project");
    let elsewhere = home.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (_d, data) = demo_dataset(8, 2, 64);
    std::fs::create_dir_all(&made_in).unwrap();
    std::fs::rename(data.parent().unwrap().parent().unwrap(), made_in.join("demo")).unwrap();
    // Typed relative paths, as a user does.
    let out = tiny_train("demo", "runs/a").command().current_dir(&made_in).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(made_in.join("runs/a/config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let stored = PathBuf::from(config["data"].as_str().unwrap());
    assert!(stored.is_absolute() && stored.is_dir(), "stored data path {}", stored.display());

    let run = made_in.join("runs/a");
    let test = run_in(&elsewhere, &["test", "--run", s(&run)]);
    assert!(test.status.success(), "test from elsewhere: {}", stderr(&test));
    let report = run_in(&elsewhere, &["report", s(&run), "--out", "rep"]);
    assert!(report.status.success(), "report from elsewhere: {}", stderr(&report));
    assert!(elsewhere.join("rep/report.md").is_file());
    assert!(!stderr(&report).contains("warning"), "{}", stderr(&report));
    let resumed = run_in(&elsewhere, &["train", "--resume", "--out", s(&run), "--epochs", "2"]);
    assert!(resumed.status.success(), "resume from elsewhere: {}", stderr(&resumed));
    assert!(stderr(&resumed).contains("epochs 2 (was 1)"), "the changed setting is echoed: {}", stderr(&resumed));
    assert_eq!(checkpoint::load_state(&checkpoint::last_path(&run)).unwrap().epoch, 2);
}

#[test]
fn resume_refuses_flags_it_cannot_apply_and_applies_the_others() {
    let (_d, data) = demo_dataset(8, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    assert!(tiny_train(&data, &run).run().status.success());
    let before = std::fs::read(checkpoint::last_path(&run)).unwrap();
    for (flag, value, saved) in [
        ("--model", "mbv3s-aspp", "mbv3s-tiny"),
        ("--size", "96", "64"),
        ("--seed", "3", "0"),
        ("--distill", "response", "none"),
    ] {
        let out = segdistill(&["train", "--resume", "--out", s(&run), "--epochs", "2", flag, value]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} was accepted: {err}");
        assert!(err.contains(flag) && err.contains(value) && err.contains(saved), "{flag}: {err}");
    }
    let other_data = tempfile::tempdir().unwrap();
    let out = segdistill(&["train", "--resume", "--out", s(&run), "--data", s(other_data.path())]);
    assert!(stderr(&out).contains("--data"), "{}", stderr(&out));
    assert_eq!(std::fs::read(checkpoint::last_path(&run)).unwrap(), before, "refused resumes change nothing");
    // Same values as the run's are fine; what may change is applied.
    let out = segdistill(&[
        "train",
        "--resume",
        "--out",
        s(&run),
        "--model",
        "mbv3s-tiny",
        "--batch",
        "4",
        "--epochs",
        "2",
        "--lr",
        "0.002",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state = checkpoint::load_state(&checkpoint::last_path(&run)).unwrap();
    assert_eq!((state.epoch, state.config.optimizer.lr), (2, 0.002));
    // A new run into the folder is refused, naming --resume and --out (there is no --name).
    let out = tiny_train(&data, &run).run();
    let err = stderr(&out);
    assert!(err.contains("--resume") && err.contains("--out") && !err.contains("--name"), "{err}");
}

#[test]
fn predict_never_writes_over_its_inputs_or_under_another_format() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("photo.jpg");
    let weights = tmp.path().join("student.safetensors");
    std::fs::write(&image, b"precious jpeg").unwrap();
    std::fs::write(&weights, b"precious weights").unwrap();
    let dotted = tmp.path().join(".").join("photo.jpg");
    let cases: [(&str, &Path); 4] =
        [("--out", &image), ("--out", &dotted), ("--overlay", &weights), ("--logits", &weights)];
    for (flag, path) in cases {
        let mut args = vec!["predict", "--model", "mbv3s-tiny", "--weights", s(&weights), "--image", s(&image)];
        let mask = tmp.path().join("m.png");
        if flag != "--out" {
            args.extend(["--out", s(&mask)]);
        }
        args.extend([flag, s(path)]);
        let out = segdistill(&args);
        assert_eq!(out.status.code(), Some(2), "{flag} {}: accepted", path.display());
        assert!(stderr(&out).contains("refusing to overwrite an input"), "{}", stderr(&out));
    }
    let out = segdistill(&[
        "predict",
        "--model",
        "mbv3s-tiny",
        "--weights",
        s(&weights),
        "--image",
        s(&image),
        "--out",
        s(&tmp.path().join("mask.jpg")),
    ]);
    assert!(stderr(&out).contains(".png"), "PNG bytes under a .jpg name: {}", stderr(&out));
    assert_eq!(std::fs::read(&image).unwrap(), b"precious jpeg");
    assert_eq!(std::fs::read(&weights).unwrap(), b"precious weights");
}

#[test]
fn one_bad_file_costs_one_sample_not_the_run() {
    let (_d, data) = demo_dataset(8, 3, 64);
    let ids = |split: &str| -> Vec<String> {
        std::fs::read_to_string(data.join(format!("ImageSets/Segmentation/{split}.txt")))
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    };
    let broken_train = data.join(format!("JPEGImages/{}.jpg", ids("train")[2]));
    let broken_val = data.join(format!("JPEGImages/{}.jpg", ids("val")[0]));
    std::fs::write(&broken_train, b"").unwrap();
    let bytes = std::fs::read(&broken_val).unwrap();
    std::fs::write(&broken_val, &bytes[..bytes.len() / 3]).unwrap();
    // A split file with a BOM and a repeated id: used once, with a warning.
    let list = data.join("ImageSets/Segmentation/train.txt");
    let text = std::fs::read_to_string(&list).unwrap();
    std::fs::write(&list, format!("\u{feff}{text}{}\n", ids("train")[1])).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let out = tiny_train(&data, &run).epochs(2).run();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(s(&broken_train)), "the skipped training image is named: {err}");
    assert!(err.contains(s(&broken_val)), "the skipped validation image is named: {err}");
    assert_eq!(err.matches(s(&broken_train)).count(), 1, "reported once, not every epoch: {err}");
    assert!(err.contains(&format!("lists id '{}' 2 times", ids("train")[1])), "{err}");
    assert!(err.contains("8 train"), "the repeated id is used once, the BOM'd one is found: {err}");
    assert_eq!(checkpoint::load_state(&checkpoint::last_path(&run)).unwrap().epoch, 2);
}

#[test]
fn a_diverged_run_says_exactly_what_was_kept() {
    let (_d, data) = demo_dataset(8, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("nan");
    let out = tiny_train(&data, &run).epochs(3).args(["--lr", "1e30", "--optimizer", "sgd", "--momentum", "0"]).run();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the loss became") || err.contains("NaN") || err.contains("inf"), "{err}");
    let has_checkpoint = checkpoint::last_path(&run).exists();
    if has_checkpoint {
        assert!(err.contains(s(&checkpoint::last_path(&run))), "{err}");
    } else {
        assert!(err.contains("No checkpoint had been written yet"), "{err}");
    }
    assert!(err.contains("gradient clipping is already on"), "clipping is on by default: {err}");
    assert!(!err.contains("enable gradient clipping"), "{err}");
}

#[test]
fn absurd_sizes_and_numbers_are_errors_not_aborts() {
    let (_d, data) = demo_dataset(4, 1, 48);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    for (flag, value, says) in [
        ("--size", "100000", "out of range"),
        ("--teacher-cache-gb", "NaN", "teacher cache budget"),
        ("--beta", "inf", "beta"),
        ("--batch", "100000000", "out of range: use 1 to"),
    ] {
        let train = match flag {
            "--size" => tiny_train(&data, &run).size(value.parse().unwrap()),
            "--batch" => tiny_train(&data, &run).batch(value.parse().unwrap()),
            _ => tiny_train(&data, &run).args([flag, value]),
        };
        let out = train.run();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{flag} {value}: {}", stderr(&out));
        assert!(!run.exists(), "a refused start leaves no run folder");
    }
    let out = segdistill(&["demo-data", "--out", s(&tmp.path().join("d")), "--size", "100000"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("4096"), "{}", stderr(&out));
}

#[test]
fn failed_starts_leave_nothing_and_say_only_what_exists() {
    let (_d, data) = demo_dataset(4, 1, 48);
    let tmp = tempfile::tempdir().unwrap();
    // A teacher file that is not one: the start fails, and no empty run folder stays behind.
    let garbage = tmp.path().join("teacher.pth");
    std::fs::write(&garbage, b"not a checkpoint at all").unwrap();
    let run = tmp.path().join("kd");
    let out = tiny_train(&data, &run).args(["--distill", "response", "--teacher-weights", s(&garbage)]).run();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("teacher.pth"), "{err}");
    assert!(!run.exists(), "the failed start left {}", run.display());
    assert!(!err.contains("(run folder"), "no folder to point at: {err}");
    // An export path that cannot be written fails before training, not after it.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let export = blocker.join("student.safetensors");
    let export_run = tmp.path().join("e");
    let t0 = Instant::now();
    let out = tiny_train(&data, &export_run).args(["--export", s(&export)]).run();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--export"), "{}", stderr(&out));
    assert!(!checkpoint::last_path(&export_run).exists(), "no training happened ({:?})", t0.elapsed());
    // An export into the run's own folder could replace its checkpoint: refused too.
    let inside = checkpoint::last_path(&export_run);
    let out = tiny_train(&data, &export_run).args(["--export", s(&inside)]).run();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("inside the run folder"), "{}", stderr(&out));
    // An OS error is printed once.
    let missing = tmp.path().join("missing.safetensors");
    let out = segdistill(&["eval", "--model", "mbv3s-tiny", "--weights", s(&missing), "--data", s(&data)]);
    let err = stderr(&out);
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}

#[test]
fn demo_data_keeps_an_existing_dataset_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("demo");
    let args = ["demo-data", "--out", s(&out_dir), "--train", "2", "--val", "1", "--size", "48"];
    assert!(segdistill(&args).status.success());
    let list = out_dir.join("VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt");
    std::fs::write(&list, "mine\n").unwrap();
    let out = segdistill(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&list).unwrap(), "mine\n");
    let mut forced = args.to_vec();
    forced.push("--force");
    assert!(segdistill(&forced).status.success());
}

#[test]
fn a_report_on_a_damaged_metrics_log_warns() {
    let (_d, data) = demo_dataset(8, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    assert!(tiny_train(&data, &run).run().status.success());
    std::fs::write(run.join("metrics.csv"), b"\x00\x01garbage\nmore,garbage\n").unwrap();
    let out = segdistill(&["report", s(&run), "--out", s(&tmp.path().join("rep"))]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning") && stderr(&out).contains("metrics.csv"), "{}", stderr(&out));
}

#[test]
fn an_io_error_names_its_path_and_the_finished_epoch_is_kept() {
    let (_d, data) = demo_dataset(8, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    // The best student weights cannot be written (a folder stands where the file goes), as on a
    // full disk: the error names the file, and the epoch's `last` checkpoint is already saved.
    std::fs::create_dir_all(checkpoint::student_path(&run)).unwrap();
    let out = tiny_train(&data, &run).epochs(2).run();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(s(&checkpoint::student_path(&run))), "the path is named: {err}");
    assert_eq!(checkpoint::load_state(&checkpoint::last_path(&run)).unwrap().epoch, 1, "epoch 1 is kept");
}

#[test]
fn the_engine_refuses_to_resume_nothing_and_leaves_no_folder() {
    let (_d, data) = demo_dataset(4, 1, 48);
    let runs = tempfile::tempdir().unwrap();
    let cfg = tiny_config(&data, runs.path(), "never-ran");
    let err = run_to_end(cfg.clone(), true).0.unwrap_err();
    assert!(format!("{err:#}").contains("nothing to resume"), "{err:#}");
    assert!(!cfg.run_dir().exists(), "a failed resume made {}", cfg.run_dir().display());
}
