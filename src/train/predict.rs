//! Running a model on images: normalisation, optional resize, logits back to the image size,
//! argmax to a mask (and, against labels, the cross-entropy). Drawing masks in class colours is
//! `data::overlay`.
//!
//! The logits are resized back to the image in bands of rows, each folded into the mask and the
//! loss before the next is made: the whole (1, C, H, W) tensor of a 24 MP photo would take 2 GB
//! at 21 classes. The bands use the bilinear kernel's own taps and row formula
//! (`model::ops::bilinear`), so the mask and loss are those of the full-size tensor.

use candle_core::{DType, Device, Storage, Tensor};
use image::RgbImage;
use rayon::prelude::*;

use crate::data::Mask;
use crate::data::image::check_image_size;
use crate::data::transforms::{Resize, normalize, resize_image};
use crate::distill::{Target, ce::cross_entropy};
use crate::model::ops::bilinear::{Tap, interpolate_row, taps};
use crate::model::ops::cpu_f32;
use crate::model::{Mode, Model};

/// A prediction for one image.
pub struct Prediction {
    /// The model's output logits at its input size, (1, C, h, w).
    pub logits: Tensor,
    /// Seconds spent in the model's forward pass (device synchronised).
    pub forward_seconds: f64,
    /// Class per pixel at the original image size.
    pub mask: Mask,
}

/// The cross-entropy (ignore index 255) of the logits resized to the image, against its labels.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LabelledLoss {
    /// Σ over labelled pixels of −log softmax(z)[label].
    pub sum: f64,
    /// Number of labelled (non-void) pixels.
    pub pixels: usize,
}

/// Values of one band of resized logits (C · rows · W): 16 MB, so a 6000-pixel-wide image at
/// 21 classes goes 32 rows at a time, and a VOC image in one band.
const BAND_VALUES: usize = 1 << 22;

/// Normalised (1, 3, H, W) input tensor of an image.
pub fn image_tensor(img: &RgbImage, device: &Device) -> candle_core::Result<Tensor> {
    let (w, h) = img.dimensions();
    Tensor::from_vec(normalize(img), (1, 3, h as usize, w as usize), device)
}

/// Argmax over classes of (B, C, H, W) logits → B masks.
pub fn argmax_masks(logits: &Tensor) -> candle_core::Result<Vec<Mask>> {
    let (b, _, h, w) = logits.dims4()?;
    let idx = logits.argmax(1)?.to_dtype(DType::U8)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<u8>()?;
    Ok(idx.chunks(h * w).take(b).map(|c| Mask::new(w as u32, h as u32, c.to_vec())).collect())
}

/// The model input size of a `width`×`height` image under `resize`, or why it is refused (an
/// extreme aspect ratio under a large `--resize` can ask for a giant input).
pub fn input_size(width: u32, height: u32, resize: Resize) -> Result<(u32, u32), String> {
    let (rw, rh) = resize.size_for(width, height);
    check_image_size(rw as u64, rh as u64).map(|()| (rw, rh)).map_err(|reason| {
        format!("resizing its {width}×{height} pixels for the model gives {reason}; use a smaller resize")
    })
}

/// Predicts one image: resize (optional) → model → logits resized back to the image → argmax.
pub fn predict(model: &Model, img: &RgbImage, resize: Resize, device: &Device) -> anyhow::Result<Prediction> {
    let (logits, forward_seconds) = forward(model, img, resize, device)?;
    let (w, h) = img.dimensions();
    let (mask, _) = fold_full_size(&logits, h as usize, w as usize, None)?;
    Ok(Prediction { logits, forward_seconds, mask })
}

/// [`predict`], and the cross-entropy against `labels` (the image's size, 255 = void).
pub fn predict_with_loss(
    model: &Model,
    img: &RgbImage,
    labels: &Mask,
    resize: Resize,
    device: &Device,
) -> anyhow::Result<(Prediction, LabelledLoss)> {
    let (w, h) = img.dimensions();
    anyhow::ensure!(
        (labels.width, labels.height) == (w, h),
        "labels of {}×{} for an image of {w}×{h}",
        labels.width,
        labels.height
    );
    let (logits, forward_seconds) = forward(model, img, resize, device)?;
    let (mask, loss) = fold_full_size(&logits, h as usize, w as usize, Some(&labels.data))?;
    Ok((Prediction { logits, forward_seconds, mask }, loss))
}

/// The model's logits at its input size, and the seconds its forward pass took.
fn forward(model: &Model, img: &RgbImage, resize: Resize, device: &Device) -> anyhow::Result<(Tensor, f64)> {
    let (w, h) = img.dimensions();
    let (rw, rh) = input_size(w, h, resize).map_err(anyhow::Error::msg)?;
    let input =
        if (rw, rh) == (w, h) { image_tensor(img, device)? } else { image_tensor(&resize_image(img, rw, rh), device)? };
    device.synchronize()?;
    let start = std::time::Instant::now();
    let out = model.forward(&input, Mode::Eval)?;
    device.synchronize()?;
    Ok((out.logits, start.elapsed().as_secs_f64()))
}

/// The argmax mask of (1, C, h, w) `logits` resized bilinearly to `height`×`width`, and their
/// cross-entropy against `labels` when given (zero without). Works on the host.
pub fn fold_full_size(
    logits: &Tensor,
    height: usize,
    width: usize,
    labels: Option<&[u8]>,
) -> candle_core::Result<(Mask, LabelledLoss)> {
    let classes = logits.dim(1)?;
    fold_in_bands(logits, (height, width), labels, (BAND_VALUES / (classes * width).max(1)).max(1))
}

/// [`fold_full_size`] with `band_rows` output rows resized at a time.
fn fold_in_bands(
    logits: &Tensor,
    (height, width): (usize, usize),
    labels: Option<&[u8]>,
    band_rows: usize,
) -> candle_core::Result<(Mask, LabelledLoss)> {
    let (n, classes, h, w) = logits.dims4()?;
    if n != 1 || classes == 0 || classes > 256 || h == 0 || w == 0 || height == 0 || width == 0 {
        candle_core::bail!("cannot resize logits of {:?} to {height}×{width}", logits.shape());
    }
    if labels.is_some_and(|l| l.len() != height * width) {
        candle_core::bail!("{} labels for a {height}×{width} image", labels.map_or(0, <[u8]>::len));
    }
    let host = logits.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.contiguous()?;
    let (storage, layout) = host.storage_and_layout();
    let Storage::Cpu(storage) = &*storage else { candle_core::bail!("logits did not reach the host") };
    let upsampler = Upsampler {
        low: cpu_f32(storage, layout, "logits")?,
        classes,
        low_size: (h, w),
        size: (height, width),
        row_taps: taps(h, height),
        column_taps: taps(w, width),
    };
    let mut mask = vec![0u8; height * width];
    let mut loss = LabelledLoss::default();
    for start in (0..height).step_by(band_rows) {
        let rows = start..(start + band_rows).min(height);
        let pixels = rows.start * width..rows.end * width;
        let band = upsampler.band(rows.clone());
        argmax_band(&band, classes, width, &mut mask[pixels.clone()]);
        if let Some(labels) = labels {
            let band_loss = band_cross_entropy(band, (classes, rows.len(), width), &labels[pixels])?;
            loss.sum += band_loss.sum;
            loss.pixels += band_loss.pixels;
        }
    }
    Ok((Mask::new(width as u32, height as u32, mask), loss))
}

/// Host logits at the model's size and what resizing them to the image takes.
struct Upsampler<'a> {
    /// `classes` planes of `low_size`.
    low: &'a [f32],
    classes: usize,
    low_size: (usize, usize),
    /// The image's (height, width).
    size: (usize, usize),
    row_taps: Vec<Tap>,
    column_taps: Vec<Tap>,
}

impl Upsampler<'_> {
    /// Output rows `rows` of every class, (C, rows, W); at the same size the rows themselves, as
    /// `resize_bilinear` returns its input then.
    fn band(&self, rows: std::ops::Range<usize>) -> Vec<f32> {
        let ((h, w), width) = (self.low_size, self.size.1);
        let (plane, band_plane) = (h * w, rows.len() * width);
        let same_size = self.low_size == self.size;
        let mut band = vec![0f32; self.classes * band_plane];
        band.par_chunks_mut(band_plane).enumerate().for_each(|(k, out)| {
            let xp = &self.low[k * plane..(k + 1) * plane];
            if same_size {
                out.copy_from_slice(&xp[rows.start * w..rows.end * w]);
                return;
            }
            for (t, row) in self.row_taps[rows.clone()].iter().zip(out.chunks_mut(width)) {
                interpolate_row(xp, w, t, &self.column_taps, row);
            }
        });
        band
    }
}

/// Class of the largest logit per pixel of a (C, rows, W) band; the first on ties and 0 where
/// the first logit is NaN, as candle's `argmax`.
fn argmax_band(band: &[f32], classes: usize, width: usize, mask: &mut [u8]) {
    let plane = mask.len();
    mask.par_chunks_mut(width).enumerate().for_each(|(y, out)| {
        let row = |k: usize| &band[k * plane + y * width..k * plane + (y + 1) * width];
        let mut best = row(0).to_vec();
        out.fill(0);
        for k in 1..classes {
            for ((b, o), &v) in best.iter_mut().zip(out.iter_mut()).zip(row(k)) {
                if *b < v {
                    *b = v;
                    *o = k as u8;
                }
            }
        }
    });
}

/// Cross-entropy of a (C, rows, W) band against its labels, through the training loss.
fn band_cross_entropy(
    band: Vec<f32>,
    (classes, rows, width): (usize, usize, usize),
    labels: &[u8],
) -> candle_core::Result<LabelledLoss> {
    let target = Target::new(labels, (1, rows, width), None, &Device::Cpu)?;
    if target.num_valid == 0 {
        return Ok(LabelledLoss::default());
    }
    let logits = Tensor::from_vec(band, (1, classes, rows, width), &Device::Cpu)?;
    let mean = cross_entropy(&logits, &target)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    Ok(LabelledLoss { sum: mean * target.num_valid as f64, pixels: target.num_valid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::resize_bilinear;
    use crate::util::rng::Rng;

    /// Mask and Σ cross-entropy of the (1, C, H, W) resized tensor, as evaluation computed them
    /// before the bands.
    fn full_tensor_path(logits: &Tensor, height: usize, width: usize, labels: &[u8]) -> (Mask, LabelledLoss) {
        let full = resize_bilinear(logits, height, width).unwrap();
        let mask = argmax_masks(&full).unwrap().pop().unwrap();
        let target = Target::new(labels, (1, height, width), None, &Device::Cpu).unwrap();
        let mean = cross_entropy(&full, &target).unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
        (mask, LabelledLoss { sum: mean * target.num_valid as f64, pixels: target.num_valid })
    }

    /// Normal logits, rounded to whole numbers when `ties` (so classes often tie).
    fn random_logits(rng: &mut Rng, classes: usize, (h, w): (usize, usize), ties: bool) -> Tensor {
        let values = (0..classes * h * w).map(|_| if ties { (2.0 * rng.normal()).round() } else { 3.0 * rng.normal() });
        Tensor::from_vec(values.collect::<Vec<f32>>(), (1, classes, h, w), &Device::Cpu).unwrap()
    }

    /// Labels in 0..classes with about one void pixel in seven.
    fn random_labels(rng: &mut Rng, classes: usize, pixels: usize) -> Vec<u8> {
        (0..pixels).map(|_| if rng.chance(1.0 / 7.0) { 255 } else { rng.below(classes as u64) as u8 }).collect()
    }

    #[test]
    fn bands_match_the_full_size_tensor() {
        let mut rng = Rng::new(11);
        let cases = [
            (21, (9, 13), (37, 53), false),
            (5, (40, 30), (23, 17), false),
            (4, (1, 1), (5, 7), false),
            (3, (6, 6), (6, 6), true),
            (7, (5, 8), (19, 31), true),
        ];
        for (classes, low, (height, width), ties) in cases {
            let logits = random_logits(&mut rng, classes, low, ties);
            let labels = random_labels(&mut rng, classes, height * width);
            let (mask, loss) = full_tensor_path(&logits, height, width, &labels);
            for band_rows in [1, 2, 4, 7, height - 1, height, height + 5].into_iter().filter(|&b| b > 0) {
                let case = format!("{classes} classes {low:?} -> {height}x{width}, {band_rows} rows a band");
                let (banded_mask, banded_loss) =
                    fold_in_bands(&logits, (height, width), Some(&labels), band_rows).unwrap();
                assert_eq!(banded_mask, mask, "{case}");
                assert_eq!(banded_loss.pixels, loss.pixels, "{case}");
                let rel = (banded_loss.sum - loss.sum).abs() / loss.sum.abs();
                assert!(rel <= 1e-6, "{case}: loss {} vs {} ({rel:e})", banded_loss.sum, loss.sum);
            }
        }
    }

    #[test]
    fn without_labels_only_the_mask_is_made() {
        let mut rng = Rng::new(5);
        let logits = random_logits(&mut rng, 21, (4, 6), false);
        let (mask, loss) = fold_full_size(&logits, 30, 41, None).unwrap();
        assert_eq!(mask, argmax_masks(&resize_bilinear(&logits, 30, 41).unwrap()).unwrap()[0]);
        assert_eq!(loss, LabelledLoss::default());
        assert!(fold_full_size(&logits, 30, 41, Some(&[0; 7])).is_err(), "labels of the wrong size");
    }

    #[test]
    fn giant_model_inputs_are_refused() {
        assert_eq!(input_size(500, 375, Resize::ShorterSide(520)), Ok((693, 520)));
        let err = input_size(30_000, 10, Resize::ShorterSide(4096)).unwrap_err();
        assert!(err.contains("30000×10") && err.contains("megapixels"), "{err}");
    }
}
