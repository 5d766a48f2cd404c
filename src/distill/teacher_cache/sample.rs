//! Cutting a student's view out of a cached teacher map: the same crop, flip and scale as the
//! image augmentation, resolved as one bilinear lookup per output cell.
//!
//! Cells of a map with stride `s` are centred on pixels `s·m + (s − 1)/2` (the convention of
//! `align_corners = false` resizing, which the live pipeline uses to bring the teacher's maps to
//! the student's size). An output cell `j` of stride `t` over the crop sits at crop pixel
//! `t·j + (t − 1)/2`; through the flip and crop it is pixel `sx` of the scaled image, pixel
//! `u = (sx + ½)·base/scaled − ½` of the base image the teacher saw, and map coordinate
//! `m = (u + ½)/s − ½`. When the crop lies on the teacher's stride grid this reads exactly the
//! cells the teacher run on the crop would have produced. Positions outside the map (padding)
//! take the nearest edge value, as PyTorch's interpolation clamps its source index.

use crate::data::transforms::Geometry;

use super::format::CachedMap;

/// The two map cells and weights one output cell reads.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tap {
    i0: usize,
    i1: usize,
    w1: f32,
}

/// One axis of a view: how output cells map to the map's cells.
struct Axis {
    /// Output cells and their size in crop pixels.
    cells: usize,
    cell: f32,
    /// Base-image pixels per scaled-image pixel.
    base_per_scaled: f32,
    map_len: usize,
    map_stride: f32,
}

impl Axis {
    /// `to_scaled` maps a (continuous) crop-pixel coordinate to the scaled image's.
    fn taps(&self, to_scaled: impl Fn(f32) -> f32) -> Vec<Tap> {
        (0..self.cells)
            .map(|j| {
                let x = (j as f32 + 0.5) * self.cell - 0.5;
                let u = (to_scaled(x) + 0.5) * self.base_per_scaled - 0.5;
                let m = ((u + 0.5) / self.map_stride - 0.5).clamp(0.0, (self.map_len - 1) as f32);
                let i0 = (m as usize).min(self.map_len - 1);
                Tap { i0, i1: (i0 + 1).min(self.map_len - 1), w1: m - i0 as f32 }
            })
            .collect()
    }
}

/// Where a map came from and what grid to sample it on.
#[derive(Clone, Copy, Debug)]
pub struct View {
    /// Size (width, height) of the base image the teacher saw.
    pub base: (u32, u32),
    /// Output grid (height, width) and its cell size in crop pixels (1 for full resolution).
    pub out: (usize, usize),
    pub out_cell: f32,
}

/// The map's stride in base-image pixels: the power of two nearest to base/map along x.
fn map_stride(map_len: usize, base_len: u32) -> f32 {
    let ratio = base_len as f32 / map_len.max(1) as f32;
    2f32.powf(ratio.max(1.0).log2().round())
}

/// Samples `map` for the crop described by `g` onto `view.out`; writes channels·h·w values.
pub fn sample_into(map: &CachedMap, g: &Geometry, view: View, out: &mut [f32]) {
    let (out_h, out_w) = view.out;
    assert_eq!(out.len(), map.channels * out_h * out_w, "output buffer size");
    let flip_w = g.out_width as f32;
    let xs = Axis {
        cells: out_w,
        cell: view.out_cell,
        base_per_scaled: view.base.0 as f32 / g.scaled_width as f32,
        map_len: map.width,
        map_stride: map_stride(map.width, view.base.0),
    }
    .taps(|x| g.crop_x as f32 + if g.flipped { flip_w - 1.0 - x } else { x });
    let ys = Axis {
        cells: out_h,
        cell: view.out_cell,
        base_per_scaled: view.base.1 as f32 / g.scaled_height as f32,
        map_len: map.height,
        map_stride: map_stride(map.height, view.base.1),
    }
    .taps(|y| g.crop_y as f32 + y);
    let mut row0 = vec![0f32; out_w];
    let mut row1 = vec![0f32; out_w];
    for c in 0..map.channels {
        let plane = map.plane(c);
        let dst = &mut out[c * out_h * out_w..(c + 1) * out_h * out_w];
        for (oy, ty) in ys.iter().enumerate() {
            // Interpolate along x on the two source rows, then blend the rows.
            for (row, iy) in [(&mut row0, ty.i0), (&mut row1, ty.i1)] {
                let src = &plane[iy * map.width..(iy + 1) * map.width];
                for (v, tx) in row.iter_mut().zip(&xs) {
                    let (a, b) = (src[tx.i0].to_f32(), src[tx.i1].to_f32());
                    *v = a + (b - a) * tx.w1;
                }
            }
            let out_row = &mut dst[oy * out_w..(oy + 1) * out_w];
            for ((o, a), b) in out_row.iter_mut().zip(&row0).zip(&row1) {
                *o = a + (b - a) * ty.w1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::transforms::{Augment, Resize};
    use crate::util::Rng;

    /// A map whose value is an affine function of the cell position: bilinear sampling of it
    /// reproduces the function exactly (inside the map), so positions can be checked directly.
    fn affine_map(w: usize, h: usize) -> CachedMap {
        let v: Vec<f32> = (0..h).flat_map(|y| (0..w).map(move |x| x as f32 + 100.0 * y as f32)).collect();
        CachedMap::from_f32("logits", (1, h, w), &v)
    }

    #[test]
    fn identity_geometry_reproduces_an_align_corners_false_resize() {
        // A 4×3 map over a 32×24 image, sampled at full resolution: PyTorch's resize rule.
        let map = affine_map(4, 3);
        let g = Geometry::identity(32, 24);
        let mut out = vec![0f32; 32 * 24];
        sample_into(&map, &g, View { base: (32, 24), out: (24, 32), out_cell: 1.0 }, &mut out);
        for y in 0..24 {
            for x in 0..32 {
                let mx = ((x as f32 + 0.5) * 4.0 / 32.0 - 0.5).clamp(0.0, 3.0);
                let my = ((y as f32 + 0.5) * 3.0 / 24.0 - 0.5).clamp(0.0, 2.0);
                let want = mx + 100.0 * my;
                assert!((out[y * 32 + x] - want).abs() < 0.1, "({x},{y}): {} vs {want}", out[y * 32 + x]);
            }
        }
    }

    #[test]
    fn crops_flips_and_scales_follow_the_image_augmentation() {
        // The cached map (stride 8 over the base image, 85×64) is sampled where the augmented
        // pixel came from.
        let (src_w, src_h) = (120u32, 90u32);
        let (base_w, base_h) = (85u32, 64u32);
        let map = affine_map(11, 8);
        let aug = Augment {
            resize: Resize::ShorterSide(64),
            scale_range: (0.5, 2.0),
            crop: Some((48, 40)),
            hflip: true,
            jitter: None,
        };
        for seed in 0..30 {
            let sample = crate::data::dataset::Sample {
                id: "x".into(),
                image: image::RgbImage::new(src_w, src_h),
                mask: crate::data::mask::Mask::filled(src_w, src_h, 0),
            };
            let (_, g) = aug.apply(sample, &mut Rng::new(seed));
            let mut out = vec![0f32; 40 * 48];
            sample_into(&map, &g, View { base: (base_w, base_h), out: (40, 48), out_cell: 1.0 }, &mut out);
            for y in 0..40 {
                for x in 0..48 {
                    let Some((fx, fy)) = g.source_coords(x, y) else { continue };
                    // Source pixel → base pixel → map cell.
                    let (ux, uy) = (
                        (fx + 0.5) * base_w as f32 / src_w as f32 - 0.5,
                        (fy + 0.5) * base_h as f32 / src_h as f32 - 0.5,
                    );
                    let mx = ((ux + 0.5) / 8.0 - 0.5).clamp(0.0, 10.0);
                    let my = ((uy + 0.5) / 8.0 - 0.5).clamp(0.0, 7.0);
                    let want = mx + 100.0 * my;
                    let got = out[(y * 48 + x) as usize];
                    assert!((got - want).abs() < 0.15, "seed {seed} ({x},{y}) flipped {}: {got} vs {want}", g.flipped);
                }
            }
        }
    }

    #[test]
    fn padding_takes_the_edge_value() {
        let map = affine_map(4, 4);
        let mut g = Geometry::identity(16, 16);
        (g.out_width, g.out_height) = (32, 32); // the image fills the top-left quarter
        let mut out = vec![0f32; 32 * 32];
        sample_into(&map, &g, View { base: (16, 16), out: (32, 32), out_cell: 1.0 }, &mut out);
        assert_eq!(out[31 * 32 + 31], 3.0 + 300.0);
        assert_eq!(out[31], 3.0);
    }
}
