//! The desktop app (eframe/egui).

mod app;

pub use app::SegdistillApp;

/// Opens the main window and runs until it is closed.
pub fn run_app() -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_title("segdistill")
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([800.0, 500.0]),
        ..Default::default()
    };
    eframe::run_native("segdistill", options, Box::new(|cc| Ok(Box::new(SegdistillApp::new(cc))))).map_err(|e| {
        anyhow::anyhow!("cannot open the window: {e} (is a display available? set DISPLAY or WAYLAND_DISPLAY)")
    })
}
