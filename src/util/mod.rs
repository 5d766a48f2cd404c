//! Small pieces used across the crate: random numbers, atomic file writes, thread counts.

pub mod alloc;
pub mod device;
pub mod fmt;
pub mod fs;
pub mod memory;
pub mod par;
pub mod rng;

pub use rng::Rng;

/// Worker threads to use for CPU-parallel work: all available cores (at least 1).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
