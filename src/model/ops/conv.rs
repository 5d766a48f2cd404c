//! Dense convolution (`groups = 1`) on the CPU as im2col + one matrix product per image, so that
//! the backward pass is matrix products too.
//!
//! candle differentiates `conv2d` with `conv_transpose2d` for the input gradient (a direct loop on
//! the CPU, the largest single cost of a MobileNet training step) and a convolution with the
//! output gradient as kernel for the weight gradient. Written as `W · cols(x)`, both gradients
//! become GEMMs (`Wᵀ · ∂y` folded back by col2im, and `∂y · colsᵀ`), which candle's matmul backward
//! already does. 1×1 convolutions with stride 1 need no im2col at all.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::{cpu_f32, valid_outputs};

/// Geometry of a square-kernel convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvParams {
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
}

impl ConvParams {
    fn out_len(&self, len: usize) -> usize {
        (len + 2 * self.padding).saturating_sub(self.dilation * (self.k - 1) + 1) / self.stride + 1
    }
}

/// Whether [`conv2d_gemm`] handles this input (f32 on the CPU).
pub fn supports(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// `x` (N, Cin, H, W) convolved with `weight` (Cout, Cin, K, K), no bias.
pub fn conv2d_gemm(x: &Tensor, weight: &Tensor, p: ConvParams) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (cout, cin, kh, kw) = weight.dims4()?;
    if cin != c || kh != p.k || kw != p.k {
        bail!("convolution weight {:?} does not fit input {:?}", weight.shape(), x.shape());
    }
    let (oh, ow) = (p.out_len(h), p.out_len(w));
    let cols = if p.k == 1 && p.stride == 1 && p.padding == 0 {
        x.reshape((n, c, h * w))?
    } else {
        x.contiguous()?.apply_op1(Im2Col(p))?
    };
    let wm = weight.reshape((cout, c * p.k * p.k))?.broadcast_left(n)?;
    wm.matmul(&cols)?.reshape((n, cout, oh, ow))
}

/// (N, C, H, W) → (N, C·K·K, OH·OW): row (c, ky, kx) holds the input value under that tap for
/// every output position (0 in the padding).
struct Im2Col(ConvParams);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let p = self.0;
        let (n, c, h, w) = l.shape().dims4()?;
        let (oh, ow, kk) = (p.out_len(h), p.out_len(w), p.k * p.k);
        let x = cpu_f32(s, l, "im2col input")?;
        let mut cols = vec![0f32; n * c * kk * oh * ow];
        // One (image, channel) plane of the input fills K·K rows of the output.
        cols.par_chunks_mut(kk * oh * ow).enumerate().for_each(|(plane, rows)| {
            let xp = &x[plane * h * w..(plane + 1) * h * w];
            for ky in 0..p.k {
                let ys = valid_outputs(h, oh, p.stride, p.padding, ky * p.dilation);
                for kx in 0..p.k {
                    let xs = valid_outputs(w, ow, p.stride, p.padding, kx * p.dilation);
                    let row = &mut rows[(ky * p.k + kx) * oh * ow..(ky * p.k + kx + 1) * oh * ow];
                    for oy in ys.clone() {
                        let iy = oy * p.stride + ky * p.dilation - p.padding;
                        let src = &xp[iy * w..(iy + 1) * w];
                        let dst = &mut row[oy * ow..(oy + 1) * ow];
                        if p.stride == 1 {
                            let shift = (kx * p.dilation) as isize - p.padding as isize;
                            let a = (xs.start as isize + shift) as usize;
                            dst[xs.clone()].copy_from_slice(&src[a..a + xs.len()]);
                        } else {
                            for ox in xs.clone() {
                                dst[ox] = src[ox * p.stride + kx * p.dilation - p.padding];
                            }
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(cols), Shape::from((n, c * kk, oh * ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = arg.dims4()?;
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Col2Im { p: self.0, h, w })?))
    }
}

/// The adjoint of [`Im2Col`]: sums each column value back onto the input pixel it was read from.
struct Col2Im {
    p: ConvParams,
    h: usize,
    w: usize,
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (p, h, w) = (self.p, self.h, self.w);
        let (n, ckk, _) = l.shape().dims3()?;
        let (oh, ow, kk) = (p.out_len(h), p.out_len(w), p.k * p.k);
        let c = ckk / kk;
        let g = cpu_f32(s, l, "col2im input")?;
        let mut gx = vec![0f32; n * c * h * w];
        gx.par_chunks_mut(h * w).enumerate().for_each(|(plane, gxp)| {
            let rows = &g[plane * kk * oh * ow..(plane + 1) * kk * oh * ow];
            for ky in 0..p.k {
                let ys = valid_outputs(h, oh, p.stride, p.padding, ky * p.dilation);
                for kx in 0..p.k {
                    let xs = valid_outputs(w, ow, p.stride, p.padding, kx * p.dilation);
                    let row = &rows[(ky * p.k + kx) * oh * ow..(ky * p.k + kx + 1) * oh * ow];
                    for oy in ys.clone() {
                        let iy = oy * p.stride + ky * p.dilation - p.padding;
                        let dst = &mut gxp[iy * w..(iy + 1) * w];
                        let src = &row[oy * ow..(oy + 1) * ow];
                        if p.stride == 1 {
                            let shift = (kx * p.dilation) as isize - p.padding as isize;
                            let a = (xs.start as isize + shift) as usize;
                            for (d, v) in dst[a..a + xs.len()].iter_mut().zip(&src[xs.clone()]) {
                                *d += v;
                            }
                        } else {
                            for ox in xs.clone() {
                                dst[ox * p.stride + kx * p.dilation - p.padding] += src[ox];
                            }
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(gx), Shape::from((n, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() / scale
    }

    #[test]
    fn forward_and_both_gradients_match_candles_convolution() {
        let dev = Device::Cpu;
        // (n, cin, cout, h, w, k, stride, padding, dilation): odd sizes, strides, dilations, 1×1.
        // (candle's own backward fails for odd sizes with stride 2: those are checked below.)
        let cases = [
            (2, 3, 5, 9, 11, 3, 1, 1, 1),
            (2, 4, 6, 10, 8, 3, 2, 1, 1),
            (1, 3, 4, 12, 12, 3, 1, 2, 2),
            (2, 5, 3, 8, 9, 1, 1, 0, 1),
            (2, 5, 3, 10, 8, 1, 2, 0, 1),
            (1, 2, 3, 12, 10, 5, 2, 2, 1),
        ];
        for (i, &(n, cin, cout, h, w, k, stride, padding, dilation)) in cases.iter().enumerate() {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, cin, h, w), &dev).unwrap()).unwrap();
            let wt = Var::from_tensor(&Tensor::randn(0f32, 0.5, (cout, cin, k, k), &dev).unwrap()).unwrap();
            let p = ConvParams { k, stride, padding, dilation };
            let ours = conv2d_gemm(&x, &wt, p).unwrap();
            let reference = x.conv2d(&wt, padding, stride, dilation, 1).unwrap();
            assert_eq!(ours.dims(), reference.dims(), "case {i}");
            assert!(max_rel_diff(&ours, &reference) < 1e-5, "case {i} forward");
            // A loss that weights every output differently, so every gradient entry is checked.
            let mix = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let g_ours = (&ours * &mix).unwrap().sum_all().unwrap().backward().unwrap();
            let g_ref = (&reference * &mix).unwrap().sum_all().unwrap().backward().unwrap();
            for (what, v) in [("input", &x), ("weight", &wt)] {
                let (a, b) = (g_ours.get(v).unwrap(), g_ref.get(v).unwrap());
                assert!(max_rel_diff(a, b) < 1e-4, "case {i} {what} gradient: {}", max_rel_diff(a, b));
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col_for_any_size() {
        // ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩, where col2im(c) is the gradient of the left side.
        let dev = Device::Cpu;
        for (h, w, k, stride, padding, dilation) in [(9, 7, 3, 2, 1, 1), (11, 13, 5, 3, 2, 2), (5, 6, 3, 1, 0, 1)] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev).unwrap()).unwrap();
            let cols = x.apply_op1(Im2Col(ConvParams { k, stride, padding, dilation })).unwrap();
            let c = Tensor::randn(0f32, 1.0, cols.shape(), &dev).unwrap();
            let lhs = (&cols * &c).unwrap().sum_all().unwrap();
            let grad = lhs.backward().unwrap().get(&x).unwrap().clone();
            let rhs = (x.as_tensor() * grad).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            let lhs = lhs.to_scalar::<f32>().unwrap();
            assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0), "{h}×{w} k{k} s{stride}: {lhs} vs {rhs}");
        }
    }
}
