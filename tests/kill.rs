//! Killing `segdistill train` at arbitrary moments (SIGKILL, no chance to clean up) never leaves a
//! corrupt checkpoint under its final name, and the run always resumes.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use segdistill::model::weights::StateDict;
use segdistill::train::checkpoint;

#[test]
fn killing_the_trainer_never_leaves_a_corrupt_checkpoint() {
    let (_d, data) = demo_dataset(16, 4, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("killed");
    let spawn = |resume: bool, epochs: &str| {
        let mut args = vec![
            "train",
            "--data",
            data.to_str().unwrap(),
            "--model",
            "mbv3s-aspp",
            "--epochs",
            epochs,
            "--batch",
            "4",
            "--size",
            "64",
            "--checkpoint-every",
            "1",
            "--out",
            run.to_str().unwrap(),
            "--events-json",
        ];
        if resume {
            args.push("--resume");
        }
        Command::new(env!("CARGO_BIN_EXE_segdistill"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Each round kills the trainer the moment a checkpoint is being written (its temporary file
    // exists), after at least one epoch of progress.
    let temp_file_present = || {
        std::fs::read_dir(checkpoint::checkpoints_dir(&run)).into_iter().flatten().flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with('.') && n.contains(".tmp-")
        })
    };
    let mut mid_write_kills = 0;
    for round in 0..6 {
        let resume = run.join("config.json").exists();
        let mut child = spawn(resume, "400");
        let start = std::time::Instant::now();
        // Let earlier rounds' leftovers be cleaned by the new process before watching.
        std::thread::sleep(Duration::from_millis(300));
        // Wait for one more completed `last` checkpoint (so the run makes progress across
        // rounds), then kill during the next write.
        let last_mtime = || std::fs::metadata(checkpoint::last_path(&run)).and_then(|m| m.modified()).ok();
        let initial = last_mtime();
        let mut during_write = false;
        while start.elapsed() < Duration::from_secs(30) && child.try_wait().unwrap().is_none() {
            if last_mtime() != initial && temp_file_present() {
                during_write = true;
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        child.kill().ok(); // it may have exited on its own (it must not, see below)
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: a 400-epoch run cannot finish");
        mid_write_kills += during_write as usize;
        // Every checkpoint under its final name must load completely.
        for entry in std::fs::read_dir(checkpoint::checkpoints_dir(&run)).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "safetensors")
                && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            {
                checkpoint::load(&p).unwrap_or_else(|e| panic!("round {round}: {e:#}"));
            }
        }
        let student = checkpoint::student_path(&run);
        if student.exists() {
            StateDict::load(&student).unwrap_or_else(|e| panic!("student weights after round {round}: {e}"));
        }
    }
    assert!(mid_write_kills >= 4, "only {mid_write_kills} of 6 kills landed during a checkpoint write");
    assert!(checkpoint::last_path(&run).exists(), "checkpoints were written between kills");
    // A final, uninterrupted resume completes the (shortened) schedule.
    let state = checkpoint::load(&checkpoint::last_path(&run)).unwrap().state;
    let target = (state.epoch + 1).to_string();
    let out = spawn(true, &target).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint::load(&checkpoint::last_path(&run)).unwrap().state.epoch, state.epoch + 1);
}
