//! Killing `segdistill train` at arbitrary moments (SIGKILL, no chance to clean up) never leaves a
//! corrupt checkpoint under its final name, and the run always resumes.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use segdistill::model::weights::StateDict;
use segdistill::train::checkpoint;

#[test]
fn killing_the_trainer_never_leaves_a_corrupt_checkpoint() {
    let (_d, data) = demo_dataset(16, 4, 64);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("killed");
    let spawn = |resume: bool, epochs: usize| {
        let resume = if resume { &["--resume"][..] } else { &[] };
        tiny_train(&data, &run)
            .model("mbv3s-aspp")
            .epochs(epochs)
            .default_workers()
            .args(["--checkpoint-every", "1", "--events-json"])
            .args(resume)
            .command()
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
        let mut child = spawn(resume, 400);
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
    let out = spawn(true, state.epoch + 1).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(checkpoint::load(&checkpoint::last_path(&run)).unwrap().state.epoch, state.epoch + 1);
}

/// Every way a training can be told to end (KILL at any moment; TERM, HUP and INT, which stop
/// it after the step with a checkpoint and exit 128 + the signal), 20 times each at random
/// moments, on one run: resumed each time, it ends with exactly the weights, optimiser state
/// and history of a run that was never interrupted.
#[cfg(unix)]
#[test]
fn any_signal_at_any_moment_resumes_to_the_bit_identical_run() {
    use std::os::unix::process::ExitStatusExt as _;

    let (_d, data) = demo_dataset(12, 2, 48);
    let tmp = tempfile::tempdir().unwrap();
    // Long enough that the 80 signals all land before the schedule ends, even on a loaded machine.
    let train = |run: &std::path::Path, resume: bool| {
        let resume = if resume { &["--resume"][..] } else { &[] };
        tiny_train(&data, run).epochs(300).size(48).args(["--events-json"]).args(resume).command()
    };
    let reference = tmp.path().join("reference");
    let out = train(&reference, false).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let run = tmp.path().join("signalled");
    let signals = [libc::SIGKILL, libc::SIGTERM, libc::SIGHUP, libc::SIGINT];
    let mut order: Vec<i32> = signals.iter().flat_map(|&s| std::iter::repeat_n(s, 20)).collect();
    let mut rng = segdistill::util::Rng::new(2026);
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let mut stopped_gracefully = 0;
    for (round, &sig) in order.iter().enumerate() {
        let resume = run.join("config.json").exists();
        let child = train(&run, resume).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        // Past start-up (the handlers are installed first thing), then anywhere.
        let delay = 40 + rng.next_u64() % 500;
        std::thread::sleep(Duration::from_millis(delay));
        // SAFETY: sends a signal to our own child process, which has not been waited on yet.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        match (sig, out.status.code(), out.status.signal()) {
            (_, Some(0), _) => break, // the schedule was done before the signal: nothing left to stop
            (libc::SIGKILL, _, Some(libc::SIGKILL)) => {}
            (s, Some(code), _) if code == 128 + s => stopped_gracefully += 1,
            other => panic!("round {round}, signal {sig}: unexpected end {other:?}: {err}"),
        }
    }
    assert!(stopped_gracefully >= 40, "only {stopped_gracefully} graceful stops: the run finished too early");
    let out = train(&run, true).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(
        std::fs::read(checkpoint::student_path(&run)).unwrap(),
        std::fs::read(checkpoint::student_path(&reference)).unwrap(),
        "the best weights differ from the uninterrupted run's"
    );
    let (a, b) = (
        checkpoint::load(&checkpoint::last_path(&run)).unwrap(),
        checkpoint::load(&checkpoint::last_path(&reference)).unwrap(),
    );
    for (name, t) in a.model.iter().chain(&a.moments) {
        let other = b.model.get(name).or_else(|| b.moments.get(name)).unwrap();
        let (x, y) = (
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            other.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()), "{name} differs");
    }
    let strip = |h: &[checkpoint::EpochRecord]| {
        h.iter().map(|e| (e.step, e.train_loss.to_bits(), e.miou.to_bits())).collect::<Vec<_>>()
    };
    assert_eq!(strip(&a.state.history), strip(&b.state.history), "the history differs");
    assert_eq!((a.state.step, a.state.optimizer.t), (b.state.step, b.state.optimizer.t));
}
