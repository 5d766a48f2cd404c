//! Commands from the outside (pause, resume, stop) as shared flags the loop polls between steps,
//! and the handle a caller keeps for a run on its own thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

use super::events::TrainEvent;

/// Flags shared between the engine thread and whoever controls it.
#[derive(Clone, Debug, Default)]
pub struct Control {
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Control {
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Finish the current step, write a checkpoint, end the run.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A run on its own thread: its controls and its event stream.
pub struct TrainHandle {
    pub control: Control,
    pub events: Receiver<TrainEvent>,
    thread: Option<JoinHandle<()>>,
}

impl TrainHandle {
    pub(crate) fn new(control: Control, events: Receiver<TrainEvent>, thread: JoinHandle<()>) -> Self {
        Self { control, events, thread: Some(thread) }
    }

    pub fn pause(&self) {
        self.control.pause();
    }

    pub fn resume(&self) {
        self.control.resume();
    }

    pub fn stop(&self) {
        self.control.stop();
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the engine thread to end (after `stop`, or at the end of the run).
    pub fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            t.join().ok(); // a panic has already been reported as a Failed event
        }
    }
}

impl Drop for TrainHandle {
    /// Dropping the handle stops the run cleanly (with a checkpoint) rather than abandoning it.
    fn drop(&mut self) {
        if !self.is_finished() {
            self.control.resume();
            self.control.stop();
        }
        self.join();
    }
}
