//! The app's keyboard shortcuts, its Help menu, the live plots' exports and what "Train a teacher
//! for this dataset" says before it starts, driven through egui_kittest like a user.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::app::{harness, wait_until};
use common::*;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT as _, Queryable};
use segdistill::model::ModelKind;
use segdistill::train::config::ScheduleKind;
use segdistill::ui::SegdistillApp;
use segdistill::ui::plot_export::Destination;
use segdistill::ui::state::{AppState, Tab};
use segdistill::ui::train::RunStatus;

/// The app on a small demo dataset (`demo`, generated here), the tiny student at crop 64.
fn demo_state(runs: &Path, demo: &Path, seed: u64) -> AppState {
    segdistill::data::demo::generate(
        demo,
        &segdistill::data::demo::DemoConfig { train: 12, val: 4, size: 64, seed, ..Default::default() },
        &|| {},
    )
    .unwrap();
    let mut s = AppState { runs_dir: runs.to_path_buf(), demo_dir: Some(demo.to_path_buf()), ..Default::default() };
    s.data_dir = segdistill::data::demo::voc_root(demo).display().to_string();
    s.train.config.model = ModelKind::Mbv3sTiny;
    s.train.config.epochs = 40;
    s.train.config.batch = 4;
    s.train.config.size = 64;
    s.train.config.schedule.kind = ScheduleKind::Constant;
    s
}

fn status(h: &Harness<'static, SegdistillApp>) -> RunStatus {
    h.state().train.live.status.clone()
}

#[test]
fn ctrl_enter_starts_and_space_pauses_and_resumes_but_not_in_a_text_field() {
    let (demo, runs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut h = harness(demo_state(runs.path(), demo.path(), 11));
    wait_until(&mut h, "the dataset scan", 30, |a| a.data.usable().is_some());
    // Space with nothing training does nothing.
    h.key_press(egui::Key::Space);
    h.run_steps(2);
    assert_eq!(status(&h), RunStatus::Idle);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    wait_until(&mut h, "training steps after Ctrl+Enter", 120, |a| !a.train.live.steps.is_empty());
    assert_eq!(status(&h), RunStatus::Running);
    h.key_press(egui::Key::Space);
    wait_until(&mut h, "the pause", 30, |a| a.train.live.status == RunStatus::Paused);
    h.key_press(egui::Key::Space);
    wait_until(&mut h, "the resumption", 30, |a| a.train.live.status == RunStatus::Running);
    // Ctrl+Enter while a run trains starts nothing else.
    let run_dir = h.state().train.live.run_dir.clone();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    h.run_steps(2);
    assert_eq!(h.state().train.live.run_dir, run_dir);
    // In a text field (the Runs tab's folder) Space is typing, not a shortcut.
    h.state_mut().state.tab = Tab::Runs;
    h.run_steps(2);
    let folder = runs.path().display().to_string();
    let field = h.get_all_by_value(&folder).find(|n| n.accesskit_node().role() == egui::accesskit::Role::TextInput);
    field.expect("the runs folder field").click();
    h.run_steps(2);
    h.key_press(egui::Key::Space);
    h.run_steps(3);
    assert_eq!(status(&h), RunStatus::Running, "Space in a text field does not pause");
    h.state_mut().state.tab = Tab::Train;
    h.run_steps(2);
    h.get_by_label("Stop").click();
    wait_until(&mut h, "the stop", 60, |a| matches!(a.train.live.status, RunStatus::Finished(_)));
}

#[test]
fn the_help_menu_lists_the_shortcuts_and_the_version() {
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(AppState { runs_dir: runs.path().to_path_buf(), ..Default::default() });
    h.run_steps(2);
    h.get_by_label("Help").click();
    h.run_steps(2);
    h.get_by_label("Space");
    h.get_by_label("Ctrl+Enter");
    h.get_by_label(&format!("segdistill {}", env!("CARGO_PKG_VERSION")));
    h.get_by_label_contains("Documentation: ");
}

#[test]
fn the_teacher_recipe_says_its_own_crop_and_how_long_before_it_starts() {
    let (demo, runs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The form's crop (64) is not the recipe's: on the demo data the recipe brings its own.
    let mut h = harness(demo_state(runs.path(), demo.path(), 12));
    wait_until(&mut h, "the dataset scan", 30, |a| a.data.usable().is_some());
    let own = segdistill::train::config::DEMO_TEACHER_CROP;
    let deadline = Instant::now() + Duration::from_secs(120);
    let hover = loop {
        h.get_by_label("Train a teacher for this dataset").hover();
        h.run_steps(3);
        let found =
            h.query_by_label_contains("Estimated time: about").map(|n| n.accesskit_node().value().unwrap_or_default());
        if let Some(text) = found {
            break text;
        }
        assert!(Instant::now() < deadline, "no estimate in the hover");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(hover.contains(&format!("at its own {own}-px crop")), "{hover}");
    assert!(hover.contains("mbv3s-aspp for 20 epochs"), "{hover}");
    assert!(hover.contains("on this machine"), "{hover}");
    assert!(!hover.contains("64-px"), "not the form's crop: {hover}");
    assert_eq!(status(&h), RunStatus::Idle, "nothing started");
}

#[test]
fn a_right_click_on_a_live_plot_exports_it_as_csv_and_png() {
    let (_demo_dir, data) = demo_dataset(8, 2, 64);
    let runs = tempfile::tempdir().unwrap();
    let cfg = segdistill::train::TrainConfig { epochs: 2, ..tiny_config(&data, runs.path(), "plotted") };
    run_to_end(cfg.clone(), false).0.unwrap();
    let state = AppState { runs_dir: runs.path().to_path_buf(), last_run: Some(cfg.run_dir()), ..Default::default() };
    let exports = tempfile::tempdir().unwrap();
    let mut h = harness(state);
    h.state_mut().train.plot_exports.destination = Destination::Folder(exports.path().to_path_buf());
    h.run_steps(2);
    let steps = h.state().train.live.steps.len();
    assert!(steps >= 2, "the run's curves are on screen");

    h.get_by_label("training loss plot").click_secondary();
    h.run_steps(2);
    h.get_by_label("Export CSV…").click();
    h.run_steps(2);
    let csv = std::fs::read_to_string(exports.path().join("plotted-loss.csv")).expect("the CSV is written");
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("step,total"), "{csv}");
    assert_eq!(lines.count(), steps, "one row per step: {csv}");
    h.get_by_label_contains("plot written to");

    h.get_by_label("val mIoU plot").click_secondary();
    h.run_steps(2);
    h.get_by_label("Export PNG…").click();
    h.run_steps(2);
    let png = image::open(exports.path().join("plotted-miou.png")).expect("the PNG is written");
    assert!(png.width() >= 400, "{}", png.width());
    assert_eq!(h.state().state.tab, Tab::Train);
}
