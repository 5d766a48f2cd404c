fn main() -> std::process::ExitCode {
    // candle asks for its thread count on every CPU operation and, unless RAYON_NUM_THREADS is
    // set, re-reads /proc/cpuinfo each time (~8 % of a training step here). Setting it once, while
    // the process is still single-threaded, is safe.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = segdistill::util::available_threads().to_string();
        // SAFETY: no other thread exists yet, so nothing can read the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n) };
    }
    segdistill::util::alloc::keep_freed_memory();
    // `segdistill check-data … | head`: a closed pipe ends the process quietly, as it does any
    // command-line tool, instead of a panic in `println!` (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    segdistill::cli::main()
}
