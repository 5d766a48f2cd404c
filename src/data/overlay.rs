//! Masks drawn in their classes' colours: blended over the photo (the app's Browse tab, the
//! report's panels, TensorBoard's images, `predict --overlay`), alone, or as a PNG palette.

use image::RgbImage;

use super::classes::voc_palette;
use super::{ClassSet, Mask, VOID};

/// Blends class colours over an image (`alpha` = colour weight). Void is left unpainted, and so
/// is class 0 when `skip_background` (VOC's background).
pub fn overlay(img: &RgbImage, mask: &Mask, classes: &ClassSet, alpha: f32, skip_background: bool) -> RgbImage {
    let mut out = img.clone();
    for (i, p) in out.pixels_mut().enumerate() {
        let label = mask.data[i];
        if label == VOID || (skip_background && label == 0) {
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
    let mut p = voc_palette();
    for (i, c) in classes.colors.iter().enumerate().take(255) {
        p[i] = *c;
    }
    p
}
