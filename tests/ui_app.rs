//! The desktop app driven through egui_kittest: the real `SegdistillApp`, clicked like a user.
//! Snapshot tests render through wgpu (Mesa lavapipe on CI: `WGPU_BACKEND=vulkan`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::app::{harness, snapshot_harness, snapshot_options, wait_until};
use common::*;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use segdistill::distill::DistillMode;
use segdistill::model::ModelKind;
use segdistill::train::config::ScheduleKind;
use segdistill::ui::SegdistillApp;
use segdistill::ui::state::{AppState, Tab};
use segdistill::ui::train::RunStatus;

fn base_state(runs: &Path, demo: &Path) -> AppState {
    let mut s = AppState { runs_dir: runs.to_path_buf(), demo_dir: Some(demo.to_path_buf()), ..Default::default() };
    s.train.config.model = ModelKind::Mbv3sTiny;
    s.train.config.epochs = 40;
    s.train.config.batch = 4;
    s.train.config.size = 64;
    s.train.config.schedule.kind = ScheduleKind::Constant;
    s
}

#[test]
fn pick_demo_data_start_pause_resume_stop() {
    let demo = tempfile::tempdir().unwrap();
    segdistill::data::demo::generate(
        demo.path(),
        &segdistill::data::demo::DemoConfig { train: 12, val: 4, size: 64, seed: 2, ..Default::default() },
        &|| {},
    )
    .unwrap();
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(base_state(runs.path(), demo.path()));
    h.run_steps(3);
    // A first start without a dataset says so and offers the demo data.
    h.get_by_label("No dataset configured.");
    h.get_by_label("Use the demo dataset").click();
    wait_until(&mut h, "the dataset scan", 30, |a| a.data.usable().is_some());
    h.get_by_label_contains("12 train / 4 val images");
    h.get_by_label("Start").click();
    wait_until(&mut h, "training steps and an evaluation", 120, |a| {
        !a.train.live.steps.is_empty() && !a.train.live.evals.is_empty()
    });
    assert_eq!(h.state().train.live.status, RunStatus::Running);
    h.get_by_label("Pause").click();
    wait_until(&mut h, "the pause", 30, |a| a.train.live.status == RunStatus::Paused);
    let steps = h.state().train.live.steps.len();
    std::thread::sleep(Duration::from_millis(300));
    h.run_steps(3);
    assert_eq!(h.state().train.live.steps.len(), steps, "no steps while paused");
    h.get_by_label("Resume").click();
    wait_until(&mut h, "steps after resuming", 60, |a| {
        a.train.live.status == RunStatus::Running && a.train.live.steps.len() > steps
    });
    h.get_by_label("Stop").click();
    wait_until(&mut h, "the stop", 60, |a| matches!(a.train.live.status, RunStatus::Finished(_)));
    let run_dir = h.state().train.live.info.as_ref().unwrap().run_dir.clone();
    assert!(segdistill::train::checkpoint::last_path(&run_dir).is_file(), "Stop writes a checkpoint");
}

#[test]
fn closing_the_window_during_training_stops_with_a_checkpoint() {
    let demo = tempfile::tempdir().unwrap();
    segdistill::data::demo::generate(
        demo.path(),
        &segdistill::data::demo::DemoConfig { train: 12, val: 4, size: 64, seed: 3, ..Default::default() },
        &|| {},
    )
    .unwrap();
    let runs = tempfile::tempdir().unwrap();
    let mut state = base_state(runs.path(), demo.path());
    state.data_dir = segdistill::data::demo::voc_root(demo.path()).display().to_string();
    let mut h = harness(state);
    wait_until(&mut h, "the dataset scan", 30, |a| a.data.usable().is_some());
    h.get_by_label("Start").click();
    wait_until(&mut h, "a training step", 60, |a| !a.train.live.steps.is_empty());
    let run_dir = h.state().train.live.info.as_ref().unwrap().run_dir.clone();
    // What eframe calls when the window closes.
    eframe::App::on_exit(h.state_mut(), None);
    let ckpt = segdistill::train::checkpoint::load(&segdistill::train::checkpoint::last_path(&run_dir)).unwrap();
    assert!(ckpt.state.step >= 1, "the stopped run kept its progress");
}

/// A finished run to browse, trained inline.
fn trained_run(demo: &Path, runs: &Path) -> std::path::PathBuf {
    trained_run_named(demo, runs, "browse-me", 2)
}

/// A demo dataset, a finished run on it, and the app state that browses it (the temp folders
/// live as long as the returned guards).
fn browse_setup() -> (tempfile::TempDir, tempfile::TempDir, AppState) {
    let demo = tempfile::tempdir().unwrap();
    segdistill::data::demo::generate(
        demo.path(),
        &segdistill::data::demo::DemoConfig { train: 12, val: 6, size: 64, seed: 4, ..Default::default() },
        &|| {},
    )
    .unwrap();
    let runs = tempfile::tempdir().unwrap();
    let run = trained_run(demo.path(), runs.path());
    let mut state = base_state(runs.path(), demo.path());
    state.data_dir = segdistill::data::demo::voc_root(demo.path()).display().to_string();
    state.tab = Tab::Browse;
    state.browse.run = Some(run);
    (demo, runs, state)
}

#[test]
fn browse_sorts_by_iou_and_opens_the_detail_view() {
    let (_demo, _runs, state) = browse_setup();
    let mut h = harness(state);
    wait_until(&mut h, "all predictions", 60, |a| a.browse.is_done() && a.browse.items.len() == 6);
    // Sort: successes first.
    for key in ["student IoU, failures first", "student IoU, successes first"] {
        h.get_by_label("sort").click();
        h.run_steps(2);
        h.get_by_label(key).click();
        h.run_steps(2);
    }
    let app = h.state();
    let ids = app.browse.sorted_ids();
    let score = |id: &str| app.browse.items.iter().find(|i| i.id == id).unwrap().student.as_ref().unwrap().miou;
    assert!(ids.windows(2).all(|w| score(&w[0]) >= score(&w[1])), "sorted by student IoU, best first");
    let first = ids[0].clone();
    h.get_by_label_contains(&first).click();
    h.run_steps(2);
    assert_eq!(h.state().browse.detail_id(), Some(first.as_str()));
    h.get_by_label("Back to the grid");
    h.get_by_label("ground truth");
}

#[test]
fn a_run_becomes_the_teacher_is_evaluated_and_its_quality_persists() {
    let (_demo, _runs, mut state) = browse_setup();
    state.tab = Tab::Train;
    state.browse.run = None;
    state.train.terms = segdistill::ui::train::TermsForm::preset(DistillMode::Response);
    let mut h = harness(state);
    wait_until(&mut h, "the dataset scan", 30, |a| a.data.usable().is_some());
    // The teacher picker offers finished runs; choosing one sets architecture and weights.
    h.get_by_label("From a run…").click();
    h.run_steps(2);
    h.get_by_label_contains("browse-me (mbv3s-tiny").click();
    h.run_steps(2);
    assert_eq!(h.state().state.train.config.teacher, ModelKind::Mbv3sTiny);
    assert!(h.state().state.train.teacher_weights.ends_with("student.safetensors"));
    // The run validated these weights on this dataset's val split: its own figure shows at once.
    wait_until(&mut h, "the run's own evaluation", 10, |a| a.data.teacher_panel.quality().is_some());
    let own = h.state().data.teacher_panel.quality().unwrap().clone();
    h.get_by_label("Evaluate again").click();
    let cache = segdistill::diagnostics::teacher_quality::cache_dir(&h.state().state.runs_dir);
    wait_until(&mut h, "the teacher evaluation", 60, |a| {
        !a.data.teacher_panel.is_evaluating() && std::fs::read_dir(&cache).is_ok_and(|mut d| d.next().is_some())
    });
    let quality = h.state().data.teacher_panel.quality().unwrap().clone();
    assert_eq!(quality.images, 6, "every val image");
    assert!((quality.miou - own.miou).abs() < 1e-4, "the same protocol, the same score: {quality:?} / {own:?}");
    h.get_by_label_contains(&format!("teacher mIoU {:.4}", quality.miou));
    // Two epochs of a tiny student on 12 images: near chance, and the form says so before Start.
    assert!(quality.near_chance(), "{}", quality.miou);
    h.get_by_label_contains("scores near chance");
    // The Runs table lists the teacher.
    h.state_mut().state.tab = Tab::Runs;
    wait_until(&mut h, "the runs scan", 30, |a| !a.runs.entries.is_empty());
    h.get_by_label("near chance");

    // A later start shows the cached result without evaluating again.
    let saved = h.state().state.clone();
    drop(h);
    let mut again = harness(saved);
    wait_until(&mut again, "the cached teacher quality", 30, |a| a.data.teacher_panel.quality().is_some());
    assert_eq!(again.state().data.teacher_panel.quality(), Some(&quality));
    assert!(!again.state().data.teacher_panel.is_evaluating());
}

#[test]
fn the_demo_dataset_offers_to_train_a_teacher() {
    let demo = tempfile::tempdir().unwrap();
    segdistill::data::demo::generate(
        demo.path(),
        &segdistill::data::demo::DemoConfig { train: 8, val: 2, size: 64, seed: 6, ..Default::default() },
        &|| {},
    )
    .unwrap();
    let runs = tempfile::tempdir().unwrap();
    let mut state = base_state(runs.path(), demo.path());
    state.data_dir = segdistill::data::demo::voc_root(demo.path()).display().to_string();
    let mut h = harness(state);
    wait_until(&mut h, "the dataset scan", 30, |a| a.data.usable().is_some());
    h.get_by_label("Train a teacher for this dataset").click();
    wait_until(&mut h, "the teacher run to start", 60, |a| !a.train.live.steps.is_empty());
    let info = h.state().train.live.info.clone().unwrap();
    assert_eq!(info.model, "mbv3s-aspp");
    assert!(info.run_dir.ends_with("teacher-mbv3s-aspp"), "{}", info.run_dir.display());
    h.get_by_label("Stop").click();
    wait_until(&mut h, "the stop", 60, |a| matches!(a.train.live.status, RunStatus::Finished(_)));
    // Stopped, not completed: the teacher field is left as it was.
    assert_eq!(h.state().state.train.teacher_weights, "");
}

#[test]
fn snapshot_first_start_offers_the_demo_dataset() {
    let runs = tempfile::tempdir().unwrap();
    let demo = tempfile::tempdir().unwrap();
    let mut h = snapshot_harness(base_state(runs.path(), demo.path()));
    wait_until(&mut h, "parameter counts", 60, |a| a.train.has_parameter_counts());
    h.run_steps(8); // let panels settle to their final widths
    h.snapshot_options("train_first_start", &snapshot_options());
}

#[test]
fn snapshot_finished_run_and_browse_grid() {
    let (_demo, _runs, state) = browse_setup();
    let mut h = snapshot_harness(state);
    wait_until(&mut h, "all predictions", 60, |a| {
        a.browse.is_done() && a.browse.items.len() == 6 && a.data.usable().is_some()
    });
    h.run_steps(4);
    h.snapshot_options("browse_grid", &snapshot_options());
    let first = h.state().browse.sorted_ids()[0].clone();
    h.get_by_label_contains(&first).click();
    wait_until(&mut h, "the decoded photo", 30, |a| a.browse.detail_ready());
    h.run_steps(4);
    h.snapshot_options("browse_detail", &snapshot_options());
}

#[test]
fn snapshot_the_last_runs_curves_on_start() {
    // Fixed folders: the dataset field and the run's folder are on screen.
    let root = std::env::temp_dir().join("segdistill-snapshot-last-run");
    std::fs::remove_dir_all(&root).ok();
    let (demo, runs) = (root.join("demo"), root.join("runs"));
    let cfg = segdistill::data::demo::DemoConfig { train: 12, val: 6, size: 64, seed: 4, ..Default::default() };
    segdistill::data::demo::generate(&demo, &cfg, &|| {}).unwrap();
    let run = trained_run(&demo, &runs);
    let mut state = base_state(&runs, &demo);
    state.data_dir = segdistill::data::demo::voc_root(&demo).display().to_string();
    state.tab = Tab::Train;
    state.last_run = Some(run);
    let mut h = snapshot_harness(state);
    wait_until(&mut h, "parameter counts and the dataset", 60, |a| {
        a.train.has_parameter_counts() && a.data.usable().is_some()
    });
    assert_eq!(h.state().train.live.evals.len(), 2, "both evaluations read back from the run folder");
    h.run_steps(20); // panels and plot bounds settle
    h.snapshot_options("train_last_run", &snapshot_options());
    drop(h);
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn data_panel_downloads_from_a_local_server_with_errors_and_cancel() {
    use common::http_server::{Behavior, TestServer};
    use segdistill::data::download::checksum::Algorithm;
    use segdistill::ui::downloads::Outcome;
    use segdistill::ui::weights::WeightsSlot;

    let tar = voc_tar();
    let md5 = digest_of(&tar, Algorithm::Md5);
    let scratch = tempfile::tempdir().unwrap();
    let server = TestServer::start(vec![
        ("voc.tar", tar, Behavior::Normal),
        ("fcn_resnet50_coco-1167a1af.pth", b"not the published teacher".to_vec(), Behavior::Normal),
        ("mobilenet_v3_small-047dcff4.pth", vec![0u8; 100_000], Behavior::Stall),
    ]);
    let runs = tempfile::tempdir().unwrap();
    let mut state = base_state(runs.path(), scratch.path());
    state.downloads.data_dir = scratch.path().join("data");
    state.downloads.weights_dir = scratch.path().join("weights");
    state.downloads.voc_url = server.url("voc.tar");
    state.downloads.voc_md5 = md5;
    state.downloads.weights_base_url = server.base.clone();
    let mut h = harness(state);
    h.run_steps(3);

    h.get_by_label("Download VOC 2012 (2.0 GB)").click();
    wait_until(&mut h, "the VOC download and scan", 60, |a| a.data.usable().is_some());
    assert!(matches!(h.state().data.voc_outcome(), Some(Outcome::Done(_))));
    assert!(h.state().state.data_dir.ends_with("VOC2012"), "the dataset field points at the download");
    h.get_by_label_contains("6 train / 3 val images");

    h.get_by_label("Download teacher weights (135 MB)").click();
    wait_until(&mut h, "the teacher download", 30, |a| a.data.weights_outcome(WeightsSlot::Teacher).is_some());
    h.get_by_label_contains("expected 1167a1af");
    assert!(h.state().state.train.teacher_weights.is_empty(), "a rejected file is not configured");

    h.get_by_label("Download backbone weights (10 MB)").click();
    wait_until(&mut h, "the stalled download to start", 30, |a| a.data.is_downloading());
    h.run_steps(2);
    h.get_by_label("Cancel").click();
    wait_until(&mut h, "the cancel", 10, |a| !a.data.is_downloading());
    assert_eq!(h.state().data.weights_outcome(WeightsSlot::Backbone), Some(&Outcome::Cancelled));
    h.get_by_label_contains("download cancelled");
}

#[test]
fn the_runs_folder_is_shown_whole_and_can_be_changed() {
    let (_demo, runs, mut state) = browse_setup();
    let empty = tempfile::tempdir().unwrap();
    state.runs_dir = empty.path().to_path_buf();
    state.tab = segdistill::ui::state::Tab::Runs;
    let mut h = harness(state);
    h.run_steps(4);
    let shown = empty.path().display().to_string();
    assert!(text_input(&h, &shown).is_some(), "the runs folder is shown whole in its field");
    assert!(h.state().runs.entries.is_empty());
    // Typing another folder switches to it (stored absolute) and lists its runs.
    text_input(&h, &shown).unwrap().focus();
    h.run_steps(1);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    text_input(&h, &shown).unwrap().type_text(&runs.path().display().to_string());
    h.run_steps(2);
    assert_eq!(h.state().state.runs_dir, std::fs::canonicalize(runs.path()).unwrap());
    wait_until(&mut h, "the runs of the new folder", 30, |a| !a.runs.entries.is_empty());
}

/// A run stopped after its first step (a checkpoint at epoch 0 of 3): what Stop, a closed window or
/// a killed process leaves.
fn stopped_run(demo: &Path, runs: &Path, name: &str) -> std::path::PathBuf {
    let mut cfg = tiny_config(&segdistill::data::demo::voc_root(demo), runs, name);
    cfg.optimizer.lr = 5e-3;
    // Stopped where the schedule says, not where a stop request catches up with the engine: the
    // same place on a loaded machine as on an idle one.
    cfg.stop_after_epoch = Some(1);
    let run_dir = cfg.run_dir();
    run_to_end(cfg, false).0.unwrap();
    assert!(segdistill::train::checkpoint::last_path(&run_dir).is_file());
    run_dir
}

fn demo_data(train: usize, val: usize, seed: u64) -> tempfile::TempDir {
    let demo = tempfile::tempdir().unwrap();
    let cfg = segdistill::data::demo::DemoConfig { train, val, size: 64, seed, ..Default::default() };
    segdistill::data::demo::generate(demo.path(), &cfg, &|| {}).unwrap();
    demo
}

#[test]
fn a_stopped_run_resumes_from_the_runs_tab_and_start_asks_before_a_new_name() {
    let demo = demo_data(12, 4, 7);
    let runs = tempfile::tempdir().unwrap();
    let run_dir = stopped_run(demo.path(), runs.path(), "mine");
    let saved_step =
        segdistill::train::checkpoint::load_state(&segdistill::train::checkpoint::last_path(&run_dir)).unwrap().step;
    let mut state = base_state(runs.path(), demo.path());
    state.data_dir = segdistill::data::demo::voc_root(demo.path()).display().to_string();
    state.tab = Tab::Runs;
    let mut h = harness(state);
    wait_until(&mut h, "the runs scan", 60, |a| !a.runs.entries.is_empty() && a.data.usable().is_some());
    h.get_by_label_contains("stopped after epoch 1/3");
    h.get_by_label("Resume").click();
    wait_until(&mut h, "steps of the resumed run", 60, |a| {
        a.train.live.steps.last().is_some_and(|s| s.step > saved_step && s.total_steps > 0)
    });
    assert_eq!(h.state().state.tab, Tab::Train, "resuming shows the run's curves");
    assert_eq!(h.state().train.live.info.as_ref().unwrap().run_dir, run_dir);
    assert_eq!(h.state().train.live.info.as_ref().unwrap().resumed_from.map(|r| r.1), Some(saved_step));
    h.get_by_label("Stop").click();
    wait_until(&mut h, "the stop", 60, |a| !a.train.is_running());

    // Start with the same name asks: resume it, start under a fresh name, or cancel.
    h.state_mut().state.train.config.name = "mine".into();
    h.run_steps(2);
    h.get_by_label("Start").click();
    h.run_steps(3); // the click, the question's sizing pass, the question
    h.get_by_label_contains("A run named “mine” exists");
    h.get_by_label("Resume mine");
    h.get_by_label("Cancel").click();
    h.run_steps(2);
    assert!(h.state().question.is_none() && !h.state().train.is_running(), "Cancel starts nothing");
    h.get_by_label("Start").click();
    h.run_steps(3);
    h.get_by_label("Start new as mine-2").click();
    wait_until(&mut h, "the new run under the fresh name", 60, |a| {
        a.train.live.info.as_ref().is_some_and(|i| i.run_dir.ends_with("mine-2") && i.resumed_from.is_none())
    });
    h.get_by_label("Stop").click();
    wait_until(&mut h, "the stop", 60, |a| !a.train.is_running());
}

#[test]
fn closing_during_training_asks_and_stops_with_a_checkpoint() {
    let demo = demo_data(12, 4, 8);
    let runs = tempfile::tempdir().unwrap();
    let mut state = base_state(runs.path(), demo.path());
    state.data_dir = segdistill::data::demo::voc_root(demo.path()).display().to_string();
    let mut h = harness(state);
    wait_until(&mut h, "the dataset scan", 30, |a| a.data.usable().is_some());
    h.get_by_label("Start").click();
    wait_until(&mut h, "a training step", 60, |a| a.train.live.steps.iter().any(|s| s.total_steps > 0));
    let request_close = |h: &mut Harness<'static, SegdistillApp>| {
        h.input_mut().viewports.entry(egui::ViewportId::ROOT).or_default().events.push(egui::ViewportEvent::Close);
        h.run_steps(2);
    };
    // The run line names what the run learns from: the labels alone here.
    h.get_by_label_contains("no distillation on ");
    request_close(&mut h);
    h.get_by_label("Training is running");
    assert!(h.query_by_label("Cancel").is_none(), "one way back, not two buttons that do the same");
    h.get_by_label("Keep training").click();
    h.run_steps(2);
    assert!(h.state().question.is_none() && h.state().train.is_running() && !h.state().closing);
    request_close(&mut h);
    h.get_by_label("Stop and keep a checkpoint").click();
    wait_until(&mut h, "the run to stop before closing", 60, |a| a.closing && !a.train.is_running());
    let run_dir = h.state().train.live.run_dir.clone().unwrap();
    let ckpt = segdistill::train::checkpoint::load_state(&segdistill::train::checkpoint::last_path(&run_dir)).unwrap();
    assert!(ckpt.step >= 1, "the stopped run kept its progress");
    // The app reopens on the run it was showing, with its curves read back from the folder.
    let again = SegdistillApp::with_state(h.state().state.clone());
    assert_eq!(again.train.live.run_dir.as_deref(), Some(run_dir.as_path()));
    assert!(!again.train.live.steps.is_empty());
    assert!(again.train.resumable_run().is_some(), "and offers Resume");
}

#[test]
fn an_empty_path_field_reads_as_a_hint_not_a_path() {
    use egui_kittest::kittest::NodeT as _;
    let runs = tempfile::tempdir().unwrap();
    let mut h = harness(AppState { runs_dir: runs.path().to_path_buf(), ..Default::default() });
    h.run_steps(3);
    // The dataset and both weights fields are empty: each says so, none shows a file name.
    let hints: Vec<_> = h
        .query_all(egui_kittest::kittest::by().role(egui::accesskit::Role::TextInput))
        .filter_map(|n| n.accesskit_node().placeholder().map(String::from))
        .collect();
    assert_eq!(hints.iter().filter(|p| *p == "(none chosen)").count(), 3, "{hints:?}");
    assert!(!hints.iter().any(|p| p.ends_with(".pth")), "{hints:?}");
}

#[test]
fn a_long_status_is_elided_within_a_narrow_window() {
    let demo = demo_data(12, 4, 8);
    let runs = tempfile::tempdir().unwrap();
    let run = stopped_run(demo.path(), runs.path(), "stopped");
    let mut state = base_state(runs.path(), demo.path());
    state.tab = Tab::Train;
    state.last_run = Some(run);
    let width = 760.0;
    let mut h =
        Harness::builder().with_size(egui::vec2(width, 600.0)).build_eframe(move |cc| SegdistillApp::start(cc, state));
    h.run_steps(5);
    // The whole text stays the label's (shown on hover); what is drawn ends inside the window.
    let status = h.get_by_label_contains("(checkpoint saved; Resume continues it)");
    assert!(status.rect().max.x <= width, "the status runs past the window: {:?}", status.rect());
}

#[test]
fn the_delta_baseline_is_a_completed_no_distillation_run_and_can_be_chosen() {
    let demo = demo_data(12, 6, 9);
    let runs = tempfile::tempdir().unwrap();
    let first = trained_run_named(demo.path(), runs.path(), "base-a", 1);
    let second = trained_run_named(demo.path(), runs.path(), "base-b", 2);
    stopped_run(demo.path(), runs.path(), "partial");
    let mut state = base_state(runs.path(), demo.path());
    state.tab = Tab::Runs;
    let mut h = harness(state);
    wait_until(&mut h, "the runs with their rows", 120, |a| {
        a.runs.entries.len() == 3 && a.runs.entries.iter().filter(|e| e.row.is_some()).count() >= 2
    });
    let speeds = segdistill::report::speed::cache_path(runs.path(), segdistill::model::ModelKind::Mbv3sTiny);
    assert!(speeds.is_file() && !first.join("speed.json").exists() && !second.join("speed.json").exists());
    // The newest completed no-KD run is the default; the partial run is never offered.
    h.get_by_label("Δ baseline for mbv3s-tiny").click();
    h.run_steps(2);
    assert!(h.query_by_label_contains("partial (mIoU").is_none(), "a partial run is not a baseline");
    h.get_by_label_contains("base-a (mIoU").click();
    h.run_steps(2);
    assert_eq!(h.state().state.baselines.get("mbv3s-tiny"), Some(&first));
    // Sorting by a column orders the rows (best mIoU first on the first click).
    h.get_by_label("mIoU").click();
    h.run_steps(2);
    let names = h.state().runs.sorted_names();
    let best = |n: &str| {
        let e = h.state().runs.entries.iter().find(|e| e.name == n).unwrap();
        e.state.as_ref().and_then(|s| s.best.as_ref()).map_or(f64::NAN, |b| b.miou)
    };
    assert!(names.windows(2).all(|w| best(&w[0]) >= best(&w[1]) || best(&w[1]).is_nan()), "{names:?}");
}

#[test]
fn the_detail_view_steps_through_the_current_order() {
    let (_demo, _runs, state) = browse_setup();
    let mut h = harness(state);
    wait_until(&mut h, "all predictions", 60, |a| a.browse.is_done() && a.browse.items.len() == 6);
    let ids = h.state().browse.sorted_ids();
    h.get_by_label_contains(&ids[0]).click();
    wait_until(&mut h, "the detail view", 10, |a| a.browse.detail_id().is_some());
    assert_eq!(h.state().browse.detail_id(), Some(ids[0].as_str()));
    h.key_press(egui::Key::ArrowRight);
    wait_until(&mut h, "the next image", 10, |a| a.browse.detail_id() == Some(ids[1].as_str()));
    h.get_by_label("next →").click();
    wait_until(&mut h, "the next image", 10, |a| a.browse.detail_id() == Some(ids[2].as_str()));
    h.get_by_label("← previous").click();
    wait_until(&mut h, "the previous image", 10, |a| a.browse.detail_id() == Some(ids[1].as_str()));
    h.key_press(egui::Key::ArrowLeft);
    wait_until(&mut h, "the first image", 10, |a| a.browse.detail_id() == Some(ids[0].as_str()));
}

#[test]
fn a_panel_pushes_a_command_and_the_app_applies_it() {
    use segdistill::ui::commands::{Command, CommandQueue};
    use segdistill::ui::runs::RunsTab;
    let runs = tempfile::tempdir().unwrap();
    let state = AppState { runs_dir: runs.path().to_path_buf(), ..Default::default() };
    // The panel alone: drawing and clicking only records what was asked.
    let mut panel = egui_kittest::Harness::new_ui_state(
        |ui, (tab, state, queue): &mut (RunsTab, AppState, CommandQueue)| tab.ui(ui, state, None, None, queue),
        (RunsTab::default(), state.clone(), CommandQueue::default()),
    );
    panel.get_by_label("Refresh").click();
    panel.run();
    let pushed = panel.state_mut().2.take();
    assert_eq!(pushed, vec![Command::RescanRuns]);
    // The app applies it: the scan job starts.
    let demo = demo_data(12, 4, 10);
    let run_dir = stopped_run(demo.path(), runs.path(), "listed");
    let mut h = harness(state);
    h.run_steps(2);
    let ctx = h.ctx.clone();
    h.state_mut().apply(&ctx, Command::ResumeRun(run_dir.clone()));
    assert!(h.state().train.is_running(), "applying ResumeRun starts the engine");
    assert_eq!(h.state().train.live.run_dir.as_deref(), Some(run_dir.as_path()));
    h.state_mut().apply(&ctx, Command::StopRun);
    wait_until(&mut h, "the stop", 60, |a| !a.train.is_running());
}

#[test]
fn resume_acts_on_the_row_clicked_whatever_its_config_json_says() {
    use segdistill::ui::commands::Command;
    let runs = tempfile::tempdir().unwrap();
    let demo = demo_data(12, 4, 10);
    let made = stopped_run(demo.path(), runs.path(), "made-here");
    // Moved to another name, with a damaged configuration: the checkpoint still says what it is.
    let moved = runs.path().join("moved-here");
    std::fs::rename(&made, &moved).unwrap();
    std::fs::write(moved.join("config.json"), "{}").unwrap();
    let state = AppState { runs_dir: runs.path().to_path_buf(), ..Default::default() };
    let mut h = harness(state);
    h.run_steps(2);
    let ctx = h.ctx.clone();
    h.state_mut().apply(&ctx, Command::ResumeRun(moved.clone()));
    assert!(h.state().train.is_running(), "the moved run resumes");
    assert_eq!(h.state().train.live.run_dir.as_deref(), Some(moved.as_path()));
    h.state_mut().apply(&ctx, Command::StopRun);
    wait_until(&mut h, "the stop", 60, |a| !a.train.is_running());
    assert!(!made.exists() && !runs.path().join("run").exists(), "nothing was made at another path");
}

#[test]
fn a_run_exports_its_student_as_onnx_from_the_runs_tab() {
    let (_demo, runs, mut state) = browse_setup();
    state.tab = Tab::Runs;
    let mut h = harness(state);
    wait_until(&mut h, "the run's row", 60, |a| a.runs.entries.iter().any(|e| e.row.is_some()));
    h.get_by_label("ONNX").click();
    let exported = runs.path().join("exports/browse-me.onnx");
    wait_until(&mut h, "the ONNX file", 60, |_| exported.is_file());
    wait_until(&mut h, "the note", 10, |a| !a.runs.is_exporting());
    h.get_by_label_contains("ONNX file written to");
    let proto = candle_onnx::read_file(&exported).unwrap();
    assert_eq!(proto.graph.unwrap().output[0].name, "logits");
}

/// A completed run without distillation (`epochs` epochs).
fn trained_run_named(demo: &Path, runs: &Path, name: &str, epochs: usize) -> std::path::PathBuf {
    let mut cfg =
        segdistill::train::TrainConfig { epochs, ..tiny_config(&segdistill::data::demo::voc_root(demo), runs, name) };
    cfg.optimizer.lr = 5e-3;
    run_to_end(cfg.clone(), false).0.unwrap();
    cfg.run_dir()
}

/// The text field showing `value` (its label node shows the same value).
fn text_input<'a>(h: &'a Harness<'static, SegdistillApp>, value: &'a str) -> Option<egui_kittest::Node<'a>> {
    use egui_kittest::kittest::NodeT as _;
    h.get_all_by_value(value).find(|n| n.accesskit_node().role() == egui::accesskit::Role::TextInput)
}

#[test]
fn the_runs_tab_lists_teacher_caches_and_removes_the_orphaned_ones() {
    use segdistill::distill::teacher_cache::manifest::Manifest;
    let runs = tempfile::tempdir().unwrap();
    let root = runs.path().join("teacher-cache");
    let teacher = runs.path().join("teacher.safetensors");
    std::fs::write(&teacher, b"weights").unwrap();
    let (len, modified) = segdistill::distill::teacher_cache::manifest::file_stamp(&teacher).unwrap();
    let folder = |name: &str, teacher_len: u64| {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.tc"), vec![0u8; 1000]).unwrap();
        let manifest = Manifest {
            teacher_model: "fcn-resnet50".into(),
            teacher_weights: teacher.clone(),
            teacher_len,
            teacher_modified_ns: modified,
            dataset: runs.path().to_path_buf(),
        };
        manifest.write(&dir).unwrap();
        dir
    };
    let current = folder("current", len);
    let orphaned = folder("orphaned", len + 1); // built for another version of the teacher file
    let state = AppState { runs_dir: runs.path().to_path_buf(), tab: Tab::Runs, ..Default::default() };
    let mut h = harness(state);
    wait_until(&mut h, "the cache listing", 30, |a| a.runs.caches.len() == 2);
    h.get_by_label("Remove orphaned caches").click();
    wait_until(&mut h, "the removal", 30, |_| !orphaned.exists());
    assert!(current.is_dir(), "the current cache is kept");
    wait_until(&mut h, "the listing after it", 30, |a| a.runs.caches.len() == 1);
}

#[test]
fn distilling_on_images_without_masks_from_the_train_form() {
    let demo = tempfile::tempdir().unwrap();
    let cfg =
        segdistill::data::demo::DemoConfig { train: 8, val: 2, unlabeled: 6, size: 64, seed: 7, ..Default::default() };
    segdistill::data::demo::generate(demo.path(), &cfg, &|| {}).unwrap();
    let runs = tempfile::tempdir().unwrap();
    let teacher = trained_run_named(demo.path(), runs.path(), "teacher", 1);
    let mut state = base_state(runs.path(), demo.path());
    state.data_dir = segdistill::data::demo::voc_root(demo.path()).display().to_string();
    state.train.terms = segdistill::ui::train::TermsForm::preset(DistillMode::Response);
    state.train.config.teacher = ModelKind::Mbv3sTiny;
    state.train.teacher_weights = teacher.join("student.safetensors").display().to_string();
    // Tall enough to show the whole form (the term list makes it long).
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 1600.0))
        .build_eframe(move |cc| SegdistillApp::start(cc, state));
    wait_until(&mut h, "the dataset scan", 30, |a| a.data.usable().is_some());
    h.get_by_label("also distil on images without masks").click();
    h.run_steps(2);
    assert_eq!(h.state().state.train.config.unlabeled.as_deref(), Some("unlabeled"));
    h.get_by_label("Start").click();
    wait_until(&mut h, "the run to start", 60, |a| a.train.live.info.is_some());
    let info = h.state().train.live.info.clone().unwrap();
    assert_eq!((info.train_images, info.unlabeled_images), (8, 6));
    h.get_by_label("Stop").click();
    wait_until(&mut h, "the stop", 60, |a| matches!(a.train.live.status, RunStatus::Finished(_)));
}

#[test]
fn ticking_a_loss_term_starts_the_run_its_loss_list_describes() {
    use segdistill::distill::loss_terms::LossTerms;
    use segdistill::ui::train::TermsForm;
    let (_demo, _runs, mut state) = browse_setup();
    let teacher = state.browse.run.clone().unwrap().join("student.safetensors");
    state.tab = Tab::Train;
    state.train.config.teacher = ModelKind::Mbv3sTiny;
    state.train.teacher_weights = teacher.display().to_string();
    let mut h = harness(state);
    wait_until(&mut h, "the dataset scan", 30, |a| a.data.usable().is_some());
    // A preset button fills the list; a ticked term makes it a term list.
    h.get_by_label("combined").click();
    h.run_steps(2);
    assert_eq!(h.state().state.train.terms, TermsForm::preset(DistillMode::Combined));
    h.get_by_label("cwd-logits").click();
    h.run_steps(2);
    h.get_by_label("Start").click();
    wait_until(&mut h, "a training step", 120, |a| !a.train.live.steps.is_empty());
    let step = h.state().train.live.steps[0].clone();
    let names: Vec<&str> = step.terms.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ce", "response", "feature", "cwd-logits"], "every ticked term is trained and logged");
    let run_dir = h.state().train.live.info.as_ref().unwrap().run_dir.clone();
    h.get_by_label("Stop").click();
    wait_until(&mut h, "the stop", 60, |a| matches!(a.train.live.status, RunStatus::Finished(_)));
    let started = segdistill::train::run_folder::saved_config(&run_dir).unwrap().unwrap();
    let typed: LossTerms = "ce=1,response=0.5:tau=4,feature=0.3,cwd-logits=3".parse().unwrap();
    assert_eq!(started.loss_terms, Some(typed), "the run `--loss` with the same list starts");
}

#[test]
fn a_study_folder_shows_its_grid_and_the_summary_of_study_md() {
    use segdistill::report::study;
    let demo = demo_data(12, 6, 11);
    let runs = tempfile::tempdir().unwrap();
    let study_dir = runs.path().join("lr-study");
    // Two methods (the baseline and a higher learning rate) × two seeds, trained inline.
    for (cell, lr) in [("none", 5e-3), ("fast", 2e-2)] {
        for seed in 0..2 {
            let name = study::run_name(cell, seed);
            let mut cfg = segdistill::train::TrainConfig {
                epochs: 1,
                seed,
                ..tiny_config(&segdistill::data::demo::voc_root(demo.path()), &study_dir, &name)
            };
            cfg.optimizer.lr = lr;
            run_to_end(cfg, false).0.unwrap();
        }
    }
    let mut state = base_state(runs.path(), demo.path());
    state.tab = Tab::Runs;
    let mut h = harness(state);
    wait_until(&mut h, "the study", 60, |a| a.runs.studies.len() == 1);
    h.run_steps(2);
    let shown = &h.state().runs.studies[0];
    assert_eq!((shown.cells.len(), shown.seeds.clone()), (2, vec![0, 1]));
    h.get_by_label("Study lr-study");
    h.get_by_label("4/4 runs completed");
    assert_eq!(h.get_all_by_label("completed").count(), 4, "every cell of the grid is completed");
    // The table shows the numbers of study.md, from the same rows.
    let cells = study::cells(&study_dir).unwrap();
    let rows = study::summary_rows(&cells);
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row.runs, 2);
        // Mean ± sd, Δ and p (the dashes of the baseline's Δ and p are not unique).
        for text in segdistill::ui::study::summary_cells(row).iter().skip(2).filter(|t| t.as_str() != "—") {
            h.get_by_label(text);
        }
    }
    let fast = rows.iter().find(|r| r.name == "fast").unwrap();
    assert!(fast.delta.is_some(), "Δ against the none cell");
    let markdown = study::summary_markdown(&cells);
    let (m, sd) = fast.mean_sd.unwrap();
    assert!(markdown.contains(&format!("{m:.4} ± {sd:.4}")), "{markdown}");
    // The New study form makes the command for the Train form's settings.
    h.get_by_label("New study…").click();
    h.run_steps(2);
    h.get_by_label("choose a dataset in the Train tab first");
}

#[test]
fn start_study_trains_the_grid_one_run_after_another() {
    let demo = demo_data(12, 4, 12);
    let runs = tempfile::tempdir().unwrap();
    let teacher = trained_run_named(demo.path(), runs.path(), "teacher", 1);
    let mut state = base_state(runs.path(), demo.path());
    state.data_dir = segdistill::data::demo::voc_root(demo.path()).display().to_string();
    state.train.config.epochs = 1;
    state.train.config.teacher = ModelKind::Mbv3sTiny;
    state.train.teacher_weights = segdistill::train::checkpoint::student_path(&teacher).display().to_string();
    state.tab = Tab::Runs;
    let mut h = harness(state);
    wait_until(&mut h, "the dataset scan", 30, |a| a.data.usable().is_some());
    h.get_by_label("New study…").click();
    h.run_steps(2);
    h.state_mut().runs.new_study.seeds = 2;
    h.run_steps(2);
    h.get_by_label("Start study").click();
    wait_until(&mut h, "the grid trained", 300, |a| {
        a.runs.study_queue.is_none() && a.runs.studies.first().is_some_and(|s| s.completed() == (4, 4))
    });
    let study = &h.state().runs.studies[0];
    assert_eq!(study.cells.keys().collect::<Vec<_>>(), ["none", "response"]);
    assert_eq!(study.seeds, [0, 1]);
    let baseline = segdistill::train::run_folder::read_config(&runs.path().join("study/none-seed1")).unwrap();
    assert!(baseline.teacher_weights.is_none() && baseline.seed == 1, "the baseline learns from labels alone");
}
