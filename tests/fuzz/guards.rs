//! Guards around each decoded input: an allocation cap, panic capture, a hang watchdog.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// Notes single allocations above [`MAX_ALLOC`] and refuses those above [`HARD_ALLOC`]: a decoder
/// that believes a length field of a damaged file would otherwise take the machine's memory.
pub(crate) struct CappedAlloc;

pub(crate) static MAX_ALLOC: AtomicUsize = AtomicUsize::new(1 << 30);
pub(crate) static HARD_ALLOC: AtomicUsize = AtomicUsize::new(2 << 30);
/// Allocations over [`MAX_ALLOC`] so far, and the size of the last one.
pub(crate) static OVERSIZED: AtomicU64 = AtomicU64::new(0);
pub(crate) static OVERSIZED_SIZE: AtomicUsize = AtomicUsize::new(0);
pub(crate) static OVERSIZED_TRACE: Mutex<Option<std::backtrace::Backtrace>> = Mutex::new(None);

#[global_allocator]
pub(crate) static ALLOC: CappedAlloc = CappedAlloc;

unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refuse(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Whether an allocation of `size` bytes is refused; one over [`MAX_ALLOC`] is noted and saves the
/// input being decoded first (most code aborts the process on a failed allocation). Allocating
/// here is fine (small sizes pass straight through); no lock is waited for.
pub(crate) fn refuse(size: usize) -> bool {
    if size <= MAX_ALLOC.load(Ordering::Relaxed) {
        return false;
    }
    OVERSIZED.fetch_add(1, Ordering::SeqCst);
    OVERSIZED_SIZE.store(size, Ordering::SeqCst);
    let refused = size > HARD_ALLOC.load(Ordering::Relaxed);
    if let Ok(mut trace) = OVERSIZED_TRACE.try_lock() {
        *trace = Some(std::backtrace::Backtrace::force_capture()); // where the decoder asked
    }
    if let Ok(current) = CURRENT.try_lock()
        && let Some(c) = current.as_ref()
    {
        // Saved before the refusal takes effect: if the decoder cannot take it, the process aborts.
        std::fs::write(&c.oversized_file, c.input.as_slice()).ok(); // best effort, as the message below
        if !OVERSIZE_NOTED.swap(true, Ordering::SeqCst) {
            eprintln!(
                "fuzz: an allocation of {size} bytes (cap {} bytes; {}) while decoding {}; should the process \
                 abort, the input is {}",
                MAX_ALLOC.load(Ordering::Relaxed),
                if refused { "refused" } else { "granted, noted" },
                c.label,
                c.oversized_file.display()
            );
        }
    }
    refused
}

/// The input being decoded, for the watchdog and the allocation guard.
pub(crate) struct Current {
    pub(crate) input: Arc<Vec<u8>>,
    pub(crate) since: Instant,
    /// Where the allocation guard saves the input: `target/fuzz-crashes/<target>-last-oversized.bin`
    /// (overwritten; the campaign keeps numbered copies of the first few).
    pub(crate) oversized_file: PathBuf,
    pub(crate) label: String,
}

/// Whether the allocation guard has said where it saves inputs (once per target).
pub(crate) static OVERSIZE_NOTED: AtomicBool = AtomicBool::new(false);

pub(crate) static CURRENT: Mutex<Option<Current>> = Mutex::new(None);

/// Only one campaign at a time: the guards above are process-wide.
pub(crate) static SERIAL: Mutex<()> = Mutex::new(());

/// What the last panic on this thread said, and where.
pub(crate) struct PanicNote {
    pub(crate) message: String,
    pub(crate) location: String,
    pub(crate) backtrace: std::backtrace::Backtrace,
}

thread_local! {
    pub(crate) static LAST_PANIC: std::cell::RefCell<Option<PanicNote>> = const { std::cell::RefCell::new(None) };
    /// Set while this thread runs a decoder: its panics are noted quietly, others print as usual.
    pub(crate) static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(crate) fn hang_secs() -> u64 {
    env_parse("SEGDISTILL_FUZZ_HANG_SECS").unwrap_or(60)
}

/// Installs the panic hook (a decoder's panics are noted, not printed) and the hang watchdog.
pub(crate) fn install_guards() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Some(cap) = env_parse::<usize>("SEGDISTILL_FUZZ_MAX_ALLOC") {
            MAX_ALLOC.store(cap, Ordering::Relaxed);
        }
        if let Some(cap) = env_parse::<usize>("SEGDISTILL_FUZZ_HARD_ALLOC") {
            HARD_ALLOC.store(cap, Ordering::Relaxed);
        }
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !DECODING.get() {
                return default_hook(info);
            }
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(a non-text panic payload)".into());
            let location = info.location().map_or("?".into(), |l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            let backtrace = std::backtrace::Backtrace::force_capture();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(PanicNote { message, location, backtrace }));
        }));
        let limit = Duration::from_secs(hang_secs());
        std::thread::Builder::new()
            .name("fuzz-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(500));
                    let Ok(current) = CURRENT.lock() else { continue };
                    if let Some(c) = current.as_ref()
                        && c.since.elapsed() > limit
                    {
                        let file = c.oversized_file.with_file_name("hang.bin");
                        std::fs::write(&file, c.input.as_slice()).ok(); // best effort before the abort
                        eprintln!(
                            "fuzz: {} has run for over {} s (a hang); input saved as {}; aborting",
                            c.label,
                            limit.as_secs(),
                            file.display()
                        );
                        std::process::abort();
                    }
                }
            })
            .expect("the watchdog thread starts");
    });
}

pub(crate) fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}
