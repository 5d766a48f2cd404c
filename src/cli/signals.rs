//! Stop signals for a training run: Ctrl-C (SIGINT), SIGTERM (`docker stop`, systemd, `timeout`)
//! and SIGHUP (a closed terminal or SSH session) all stop it the same way: the step under way
//! finishes, a checkpoint is written, and the process exits with 128 + the signal's number, so
//! scripts see that the run did not finish. A second signal leaves at once, without a checkpoint.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use crate::train::Control;

/// The signals received so far and the run they stop.
#[derive(Clone, Default)]
pub struct StopSignals {
    /// The first stop signal's number (0: none yet).
    first: Arc<AtomicI32>,
    /// The run to stop, once it has started (a signal before that stops it as soon as it is set).
    control: Arc<Mutex<Option<Control>>>,
}

impl StopSignals {
    /// Installs the handlers (once per process). Call before anything long starts, so that a
    /// signal during start-up is not the default, checkpoint-less exit.
    pub fn install() -> Self {
        let signals = Self::default();
        let handler = signals.clone();
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
                Ok(mut incoming) => {
                    std::thread::Builder::new()
                        .name("stop-signals".into())
                        .spawn(move || {
                            for sig in incoming.forever() {
                                handler.received(sig);
                            }
                        })
                        .ok(); // without the thread the default actions stay: the run still works
                }
                Err(e) => eprintln!("note: stop signals cannot be caught ({e}); Ctrl-C ends without a checkpoint"),
            }
        }
        #[cfg(not(unix))]
        {
            ctrlc::set_handler(move || handler.received(2)).ok(); // as on unix: the run works without it
        }
        signals
    }

    fn received(&self, sig: i32) {
        if self.first.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            eprintln!(
                "\n{}: stopping after this step (send it again to leave at once, without a checkpoint)",
                name(sig)
            );
            self.stop_run();
        } else {
            std::process::exit(128 + sig);
        }
    }

    fn stop_run(&self) {
        if let Some(control) = self.control.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            control.resume();
            control.stop();
        }
    }

    /// The run to stop; stopped at once if a signal already came.
    pub fn attach(&self, control: Control) {
        *self.control.lock().unwrap_or_else(|p| p.into_inner()) = Some(control);
        if self.first.load(Ordering::SeqCst) != 0 {
            self.stop_run();
        }
    }

    /// The exit status for a run stopped by a signal (128 + its number), if one came.
    pub fn exit_status(&self) -> Option<u8> {
        let sig = self.first.load(Ordering::SeqCst);
        (sig != 0).then(|| u8::try_from(128 + sig).unwrap_or(1))
    }
}

fn name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "interrupted",
        15 => "SIGTERM",
        _ => "signal",
    }
}
