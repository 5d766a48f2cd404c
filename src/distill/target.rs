//! Ground-truth labels of a batch, prepared once for every loss that needs them.

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor};

use crate::data::VOID;

/// Labels of a batch as the losses use them.
#[derive(Clone, Debug)]
pub struct Target {
    /// Class index per pixel (void replaced by 0, masked out by `weight`), (B, 1, H, W) u32.
    pub indices: Tensor,
    /// Per-pixel weight: the class weight (1 without class weights), 0 on void, (B, H, W) f32.
    pub weight: Tensor,
    /// 1 on labelled pixels, 0 on void, (B, H, W) f32.
    pub valid: Tensor,
    /// 1 where the distillation terms that skip void read: the labelled pixels, and every image
    /// pixel (not padding) of the batch's unlabelled images; (B, H, W) f32.
    pub distilled: Tensor,
    /// Number of pixels in `distilled`.
    pub num_distilled: usize,
    /// Σ weight (the cross-entropy's denominator).
    pub weight_sum: f64,
    /// Number of labelled pixels.
    pub num_valid: usize,
    pub num_pixels: usize,
    /// Host copies of `indices` and `weight` for the CPU loss kernels (no device round trip).
    pub host: Arc<HostTarget>,
}

/// A target's per-pixel class index and weight on the host, (B, H, W) row-major.
#[derive(Debug, Default)]
pub struct HostTarget {
    pub indices: Vec<u32>,
    pub weight: Vec<f32>,
    pub dims: (usize, usize, usize),
}

impl Target {
    /// From host labels (B·H·W bytes, 255 = void) and optional per-class weights.
    pub fn new(
        labels: &[u8],
        dims: (usize, usize, usize),
        class_weights: Option<&[f32]>,
        device: &Device,
    ) -> Result<Self> {
        Self::with_unlabeled(labels, dims, 0, class_weights, device)
    }

    /// [`Target::new`] for a batch whose last `unlabeled` images have no labels: their pixels
    /// count as void for every label-based loss, and as distilled wherever they are not
    /// padding (label 255 there; any other value is an image pixel).
    pub fn with_unlabeled(
        labels: &[u8],
        dims: (usize, usize, usize),
        unlabeled: usize,
        class_weights: Option<&[f32]>,
        device: &Device,
    ) -> Result<Self> {
        let (b, h, w) = dims;
        if labels.len() != b * h * w {
            candle_core::bail!("{} labels for a {b}×{h}×{w} batch", labels.len());
        }
        if unlabeled > b {
            candle_core::bail!("{unlabeled} unlabelled images in a batch of {b}");
        }
        let (labels, rest) = labels.split_at((b - unlabeled) * h * w);
        let distilled_rest = rest.iter().map(|&l| if l == VOID { 0.0 } else { 1.0 });
        let weight_of = |l: u8| -> f32 {
            if l == VOID { 0.0 } else { class_weights.and_then(|cw| cw.get(l as usize).copied()).unwrap_or(1.0) }
        };
        let n_rest = rest.len();
        let indices: Vec<u32> = labels
            .iter()
            .map(|&l| if l == VOID { 0 } else { l as u32 })
            .chain(std::iter::repeat_n(0, n_rest))
            .collect();
        let weight: Vec<f32> = labels.iter().map(|&l| weight_of(l)).chain(std::iter::repeat_n(0.0, n_rest)).collect();
        let valid: Vec<f32> =
            labels.iter().map(|&l| if l == VOID { 0.0 } else { 1.0 }).chain(std::iter::repeat_n(0.0, n_rest)).collect();
        let weight_sum = weight.iter().map(|&v| v as f64).sum();
        let num_valid = valid.iter().filter(|&&v| v > 0.0).count();
        let valid = Tensor::from_vec(valid, (b, h, w), device)?;
        let (distilled, num_distilled) = if unlabeled == 0 {
            (valid.clone(), num_valid)
        } else {
            let host: Vec<f32> =
                labels.iter().map(|&l| if l == VOID { 0.0 } else { 1.0 }).chain(distilled_rest).collect();
            let n = host.iter().filter(|&&v| v > 0.0).count();
            (Tensor::from_vec(host, (b, h, w), device)?, n)
        };
        Ok(Self {
            indices: Tensor::from_slice(&indices, (b, 1, h, w), device)?,
            weight: Tensor::from_slice(&weight, (b, h, w), device)?,
            valid,
            distilled,
            num_distilled,
            weight_sum,
            num_valid,
            num_pixels: b * h * w,
            host: Arc::new(HostTarget { indices, weight, dims }),
        })
    }

    /// From a (B, H, W) integer tensor (e.g. a fixture), copied to the host.
    pub fn from_tensor(labels: &Tensor, class_weights: Option<&[f32]>) -> Result<Self> {
        let (b, h, w) = labels.dims3()?;
        let host: Vec<u8> =
            labels.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?.into_iter().map(|v| v as u8).collect();
        Self::new(&host, (b, h, w), class_weights, labels.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlabelled_images_are_void_for_labels_and_distilled_except_padding() {
        // Two 1×3 images: one labelled (class 2, void, class 1), one unlabelled with one padded pixel.
        let labels = [2, VOID, 1, 0, 0, VOID];
        let t = Target::with_unlabeled(&labels, (2, 1, 3), 1, None, &Device::Cpu).unwrap();
        let row = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(row(&t.valid), [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(row(&t.weight), [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(row(&t.distilled), [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]);
        assert_eq!((t.num_valid, t.num_distilled, t.weight_sum), (2, 4, 2.0));
        assert_eq!(t.host.indices, [2, 0, 1, 0, 0, 0]);
        let all_labelled = Target::new(&labels, (2, 1, 3), None, &Device::Cpu).unwrap();
        assert_eq!(row(&all_labelled.distilled), row(&all_labelled.valid));
    }
}
