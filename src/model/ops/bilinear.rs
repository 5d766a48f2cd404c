//! Bilinear resize with `align_corners = False` (PyTorch's `F.interpolate(mode="bilinear")`),
//! differentiable.
//!
//! candle's `upsample_bilinear2d` has no backward. On the CPU a direct kernel (4 taps per output
//! pixel, forward and backward) does the work, on CUDA (`cuda` feature) the kernels of
//! `kernels.cu`; otherwise the resize is two matmuls with fixed interpolation matrices
//! (`Mh · x · Mwᵀ`), which candle differentiates itself.
//! Source index rule (PyTorch): `src = (dst + ½)·in/out − ½`, clamped at 0; `i1 = min(i0 + 1, in − 1)`.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

/// Interpolation taps of one output coordinate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Tap {
    i0: usize,
    i1: usize,
    w0: f32,
    w1: f32,
}

/// The taps of every output coordinate of an axis resized from `in_len` to `out_len`.
pub(crate) fn taps(in_len: usize, out_len: usize) -> Vec<Tap> {
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|o| {
            let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src as usize).min(in_len - 1);
            let i1 = (i0 + 1).min(in_len - 1);
            let w1 = src - i0 as f32;
            Tap { i0, i1, w0: 1.0 - w1, w1 }
        })
        .collect()
}

/// Resizes `x` (N, C, H, W) to (N, C, `height`, `width`).
pub fn resize_bilinear(x: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if (h, w) == (height, width) {
        return Ok(x.clone());
    }
    if height == 0 || width == 0 || h == 0 || w == 0 {
        bail!("bilinear resize of {:?} to {height}×{width}", x.shape());
    }
    let own_kernel = x.device().is_cpu() || (cfg!(feature = "cuda") && x.device().is_cuda());
    if own_kernel && matches!(x.dtype(), DType::BF16 | DType::F16) {
        // Autocast: interpolate in fp32 (the weights of neighbouring pixels need the precision).
        return resize_bilinear(&x.to_dtype(DType::F32)?, height, width)?.to_dtype(x.dtype());
    }
    if own_kernel && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(BilinearResize { height, width })
    } else {
        resize_by_matmul(x, height, width)
    }
}

/// The (out × in) interpolation matrix of one axis.
pub fn interpolation_matrix(in_len: usize, out_len: usize) -> Vec<f32> {
    let mut m = vec![0f32; out_len * in_len];
    for (o, t) in taps(in_len, out_len).iter().enumerate() {
        m[o * in_len + t.i0] += t.w0;
        m[o * in_len + t.i1] += t.w1;
    }
    m
}

/// `Mh · x · Mwᵀ` per plane: the device-independent path.
pub fn resize_by_matmul(x: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let dev = x.device();
    let mw_t = Tensor::from_vec(interpolation_matrix(w, width), (width, w), dev)?.to_dtype(x.dtype())?.t()?;
    let mh = Tensor::from_vec(interpolation_matrix(h, height), (height, h), dev)?.to_dtype(x.dtype())?;
    // Width: (N·C·H, W) · (W, OW).
    let xw = x.reshape((n * c * h, w))?.matmul(&mw_t)?.reshape((n * c, h, width))?;
    // Height: (OH, H) · (H, OW) per plane, batched.
    let mh = mh.unsqueeze(0)?.broadcast_as((n * c, height, h))?.contiguous()?;
    mh.matmul(&xw)?.reshape((n, c, height, width))
}

/// One output row of a (H, W) plane: row tap `t`, column taps `tx` (one per output value).
/// Shared with the evaluation's banded resize, whose values must be this kernel's bit for bit.
#[inline]
pub(crate) fn interpolate_row(plane: &[f32], w: usize, t: &Tap, tx: &[Tap], out: &mut [f32]) {
    let (r0, r1) = (&plane[t.i0 * w..(t.i0 + 1) * w], &plane[t.i1 * w..(t.i1 + 1) * w]);
    for (v, u) in out.iter_mut().zip(tx) {
        let top = u.w0 * r0[u.i0] + u.w1 * r0[u.i1];
        let bottom = u.w0 * r1[u.i0] + u.w1 * r1[u.i1];
        *v = t.w0 * top + t.w1 * bottom;
    }
}

struct BilinearResize {
    height: usize,
    width: usize,
}

impl CustomOp1 for BilinearResize {
    fn name(&self) -> &'static str {
        "bilinear-resize"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let (oh, ow) = (self.height, self.width);
        let x = super::cpu_f32(s, l, "bilinear resize input")?;
        let (ty, tx) = (taps(h, oh), taps(w, ow));
        let mut out = vec![0f32; n * c * oh * ow];
        out.par_chunks_mut(oh * ow).enumerate().for_each(|(plane, o)| {
            let xp = &x[plane * h * w..(plane + 1) * h * w];
            for (oy, t) in ty.iter().enumerate() {
                interpolate_row(xp, w, t, &tx, &mut o[oy * ow..(oy + 1) * ow]);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let (oh, ow) = (self.height, self.width);
        let out = super::cuda::bilinear((s, l), n * c, (h, w), (oh, ow), false)?;
        Ok((out, Shape::from((n, c, oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = arg.dims4()?;
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&BilinearResizeGrad { height: h, width: w })?))
    }
}

/// Scatters the output gradient back to the input grid (the transpose of the forward taps).
struct BilinearResizeGrad {
    height: usize,
    width: usize,
}

impl CustomOp1 for BilinearResizeGrad {
    fn name(&self) -> &'static str {
        "bilinear-resize-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, oh, ow) = l.shape().dims4()?;
        let (h, w) = (self.height, self.width);
        let g = super::cpu_f32(s, l, "bilinear resize gradient")?;
        let (ty, tx) = (taps(h, oh), taps(w, ow));
        let mut gx = vec![0f32; n * c * h * w];
        gx.par_chunks_mut(h * w).enumerate().for_each(|(plane, gxp)| {
            let gp = &g[plane * oh * ow..(plane + 1) * oh * ow];
            let mut row = vec![0f32; w];
            for (oy, t) in ty.iter().enumerate() {
                // Collapse the output row onto one input-width row, then split it between i0 and i1.
                row.iter_mut().for_each(|v| *v = 0.0);
                for (&gv, u) in gp[oy * ow..(oy + 1) * ow].iter().zip(&tx) {
                    row[u.i0] += u.w0 * gv;
                    row[u.i1] += u.w1 * gv;
                }
                for (x, r) in gxp[t.i0 * w..(t.i0 + 1) * w].iter_mut().zip(&row) {
                    *x += t.w0 * r;
                }
                for (x, r) in gxp[t.i1 * w..(t.i1 + 1) * w].iter_mut().zip(&row) {
                    *x += t.w1 * r;
                }
            }
        });
        Ok((CpuStorage::F32(gx), Shape::from((n, c, h, w))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, c, oh, ow) = l.shape().dims4()?;
        let (h, w) = (self.height, self.width);
        let gx = super::cuda::bilinear((s, l), n * c, (h, w), (oh, ow), true)?;
        Ok((gx, Shape::from((n, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn kernel_and_matmul_paths_agree_forward_and_backward() {
        let dev = Device::Cpu;
        for (h, w, oh, ow) in [(5, 7, 16, 20), (5, 7, 3, 4), (8, 8, 8, 3), (9, 13, 72, 104), (1, 4, 3, 9)] {
            let x = Var::randn(0f32, 1., (2, 3, h, w), &dev).unwrap();
            let a = resize_bilinear(&x, oh, ow).unwrap();
            let b = resize_by_matmul(&x, oh, ow).unwrap();
            assert!(max_abs_diff(&a, &b) < 1e-5, "forward {h}x{w}->{oh}x{ow}");
            let up = Tensor::randn(0f32, 1., a.shape(), &dev).unwrap();
            let ga = (a * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (b * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let d = max_abs_diff(ga.get(&x).unwrap(), gb.get(&x).unwrap());
            assert!(d < 1e-4, "grad {h}x{w}->{oh}x{ow}: {d}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let x0: Vec<f32> = (0..2 * 4 * 5).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
        let up: Vec<f32> = (0..2 * 7 * 9).map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0).collect();
        let up = Tensor::from_vec(up, (1, 2, 7, 9), &dev).unwrap();
        let f = |v: &[f32]| -> f64 {
            let x = Tensor::from_vec(v.to_vec(), (1, 2, 4, 5), &dev).unwrap();
            let y = resize_bilinear(&x, 7, 9).unwrap();
            (y * &up).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64
        };
        let x = Var::from_vec(x0.clone(), (1, 2, 4, 5), &dev).unwrap();
        let y = resize_bilinear(&x, 7, 9).unwrap();
        let g = (y * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = g.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for i in 0..x0.len() {
            let (mut p, mut m) = (x0.clone(), x0.clone());
            p[i] += 1e-2;
            m[i] -= 1e-2;
            let fd = (f(&p) - f(&m)) / 2e-2;
            assert!((fd - g[i] as f64).abs() < 1e-3, "element {i}: fd {fd} vs {}", g[i]);
        }
    }

    #[test]
    fn identity_size_is_a_no_op_and_rows_sum_to_one() {
        let m = interpolation_matrix(5, 16);
        for r in m.chunks(5) {
            assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let x = Tensor::arange(0f32, 12., &Device::Cpu).unwrap().reshape((1, 1, 3, 4)).unwrap();
        let y = resize_bilinear(&x, 3, 4).unwrap();
        assert_eq!(max_abs_diff(&x, &y), 0.0);
    }
}
