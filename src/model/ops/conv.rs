//! Dense convolution (`groups = 1`) as one operation with its own gradient: on the CPU as im2col +
//! one matrix product per image, forward and backward (below); on a GPU through cuDNN
//! (`cudnn.rs`), which the candle path lacks for the two gradients.
//!
//! candle differentiates `conv2d` with `conv_transpose2d` for the input gradient (a direct loop on
//! the CPU, the largest single cost of a MobileNet training step) and a convolution with the
//! output gradient as kernel for the weight gradient. Written as `W · cols(x)`, both gradients
//! are matrix products: `Wᵀ · ∂y` folded back by col2im, and `Σₙ ∂yₙ · colsₙᵀ`. Each worker thread
//! handles a group of images with one scratch buffer for their columns (recomputed in the backward
//! pass rather than kept: the 3×3 decoder convolution's columns are 189 MB at batch 8), and sums
//! its weight gradient in place; 1×1 convolutions with stride 1 need no im2col at all.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::batch_norm::FusedActivation;
use super::gemm::{GemmLibrary, Mat, Threads, sgemm};
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

/// Whether [`conv2d_gemm`] handles this input: f32 on the CPU, or (cuda build) f32 or bf16
/// (autocast) on a GPU where cuDNN can be loaded.
pub fn supports(x: &Tensor) -> bool {
    match x.dtype() {
        DType::F32 => x.device().is_cpu() || cudnn_usable(x),
        DType::BF16 => cudnn_usable(x),
        _ => false,
    }
}

#[cfg(feature = "cuda")]
fn cudnn_usable(x: &Tensor) -> bool {
    x.device().is_cuda() && super::cudnn::available()
}

#[cfg(not(feature = "cuda"))]
fn cudnn_usable(_: &Tensor) -> bool {
    false
}

/// `x` (N, Cin, H, W) convolved with `weight` (Cout, Cin, K, K), no bias.
pub fn conv2d_gemm(x: &Tensor, weight: &Tensor, p: ConvParams) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (_, cin, kh, kw) = weight.dims4()?;
    if cin != c || kh != p.k || kw != p.k {
        bail!("convolution weight {:?} does not fit input {:?}", weight.shape(), x.shape());
    }
    x.contiguous()?.apply_op2(&weight.contiguous()?, ConvGemm { p, lib: super::gemm::library() })
}

/// Sizes of one convolution call.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    p: ConvParams,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    cout: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    #[cfg(feature = "cuda")]
    fn cudnn_shape(&self) -> super::cudnn::ConvShape {
        super::cudnn::ConvShape {
            n: self.n,
            c: self.c,
            h: self.h,
            w: self.w,
            cout: self.cout,
            k: self.p.k,
            oh: self.oh,
            ow: self.ow,
            stride: self.p.stride,
            padding: self.p.padding,
            dilation: self.p.dilation,
        }
    }

    fn new(p: ConvParams, x: &Layout, weight: &Layout) -> Result<Self> {
        let (n, c, h, w) = x.shape().dims4()?;
        let (cout, cin, _, _) = weight.shape().dims4()?;
        if cin != c {
            bail!("convolution weight {:?} does not fit input {:?}", weight.shape(), x.shape());
        }
        Ok(Self { p, n, c, h, w, cout, oh: p.out_len(h), ow: p.out_len(w) })
    }

    /// Rows of the column matrix (C·K·K) and output pixels per image.
    fn cols_dims(&self) -> (usize, usize) {
        (self.c * self.p.k * self.p.k, self.oh * self.ow)
    }

    /// 1×1, stride 1, no padding: the input image is its own column matrix.
    fn pointwise(&self) -> bool {
        self.p.k == 1 && self.p.stride == 1 && self.p.padding == 0
    }

    /// The column matrix of one image: `x_img` itself for pointwise convolutions, else im2col into
    /// `scratch` (which must hold zeros, or the columns of an earlier image of the same geometry,
    /// at the padding positions; im2col writes every other position).
    fn columns<'a>(&self, x_img: &'a [f32], scratch: &'a mut [f32]) -> &'a [f32] {
        if self.pointwise() {
            return x_img;
        }
        im2col_image(x_img, self, scratch);
        scratch
    }
}

/// How the images of a batch are spread over the threads: in groups of `per_group` images, one
/// group per thread with single-threaded matrix products, or (fewer images than threads, e.g.
/// inference at batch 1) one image at a time with multi-threaded products. The grouping (and so
/// the order in which the weight gradient's partial sums add up) depends on the thread count:
/// results are reproducible for a given `RAYON_NUM_THREADS`, and agree across counts to float
/// rounding.
fn image_groups(n: usize) -> (usize, Threads) {
    let threads = rayon::current_num_threads().max(1);
    if n >= threads && threads > 1 { (n.div_ceil(threads), Threads::One) } else { (1, Threads::All) }
}

/// The forward convolution, with the matrix-product library chosen when it was called (its
/// backward pass uses the same one).
struct ConvGemm {
    p: ConvParams,
    lib: GemmLibrary,
}

impl CustomOp2 for ConvGemm {
    fn name(&self) -> &'static str {
        "conv2d-gemm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(self.p, l1, l2)?;
        let (x, weight) = (cpu_f32(s1, l1, "convolution input")?, cpu_f32(s2, l2, "convolution weight")?);
        let y = forward_cpu(&g, x, weight, self.lib, None)?;
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.cout, g.oh, g.ow))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let g = Geometry::new(self.p, l1, l2)?;
        let y = super::cudnn::forward((s1, l1), (s2, l2), g.cudnn_shape())?;
        Ok((y, Shape::from((g.n, g.cout, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // One buffer: ∂x, then ∂W.
        let packed = x.apply_op3_no_bwd(weight, &grad.contiguous()?, &ConvGemmGrad { p: self.p, lib: self.lib })?;
        let nx = x.elem_count();
        let gx = packed.narrow(0, 0, nx)?.reshape(x.shape())?;
        // A compact copy: a view would keep the whole activation-sized buffer alive as long as the
        // weight's gradient lives (until the optimizer step); candle's `copy` clones the whole
        // buffer under a view, `force_contiguous` only the view.
        let gw = packed.narrow(0, nx, weight.elem_count())?.reshape(weight.shape())?.force_contiguous()?;
        Ok((Some(gx), Some(gw)))
    }
}

/// `W · cols(x)` for every image, each image's output finished by `epilogue` (if any) while it is
/// still in cache — or, when one image has all threads (batch 1), in one parallel pass after.
fn forward_cpu(
    g: &Geometry,
    x: &[f32],
    weight: &[f32],
    lib: GemmLibrary,
    epilogue: Option<Epilogue>,
) -> Result<Vec<f32>> {
    let (ckk, pix) = g.cols_dims();
    let (x_len, y_len) = (g.c * g.h * g.w, g.cout * pix);
    if let Some(r) = epilogue.and_then(|e| e.residual)
        && r.len() != g.n * y_len
    {
        bail!("residual of {} values for a convolution output of {}", r.len(), g.n * y_len);
    }
    let wm = Mat::row_major(weight, g.cout, ckk);
    let mut y = vec![0f32; g.n * y_len];
    let (per_group, par) = image_groups(g.n);
    y.par_chunks_mut(per_group * y_len).enumerate().try_for_each(|(group, out)| -> Result<()> {
        let mut scratch = if g.pointwise() { Vec::new() } else { vec![0f32; ckk * pix] };
        for (i, y_img) in out.chunks_mut(y_len).enumerate() {
            let img = group * per_group + i;
            let cols = g.columns(&x[img * x_len..(img + 1) * x_len], &mut scratch);
            sgemm(lib, y_img, wm, Mat::row_major(cols, ckk, pix), false, par)?;
            if let (Some(e), Threads::One) = (epilogue, par) {
                e.apply(y_img, img * y_len, pix);
            }
        }
        Ok(())
    })?;
    if let (Some(e), Threads::All) = (epilogue, par) {
        // Channel planes of all images, spread over the threads.
        y.par_chunks_mut(pix).enumerate().for_each(|(plane, out)| e.apply(out, plane * pix, pix));
    }
    Ok(y)
}

/// What a frozen convolution does to its output as it writes it: add the per-channel bias
/// (batch norm folded into the weights, `BatchNorm2d::fold`), add a residual of the output's
/// shape (ResNet's shortcut), apply the activation.
#[derive(Clone, Copy)]
struct Epilogue<'a> {
    bias: &'a [f32],
    residual: Option<&'a [f32]>,
    act: FusedActivation,
}

impl Epilogue<'_> {
    /// Finishes `out`, which starts at flat index `start` of the output (whole channel planes
    /// of `pix` values).
    fn apply(&self, out: &mut [f32], start: usize, pix: usize) {
        let cout = self.bias.len();
        for (k, plane) in out.chunks_mut(pix).enumerate() {
            let at = start + k * pix;
            let b = self.bias[(at / pix) % cout];
            match self.residual {
                Some(r) => {
                    for (v, r) in plane.iter_mut().zip(&r[at..at + pix]) {
                        *v = self.act.value(*v + b + r);
                    }
                }
                None => plane.iter_mut().for_each(|v| *v = self.act.value(*v + b)),
            }
        }
    }
}

/// `act(conv(x, weight) + bias [+ residual])` for frozen weights (no gradient): a convolution
/// with batch norm folded into `weight` and `bias`, finished in the same pass. CPU, f32.
pub fn conv2d_gemm_frozen(
    x: &Tensor,
    weight: &Tensor,
    p: ConvParams,
    bias: &[f32],
    residual: Option<&Tensor>,
    act: FusedActivation,
) -> Result<Tensor> {
    let (x, weight) = (x.contiguous()?, weight.contiguous()?);
    let op = ConvFrozen { p, lib: super::gemm::library(), bias: bias.to_vec(), act };
    match residual {
        Some(r) => x.apply_op3_no_bwd(&weight, &r.contiguous()?, &op),
        None => x.apply_op2_no_bwd(&weight, &op),
    }
}

struct ConvFrozen {
    p: ConvParams,
    lib: GemmLibrary,
    bias: Vec<f32>,
    act: FusedActivation,
}

impl ConvFrozen {
    fn run(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        residual: Option<&[f32]>,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(self.p, x.1, w.1)?;
        if self.bias.len() != g.cout {
            bail!("{} bias values for a convolution with {} outputs", self.bias.len(), g.cout);
        }
        let (xs, ws) = (cpu_f32(x.0, x.1, "convolution input")?, cpu_f32(w.0, w.1, "convolution weight")?);
        let epilogue = Epilogue { bias: &self.bias, residual, act: self.act };
        let y = forward_cpu(&g, xs, ws, self.lib, Some(epilogue))?;
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.cout, g.oh, g.ow))))
    }
}

impl CustomOp2 for ConvFrozen {
    fn name(&self) -> &'static str {
        "conv2d-frozen"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), None)
    }
}

impl CustomOp3 for ConvFrozen {
    fn name(&self) -> &'static str {
        "conv2d-frozen-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), Some(cpu_f32(s3, l3, "convolution residual")?))
    }
}

/// ∂x = col2im(Wᵀ · ∂y) and ∂W = Σₙ ∂yₙ · colsₙᵀ, packed into one buffer.
struct ConvGemmGrad {
    p: ConvParams,
    lib: GemmLibrary,
}

impl CustomOp3 for ConvGemmGrad {
    fn name(&self) -> &'static str {
        "conv2d-gemm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(self.p, l1, l2)?;
        let (x, weight, dy) = (
            cpu_f32(s1, l1, "convolution input")?,
            cpu_f32(s2, l2, "convolution weight")?,
            cpu_f32(s3, l3, "convolution gradient")?,
        );
        let (ckk, pix) = g.cols_dims();
        let (x_len, y_len, w_len) = (g.c * g.h * g.w, g.cout * pix, g.cout * ckk);
        if dy.len() != g.n * y_len {
            bail!("convolution gradient of {} values for an output of {}", dy.len(), g.n * y_len);
        }
        let wt = Mat::row_major(weight, g.cout, ckk).t();
        let mut out = vec![0f32; g.n * x_len + w_len];
        let (gx, gw) = out.split_at_mut(g.n * x_len);
        let (per_group, par) = image_groups(g.n);
        let partial_gw = gx
            .par_chunks_mut(per_group * x_len)
            .enumerate()
            .map(|(group, gx_group)| -> Result<Vec<f32>> {
                let mut gw_part = vec![0f32; w_len];
                let (mut cols_buf, mut dcols) = if g.pointwise() {
                    (Vec::new(), Vec::new())
                } else {
                    (vec![0f32; ckk * pix], vec![0f32; ckk * pix])
                };
                for (i, gx_img) in gx_group.chunks_mut(x_len).enumerate() {
                    let img = group * per_group + i;
                    let dy_img = Mat::row_major(&dy[img * y_len..(img + 1) * y_len], g.cout, pix);
                    let cols = g.columns(&x[img * x_len..(img + 1) * x_len], &mut cols_buf);
                    // The group's first image writes its weight gradient, later ones add to it.
                    sgemm(self.lib, &mut gw_part, dy_img, Mat::row_major(cols, ckk, pix).t(), i > 0, par)?;
                    if g.pointwise() {
                        sgemm(self.lib, gx_img, wt, dy_img, false, par)?;
                    } else {
                        sgemm(self.lib, &mut dcols, wt, dy_img, false, par)?;
                        col2im_image(&dcols, &g, gx_img);
                    }
                }
                Ok(gw_part)
            })
            .collect::<Result<Vec<_>>>()?;
        for part in partial_gw {
            gw.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
        }
        Ok((CpuStorage::F32(out), Shape::from(g.n * x_len + w_len)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let g = Geometry::new(self.p, l1, l2)?;
        let len = g.n * g.c * g.h * g.w + g.cout * g.c * g.p.k * g.p.k;
        let out = super::cudnn::backward((s1, l1), (s2, l2), (s3, l3), g.cudnn_shape())?;
        Ok((out, Shape::from(len)))
    }
}

/// One image (C, H, W) → its column matrix (C·K·K, OH·OW): row (c, ky, kx) holds the input value
/// under that tap for every output position. Positions in the padding are left untouched.
fn im2col_image(x: &[f32], g: &Geometry, cols: &mut [f32]) {
    let (p, h, w, oh, ow) = (g.p, g.h, g.w, g.oh, g.ow);
    let kk = p.k * p.k;
    for (ch, rows) in cols.chunks_mut(kk * oh * ow).enumerate().take(g.c) {
        let xp = &x[ch * h * w..(ch + 1) * h * w];
        for ky in 0..p.k {
            let ys = valid_outputs(h, oh, p.stride, p.padding, ky * p.dilation);
            for kx in 0..p.k {
                let xs = valid_outputs(w, ow, p.stride, p.padding, kx * p.dilation);
                if xs.is_empty() {
                    // With a large dilation a tap can miss the input everywhere.
                    continue;
                }
                let row = &mut rows[(ky * p.k + kx) * oh * ow..(ky * p.k + kx + 1) * oh * ow];
                for oy in ys.clone() {
                    let iy = oy * p.stride + ky * p.dilation - p.padding;
                    let src = &xp[iy * w..(iy + 1) * w];
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    if p.stride == 1 {
                        let a = xs.start + kx * p.dilation - p.padding;
                        dst[xs.clone()].copy_from_slice(&src[a..a + xs.len()]);
                    } else {
                        for ox in xs.clone() {
                            dst[ox] = src[ox * p.stride + kx * p.dilation - p.padding];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col_image`]: adds each column value onto the input pixel it was read from.
fn col2im_image(cols: &[f32], g: &Geometry, gx: &mut [f32]) {
    let (p, h, w, oh, ow) = (g.p, g.h, g.w, g.oh, g.ow);
    let kk = p.k * p.k;
    for (ch, gxp) in gx.chunks_mut(h * w).enumerate().take(g.c) {
        let rows = &cols[ch * kk * oh * ow..(ch + 1) * kk * oh * ow];
        for ky in 0..p.k {
            let ys = valid_outputs(h, oh, p.stride, p.padding, ky * p.dilation);
            for kx in 0..p.k {
                let xs = valid_outputs(w, ow, p.stride, p.padding, kx * p.dilation);
                if xs.is_empty() {
                    // With a large dilation a tap can miss the input everywhere.
                    continue;
                }
                let row = &rows[(ky * p.k + kx) * oh * ow..(ky * p.k + kx + 1) * oh * ow];
                for oy in ys.clone() {
                    let iy = oy * p.stride + ky * p.dilation - p.padding;
                    let dst = &mut gxp[iy * w..(iy + 1) * w];
                    let src = &row[oy * ow..(oy + 1) * ow];
                    if p.stride == 1 {
                        let a = xs.start + kx * p.dilation - p.padding;
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::testing::max_rel_diff;
    use candle_core::{Device, Var};

    #[test]
    fn forward_and_both_gradients_match_candles_convolution() {
        let dev = Device::Cpu;
        // (n, cin, cout, h, w, k, stride, padding, dilation): odd sizes, strides, dilations, 1×1.
        // (candle's own backward fails for odd sizes with stride 2, so those cases use even sizes;
        // col2im, which stride 2 relies on, is checked for any size by the adjoint test below.)
        let cases = [
            (2, 3, 5, 9, 11, 3, 1, 1, 1),
            (2, 4, 6, 10, 8, 3, 2, 1, 1),
            (1, 3, 4, 12, 12, 3, 1, 2, 2),
            (2, 5, 3, 8, 9, 1, 1, 0, 1),
            (2, 5, 3, 10, 8, 1, 2, 0, 1),
            (1, 2, 3, 12, 10, 5, 2, 2, 1),
            // More images than threads: groups of several images share one scratch buffer and
            // add up their weight gradients (padding positions must stay zero across images).
            (5, 3, 4, 8, 6, 3, 1, 1, 1),
            (5, 4, 3, 6, 6, 1, 1, 0, 1),
            // A dilated tap that misses an input narrower than the padding.
            (1, 2, 3, 3, 3, 3, 1, 4, 4),
        ];
        // Two threads whatever the machine, so the five-image cases do run in groups of three.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (i, lib, &(n, cin, cout, h, w, k, stride, padding, dilation)) in
            GemmLibrary::ALL.into_iter().flat_map(|lib| cases.iter().enumerate().map(move |(i, c)| (i, lib, c)))
        {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, cin, h, w), &dev).unwrap()).unwrap();
            let wt = Var::from_tensor(&Tensor::randn(0f32, 0.5, (cout, cin, k, k), &dev).unwrap()).unwrap();
            let p = ConvParams { k, stride, padding, dilation };
            let reference = x.conv2d(&wt, padding, stride, dilation, 1).unwrap();
            // A loss that weights every output differently, so every gradient entry is checked.
            let mix = Tensor::randn(0f32, 1.0, reference.shape(), &dev).unwrap();
            let (ours, g_ours) = pool.install(|| {
                super::super::gemm::with_library(lib, || {
                    let ours = conv2d_gemm(&x, &wt, p).unwrap();
                    let grads = (&ours * &mix).unwrap().sum_all().unwrap().backward().unwrap();
                    (ours, grads)
                })
            });
            assert_eq!(ours.dims(), reference.dims(), "case {i}");
            assert!(max_rel_diff(&ours, &reference) < 1e-5, "{lib:?} case {i} forward");
            let g_ref = (&reference * &mix).unwrap().sum_all().unwrap().backward().unwrap();
            for (what, v) in [("input", &x), ("weight", &wt)] {
                let (a, b) = (g_ours.get(v).unwrap(), g_ref.get(v).unwrap());
                assert!(max_rel_diff(a, b) < 1e-4, "{lib:?} case {i} {what} gradient: {}", max_rel_diff(a, b));
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col_for_any_size() {
        // ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩ for random x and c.
        let mut rng = crate::util::Rng::new(3);
        for (h, w, k, stride, padding, dilation) in [(9, 7, 3, 2, 1, 1), (11, 13, 5, 3, 2, 2), (5, 6, 3, 1, 0, 1)] {
            let p = ConvParams { k, stride, padding, dilation };
            let g = Geometry { p, n: 1, c: 3, h, w, cout: 1, oh: p.out_len(h), ow: p.out_len(w) };
            let (ckk, pix) = g.cols_dims();
            let x: Vec<f32> = (0..3 * h * w).map(|_| rng.next_f32() - 0.5).collect();
            let c: Vec<f32> = (0..ckk * pix).map(|_| rng.next_f32() - 0.5).collect();
            let mut cols = vec![0f32; ckk * pix];
            im2col_image(&x, &g, &mut cols);
            let mut back = vec![0f32; x.len()];
            col2im_image(&c, &g, &mut back);
            let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
            assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0), "{h}×{w} k{k} s{stride}: {lhs} vs {rhs}");
        }
    }
}
