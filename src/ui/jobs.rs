//! Background work for the UI: a job runs on its own thread and hands back one result, polled
//! each frame without blocking (like rerun's background tasks). Progress goes through a shared
//! counter the UI reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, TryRecvError, bounded};

/// Progress a job reports: done / total (total 0 = unknown).
#[derive(Clone, Default, Debug)]
pub struct Progress {
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
}

impl Progress {
    pub fn set_total(&self, n: u64) {
        self.total.store(n, Ordering::Relaxed);
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Starts counting afresh towards `total` (a new stage of the same job).
    pub fn restart(&self, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn fraction(&self) -> Option<f32> {
        let total = self.total.load(Ordering::Relaxed);
        (total > 0).then(|| self.done.load(Ordering::Relaxed) as f32 / total as f32)
    }

    pub fn counts(&self) -> (u64, u64) {
        (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed))
    }
}

/// A result that arrives later.
pub struct Job<T> {
    rx: Receiver<T>,
    pub progress: Progress,
    pub label: String,
}

impl<T: Send + 'static> Job<T> {
    /// Starts `work` on a named thread; `ctx` is asked to repaint when it finishes.
    pub fn spawn(
        label: impl Into<String>,
        ctx: &egui::Context,
        work: impl FnOnce(&Progress) -> T + Send + 'static,
    ) -> Self {
        let (tx, rx) = bounded(1);
        let progress = Progress::default();
        let p = progress.clone();
        let ctx = ctx.clone();
        let label = label.into();
        let name = format!("job-{}", label.chars().take(20).collect::<String>());
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let out = work(&p);
            tx.send(out).ok(); // the UI may have dropped the job (e.g. settings changed)
            ctx.request_repaint();
        });
        if let Err(e) = spawned {
            log_error(&format!("cannot start background job: {e}"));
        }
        Self { rx, progress, label }
    }

    /// The job's state; `Done` is returned once.
    pub fn poll(&mut self) -> Poll<T> {
        match self.rx.try_recv() {
            Ok(v) => Poll::Done(v),
            Err(TryRecvError::Empty) => Poll::Running,
            // The sender is gone without a result: the worker panicked.
            Err(TryRecvError::Disconnected) => Poll::Failed,
        }
    }
}

/// What [`Job::poll`] found.
pub enum Poll<T> {
    Running,
    Done(T),
    Failed,
}

fn log_error(msg: &str) {
    eprintln!("segdistill: {msg}");
}
