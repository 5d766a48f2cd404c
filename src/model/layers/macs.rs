//! Counting multiply-adds: the cost figure of segmentation papers.

thread_local! {
    /// Multiply-adds counted by convolutions and linear layers while [`count_macs`] runs.
    static MACS: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` and returns the multiply-adds its convolutions and linear layers performed (on this
/// thread), the usual "FLOPs" of segmentation papers (normalisation, activations and resizing
/// are not counted).
pub fn count_macs<T>(f: impl FnOnce() -> T) -> (T, u64) {
    MACS.with(|m| m.set(Some(0)));
    let out = f();
    let n = MACS.with(|m| m.take()).unwrap_or(0);
    (out, n)
}

pub(super) fn add_macs(n: usize) {
    MACS.with(|m| {
        if let Some(v) = m.get() {
            m.set(Some(v + n as u64));
        }
    });
}
