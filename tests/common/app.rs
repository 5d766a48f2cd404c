//! The app driven through egui_kittest: the window every UI test opens, and stepping it until a
//! background job (the engine, a scan, a measurement) has done its part.

use std::time::{Duration, Instant};

use egui_kittest::{Harness, SnapshotOptions};
use segdistill::ui::SegdistillApp;
use segdistill::ui::state::AppState;

/// The app in a 1280×800 window, started from `state`.
pub fn harness(state: AppState) -> Harness<'static, SegdistillApp> {
    Harness::builder().with_size(egui::vec2(1280.0, 800.0)).build_eframe(move |cc| SegdistillApp::start(cc, state))
}

/// The app in the same window rendered by wgpu, for snapshots: wgpu prefers a CPU Vulkan adapter
/// (Mesa lavapipe, as installed by `.ci/run`). Regenerate with `UPDATE_SNAPSHOTS=1 cargo test`.
pub fn snapshot_harness(state: AppState) -> Harness<'static, SegdistillApp> {
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .wgpu()
        .build_eframe(move |cc| SegdistillApp::start(cc, state))
}

/// How far a snapshot may drift: a small tolerance absorbs rasteriser differences.
pub fn snapshot_options() -> SnapshotOptions {
    SnapshotOptions::new().threshold(1.0).max_failed_pixels(800)
}

/// Steps the app until `done` holds (the engine and workers run on their own threads), then one
/// frame more so that what they reported is drawn.
pub fn wait_until(
    h: &mut Harness<'static, SegdistillApp>,
    what: &str,
    secs: u64,
    done: impl Fn(&SegdistillApp) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.step();
}
