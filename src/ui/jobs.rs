//! Background work for the UI: a job runs on its own thread and hands back one result, polled
//! each frame without blocking (like rerun's background tasks). Progress goes through a shared
//! counter the UI reads; a job that panics reports why (the panic message), never just "crashed".

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
    rx: Receiver<Result<T, String>>,
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
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&p))).map_err(panic_message);
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
            Ok(Ok(v)) => Poll::Done(v),
            Ok(Err(panic)) => Poll::Failed(format!("{} stopped unexpectedly: {panic}", self.label)),
            Err(TryRecvError::Empty) => Poll::Running,
            // The sender is gone without a result: the thread could not be started.
            Err(TryRecvError::Disconnected) => Poll::Failed(format!("{} could not run", self.label)),
        }
    }
}

/// What [`Job::poll`] found.
pub enum Poll<T> {
    Running,
    Done(T),
    /// The work panicked (or never started): why, in words.
    Failed(String),
}

/// Polls the job in `slot`, a job whose work answers `Ok` or an error in words: once it has
/// ended, empties the slot and returns how it ended (a panic as an `Err` too).
pub fn take_finished<T: Send + 'static>(slot: &mut Option<Job<Result<T, String>>>) -> Option<Result<T, String>> {
    let ended = match slot.as_mut()?.poll() {
        Poll::Running => return None,
        Poll::Done(result) => result,
        Poll::Failed(why) => Err(why),
    };
    *slot = None;
    Some(ended)
}

/// The text of a panic payload (`panic!` with a literal or with a formatted message).
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn log_error(msg: &str) {
    eprintln!("segdistill: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait<T: Send + 'static>(job: &mut Job<T>) -> Poll<T> {
        loop {
            match job.poll() {
                Poll::Running => std::thread::sleep(std::time::Duration::from_millis(5)),
                other => return other,
            }
        }
    }

    #[test]
    fn a_job_hands_back_its_result_or_why_it_panicked() {
        let ctx = egui::Context::default();
        let mut ok = Job::spawn("sum", &ctx, |p| {
            p.set_total(2);
            p.add(2);
            1 + 1
        });
        assert!(matches!(wait(&mut ok), Poll::Done(2)));
        assert_eq!(ok.progress.counts(), (2, 2));
        let mut bad: Job<()> = Job::spawn("scan runs", &ctx, |_| panic!("index {} out of range", 7));
        match wait(&mut bad) {
            Poll::Failed(why) => assert_eq!(why, "scan runs stopped unexpectedly: index 7 out of range"),
            _ => panic!("a panicking job reports Failed"),
        }
    }
}
