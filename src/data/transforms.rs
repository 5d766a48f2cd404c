//! Augmentation and normalisation of (image, mask) pairs.
//!
//! Images are resampled bilinearly, masks with nearest neighbour only (labels are never blended).
//! Every random choice comes from the `Rng` passed in, so a seeded pipeline repeats exactly. The
//! geometric part of each augmentation is returned as a [`Geometry`], so the same crop/flip/scale
//! can be applied to anything else aligned with the image (e.g. cached teacher outputs).

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::classes::VOID;
use super::dataset::Sample;
use super::mask::Mask;
use crate::util::Rng;

/// ImageNet channel means (RGB), as torchvision's pretrained models expect.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A deterministic resize.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Keep the image's own size.
    None,
    /// Scale so the shorter side has this length, keeping the aspect ratio.
    ShorterSide(u32),
    /// Scale to exactly this size.
    Fixed { width: u32, height: u32 },
}

impl Resize {
    /// The output size for an input of `w`×`h`.
    pub fn size_for(self, w: u32, h: u32) -> (u32, u32) {
        match self {
            Self::None => (w, h),
            // torchvision's rule: the long side is truncated, `int(s · long / short)`.
            Self::ShorterSide(s) => {
                let long_of = |long: u32, short: u32| ((s as f64 * long as f64 / short.max(1) as f64) as u32).max(1);
                if w <= h { (s, long_of(h, w)) } else { (long_of(w, h), s) }
            }
            Self::Fixed { width, height } => (width.max(1), height.max(1)),
        }
    }
}

/// Resizes an image bilinearly, bit-identical to PIL (and so to torchvision's `Resize`).
pub fn resize_image(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    super::resample::resize_bilinear_pil(img, w, h)
}

/// Resizes a mask with nearest neighbour (pixel-centre rule: src = ⌊(dst + ½)·in/out⌋).
pub fn resize_mask_nearest(mask: &Mask, w: u32, h: u32) -> Mask {
    if (mask.width, mask.height) == (w, h) {
        return mask.clone();
    }
    let xs: Vec<usize> = (0..w).map(|x| nearest_src(x, mask.width, w)).collect();
    let mut data = Vec::with_capacity(w as usize * h as usize);
    for y in 0..h {
        let sy = nearest_src(y, mask.height, h);
        let row = &mask.data[sy * mask.width as usize..(sy + 1) * mask.width as usize];
        data.extend(xs.iter().map(|&sx| row[sx]));
    }
    Mask::new(w, h, data)
}

fn nearest_src(dst: u32, in_len: u32, out_len: u32) -> usize {
    let s = ((dst as f64 + 0.5) * in_len as f64 / out_len as f64).floor() as i64;
    s.clamp(0, in_len as i64 - 1) as usize
}

/// Where each output pixel of an augmentation came from. Output pixel (x, y) is pixel
/// (crop_x + x', crop_y + y) of the image scaled to `scaled_*`, where x' = x, or `out_width − 1 − x`
/// when `flipped`; positions beyond the scaled image are padding.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    pub src_width: u32,
    pub src_height: u32,
    pub scaled_width: u32,
    pub scaled_height: u32,
    pub crop_x: u32,
    pub crop_y: u32,
    pub out_width: u32,
    pub out_height: u32,
    pub flipped: bool,
}

impl Geometry {
    pub fn identity(w: u32, h: u32) -> Self {
        Self {
            src_width: w,
            src_height: h,
            scaled_width: w,
            scaled_height: h,
            crop_x: 0,
            crop_y: 0,
            out_width: w,
            out_height: h,
            flipped: false,
        }
    }

    /// Continuous source-image coordinates (pixel centres at integers, as in
    /// `align_corners = false`) of output pixel (x, y), or `None` where it is padding.
    pub fn source_coords(&self, x: u32, y: u32) -> Option<(f32, f32)> {
        let xu = if self.flipped { self.out_width - 1 - x } else { x };
        let (sx, sy) = (self.crop_x + xu, self.crop_y + y);
        if sx >= self.scaled_width || sy >= self.scaled_height {
            return None;
        }
        let fx = (sx as f32 + 0.5) * self.src_width as f32 / self.scaled_width as f32 - 0.5;
        let fy = (sy as f32 + 0.5) * self.src_height as f32 / self.scaled_height as f32 - 0.5;
        Some((fx, fy))
    }
}

/// Random photometric changes (torchvision `ColorJitter` semantics: factors drawn from
/// [1 − v, 1 + v]; hue shift drawn from [−hue, hue] of a full turn).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColorJitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

impl Default for ColorJitter {
    fn default() -> Self {
        Self { brightness: 0.3, contrast: 0.3, saturation: 0.3, hue: 0.02 }
    }
}

impl ColorJitter {
    pub fn apply(&self, img: &mut RgbImage, rng: &mut Rng) {
        let b = 1.0 + rng.uniform(-self.brightness, self.brightness);
        let c = 1.0 + rng.uniform(-self.contrast, self.contrast);
        let s = 1.0 + rng.uniform(-self.saturation, self.saturation);
        let h = rng.uniform(-self.hue, self.hue) * std::f32::consts::TAU;
        let n = (img.width() * img.height()).max(1) as f32;
        let mean_gray = img.pixels().map(|p| gray(p.0)).sum::<f32>() / n * b;
        let (cos_h, sin_h) = (h.cos(), h.sin());
        for p in img.pixels_mut() {
            let mut v = p.0.map(|c| c as f32 * b);
            v = v.map(|x| (x - mean_gray) * c + mean_gray);
            let g = gray([v[0], v[1], v[2]]);
            v = v.map(|x| (x - g) * s + g);
            if h != 0.0 {
                v = rotate_hue(v, cos_h, sin_h);
            }
            p.0 = v.map(|x| x.round().clamp(0.0, 255.0) as u8);
        }
    }
}

fn gray<T: Into<f32> + Copy>(rgb: [T; 3]) -> f32 {
    0.299 * rgb[0].into() + 0.587 * rgb[1].into() + 0.114 * rgb[2].into()
}

/// Rotates chroma in YIQ space: a hue shift that keeps luma, cheaper than an HSV round trip.
fn rotate_hue(rgb: [f32; 3], cos_h: f32, sin_h: f32) -> [f32; 3] {
    let [r, g, b] = rgb;
    let y = 0.299 * r + 0.587 * g + 0.114 * b;
    let i = 0.596 * r - 0.274 * g - 0.322 * b;
    let q = 0.211 * r - 0.523 * g + 0.312 * b;
    let (i2, q2) = (i * cos_h - q * sin_h, i * sin_h + q * cos_h);
    [y + 0.956 * i2 + 0.621 * q2, y - 0.272 * i2 - 0.647 * q2, y - 1.106 * i2 + 1.703 * q2]
}

/// An augmentation pipeline: resize → random scale → pad + random crop → flip → colour jitter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Deterministic resize applied first.
    pub resize: Resize,
    /// Random scale factor range; (1, 1) disables it.
    pub scale_range: (f32, f32),
    /// Output size (width, height) of a random crop; smaller images are padded (image 0,
    /// mask 255) on the right and bottom first.
    pub crop: Option<(u32, u32)>,
    /// Flip horizontally with probability ½.
    pub hflip: bool,
    pub jitter: Option<ColorJitter>,
}

impl Augment {
    /// The usual segmentation training pipeline for `crop`×`crop` inputs: shorter side to
    /// `crop`, scale 0.5–2.0, crop, flip, mild colour jitter.
    pub fn train(crop: u32) -> Self {
        Self {
            resize: Resize::ShorterSide(crop),
            scale_range: (0.5, 2.0),
            crop: Some((crop, crop)),
            hflip: true,
            jitter: Some(ColorJitter::default()),
        }
    }

    /// Evaluation: a deterministic resize only.
    pub fn eval(resize: Resize) -> Self {
        Self { resize, scale_range: (1.0, 1.0), crop: None, hflip: false, jitter: None }
    }

    /// Applies the pipeline to one sample.
    pub fn apply(&self, sample: Sample, rng: &mut Rng) -> (Sample, Geometry) {
        let (src_w, src_h) = sample.image.dimensions();
        let (base_w, base_h) = self.resize.size_for(src_w, src_h);
        let (lo, hi) = self.scale_range;
        let scale = if hi > lo { rng.uniform(lo, hi) } else { lo };
        let scaled_w = ((base_w as f32 * scale).round() as u32).max(1);
        let scaled_h = ((base_h as f32 * scale).round() as u32).max(1);
        let image = resize_image(&sample.image, scaled_w, scaled_h);
        let mask = resize_mask_nearest(&sample.mask, scaled_w, scaled_h);

        let (out_w, out_h) = self.crop.unwrap_or((scaled_w, scaled_h));
        let crop_x = rng.below(scaled_w.max(out_w) as u64 - out_w as u64 + 1) as u32;
        let crop_y = rng.below(scaled_h.max(out_h) as u64 - out_h as u64 + 1) as u32;
        let flipped = self.hflip && rng.chance(0.5);
        let geometry = Geometry {
            src_width: src_w,
            src_height: src_h,
            scaled_width: scaled_w,
            scaled_height: scaled_h,
            crop_x,
            crop_y,
            out_width: out_w,
            out_height: out_h,
            flipped,
        };
        let (mut image, mask) = crop_pad_flip(&image, &mask, &geometry);
        if let Some(j) = &self.jitter {
            j.apply(&mut image, rng);
        }
        (Sample { id: sample.id, image, mask }, geometry)
    }
}

/// Cuts the output window out of the scaled pair, padding outside it and flipping if asked.
fn crop_pad_flip(image: &RgbImage, mask: &Mask, g: &Geometry) -> (RgbImage, Mask) {
    let mut out_img = RgbImage::new(g.out_width, g.out_height);
    let mut out_mask = Mask::filled(g.out_width, g.out_height, VOID);
    let copy_w = g.scaled_width.saturating_sub(g.crop_x).min(g.out_width);
    let copy_h = g.scaled_height.saturating_sub(g.crop_y).min(g.out_height);
    for y in 0..copy_h {
        for x in 0..copy_w {
            let dx = if g.flipped { g.out_width - 1 - x } else { x };
            let (sx, sy) = (g.crop_x + x, g.crop_y + y);
            out_img.put_pixel(dx, y, *image.get_pixel(sx, sy));
            out_mask.set(dx, y, mask.get(sx, sy));
        }
    }
    (out_img, out_mask)
}

/// Writes `img` as normalised CHW floats ((x/255 − mean)/std) into `out` (length 3·H·W).
pub fn normalize_into(img: &RgbImage, out: &mut [f32]) {
    let plane = (img.width() * img.height()) as usize;
    assert_eq!(out.len(), 3 * plane, "output buffer must hold 3·H·W floats");
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * IMAGENET_STD[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| -IMAGENET_MEAN[c] / IMAGENET_STD[c]);
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, p) in img.pixels().enumerate() {
        r[i] = p.0[0] as f32 * scale[0] + shift[0];
        g[i] = p.0[1] as f32 * scale[1] + shift[1];
        b[i] = p.0[2] as f32 * scale[2] + shift[2];
    }
}

/// Normalised CHW floats of an image.
pub fn normalize(img: &RgbImage) -> Vec<f32> {
    let mut out = vec![0.0; 3 * (img.width() * img.height()) as usize];
    normalize_into(img, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image whose pixel encodes its own coordinates, with a mask that encodes the same, so
    /// alignment after any geometric op can be checked pixel by pixel.
    fn coded_sample(w: u32, h: u32) -> Sample {
        let image = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 77]));
        let mask = Mask::new(w, h, (0..h).flat_map(|y| (0..w).map(move |x| ((x + 3 * y) % 21) as u8)).collect());
        Sample { id: "t".into(), image, mask }
    }

    #[test]
    fn crop_pad_flip_keep_image_and_mask_aligned() {
        let aug =
            Augment { resize: Resize::None, scale_range: (1.0, 1.0), crop: Some((40, 30)), hflip: true, jitter: None };
        for seed in 0..40 {
            let s = coded_sample(33, 25); // smaller than the crop: padding on both axes
            let (out, g) = aug.apply(s, &mut Rng::new(seed));
            assert_eq!(out.image.dimensions(), (40, 30));
            for y in 0..30 {
                for x in 0..40 {
                    let m = out.mask.get(x, y);
                    let p = out.image.get_pixel(x, y).0;
                    match g.source_coords(x, y) {
                        None => {
                            assert_eq!(m, VOID, "padding is void (seed {seed}, {x},{y})");
                            assert_eq!(p, [0, 0, 0], "image padding is 0");
                        }
                        Some((fx, fy)) => {
                            let (sx, sy) = (fx.round() as u32, fy.round() as u32);
                            assert_eq!(p, [sx as u8, sy as u8, 77], "image from source pixel ({sx},{sy})");
                            assert_eq!(m, ((sx + 3 * sy) % 21) as u8, "mask from the same source pixel");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn random_scale_resizes_mask_with_nearest_only_and_keeps_void() {
        let mut s = coded_sample(50, 40);
        for v in s.mask.data.iter_mut().step_by(7) {
            *v = VOID;
        }
        let allowed: std::collections::HashSet<u8> = s.mask.data.iter().copied().collect();
        let aug = Augment {
            resize: Resize::ShorterSide(32),
            scale_range: (0.5, 2.0),
            crop: Some((32, 32)),
            hflip: true,
            jitter: Some(ColorJitter::default()),
        };
        for seed in 0..20 {
            let (out, _) = aug.apply(s.clone(), &mut Rng::new(seed));
            assert!(out.mask.data.iter().all(|v| allowed.contains(v)), "no blended label values");
            assert!(out.mask.data.contains(&VOID));
        }
    }

    #[test]
    fn seeded_runs_repeat_and_different_seeds_differ() {
        let aug = Augment::train(24);
        let run = |seed| {
            let (o, g) = aug.apply(coded_sample(60, 45), &mut Rng::new(seed));
            (o.image.into_raw(), o.mask.data, g)
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn resize_sizes() {
        assert_eq!(Resize::ShorterSide(520).size_for(500, 375), (693, 520));
        assert_eq!(Resize::Fixed { width: 64, height: 32 }.size_for(5, 5), (64, 32));
        assert_eq!(Resize::None.size_for(7, 9), (7, 9));
    }

    #[test]
    fn nearest_mask_resize_picks_pixel_centres() {
        let m = Mask::new(4, 1, vec![1, 2, 3, 4]);
        assert_eq!(resize_mask_nearest(&m, 2, 1).data, [2, 4]);
        assert_eq!(resize_mask_nearest(&m, 8, 1).data, [1, 1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn normalisation_matches_imagenet_formula() {
        let img = RgbImage::from_pixel(2, 1, image::Rgb([255, 0, 128]));
        let v = normalize(&img);
        let expect = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128.0 / 255.0 - 0.406) / 0.225];
        for c in 0..3 {
            for i in 0..2 {
                assert!((v[c * 2 + i] - expect[c]).abs() < 1e-5, "channel {c}");
            }
        }
    }

    #[test]
    fn jitter_changes_colours_but_not_size() {
        let mut img = coded_sample(10, 10).image;
        let before = img.clone();
        ColorJitter { brightness: 0.5, contrast: 0.5, saturation: 0.5, hue: 0.1 }.apply(&mut img, &mut Rng::new(1));
        assert_eq!(img.dimensions(), before.dimensions());
        assert_ne!(img, before);
    }
}
