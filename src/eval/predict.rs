//! Running a model on images: normalisation, optional resize, logits back to the image size,
//! argmax to a mask, and colour overlays.

use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::data::transforms::{Resize, normalize, resize_image};
use crate::data::{ClassSet, Mask};
use crate::model::ops::resize_bilinear;
use crate::model::{Mode, Model};

/// A prediction for one image.
pub struct Prediction {
    /// The model's output logits at its input size, (1, C, h, w).
    pub logits: Tensor,
    /// Logits resized to the image, (1, C, H, W).
    pub full_logits: Tensor,
    /// Seconds spent in the model's forward pass (device synchronised).
    pub forward_seconds: f64,
    /// Class per pixel at the original image size.
    pub mask: Mask,
}

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

/// Predicts one image: resize (optional) → model → logits resized back to the image → argmax.
pub fn predict(model: &Model, img: &RgbImage, resize: Resize, device: &Device) -> anyhow::Result<Prediction> {
    let (w, h) = img.dimensions();
    let (rw, rh) = resize.size_for(w, h);
    let input =
        if (rw, rh) == (w, h) { image_tensor(img, device)? } else { image_tensor(&resize_image(img, rw, rh), device)? };
    device.synchronize()?;
    let start = std::time::Instant::now();
    let out = model.forward(&input, Mode::Eval)?;
    device.synchronize()?;
    let forward_seconds = start.elapsed().as_secs_f64();
    let full_logits = resize_bilinear(&out.logits, h as usize, w as usize)?;
    let mask = argmax_masks(&full_logits)?.pop().ok_or_else(|| anyhow::anyhow!("model returned no output"))?;
    Ok(Prediction { logits: out.logits, full_logits, forward_seconds, mask })
}

/// Blends class colours over an image (`alpha` = colour weight). Void is left unpainted, and so
/// is class 0 when `skip_background` (VOC's background).
pub fn overlay(img: &RgbImage, mask: &Mask, classes: &ClassSet, alpha: f32, skip_background: bool) -> RgbImage {
    let mut out = img.clone();
    for (i, p) in out.pixels_mut().enumerate() {
        let label = mask.data[i];
        if label == crate::data::VOID || (skip_background && label == 0) {
            continue;
        }
        let c = classes.color_of(label);
        for (v, &cv) in p.0.iter_mut().zip(&c) {
            *v = ((1.0 - alpha) * *v as f32 + alpha * cv as f32).round() as u8;
        }
    }
    out
}

/// A mask rendered in class colours (void in the VOC void colour).
pub fn colorize(mask: &Mask, classes: &ClassSet) -> RgbImage {
    RgbImage::from_fn(mask.width, mask.height, |x, y| image::Rgb(classes.color_of(mask.get(x, y))))
}

/// A 256-entry palette for writing masks of a class set as palette PNGs (VOC colours for VOC).
pub fn palette_for(classes: &ClassSet) -> [[u8; 3]; 256] {
    let mut p = crate::data::classes::voc_palette();
    for (i, c) in classes.colors.iter().enumerate().take(255) {
        p[i] = *c;
    }
    p
}
