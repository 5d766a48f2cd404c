//! Bilinear image resampling exactly as Pillow does it (`Image.resize(size, BILINEAR)`,
//! `libImaging/Resample.c`), which is what torchvision's `transforms.Resize` runs on PIL images:
//! a triangle filter widened by the scale when shrinking (antialiasing), coefficients normalised
//! and rounded to 22-bit fixed point, a horizontal pass then a vertical pass, each rounding to
//! 8 bits. Matching it bit for bit means a resized input equals PyTorch's.

use image::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output position: first input index, number of taps, fixed-point weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
    ksize: usize,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

fn precompute(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the triangle filter's support is 1
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kv) in k.iter_mut().enumerate().take(xmax) {
            *kv = triangle((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *kv;
        }
        for (x, kv) in k.iter().enumerate().take(xmax) {
            let w = if ww != 0.0 { kv / ww } else { *kv };
            let fixed = w * (1u64 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { bounds, weights, ksize }
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an RGB image to `width`×`height` with Pillow's bilinear resampling.
pub fn resize_bilinear_pil(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (width as usize, height as usize);
    if (w, h) == (ow, oh) {
        return img.clone();
    }
    let src = img.as_raw();
    let horiz = precompute(w, ow);
    let vert = precompute(h, oh);
    let round = 1i32 << (PRECISION_BITS - 1);
    // Horizontal pass, over the rows the vertical pass will read.
    let (first_row, last_row) = if h != oh {
        let (a, _) = vert.bounds[0];
        let (b, n) = vert.bounds[oh - 1];
        (a, b + n)
    } else {
        (0, h)
    };
    let (mid, mid_w) = if w != ow {
        let rows = last_row - first_row;
        let mut out = vec![0u8; rows * ow * 3];
        for y in 0..rows {
            let row = &src[(y + first_row) * w * 3..(y + first_row + 1) * w * 3];
            for (xx, &(xmin, n)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + n];
                let mut ss = [round; 3];
                for (x, &kv) in k.iter().enumerate() {
                    let p = &row[(xmin + x) * 3..(xmin + x) * 3 + 3];
                    for c in 0..3 {
                        ss[c] += p[c] as i32 * kv;
                    }
                }
                let o = &mut out[(y * ow + xx) * 3..(y * ow + xx) * 3 + 3];
                for c in 0..3 {
                    o[c] = clip8(ss[c]);
                }
            }
        }
        (out, ow)
    } else {
        (src[first_row * w * 3..last_row * w * 3].to_vec(), w)
    };
    if h == oh {
        return RgbImage::from_raw(mid_w as u32, oh as u32, mid).expect("buffer size");
    }
    let mut out = vec![0u8; oh * mid_w * 3];
    for (yy, &(ymin, n)) in vert.bounds.iter().enumerate() {
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + n];
        let ymin = ymin - first_row;
        for x in 0..mid_w {
            let mut ss = [round; 3];
            for (y, &kv) in k.iter().enumerate() {
                let p = &mid[((ymin + y) * mid_w + x) * 3..((ymin + y) * mid_w + x) * 3 + 3];
                for c in 0..3 {
                    ss[c] += p[c] as i32 * kv;
                }
            }
            let o = &mut out[(yy * mid_w + x) * 3..(yy * mid_w + x) * 3 + 3];
            for c in 0..3 {
                o[c] = clip8(ss[c]);
            }
        }
    }
    RgbImage::from_raw(mid_w as u32, oh as u32, out).expect("buffer size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_images_stay_constant_and_identity_is_exact() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 17, 99]));
        for (w, h) in [(10, 7), (80, 50), (37, 5), (3, 23)] {
            let r = resize_bilinear_pil(&img, w, h);
            assert_eq!(r.dimensions(), (w, h));
            assert!(r.pixels().all(|p| p.0 == [200, 17, 99]), "{w}x{h}");
        }
        let grad = RgbImage::from_fn(9, 4, |x, y| image::Rgb([x as u8 * 20, y as u8 * 50, 7]));
        assert_eq!(resize_bilinear_pil(&grad, 9, 4), grad);
    }
}
