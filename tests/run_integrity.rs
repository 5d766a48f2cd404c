//! A run's work is never lost or garbled by what happens around it: refused starts that must not
//! delete, best weights that must match the recorded best epoch, planted links, exports aimed at
//! other runs, damaged logs and checkpoints, moved inputs, concurrent writers of a demo dataset,
//! special files in the teacher cache. Each test drives the real binary the way a user does.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use segdistill::train::checkpoint;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), stderr(out));
}

fn refused(out: &std::process::Output) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "accepted: {err}");
    err
}

#[test]
fn a_refused_new_run_deletes_nothing_and_resume_then_works() {
    let (_d, data) = demo_dataset(8, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    // A run killed before its first checkpoint leaves its config.json and metrics.csv.
    ok(&tiny_train(&data, &run).run());
    std::fs::remove_dir_all(checkpoint::checkpoints_dir(&run)).unwrap();
    std::fs::remove_file(checkpoint::student_path(&run)).unwrap();
    let config = std::fs::read(run.join("config.json")).unwrap();
    let metrics = std::fs::read(run.join("metrics.csv")).unwrap();
    for _ in 0..2 {
        let err = refused(&tiny_train(&data, &run).run());
        assert!(err.contains("--resume"), "{err}");
        assert_eq!(std::fs::read(run.join("config.json")).unwrap(), config, "config.json is kept");
        assert_eq!(std::fs::read(run.join("metrics.csv")).unwrap(), metrics, "metrics.csv is kept");
    }
    let out = segdistill(&["train", "--resume", "--out", s(&run)]);
    ok(&out);
    assert_eq!(checkpoint::load_state(&checkpoint::last_path(&run)).unwrap().epoch, 1);
    // A user's folder with a config.json of something else is left alone, and said to be no run.
    let mine = tmp.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("config.json"), "{}").unwrap();
    let err = refused(&tiny_train(&data, &mine).run());
    assert!(err.contains("not a segdistill run"), "{err}");
    assert_eq!(std::fs::read_to_string(mine.join("config.json")).unwrap(), "{}");
    let err = refused(&segdistill(&["train", "--resume", "--out", s(&mine)]));
    assert!(err.contains("not a segdistill run"), "{err}");
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1, "nothing was added to the user's folder");
}

/// The digest the last checkpoint records for the best weights, and the digest of
/// student.safetensors' tensors.
fn best_digests(run: &Path) -> (String, String) {
    let state = checkpoint::load_state(&checkpoint::last_path(run)).unwrap();
    let want = state.best.unwrap().weights_digest.unwrap();
    let dict = segdistill::model::weights::StateDict::load(&checkpoint::student_path(run)).unwrap();
    let names: Vec<String> = dict.keys().map(String::from).collect();
    let tensors = names.iter().map(|k| (k.clone(), dict.get(k).unwrap().clone())).collect();
    (want, segdistill::model::weights::digest::of_tensors(&tensors).unwrap())
}

#[test]
fn best_weights_that_drifted_from_the_record_are_rewritten_from_the_checkpoint_that_holds_them() {
    let (_d, data) = demo_dataset(8, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    ok(&tiny_train(&data, &run).epochs(3).args(["--checkpoint-every", "1"]).run());
    let (want, have) = best_digests(&run);
    assert_eq!(want, have, "a finished run's student file holds its best weights");
    let best_epoch = checkpoint::load_state(&checkpoint::last_path(&run)).unwrap().best.unwrap().epoch;
    let test_json = |run: &Path| {
        let out = segdistill(&["test", "--run", s(run), "--json"]);
        ok(&out);
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        (v["pixel_acc"].as_f64().unwrap(), stderr(&out))
    };
    let (truth, _) = test_json(&run);
    // A crash between `last` and the best files: student.safetensors from another epoch, and
    // best.safetensors missing.
    let other = if best_epoch == 0 { 2 } else { best_epoch };
    let other_ckpt = checkpoint::load(&checkpoint::periodic_path(&run, other)).unwrap();
    segdistill::model::weights::save_safetensors(&other_ckpt.model, &checkpoint::student_path(&run)).unwrap();
    std::fs::remove_file(checkpoint::best_path(&run)).unwrap();
    // `test` measures the recorded best epoch's weights, not the stray file, and says so.
    let (measured, err) = test_json(&run);
    assert_eq!(measured, truth, "test measured other weights than the best epoch's: {err}");
    assert!(err.contains("rewritten from"), "{err}");
    let (want, have) = best_digests(&run);
    assert_eq!(want, have, "the idle run's files were repaired on open");
    assert!(checkpoint::best_path(&run).is_file());
    // The same on resume, with the student file missing altogether.
    std::fs::remove_file(checkpoint::student_path(&run)).unwrap();
    let out = segdistill(&["train", "--resume", "--out", s(&run)]);
    ok(&out);
    assert!(stderr(&out).contains("rewritten from"), "{}", stderr(&out));
    let (want, have) = best_digests(&run);
    assert_eq!(want, have);
}

#[test]
fn a_damaged_last_checkpoint_falls_back_to_an_intact_one() {
    let (_d, data) = demo_dataset(8, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    ok(&tiny_train(&data, &run).epochs(2).args(["--checkpoint-every", "1"]).run());
    // One flipped bit in a tensor of `last`: resuming must not train on it.
    let last = checkpoint::last_path(&run);
    let mut bytes = std::fs::read(&last).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0x40;
    std::fs::write(&last, &bytes).unwrap();
    let out = segdistill(&["train", "--resume", "--out", s(&run), "--epochs", "3"]);
    ok(&out);
    let err = stderr(&out);
    assert!(err.contains("do not match the digest") && err.contains("resuming from"), "{err}");
    let state = checkpoint::load(&last).unwrap().state;
    assert_eq!(state.epoch, 3);
    assert!(state.history.iter().all(|h| h.val_loss < 100.0), "trained on garbled weights: {:?}", state.history);
}

#[cfg(unix)]
#[test]
fn a_lock_file_that_is_a_link_is_refused_and_its_target_untouched() {
    let (_d, data) = demo_dataset(4, 1, 48);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    std::fs::create_dir_all(&run).unwrap();
    let precious = tmp.path().join("precious.txt");
    std::fs::write(&precious, "keep me").unwrap();
    std::os::unix::fs::symlink(&precious, run.join(".lock")).unwrap();
    let err = refused(&tiny_train(&data, &run).run());
    assert!(err.contains(".lock") && err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
    // A planted link at an atomic write's temporary name is never followed either.
    segdistill::util::fs::write_atomic(&tmp.path().join("x.json"), b"1").unwrap();
    let tmp_name = tmp.path().join(format!(".x.json.tmp-{}", std::process::id()));
    std::os::unix::fs::symlink(&precious, &tmp_name).unwrap();
    segdistill::util::fs::write_atomic(&tmp.path().join("x.json"), b"2").unwrap();
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
    assert_eq!(std::fs::read_to_string(tmp.path().join("x.json")).unwrap(), "2");
}

#[test]
fn an_export_into_another_run_is_refused_and_the_runs_own_exports_folder_is_fine() {
    let (_d, data) = demo_dataset(8, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    ok(&tiny_train(&data, &a).run());
    let a_student = std::fs::read(checkpoint::student_path(&a)).unwrap();
    let a_last = std::fs::read(checkpoint::last_path(&a)).unwrap();
    let b = tmp.path().join("b");
    for target in [checkpoint::student_path(&a), checkpoint::last_path(&a), a.join("exports/x.safetensors")] {
        let err = refused(&tiny_train(&data, &b).args(["--export", s(&target)]).run());
        assert!(err.contains("another run"), "{err}");
    }
    assert_eq!(std::fs::read(checkpoint::student_path(&a)).unwrap(), a_student);
    assert_eq!(std::fs::read(checkpoint::last_path(&a)).unwrap(), a_last);
    let own = b.join("exports/b.safetensors");
    ok(&tiny_train(&data, &b).args(["--export", s(&own)]).run());
    assert!(own.is_file());
}

#[test]
fn a_bad_byte_in_metrics_csv_costs_that_row_only() {
    let (_d, data) = demo_dataset(8, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    ok(&tiny_train(&data, &run).epochs(2).run());
    let path = run.join("metrics.csv");
    let mut bytes = std::fs::read(&path).unwrap();
    let rows_before = bytes.iter().filter(|b| **b == b'\n').count();
    let second_row = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    bytes[second_row + 1] = 0xfe;
    std::fs::write(&path, &bytes).unwrap();
    let out = segdistill(&["train", "--resume", "--out", s(&run), "--epochs", "3"]);
    ok(&out);
    assert!(
        stderr(&out).contains("could not be read") && stderr(&out).contains("metrics.unreadable-"),
        "{}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let step_rows = text.lines().filter(|l| l.starts_with("step,")).count();
    let state = checkpoint::load_state(&checkpoint::last_path(&run)).unwrap();
    assert_eq!(step_rows, state.step - 1, "every step row but the damaged one is kept");
    assert!(text.lines().count() > rows_before, "the history is kept and extended");
}

#[test]
fn a_teacher_without_distillation_is_an_error_not_ignored() {
    let (_d, data) = demo_dataset(4, 1, 48);
    let tmp = tempfile::tempdir().unwrap();
    let teacher = tmp.path().join("t.safetensors");
    std::fs::write(&teacher, b"x").unwrap();
    let run = tmp.path().join("r");
    let err = refused(&tiny_train(&data, &run).args(["--teacher-weights", s(&teacher)]).run());
    assert!(err.contains("--distill") && err.contains("--teacher-weights"), "{err}");
    assert!(!run.exists());
}

#[test]
fn out_of_range_settings_are_refused_with_the_range() {
    let (_d, data) = demo_dataset(4, 1, 48);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    for (flag, value, expect) in
        [("--warmup-steps", "99999999999", "0 to"), ("--stop-after-epoch", "0", "1 or more"), ("--epochs", "0", "1 to")]
    {
        let train = match flag {
            "--epochs" => tiny_train(&data, &run).epochs(value.parse().unwrap()),
            _ => tiny_train(&data, &run).args([flag, value]),
        };
        let err = refused(&train.run());
        assert!(err.contains(expect), "{flag} {value}: {err}");
        assert!(!run.exists(), "{flag} {value} left a run folder");
    }
    let out = segdistill(&["download", "weights", "--dest", s(tmp.path()), "--timeout", "0"]);
    assert!(refused(&out).contains("1 to 86400"), "{}", stderr(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_segdistill"))
        .args(["download", "weights", "--dest", s(tmp.path())])
        .env("SEGDISTILL_TIMEOUT", "abc")
        .output()
        .unwrap();
    assert!(refused(&out).contains("SEGDISTILL_TIMEOUT=abc"), "{}", stderr(&out));
}

#[test]
fn a_moved_dataset_is_followed_when_it_holds_the_same_content() {
    let (_d, data) = demo_dataset(8, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    ok(&tiny_train(&data, &run).run());
    let moved = tmp.path().join("moved");
    std::fs::rename(data.parent().unwrap().parent().unwrap(), &moved).unwrap();
    // The old place is gone: the run says so, and follows the data to the new place.
    let out = segdistill(&["train", "--resume", "--out", s(&run), "--epochs", "2", "--data", s(&moved)]);
    ok(&out);
    assert!(stderr(&out).contains("the dataset moved"), "{}", stderr(&out));
    assert_eq!(checkpoint::load_state(&checkpoint::last_path(&run)).unwrap().epoch, 2);
    // Other data under the new path is refused.
    let (_o, other) = {
        let dir = tempfile::tempdir().unwrap();
        let cfg = segdistill::data::demo::DemoConfig { train: 8, val: 2, size: 64, seed: 9, ..Default::default() };
        let root = segdistill::data::demo::generate(dir.path(), &cfg, &|| {}).unwrap();
        (dir, root)
    };
    let err = refused(&segdistill(&["train", "--resume", "--out", s(&run), "--epochs", "3", "--data", s(&other)]));
    assert!(err.contains("--data") && err.contains("other data"), "{err}");
}

#[test]
fn concurrent_demo_data_never_mixes_two_datasets() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("demo");
    let spawn = |seed: &str| {
        Command::new(env!("CARGO_BIN_EXE_segdistill"))
            .args(["demo-data", "--out", s(&out_dir), "--train", "40", "--val", "4", "--size", "64", "--force"])
            .args(["--seed", seed])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("1"), spawn("2"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() || b.status.success(), "{} / {}", stderr(&a), stderr(&b));
    for o in [&a, &b] {
        if !o.status.success() {
            assert!(stderr(o).contains("another demo-data"), "{}", stderr(o));
        }
    }
    // Whatever is there now is exactly one seed's dataset.
    let root = out_dir.join("VOCdevkit/VOC2012");
    let matches_seed = |seed: u64| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = segdistill::data::demo::DemoConfig { train: 40, val: 4, size: 64, seed, ..Default::default() };
        let reference = segdistill::data::demo::generate(dir.path(), &cfg, &|| {}).unwrap();
        [
            "JPEGImages/demo_000001.jpg",
            "SegmentationClass/demo_000001.png",
            "JPEGImages/demo_000044.jpg",
            "SegmentationClass/demo_000044.png",
        ]
        .iter()
        .all(|f| std::fs::read(root.join(f)).ok() == std::fs::read(reference.join(f)).ok())
    };
    assert!(matches_seed(1) ^ matches_seed(2), "the dataset on disk is neither seed's alone");
    let leftovers: Vec<_> = std::fs::read_dir(out_dir.join("VOCdevkit"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("staging"))
        .collect();
    assert!(leftovers.is_empty(), "staging folders left behind");
}

#[cfg(unix)]
#[test]
fn a_fifo_in_the_teacher_cache_is_named_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("entry.tc");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let t0 = Instant::now();
    let err = segdistill::distill::teacher_cache::format::CachedImage::read(&fifo).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(5), "waited on a FIFO");
    assert!(err.contains("FIFO"), "{err}");
    assert!(segdistill::distill::teacher_cache::format::Header::read_verified(&fifo).unwrap_err().contains("FIFO"));
    // Stale temporary files of a killed build are removed; a live process's are kept.
    let dead = dir.path().join(".a.tc.tmp-999999999");
    let live = dir.path().join(format!(".b.tc.tmp-{}", std::process::id() + 0));
    std::fs::write(&dead, b"x").unwrap();
    std::fs::write(&live, b"x").unwrap();
    segdistill::util::fs::remove_stale_temp_files(dir.path());
    assert!(!dead.exists(), "a dead process's temporary file is removed");
    assert!(live.exists(), "this (live) process's temporary file is kept");
}

#[test]
fn a_run_folder_deleted_while_training_cannot_let_a_second_writer_in() {
    let (_d, data) = demo_dataset(12, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let mut first =
        tiny_train(&data, &run).epochs(200).command().stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while !checkpoint::last_path(&run).exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no first checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Deleted (here: moved away, which is what deletion does to a folder that is still open).
    std::fs::rename(&run, tmp.path().join("r-deleted")).unwrap();
    // A second training takes the path; the first must write nothing more into it.
    let second = tiny_train(&data, &run).run();
    ok(&second);
    let second_last = std::fs::read(checkpoint::last_path(&run)).unwrap();
    let status = first.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut first.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "the first training went on: {err}");
    assert!(err.contains("deleted, moved or replaced"), "{err}");
    assert_eq!(std::fs::read(checkpoint::last_path(&run)).unwrap(), second_last, "the second run's files are its own");
}

#[test]
fn a_batch_too_large_for_memory_is_refused_with_the_largest_that_fits_and_resume_may_change_it() {
    let (_d, data) = demo_dataset(8, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r");
    let args = ["train", "--data", s(&data), "--batch", "256", "--size", "1024", "--out", s(&run)];
    let err = refused(&segdistill(&args));
    assert!(err.contains("largest batch that fits") && err.contains("available"), "{err}");
    assert!(!run.exists());
    // A run stopped part-way continues at another batch size, and says what changes.
    ok(&tiny_train(&data, &run).epochs(3).args(["--stop-after-epoch", "1"]).run());
    let out = segdistill(&["train", "--resume", "--out", s(&run), "--batch", "2"]);
    ok(&out);
    let err = stderr(&out);
    assert!(err.contains("batch size 2 (was 4)") && err.contains("steps per epoch"), "{err}");
    let state = checkpoint::load_state(&checkpoint::last_path(&run)).unwrap();
    assert_eq!((state.epoch, state.config.batch, state.step), (3, 2, 3 * 4), "the schedule is laid over the new steps");
}

#[test]
fn a_report_on_a_run_still_training_marks_it_partial_and_shows_its_name_escaped() {
    let (_d, data) = demo_dataset(12, 2, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("live\u{1b}[31mred");
    let mut training =
        tiny_train(&data, &run).epochs(400).command().stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while !checkpoint::student_path(&run).exists() || !checkpoint::last_path(&run).exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no first evaluation");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out_dir = tmp.path().join("report");
    let report = segdistill(&["report", s(&run), "--out", s(&out_dir)]);
    training.kill().ok();
    training.wait().ok();
    ok(&report);
    let printed = format!("{}{}", stdout(&report), stderr(&report));
    let markdown = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(printed.contains("is still training"), "{printed}");
    assert!(markdown.contains("(still training: partial)"), "{markdown}");
    for text in [&printed, &markdown] {
        assert!(!text.contains('\u{1b}'), "a raw escape sequence was printed: {text}");
        assert!(text.contains("live\\u{1b}[31mred"), "the name is shown escaped: {text}");
    }
}

#[test]
fn cache_list_names_orphaned_teacher_caches_and_prune_removes_only_those() {
    use segdistill::distill::teacher_cache::manifest::{Manifest, file_stamp};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("teacher-cache");
    let teacher = tmp.path().join("teacher.safetensors");
    std::fs::write(&teacher, b"weights").unwrap();
    let (len, modified) = file_stamp(&teacher).unwrap();
    let folder = |name: &str, teacher_len: u64| {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let dataset = tmp.path().to_path_buf();
        Manifest {
            teacher_model: "fcn-resnet50".into(),
            teacher_weights: teacher.clone(),
            teacher_len,
            teacher_modified_ns: modified,
            dataset,
        }
        .write(&dir)
        .unwrap();
        dir
    };
    let (current, orphaned) = (folder("current", len), folder("orphaned", len + 1));
    let list = segdistill(&["cache", "list", "--dir", s(&root)]);
    ok(&list);
    let listed = stdout(&list);
    let line = |name: &str| listed.lines().find(|l| l.contains(name)).unwrap_or_default().to_string();
    assert!(
        line("orphaned").contains("orphaned: its teacher file") && line("current").contains("current ("),
        "{listed}"
    );
    ok(&segdistill(&["cache", "prune", "--dir", s(&root), "--dry-run"]));
    assert!(orphaned.is_dir(), "a dry run removes nothing");
    let prune = segdistill(&["cache", "prune", "--dir", s(&root)]);
    ok(&prune);
    assert!(!orphaned.exists() && current.is_dir(), "{}", stdout(&prune));
    assert!(stdout(&prune).contains("1 orphaned cache folder(s)"), "{}", stdout(&prune));
}
