//! The desktop app (eframe/egui): Train, Runs and Browse tabs over the engine, the evaluator and
//! the report. Panels draw and push commands (`commands`), which the app applies once per frame;
//! the engine and the workers compute on their own threads.

pub mod app;
pub mod browse;
pub mod commands;
pub mod data_panel;
pub mod downloads;
pub mod file_dialog;
pub mod jobs;
pub mod plot_export;
pub mod plots;
pub mod runs;
pub mod state;
pub mod study;
pub mod teacher_panel;
pub mod train;
pub mod weights;
pub mod widgets;

pub use app::SegdistillApp;

/// Opens the main window and runs until it is closed.
pub fn run_app() -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_title("segdistill")
            .with_app_id("segdistill")
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([900.0, 560.0])
            .with_icon(window_icon()),
        ..Default::default()
    };
    eframe::run_native("segdistill", options, Box::new(|cc| Ok(Box::new(SegdistillApp::new(cc))))).map_err(|e| {
        anyhow::anyhow!("cannot open the window: {e} (is a display available? set DISPLAY or WAYLAND_DISPLAY)")
    })
}

/// egui's fonts with Hack (bundled with them) as a fallback of the proportional family, for the
/// arrows and triangles that Ubuntu-Light lacks (← → ▲ ▼ in the detail view and the Runs table).
pub fn fonts() -> egui::FontDefinitions {
    let mut fonts = egui::FontDefinitions::default();
    if let Some(proportional) = fonts.families.get_mut(&egui::FontFamily::Proportional)
        && fonts.font_data.contains_key("Hack")
    {
        proportional.push("Hack".to_owned());
    }
    fonts
}

/// The window and task-bar icon (`assets/icon.png`, built into the binary). A damaged file would
/// be a build defect, caught by the test below; the window then opens with the default icon.
fn window_icon() -> egui::IconData {
    let decoded = image::load_from_memory_with_format(include_bytes!("../../assets/icon.png"), image::ImageFormat::Png);
    match decoded {
        Ok(img) => {
            let rgba = img.to_rgba8();
            egui::IconData { width: rgba.width(), height: rgba.height(), rgba: rgba.into_raw() }
        }
        Err(_) => egui::IconData::default(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_window_icon_decodes() {
        let icon = super::window_icon();
        assert_eq!((icon.width, icon.height), (128, 128));
        assert_eq!(icon.rgba.len(), 128 * 128 * 4);
        assert!(
            icon.rgba.chunks(4).any(|p| p[3] == 0) && icon.rgba.chunks(4).any(|p| p[3] == 255),
            "shaped, with transparency"
        );
    }
}
