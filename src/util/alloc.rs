//! Allocator tuning for tensor workloads.
//!
//! Every candle operation allocates its output, and a training step frees and reallocates the
//! same few hundred megabytes over and over. glibc serves blocks above 128 KiB-32 MiB with fresh
//! `mmap`s and returns freed heap tops to the system, so each step page-faults its whole working
//! set back in: a quarter of a MobileNet training step on the CPU went to the kernel zeroing pages.
//! Raising the mmap threshold to its maximum and never trimming keeps freed blocks for reuse.

/// Keeps freed memory in the process for reuse (glibc on Linux; elsewhere a no-op). Call once,
/// early, before other threads start.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD_MAX: libc::c_int = 32 << 20; // glibc's cap on 64-bit targets
        // SAFETY: mallopt only changes allocator parameters; it is called before any other thread
        // allocates. A rejected value leaves the default in place, which is still correct.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    }
}
