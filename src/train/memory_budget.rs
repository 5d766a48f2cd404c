//! Whether a training step fits in the memory this machine has left, checked before a run
//! starts: a batch too large is refused with the figure and the largest batch that fits, instead
//! of the allocator aborting the process half-way into the first step. (On a GPU the device's
//! own allocator reports an out-of-memory error that the run turns into a message.)

use candle_core::Device;

use super::TrainConfig;

/// Share of the available memory a step may plan on: the rest is for the data loader's
/// prefetched batches, the teacher cache's reads and whatever else runs.
const USABLE_SHARE: f64 = 0.85;

/// Bytes a training step of `cfg` needs per image (forward and backward of the student, plus a
/// live teacher's forward pass when it runs at every step).
pub fn bytes_per_image(cfg: &TrainConfig) -> f64 {
    let pixels = f64::from(cfg.size).powi(2);
    let mut per_image = cfg.model.train_step_bytes_per_pixel() * pixels;
    if cfg.needs_teacher() && !cfg.teacher_cache {
        // Inference keeps no activations for a backward pass: about a quarter of a step's peak.
        per_image += 0.25 * cfg.teacher.train_step_bytes_per_pixel() * pixels;
    }
    per_image
}

/// Refuses a configuration whose step would not fit in `available` bytes.
pub fn check(cfg: &TrainConfig, available: u64) -> anyhow::Result<()> {
    // Per labelled image of the batch, its unlabelled share included: the advice names a --batch.
    let per_image = bytes_per_image(cfg) * cfg.images_per_step() as f64 / cfg.batch.max(1) as f64;
    let need = per_image * cfg.batch as f64;
    let usable = available as f64 * USABLE_SHARE;
    if need <= usable {
        return Ok(());
    }
    let fits = (usable / per_image).floor() as u64;
    let human = |b: f64| crate::util::fmt::human_bytes(b as u64);
    let advice = if fits >= 1 {
        format!("the largest batch that fits is {fits} at this size (--batch {fits}), or lower --size")
    } else {
        "not even one image fits at this size: lower --size".to_string()
    };
    anyhow::bail!(
        "a training step of {} on batches of {}{} {}×{} crops needs about {} of memory, and this machine has {} \
         available: {advice}",
        cfg.model,
        cfg.batch,
        match cfg.unlabeled_per_batch() {
            0 => String::new(),
            u => format!(" (+ {u} unlabelled)"),
        },
        cfg.size,
        cfg.size,
        human(need),
        human(available as f64)
    )
}

/// [`check`] against what this machine has now, for a run on `device` (CPU only).
pub fn check_here(cfg: &TrainConfig, device: &Device) -> anyhow::Result<()> {
    match (device, crate::util::memory::available_bytes()) {
        (Device::Cpu, Some(available)) => check(cfg, available),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_that_does_not_fit_is_refused_with_the_largest_that_does() {
        let cfg = TrainConfig { batch: 256, size: 1024, ..Default::default() };
        let err = check(&cfg, 20_000_000_000).unwrap_err().to_string();
        let per_image = bytes_per_image(&cfg);
        let fits = (20e9 * USABLE_SHARE / per_image).floor() as u64;
        assert!(err.contains(&format!("--batch {fits}")) && err.contains("20.0 GB available"), "{err}");
        let fitting = TrainConfig { batch: fits as usize, ..cfg.clone() };
        check(&fitting, 20_000_000_000).unwrap();
        check(&TrainConfig::default(), 20_000_000_000).unwrap();
    }
}
