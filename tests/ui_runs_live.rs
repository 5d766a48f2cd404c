//! The app's Runs tab stays true while the runs folder changes under it: runs another process
//! starts and trains appear and follow without any input, each run keeps a colour of its own,
//! and a run's own evaluation of its weights shows when it is the teacher. Driven through
//! egui_kittest on the real `SegdistillApp`.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::app::{harness, wait_until};
use common::*;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use segdistill::model::ModelKind;
use segdistill::train::TrainConfig;
use segdistill::train::checkpoint::{self, CheckpointState, EpochRecord};
use segdistill::ui::SegdistillApp;
use segdistill::ui::state::{AppState, Tab};

/// Like a window left alone: a frame runs only when the app asked for one (a repaint), never
/// because the mouse moved. Waits until `done` holds.
fn idle_until(h: &mut Harness<'static, SegdistillApp>, what: &str, secs: u64, done: impl Fn(&SegdistillApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what} in a window left alone");
        if h.ctx.has_requested_repaint() {
            h.step();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn runs_state(runs: &Path) -> AppState {
    AppState { runs_dir: runs.to_path_buf(), tab: Tab::Runs, ..Default::default() }
}

/// A run folder as a training leaves it after `epochs_done` of 3 epochs (a checkpoint without
/// weights: the Runs tab reads only its state), with a metrics.csv of `steps` step rows.
fn fake_run(runs: &Path, name: &str, epochs_done: Option<usize>, steps: usize) -> PathBuf {
    let config = TrainConfig { name: name.into(), runs_dir: runs.to_path_buf(), epochs: 3, ..Default::default() };
    let dir = config.run_dir();
    std::fs::create_dir_all(checkpoint::checkpoints_dir(&dir)).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string(&config).unwrap()).unwrap();
    let mut log = String::from(segdistill::train::metrics_log::HEADER);
    log.push('\n');
    for step in 1..=steps {
        log.push_str(&format!("step,0,{step},{l},{l},,,0.01,,,,10,1\n", l = 2.0 / step as f64));
    }
    std::fs::write(dir.join("metrics.csv"), log).unwrap();
    if let Some(epochs) = epochs_done {
        let history = (0..epochs)
            .map(|epoch| EpochRecord {
                epoch,
                step: (epoch + 1) * 2,
                train_loss: 1.0,
                val_loss: 1.0,
                miou: 0.1 * (epoch + 1) as f64,
                pixel_acc: 0.5,
                iou: vec![Some(0.1); 21],
                lr: 0.01,
                ms_per_image: 1.0,
            })
            .collect();
        let state = CheckpointState {
            version: checkpoint::FORMAT_VERSION,
            config: config.clone(),
            epoch: epochs,
            batch_in_epoch: 0,
            step: epochs * 2,
            epoch_loss_sum: 0.0,
            epoch_loss_count: 0,
            optimizer: segdistill::train::optim::OptimizerState { t: (epochs * 2) as u64 },
            plateau: Default::default(),
            best: None,
            history,
            train_seconds: 1.0,
            cache_seconds: 0.0,
            inputs: Default::default(),
        };
        let ckpt = checkpoint::Checkpoint {
            state,
            model: Default::default(),
            adapters: Default::default(),
            moments: Default::default(),
        };
        checkpoint::save(&checkpoint::last_path(&dir), &ckpt).unwrap();
    }
    dir
}

/// Holds the run folder's lock as a training in process `pid` does (its note first, then the
/// lock); dropping the file releases it.
fn hold_lock(dir: &Path, pid: u32) -> std::fs::File {
    let path = dir.join(".lock");
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    std::fs::write(&path, format!("{pid} {started}")).unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    file.lock().unwrap();
    file
}

fn entry<'a>(app: &'a SegdistillApp, name: &str) -> Option<&'a segdistill::ui::runs::RunEntry> {
    app.runs.entries.iter().find(|e| e.name == name)
}

#[test]
fn a_run_another_process_trains_appears_without_input_and_follows_live_without_resume() {
    let runs = tempfile::tempdir().unwrap();
    fake_run(runs.path(), "earlier", Some(3), 6);
    let mut h = harness(runs_state(runs.path()));
    wait_until(&mut h, "the first scan", 30, |a| a.runs.entries.len() == 1);
    h.run_steps(3);

    // The command line starts a run beside the app: it holds the folder's lock and has written
    // its first epoch's checkpoint and more steps since.
    let dir = fake_run(runs.path(), "from-cli", Some(1), 5);
    let lock = hold_lock(&dir, 4242);
    idle_until(&mut h, "the new run to be listed", 10, |a| entry(a, "from-cli").is_some());
    wait_until(&mut h, "the frame after the scan", 5, |_| true);
    let e = entry(h.state(), "from-cli").unwrap();
    assert_eq!(e.status, "training in another process (pid 4242)");
    assert!(!e.resumable);
    assert_eq!(e.steps.len(), 5, "the live curve has the log's steps after the checkpoint (step 2) too");
    h.get_by_label("training in another process (pid 4242)");
    assert!(h.query_by_label("Resume").is_none(), "no Resume on a run another process trains");

    // Its log grows: the curve follows, still without input.
    let mut log = std::fs::OpenOptions::new().append(true).open(dir.join("metrics.csv")).unwrap();
    log.write_all(b"step,0,6,0.3,0.3,,,0.01,,,,10,1\n").unwrap();
    drop(log);
    idle_until(&mut h, "the new step in the curve", 10, |a| entry(a, "from-cli").is_some_and(|e| e.steps.len() == 6));

    // Resume from anywhere in the app is refused in the Runs tab's words, and starts nothing.
    let ctx = h.ctx.clone();
    h.state_mut().apply(&ctx, segdistill::ui::commands::Command::ResumeRun(dir.clone()));
    h.run_steps(3);
    let notice = h.state().notice.clone().unwrap_or_default();
    assert!(notice.contains("training in another process (pid 4242)"), "{notice}");
    assert!(!notice.contains("--out"), "no command-line hint in the app: {notice}");
    assert!(!h.state().train.is_running());
    assert_eq!(h.state().train.top_bar_status(), None, "the top bar says nothing failed");

    // The other process ends: the run is stopped after its epoch and can be resumed here.
    drop(lock);
    idle_until(&mut h, "the run to be resumable", 10, |a| entry(a, "from-cli").is_some_and(|e| e.resumable));
    wait_until(&mut h, "the frame after the scan", 5, |_| true);
    assert_eq!(entry(h.state(), "from-cli").unwrap().status, "stopped after epoch 1/3 (step 2)");
    h.get_by_label("Resume");
}

#[test]
fn runs_keep_distinct_colours_and_new_runs_join_the_plots() {
    let runs = tempfile::tempdir().unwrap();
    // Eight names of which three pairs shared a colour when colours were a hash of the name.
    let names = [
        "teacher",
        "mbv3s-tiny-none",
        "mbv3s-tiny-response",
        "mbv3s-tiny-feature",
        "mbv3s-tiny-combined",
        "lraspp-feature",
        "mbv3s-aspp-none",
        "lraspp-none",
    ];
    for name in names {
        fake_run(runs.path(), name, Some(3), 4);
    }
    let mut h = harness(runs_state(runs.path()));
    wait_until(&mut h, "the first scan", 30, |a| a.runs.entries.len() == names.len());
    let colors = |app: &SegdistillApp| -> Vec<(PathBuf, [u8; 4])> {
        app.runs.entries.iter().map(|e| (e.dir.clone(), app.runs.colors.color(&e.dir).to_array())).collect()
    };
    let before = colors(h.state());
    let distinct: std::collections::HashSet<[u8; 4]> = before.iter().map(|(_, c)| *c).collect();
    assert_eq!(distinct.len(), names.len(), "one colour per run: {before:?}");
    assert_eq!(h.state().runs.selected.len(), 4, "a first look overlays the four most recent runs");

    // A run finished later (here: trained elsewhere while the app is open) joins the plots in a
    // colour of its own; the others keep theirs.
    let late = fake_run(runs.path(), "late-student", Some(3), 4);
    idle_until(&mut h, "the late run", 10, |a| a.runs.entries.len() == names.len() + 1);
    let app = h.state();
    assert!(app.runs.selected.contains(&late), "a new run joins the overlay plots");
    let after = colors(app);
    for (dir, color) in &before {
        assert_eq!(
            after.iter().find(|(d, _)| d == dir).map(|(_, c)| c),
            Some(color),
            "{} kept its colour",
            dir.display()
        );
    }
    let late_color = app.runs.colors.color(&late).to_array();
    assert!(before.iter().all(|(_, c)| *c != late_color), "the late run's colour is its own");
}

#[test]
fn a_freshly_trained_teacher_shows_its_runs_own_evaluation() {
    let (_demo, root) = demo_dataset(12, 4, 64);
    let runs = tempfile::tempdir().unwrap();
    let mut cfg = TrainConfig { epochs: 1, ..tiny_config(&root, runs.path(), "teacher-run") };
    cfg.optimizer.lr = 5e-3;
    run_to_end(cfg.clone(), false).0.unwrap();
    let state = checkpoint::load_state(&checkpoint::last_path(&cfg.run_dir())).unwrap();
    let best = state.best.as_ref().unwrap().miou;

    let teacher_state = |data: &Path| {
        let mut s = AppState { runs_dir: runs.path().to_path_buf(), ..Default::default() };
        s.data_dir = data.display().to_string();
        s.train.config.teacher = ModelKind::Mbv3sTiny;
        s.train.teacher_weights = checkpoint::student_path(&cfg.run_dir()).display().to_string();
        s
    };
    let mut h = harness(teacher_state(&root));
    wait_until(&mut h, "the dataset scan", 30, |a| a.data.usable().is_some());
    wait_until(&mut h, "the teacher's quality", 10, |a| a.data.teacher_panel.quality().is_some());
    let quality = h.state().data.teacher_panel.quality().unwrap().clone();
    assert_eq!(quality.miou, best, "the run's best validation mIoU");
    assert_eq!(quality.images, 4, "every val image the run scored");
    assert!(!h.state().data.teacher_panel.is_evaluating(), "nothing evaluated again");
    // Where the figure came from, on hover (tooltips at once, as for a pointer held still).
    h.ctx.all_styles_mut(|s| {
        s.interaction.tooltip_delay = 0.0;
        s.interaction.show_tooltips_only_when_still = false;
    });
    let text = format!("teacher mIoU {best:.4}");
    h.get_by_label_contains(&text).hover();
    h.run_steps(5);
    h.get_by_label_contains("measured by its own run teacher-run at its best epoch (1)");
    assert!(h.query_by_label_contains("not evaluated on this dataset yet").is_none());
    drop(h);

    // The same weights on other data (a copy elsewhere is another dataset folder): not measured.
    let (_other, other_root) = demo_dataset(12, 4, 64);
    let mut h = harness(teacher_state(&other_root));
    wait_until(&mut h, "the dataset scan", 30, |a| a.data.usable().is_some());
    h.run_steps(3);
    assert!(h.state().data.teacher_panel.quality().is_none());
    h.get_by_label_contains("not evaluated on this dataset yet");
}
