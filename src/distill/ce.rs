//! Cross-entropy over NCHW logits with ignore index 255 and optional class weights, as
//! `F.cross_entropy(logits, target, weight=w, ignore_index=255)` computes it:
//! Σ w[yᵢ]·(−log softmax(zᵢ)[yᵢ]) / Σ w[yᵢ] over labelled pixels.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::Target;
use super::softmax::{self, ClassPlanes};
use super::target::HostTarget;
use crate::model::ops::cpu_f32;

/// Mean (class-weighted) cross-entropy; 0 when a batch has no labelled pixel (PyTorch gives NaN,
/// which would stop a run over a batch of padding).
pub fn cross_entropy(logits: &Tensor, target: &Target) -> Result<Tensor> {
    let weighted = per_pixel(logits, target)?;
    if target.weight_sum <= 0.0 {
        return (weighted * 0.0)?.sum_all();
    }
    weighted.sum_all()? * (1.0 / target.weight_sum)
}

/// w[yᵢ]·(−log softmax(zᵢ)[yᵢ]) per pixel, (B, H, W).
fn per_pixel(logits: &Tensor, target: &Target) -> Result<Tensor> {
    let (b, _, h, w) = logits.dims4()?;
    if target.host.dims != (b, h, w) {
        bail!("cross-entropy: logits {:?} for a target of {:?} pixels", logits.shape(), target.host.dims);
    }
    if logits.device().is_cpu() && logits.dtype() == DType::F32 {
        return logits.contiguous()?.apply_op1(FusedCe::new(target.host.clone()));
    }
    if super::gpu::supports(logits) {
        check_classes(&target.host, logits.dim(1)?)?;
        return super::gpu::cross_entropy_per_pixel(logits, &target.indices, &target.weight);
    }
    per_pixel_composed(logits, target)
}

/// The same term from tensor operations (any device and dtype).
fn per_pixel_composed(logits: &Tensor, target: &Target) -> Result<Tensor> {
    let log_p = candle_nn::ops::log_softmax(logits, 1)?;
    let picked = log_p.gather(&target.indices, 1)?.squeeze(1)?;
    (picked * &target.weight)?.neg()
}

/// The per-pixel cross-entropy in one pass over the logits (and one more for its gradient),
/// instead of a log-softmax, a gather and their backward passes (a dozen passes over the
/// largest tensor of the step, several of them strided reductions over the class dimension).
struct FusedCe {
    target: Arc<HostTarget>,
    /// log Σ e^z per pixel, kept by the forward pass for the backward pass.
    lse: Arc<Mutex<Vec<f32>>>,
}

impl FusedCe {
    fn new(target: Arc<HostTarget>) -> Self {
        Self { target, lse: Arc::default() }
    }
}

/// Checks the class indices of the labelled pixels against the number of classes.
fn check_classes(t: &HostTarget, c: usize) -> Result<()> {
    match t.indices.iter().zip(&t.weight).find(|&(&i, &w)| w != 0.0 && i as usize >= c) {
        Some((&i, _)) => bail!("cross-entropy: label {i} but the model predicts {c} classes"),
        None => Ok(()),
    }
}

impl CustomOp1 for FusedCe {
    fn name(&self) -> &'static str {
        "cross-entropy-per-pixel"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let z = cpu_f32(s, l, "cross-entropy logits")?;
        check_classes(&self.target, c)?;
        let (idx, weight, hw) = (&self.target.indices, &self.target.weight, h * w);
        let mut out = vec![0f32; n * hw];
        let mut lse = vec![0f32; n * hw];
        out.par_chunks_mut(w).zip(lse.par_chunks_mut(w)).enumerate().for_each(|(row, (o, lse))| {
            let (b, off) = (row / h, (row % h) * w);
            let planes = ClassPlanes::of_image(z, b, c, hw);
            planes.row_lse(off, 1.0, &mut vec![0f32; w], lse);
            let p0 = b * hw + off;
            for (i, v) in o.iter_mut().enumerate() {
                let wt = weight[p0 + i];
                if wt != 0.0 {
                    *v = wt * (lse[i] - planes.z[idx[p0 + i] as usize * hw + off + i]);
                }
            }
        });
        if let Ok(mut saved) = self.lse.lock() {
            *saved = lse;
        }
        Ok((CpuStorage::F32(out), Shape::from((n, h, w))))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let lse = self.lse.lock().map(|l| l.clone()).unwrap_or_default();
        let op = FusedCeGrad { target: self.target.clone(), lse, grad: grad.contiguous()? };
        Ok(Some(logits.apply_op1_no_bwd(&op)?))
    }
}

/// ∂/∂z of the per-pixel term times its upstream gradient g: g·w·(softmax(z) − onehot(y)).
struct FusedCeGrad {
    target: Arc<HostTarget>,
    lse: Vec<f32>,
    grad: Tensor,
}

impl CustomOp1 for FusedCeGrad {
    fn name(&self) -> &'static str {
        "cross-entropy-per-pixel-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let z = cpu_f32(s, l, "cross-entropy logits")?;
        let (g_storage, g_layout) = self.grad.storage_and_layout();
        let candle_core::Storage::Cpu(gs) = &*g_storage else { bail!("cross-entropy gradient must be on the CPU") };
        let g = cpu_f32(gs, g_layout, "cross-entropy gradient")?;
        let (idx, weight, hw) = (&self.target.indices, &self.target.weight, h * w);
        if self.lse.len() != n * hw || g.len() != n * hw {
            bail!("cross-entropy backward without the forward pass's values");
        }
        let mut out = vec![0f32; z.len()];
        out.par_chunks_mut(c * hw).enumerate().for_each(|(b, o)| {
            let planes = ClassPlanes::of_image(z, b, c, hw);
            let mut scale = vec![0f32; w];
            for y in 0..h {
                let (off, p0) = (y * w, b * hw + y * w);
                let lse = &self.lse[p0..p0 + w];
                for (i, sc) in scale.iter_mut().enumerate() {
                    *sc = g[p0 + i] * weight[p0 + i];
                }
                for k in 0..c {
                    let dst = &mut o[k * hw + off..k * hw + off + w];
                    for ((d, &v), (&sc, &l)) in dst.iter_mut().zip(planes.row(k, off, w)).zip(scale.iter().zip(lse)) {
                        *d = sc * softmax::exp(v - l);
                    }
                }
                for (i, &sc) in scale.iter().enumerate() {
                    if sc != 0.0 {
                        o[idx[p0 + i] as usize * hw + off + i] -= sc;
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
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
    use crate::model::ops::testing::{max_rel_diff, mixed_gradients};
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
    fn fused_loss_and_gradient_match_the_composed_formula() {
        let dev = Device::Cpu;
        let (b, c, h, w) = (2, 5, 3, 7);
        let mut rng = crate::util::Rng::new(7);
        let labels: Vec<u8> = (0..b * h * w)
            .map(|_| if rng.next_f32() < 0.2 { 255 } else { (rng.next_f32() * c as f32) as u8 })
            .collect();
        let t = Target::new(&labels, (b, h, w), Some(&[0.5, 2.0, 1.0, 1.5, 0.7]), &dev).unwrap();
        let z = candle_core::Var::from_tensor(&Tensor::randn(0f32, 3.0, (b, c, h, w), &dev).unwrap()).unwrap();
        let fused = per_pixel(&z, &t).unwrap();
        let composed = per_pixel_composed(&z, &t).unwrap();
        assert!(max_rel_diff(&fused, &composed) < 1e-5, "forward");
        let [(g1, g2)] = mixed_gradients(&fused, &composed, [&z]);
        let d = max_rel_diff(&g1, &g2);
        assert!(d < 1e-5, "gradient: {d}");
    }

    #[test]
    fn labels_beyond_the_classes_are_an_error() {
        let dev = Device::Cpu;
        let logits = Tensor::zeros((1, 2, 1, 2), candle_core::DType::F32, &dev).unwrap();
        let t = Target::new(&[1, 4], (1, 1, 2), None, &dev).unwrap();
        let err = cross_entropy(&logits, &t).unwrap_err().to_string();
        assert!(err.contains("label 4") && err.contains("2 classes"), "{err}");
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
