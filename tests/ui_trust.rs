//! Numbers the app shows can be trusted, driven through egui_kittest: speeds measured once per
//! architecture with their spread, the report comparing as the Runs table does and describing
//! runs as it does, Δ marked where schedules differ, the table exported as CSV, legends beside
//! the data rather than on it, and class names on the per-class bars.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::app::{harness, wait_until};
use common::*;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use segdistill::model::ModelKind;
use segdistill::ui::plots::{CurvePlot, Series, XAxis, class_bars};
use segdistill::ui::state::{AppState, Tab};

/// A run of the tiny student without distillation: `epochs` planned, stopped after `stop_after`.
fn run(demo: &Path, runs: &Path, name: &str, epochs: usize, stop_after: Option<usize>) -> PathBuf {
    let mut cfg = segdistill::train::TrainConfig {
        epochs,
        stop_after_epoch: stop_after,
        ..tiny_config(&segdistill::data::demo::voc_root(demo), runs, name)
    };
    cfg.optimizer.lr = 5e-3;
    run_to_end(cfg.clone(), false).0.unwrap();
    cfg.run_dir()
}

/// The report's line of a run in the table (`| name | …`), its cells trimmed.
fn report_cells(md: &str, name: &str) -> Vec<String> {
    let line = md.lines().find(|l| l.starts_with(&format!("| {name} |"))).unwrap_or_else(|| panic!("{name} in\n{md}"));
    line.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect()
}

#[test]
fn the_report_csv_and_table_show_the_same_runs_baselines_and_speeds() {
    let (demo_dir, _) = demo_dataset(12, 6, 64);
    let demo = demo_dir.path();
    let runs = tempfile::tempdir().unwrap();
    let base_a = run(demo, runs.path(), "base-a", 1, None);
    let base_b = run(demo, runs.path(), "base-b", 2, None);
    let partial = run(demo, runs.path(), "partial", 3, Some(1));
    let mut state = AppState { runs_dir: runs.path().to_path_buf(), tab: Tab::Runs, ..Default::default() };
    state.train.config.model = ModelKind::Mbv3sTiny;
    // The user chose base-a as the baseline, then selected only the other two runs.
    state.baselines.insert("mbv3s-tiny".into(), base_a.clone());
    let mut h = harness(state);
    wait_until(&mut h, "the runs with their rows", 120, |a| {
        a.runs.entries.iter().filter(|e| e.row.is_some()).count() == 3
    });
    h.state_mut().runs.selected = [base_b.clone(), partial.clone()].into();
    h.run_steps(2);

    // One speed figure per architecture and size, in the runs folder, shown with its spread.
    let cache = segdistill::report::speed::cache_path(runs.path(), ModelKind::Mbv3sTiny);
    assert!(cache.is_file(), "{} holds the speed figures", cache.display());
    for dir in [&base_a, &base_b, &partial] {
        assert!(!dir.join("speed.json").exists(), "no per-run speed in {}", dir.display());
    }
    let ms: Vec<f64> = h.state().runs.entries.iter().filter_map(|e| Some(e.row.as_ref()?.ms_per_image)).collect();
    assert!(ms.windows(2).all(|w| w[0] == w[1]), "the same architecture and size, the same figure: {ms:?}");
    assert!(h.query_all_by_label_contains(" ±").count() >= 3, "each time shows its spread");

    // Δ of a run stopped at 1/3 epochs against a 1-epoch baseline is marked, and says why on hover.
    assert!(h.query_all_by_label_contains("†").count() >= 1, "a Δ marked †");

    // The table as CSV: the same columns and texts as shown.
    h.get_by_label("Export CSV").click();
    h.run_steps(3);
    let csv_path = runs.path().join("exports").join("runs-table.csv");
    let csv = std::fs::read_to_string(&csv_path).unwrap_or_else(|e| panic!("{}: {e}", csv_path.display()));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "run,model,mode,status,mIoU,Δ mIoU,params,MACs,ms/image,train time,score");
    assert_eq!(lines.len(), 4, "{csv}");
    let csv_row = |name: &str| -> Vec<String> {
        let line = lines.iter().find(|l| l.starts_with(&format!("{name},"))).unwrap();
        line.split(',').map(String::from).collect()
    };
    assert_eq!(csv_row("base-a")[5], "baseline");
    assert!(csv_row("partial")[3].starts_with("stopped after epoch 1/3"), "{:?}", csv_row("partial"));

    // The report: the table's baseline (added although not selected), its Δ and the same run description.
    h.get_by_label("Export report").click();
    let report = runs.path().join("report").join("report.md");
    wait_until(&mut h, "the report", 300, |a| !a.runs.is_exporting() && report.is_file());
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("Baselines: mbv3s-tiny: base-a."), "{md}");
    assert!(md.contains("was not among the selected runs; it is added to the table"), "{md}");
    for name in ["base-b", "partial"] {
        assert_eq!(report_cells(&md, name)[4], csv_row(name)[5], "the same Δ for {name} in the report and the table");
        assert_eq!(report_cells(&md, name)[8], csv_row(name)[8], "the same ms/image for {name}");
    }
    assert!(report_cells(&md, "partial")[4].ends_with('†'), "{md}");
    assert!(md.contains("- † partial: trained unlike its baseline base-a: epochs 1/3 vs 1/1"), "{md}");
    let described = md.lines().find(|l| l.starts_with("- **partial**")).unwrap();
    assert!(described.contains(&csv_row("partial")[3]), "the report says what the table says: {described}");
    assert!(!described.contains("3 epochs"), "{described}");

    // Measure again stores fresh figures in the background.
    let before = std::fs::metadata(&cache).unwrap().modified().unwrap();
    h.get_by_label("Measure again").click();
    wait_until(&mut h, "the speeds measured again", 120, |_| {
        std::fs::metadata(&cache).and_then(|m| m.modified()).is_ok_and(|t| t > before)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.query_by_label_contains("speed figure(s) measured again").is_none() {
        assert!(Instant::now() < deadline, "no word that the speeds were measured again");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every text painted in the last frame.
fn painted_texts(output: &egui::FullOutput) -> Vec<String> {
    fn walk(shape: &egui::Shape, out: &mut Vec<String>) {
        match shape {
            egui::Shape::Text(t) => out.push(t.galley.text().to_string()),
            egui::Shape::Vec(v) => v.iter().for_each(|s| walk(s, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    output.shapes.iter().for_each(|c| walk(&c.shape, &mut out));
    out
}

#[test]
fn legends_stay_beside_the_data_and_hide_a_series_on_click() {
    let ramp = |k: f64| (1..=8).map(|e| [e as f64, k * e as f64 / 8.0]).collect::<Vec<_>>();
    let series = vec![
        Series::new("val mIoU", ramp(0.6), egui::Color32::RED),
        Series::new("pixel accuracy", ramp(1.0), egui::Color32::BLUE),
    ];
    let mut h = Harness::builder().with_size(egui::vec2(420.0, 320.0)).build_ui_state(
        move |ui, frame: &mut egui::Rect| {
            let plot = CurvePlot {
                id: "legend_test",
                x: XAxis::Epoch,
                y_label: "fraction",
                y_range: Some((0.0, 1.0)),
                size: egui::vec2(400.0, 280.0),
                smoothing: 0.0,
            };
            *frame = plot.show(ui, &series);
        },
        egui::Rect::NOTHING,
    );
    h.run_steps(3);
    let frame = *h.state();
    assert!(frame.height() > 150.0, "the plot keeps most of its height: {frame:?}");
    for name in ["val mIoU", "pixel accuracy"] {
        let entry = h.get_by_label(name).rect();
        assert!(!entry.intersects(frame), "the {name} legend entry {entry:?} lies on the data area {frame:?}");
    }
    h.get_by_label("pixel accuracy").click();
    h.run_steps(2);
    let lines = painted_texts(h.output());
    assert!(lines.iter().any(|t| t == "pixel accuracy"), "the entry stays, to show it again");
}

#[test]
fn class_names_are_written_on_the_bars_where_they_fit() {
    let classes = segdistill::data::ClassSet::voc();
    let iou: Vec<Option<f64>> = (0..21).map(|c| Some(0.1 + 0.04 * c as f64)).collect();
    // The Train tab's bar plot: a third of a 1280-point window.
    let (names, colors) = (classes.names.clone(), classes.colors.clone());
    let mut h = Harness::builder()
        .with_size(egui::vec2(440.0, 300.0))
        .build_ui(move |ui| class_bars(ui, "bars", egui::vec2(410.0, 280.0), &names, &colors, &iou));
    h.run_steps(3);
    let texts = painted_texts(h.output());
    let named: Vec<&String> = classes
        .names
        .iter()
        .filter(|n| texts.iter().any(|t| t == *n || (t.ends_with('…') && n.starts_with(t.trim_end_matches('…')))))
        .collect();
    assert!(named.len() >= 18, "class names on the bars: {named:?} of {texts:?}");
}
