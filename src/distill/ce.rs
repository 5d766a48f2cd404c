//! Cross-entropy over NCHW logits with ignore index 255 and optional class weights, as
//! `F.cross_entropy(logits, target, weight=w, ignore_index=255)` computes it:
//! Σ w[yᵢ]·(−log softmax(zᵢ)[yᵢ]) / Σ w[yᵢ] over labelled pixels.

use candle_core::{Result, Tensor};

use super::Target;

/// Mean (class-weighted) cross-entropy; 0 when a batch has no labelled pixel (PyTorch gives NaN,
/// which would stop a run over a batch of padding).
pub fn cross_entropy(logits: &Tensor, target: &Target) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, 1)?;
    let picked = log_p.gather(&target.indices, 1)?.squeeze(1)?;
    if target.weight_sum <= 0.0 {
        return (picked * 0.0)?.sum_all();
    }
    (picked * &target.weight)?.sum_all()? * (-1.0 / target.weight_sum)
}

/// Class weights from training-mask pixel counts: median frequency balancing
/// (w_c = median(f) / f_c over classes present; 0-count classes get weight 1), normalised so the
/// mean weight over present classes is 1.
pub fn class_weights_from_counts(counts: &[u64]) -> Vec<f32> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return vec![1.0; counts.len()];
    }
    let freq = |c: u64| c as f64 / total as f64;
    let mut present: Vec<f64> = counts.iter().filter(|&&c| c > 0).map(|&c| freq(c)).collect();
    present.sort_by(|a, b| a.total_cmp(b));
    let median = present[present.len() / 2];
    let mean_raw = present.iter().map(|f| median / f).sum::<f64>() / present.len() as f64;
    counts.iter().map(|&c| if c == 0 { 1.0 } else { (median / freq(c) / mean_raw) as f32 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn hand_computed_two_pixels_one_void() {
        let dev = Device::Cpu;
        // Pixel 0: logits (0, ln 3) target 1 → −log(3/4); pixel 1 void; pixel 2: (0,0) target 0 → ln 2.
        let logits = Tensor::from_vec(vec![0f32, 5.0, 0.0, 3f32.ln(), -1.0, 0.0], (1, 2, 1, 3), &dev).unwrap();
        let t = Target::new(&[1, 255, 0], (1, 1, 3), None, &dev).unwrap();
        let loss = cross_entropy(&logits, &t).unwrap().to_scalar::<f32>().unwrap();
        let expect = ((-(0.75f64).ln()) + 2f64.ln()) / 2.0;
        assert!((loss as f64 - expect).abs() < 1e-6, "{loss} vs {expect}");
        // With class weights (w0 = 3, w1 = 1): (1·(−ln ¾) + 3·ln 2) / 4.
        let t = Target::new(&[1, 255, 0], (1, 1, 3), Some(&[3.0, 1.0]), &dev).unwrap();
        let loss = cross_entropy(&logits, &t).unwrap().to_scalar::<f32>().unwrap();
        let expect = (-(0.75f64).ln() + 3.0 * 2f64.ln()) / 4.0;
        assert!((loss as f64 - expect).abs() < 1e-6);
        let all_void = Target::new(&[255, 255, 255], (1, 1, 3), None, &dev).unwrap();
        assert_eq!(cross_entropy(&logits, &all_void).unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn median_frequency_weights() {
        let w = class_weights_from_counts(&[700, 200, 100, 0]);
        assert!(w[2] > w[1] && w[1] > w[0], "rarer classes weigh more: {w:?}");
        assert_eq!(w[3], 1.0, "absent classes keep weight 1");
        let mean = (w[0] + w[1] + w[2]) / 3.0;
        assert!((mean - 1.0).abs() < 1e-5);
    }
}
