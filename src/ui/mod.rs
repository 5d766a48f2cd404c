//! The desktop app (eframe/egui): Train, Runs and Browse tabs over the engine, the evaluator and
//! the report. Panels draw; the engine and the workers compute on their own threads.

pub mod app;
pub mod browse_tab;
pub mod data_panel;
pub mod downloads;
pub mod file_dialog;
pub mod jobs;
pub mod runs_tab;
pub mod state;
pub mod teacher_panel;
pub mod train_tab;
pub mod widgets;

pub use app::SegdistillApp;

/// Opens the main window and runs until it is closed.
pub fn run_app() -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_title("segdistill")
            .with_app_id("segdistill")
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([900.0, 560.0]),
        ..Default::default()
    };
    eframe::run_native("segdistill", options, Box::new(|cc| Ok(Box::new(SegdistillApp::new(cc))))).map_err(|e| {
        anyhow::anyhow!("cannot open the window: {e} (is a display available? set DISPLAY or WAYLAND_DISPLAY)")
    })
}
