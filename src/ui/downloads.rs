//! Downloads started from the app: the work runs on its own thread through the same
//! `data::download` code as the CLI; the panel shows a progress bar (bytes, speed, ETA) with a
//! Cancel button, and hands back where the result landed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui::Ui;

use super::jobs::{Job, Poll, Progress};
use crate::data::download::{DownloadError, Observer, Stage};
use crate::util::fmt::human_bytes;

/// What the download thread tells the UI besides the byte counts (which go through the job's
/// [`Progress`]), and the UI's cancel request.
struct Shared {
    stage: Mutex<(String, Instant)>,
    cancel: AtomicBool,
    messages: Mutex<Vec<String>>,
    ctx: egui::Context,
}

/// The observer the download thread reports to.
struct TaskObserver<'a> {
    shared: &'a Shared,
    progress: &'a Progress,
}

impl Observer for TaskObserver<'_> {
    fn stage(&self, stage: Stage, total: Option<u64>) {
        if let Ok(mut s) = self.shared.stage.lock() {
            *s = (stage.label(), Instant::now());
        }
        self.progress.restart(total.unwrap_or(0));
        self.shared.ctx.request_repaint();
    }

    fn advance(&self, bytes: u64) {
        self.progress.add(bytes);
    }

    fn message(&self, text: &str) {
        if let Ok(mut m) = self.shared.messages.lock() {
            m.push(text.to_string());
        }
    }

    fn cancelled(&self) -> bool {
        self.shared.cancel.load(Ordering::Relaxed)
    }
}

/// How a download ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Done(PathBuf),
    Cancelled,
    Failed(String),
}

/// One running download.
pub struct DownloadTask {
    shared: Arc<Shared>,
    job: Job<Result<PathBuf, DownloadError>>,
}

impl DownloadTask {
    pub fn spawn(
        label: &str,
        ctx: &egui::Context,
        work: impl FnOnce(&dyn Observer) -> Result<PathBuf, DownloadError> + Send + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            stage: Mutex::new(("connecting".into(), Instant::now())),
            cancel: AtomicBool::new(false),
            messages: Mutex::new(Vec::new()),
            ctx: ctx.clone(),
        });
        let s = shared.clone();
        let job = Job::spawn(label, ctx, move |progress| work(&TaskObserver { shared: &s, progress }));
        Self { shared, job }
    }

    pub fn cancel(&self) {
        self.shared.cancel.store(true, Ordering::Relaxed);
    }

    /// The outcome once, when the work ends (or at once after Cancel: the worker stops at its
    /// next chunk or stall timeout, and its `.part` file stays locked until then, so a new
    /// download of the same file waits rather than clobbers). Call once per frame.
    pub fn poll(&mut self) -> Option<Outcome> {
        match self.job.poll() {
            Poll::Done(Ok(p)) => Some(Outcome::Done(p)),
            Poll::Done(Err(DownloadError::Cancelled)) => Some(Outcome::Cancelled),
            Poll::Done(Err(e)) => Some(Outcome::Failed(e.to_string())),
            Poll::Failed(why) => Some(Outcome::Failed(why)),
            Poll::Running => self.shared.cancel.load(Ordering::Relaxed).then_some(Outcome::Cancelled),
        }
    }

    /// Draws progress with a Cancel button; true when Cancel was clicked.
    pub fn ui(&self, ui: &mut Ui) -> bool {
        let (label, since) =
            self.shared.stage.lock().map(|s| s.clone()).unwrap_or_else(|_| ("".into(), Instant::now()));
        let (done, total) = self.job.progress.counts();
        let row = egui::vec2(ui.available_width(), ui.spacing().interact_size.y);
        let clicked = ui.allocate_ui_with_layout(row, egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let cancel = ui.button("Cancel").clicked();
            let text = progress_text(&label, done, total, since.elapsed());
            let bar = match total {
                0 => egui::ProgressBar::new(0.0).animate(true),
                t => egui::ProgressBar::new(done as f32 / t as f32),
            };
            ui.add(bar.text(text).desired_width(ui.available_width()));
            cancel
        });
        if let Ok(m) = self.shared.messages.lock()
            && let Some(last) = m.last()
        {
            ui.small(last.as_str());
        }
        ui.ctx().request_repaint_after(Duration::from_millis(150));
        clicked.inner
    }
}

/// `downloading x.tar — 120.0 MB / 2.0 GB, 11.2 MB/s, ETA 2m 51s`
fn progress_text(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = done as f64 / secs;
    let mut s = format!("{label} — {}", human_bytes(done));
    if total > 0 {
        s += &format!(" / {}", human_bytes(total));
    }
    if elapsed > Duration::from_millis(500) && rate > 0.0 {
        s += &format!(", {}/s", human_bytes(rate as u64));
        if total > done {
            let eta = (total - done) as f64 / rate;
            s += &format!(", ETA {}", super::widgets::duration(eta));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_text_has_size_rate_and_eta() {
        let t = progress_text("downloading a.tar", 50_000_000, 200_000_000, Duration::from_secs(10));
        assert!(t.contains("50.0 MB / 200.0 MB") && t.contains("5.0 MB/s") && t.contains("ETA"), "{t}");
        assert_eq!(progress_text("verifying", 0, 0, Duration::ZERO), "verifying — 0 B");
    }
}
