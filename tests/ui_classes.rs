//! The Browse tab at ADE20K's 150 classes (the demo written in the ADE20K layout, a run trained
//! inline): the confusion matrix zooms to the most confused classes and lists the largest
//! confusions, the per-class IoU bars show the worst N or all, and the detail view's legend
//! searches the class names and toggles all / none / only one class. Driven through
//! egui_kittest like tests/ui_app.rs, with a snapshot of each view.

mod common;

use common::app::{snapshot_harness, snapshot_options, wait_until};

use egui_kittest::kittest::Queryable;
use segdistill::data::demo::DemoConfig;
use segdistill::data::demo_layouts::{DemoLayout, generate};
use segdistill::distill::DistillMode;
use segdistill::model::ModelKind;
use segdistill::ui::state::{AppState, Tab};

/// An ADE20K-layout demo, a run trained on it, and the state that browses it.
fn ade20k_browse_setup() -> (tempfile::TempDir, AppState) {
    let tmp = tempfile::tempdir().unwrap();
    let config = DemoConfig { train: 6, val: 4, size: 48, seed: 2, ..Default::default() };
    let root = generate(DemoLayout::Ade20k, &tmp.path().join("data"), &config, &|| {}).unwrap();
    let runs = tmp.path().join("runs");
    let mut cfg = segdistill::train::TrainConfig {
        name: "ade".into(),
        runs_dir: runs.clone(),
        data: root.clone(),
        model: ModelKind::Mbv3sTiny,
        distill: DistillMode::None,
        epochs: 1,
        batch: 2,
        size: 48,
        workers: 1,
        ..Default::default()
    };
    cfg.optimizer.lr = 5e-3;
    let (tx, _rx) = crossbeam_channel::unbounded();
    segdistill::train::run(cfg.clone(), false, &segdistill::train::Control::default(), &tx).unwrap();
    let mut state = AppState { runs_dir: runs, ..Default::default() };
    state.data_dir = root.display().to_string();
    state.tab = Tab::Browse;
    state.browse.run = Some(cfg.run_dir());
    (tmp, state)
}

#[test]
fn browse_is_usable_at_150_classes() {
    let (_tmp, state) = ade20k_browse_setup();
    let mut h = snapshot_harness(state);
    wait_until(&mut h, "all predictions", 60, |a| {
        a.browse.is_done() && a.browse.items.len() == 4 && a.data.usable().is_some()
    });
    h.run_steps(4);
    // The matrix zooms (150 classes are far too many cells) and lists the largest confusions.
    h.get_by_label("classes shown");
    h.get_by_label_contains("of 150: the most confused");
    h.get_by_label("Largest confusions");
    // The IoU bars: the worst few, or all of them.
    h.get_by_label("Per-class IoU of the student");
    // Classes in the ground truth or the student's predictions of the browsed images.
    let present = {
        let mut seen = std::collections::BTreeSet::new();
        for item in &h.state().browse.items {
            for &(t, p, _) in &item.student.as_ref().unwrap().confusions {
                seen.extend([t, p]);
            }
        }
        seen.len()
    };
    assert!(present > 1);
    h.get_by_label_contains(&format!("{} of {present} classes present, worst first", present.min(12)));
    h.snapshot_options("browse_150_classes", &snapshot_options());
    h.get_by_label("all").click();
    h.run_steps(2);
    h.get_by_label_contains(&format!("{present} of {present} classes present, worst first"));

    // The detail view's legend: search, only this, none, all.
    let first = h.state().browse.sorted_ids()[0].clone();
    h.get_by_label_contains(&first).click();
    wait_until(&mut h, "the decoded photo", 30, |a| a.browse.detail_ready());
    assert_eq!(h.state().browse.detail_shown_classes().map(|c| c.len()), Some(150));
    assert!(h.get_all_by_label("only").count() > 1, "the image's classes are listed");
    h.get_by_label("classes").focus();
    h.run_steps(1);
    h.get_by_label("classes").type_text("wal");
    h.run_steps(2);
    // The demo's background is written as ADE20K's "wall": the search keeps it alone.
    h.get_by_label("wall");
    assert_eq!(h.get_all_by_label("only").count(), 1, "the search hides the other classes");
    h.get_by_label("only").click();
    h.run_steps(2);
    assert_eq!(h.state().browse.detail_shown_classes(), Some(vec![0]), "only wall");
    h.get_by_label("none").click();
    h.run_steps(2);
    assert_eq!(h.state().browse.detail_shown_classes(), Some(vec![]));
    h.get_by_label("all").click();
    h.run_steps(2);
    assert_eq!(h.state().browse.detail_shown_classes().map(|c| c.len()), Some(150));
    h.run_steps(4);
    h.snapshot_options("browse_detail_150_classes", &snapshot_options());
}
