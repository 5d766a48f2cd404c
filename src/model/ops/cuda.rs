//! Launches of the CUDA kernels in `kernels.cu` (built to PTX by `build.rs` with the `cuda`
//! feature) for the custom ops of this module. Inputs are f32 and contiguous; outputs are new
//! zero-initialised buffers.

use candle_core::backend::BackendStorage as _;
use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg as _};
use candle_core::cuda_backend::{CudaStorage, WrapErr as _};
use candle_core::{Layout, Result, bail};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels.ptx"));
const MODULE: &str = "segdistill_ops";

fn view<'a, T: candle_core::cuda_backend::CudaDType>(
    s: &'a CudaStorage,
    l: &Layout,
    what: &str,
) -> Result<CudaView<'a, T>> {
    let slice = s.as_cuda_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(slice.slice(a..b)),
        None => bail!("{what} must be contiguous"),
    }
}

/// A grid-stride launch over `n` elements.
fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535 * 8) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// Runs kernel `name(a, b, out, ints…)` writing `out_len` floats.
fn launch2(
    name: &str,
    (a, la): (&CudaStorage, &Layout),
    (b, lb): (&CudaStorage, &Layout),
    out_len: usize,
    ints: &[i32],
    cfg: LaunchConfig,
) -> Result<CudaStorage> {
    let dev = a.device().clone();
    let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
    let (av, bv) = (view::<f32>(a, la, name)?, view::<f32>(b, lb, name)?);
    let out = dev.alloc_zeros::<f32>(out_len)?;
    let mut builder = func.builder();
    builder.arg(&av);
    builder.arg(&bv);
    builder.arg(&out);
    for v in ints {
        builder.arg(v);
    }
    // SAFETY: the kernel reads `a` and `b` within the sizes passed in `ints` (checked by the
    // callers against the layouts) and writes `out_len` floats.
    unsafe { builder.launch(cfg) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}

/// Depthwise kernels. `dims` = [n, c, h, w, k, oh, ow, stride, padding, dilation].
pub fn depthwise(
    kernel: DepthwiseKernel,
    a: (&CudaStorage, &Layout),
    b: (&CudaStorage, &Layout),
    dims: [usize; 10],
) -> Result<CudaStorage> {
    let [n, c, h, w, k, oh, ow, ..] = dims;
    let ints: Vec<i32> = dims.iter().map(|&v| v as i32).collect();
    if dims.iter().any(|&v| v > i32::MAX as usize) {
        bail!("depthwise conv: dimensions {dims:?} too large for the CUDA kernel");
    }
    match kernel {
        DepthwiseKernel::Forward => {
            launch2("depthwise_fwd_f32", a, b, n * c * oh * ow, &ints, elementwise(n * c * oh * ow))
        }
        DepthwiseKernel::GradInput => {
            launch2("depthwise_grad_input_f32", a, b, n * c * h * w, &ints, elementwise(n * c * h * w))
        }
        DepthwiseKernel::GradWeight => {
            let cfg =
                LaunchConfig { grid_dim: ((c * k * k) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
            launch2("depthwise_grad_weight_f32", a, b, c * k * k, &ints, cfg)
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum DepthwiseKernel {
    Forward,
    GradInput,
    GradWeight,
}

/// Bilinear resize forward (`backward = false`: `x` (planes, h, w) → (planes, oh, ow)) or its
/// gradient (`backward = true`: `x` is the output gradient, the result has the input's size).
pub fn bilinear(
    x: (&CudaStorage, &Layout),
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    backward: bool,
) -> Result<CudaStorage> {
    let (s, l) = x;
    let dev = s.device().clone();
    let name = if backward { "bilinear_bwd_f32" } else { "bilinear_fwd_f32" };
    let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
    let input = view::<f32>(s, l, name)?;
    let out_len = if backward { planes * h * w } else { planes * oh * ow };
    let out = dev.alloc_zeros::<f32>(out_len)?;
    let ints = [planes, h, w, oh, ow].map(|v| v as i32);
    let (scale_h, scale_w) = (h as f32 / oh as f32, w as f32 / ow as f32);
    let mut builder = func.builder();
    builder.arg(&input);
    builder.arg(&out);
    for v in &ints {
        builder.arg(v);
    }
    builder.arg(&scale_h);
    builder.arg(&scale_w);
    // SAFETY: one thread per output-grid element, indices bounded by the sizes passed.
    unsafe { builder.launch(elementwise(planes * oh * ow)) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}

/// Batch-norm sizes and settings passed to every batch-norm kernel.
#[derive(Clone, Copy, Debug)]
pub struct BnArgs {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub eps: f32,
    /// 0 identity, 1 ReLU, 2 hard-swish (as `kernels.cu`'s `bn_act`).
    pub act: i32,
}

impl BnArgs {
    fn ints(&self) -> Result<[i32; 3]> {
        let dims = [self.n, self.c, self.hw];
        if dims.iter().any(|&v| v > i32::MAX as usize) || self.n * self.c * self.hw > i64::MAX as usize {
            bail!("batch norm: dimensions {dims:?} too large for the CUDA kernel");
        }
        Ok(dims.map(|v| v as i32))
    }

    fn per_channel(&self) -> LaunchConfig {
        LaunchConfig { grid_dim: (self.c as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
    }
}

/// Per-channel batch mean and biased variance of `x` (N, C, H, W): 2·C floats, means first.
pub fn bn_stats(x: (&CudaStorage, &Layout), a: BnArgs) -> Result<CudaStorage> {
    let dev = x.0.device().clone();
    let func = dev.get_or_load_custom_func("bn_stats_f32", MODULE, PTX)?;
    let xv = view::<f32>(x.0, x.1, "batch norm input")?;
    let stats = dev.alloc_zeros::<f32>(2 * a.c)?;
    let ints = a.ints()?;
    let mut builder = func.builder();
    builder.arg(&xv);
    builder.arg(&stats);
    for v in &ints {
        builder.arg(v);
    }
    // SAFETY: one block per channel reads that channel's n·hw values and writes two floats.
    unsafe { builder.launch(a.per_channel()) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(stats, dev))
}

/// `act(γ·(x − μ)/√(σ² + ε) + β)` with `stats` = [μ (C), σ² (C)].
pub fn bn_apply(
    x: (&CudaStorage, &Layout),
    gamma: (&CudaStorage, &Layout),
    beta: (&CudaStorage, &Layout),
    stats: (&CudaStorage, &Layout),
    a: BnArgs,
) -> Result<CudaStorage> {
    let dev = x.0.device().clone();
    let func = dev.get_or_load_custom_func("bn_apply_f32", MODULE, PTX)?;
    let (xv, gv) = (view::<f32>(x.0, x.1, "batch norm input")?, view::<f32>(gamma.0, gamma.1, "batch norm weight")?);
    let (bv, sv) =
        (view::<f32>(beta.0, beta.1, "batch norm bias")?, view::<f32>(stats.0, stats.1, "batch norm statistics")?);
    if gv.len() != a.c || bv.len() != a.c || sv.len() != 2 * a.c {
        bail!(
            "batch norm over {} channels with {} weights, {} biases, {} statistics",
            a.c,
            gv.len(),
            bv.len(),
            sv.len()
        );
    }
    let total = a.n * a.c * a.hw;
    let y = dev.alloc_zeros::<f32>(total)?;
    let ints = a.ints()?;
    let mut builder = func.builder();
    for v in [&xv, &gv, &bv, &sv] {
        builder.arg(v);
    }
    builder.arg(&y);
    for v in &ints {
        builder.arg(v);
    }
    builder.arg(&a.eps);
    builder.arg(&a.act);
    // SAFETY: grid-stride over the n·c·hw elements; per-channel arrays checked above.
    unsafe { builder.launch(elementwise(total)) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(y, dev))
}

/// The gradients of [`bn_apply`] given ∂y: one buffer [∂x (N·C·H·W), ∂γ (C), ∂β (C)].
/// `fixed`: the statistics were constants (evaluation mode), not functions of the batch.
#[allow(clippy::too_many_arguments)]
pub fn bn_grad(
    x: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
    gamma: (&CudaStorage, &Layout),
    beta: (&CudaStorage, &Layout),
    stats: (&CudaStorage, &Layout),
    a: BnArgs,
    fixed: bool,
) -> Result<CudaStorage> {
    let dev = x.0.device().clone();
    let (xv, dyv) = (view::<f32>(x.0, x.1, "batch norm input")?, view::<f32>(dy.0, dy.1, "batch norm gradient")?);
    let (gv, bv) =
        (view::<f32>(gamma.0, gamma.1, "batch norm weight")?, view::<f32>(beta.0, beta.1, "batch norm bias")?);
    let sv = view::<f32>(stats.0, stats.1, "batch norm statistics")?;
    let total = a.n * a.c * a.hw;
    if dyv.len() != total || gv.len() != a.c || bv.len() != a.c || sv.len() != 2 * a.c {
        bail!("batch norm backward: sizes do not match {} channels of {} values", a.c, a.n * a.hw);
    }
    let out = dev.alloc_zeros::<f32>(total + 2 * a.c)?;
    let ints = a.ints()?;
    // First the per-channel sums (into the tail of `out`), then ∂x from them; same arguments,
    // plus `fixed` for the second.
    let kernels = [
        ("bn_grad_sums_f32", a.per_channel(), None),
        ("bn_grad_input_f32", elementwise(total), Some(i32::from(fixed))),
    ];
    for (name, cfg, fixed) in kernels {
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
        let mut builder = func.builder();
        for v in [&xv, &dyv, &gv, &bv, &sv] {
            builder.arg(v);
        }
        builder.arg(&out);
        for v in &ints {
            builder.arg(v);
        }
        builder.arg(&a.eps);
        builder.arg(&a.act);
        if let Some(fixed) = &fixed {
            builder.arg(fixed);
        }
        // SAFETY: the sums kernel runs one block per channel and writes the 2·C floats after the
        // n·c·hw of ∂x; the input kernel strides over ∂x and reads those sums, written by the
        // previous launch on the same stream. Sizes were checked above.
        unsafe { builder.launch(cfg) }.w()?;
    }
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}

/// AdamW's hyper-parameters for one update, as the kernel takes them.
#[derive(Clone, Copy, Debug)]
pub struct AdamwArgs {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1 − β1^t and 1 − β2^t.
    pub bias_correction: (f32, f32),
    pub grad_scale: f32,
}

/// One AdamW update of `w` with gradient `g` and moments `m`, `v` (all the same length):
/// [w', m', v'] in one buffer.
pub fn adamw(
    w: (&CudaStorage, &Layout),
    g: (&CudaStorage, &Layout),
    m: (&CudaStorage, &Layout),
    v: (&CudaStorage, &Layout),
    a: AdamwArgs,
) -> Result<CudaStorage> {
    let dev = w.0.device().clone();
    let func = dev.get_or_load_custom_func("adamw_f32", MODULE, PTX)?;
    let views = [
        view::<f32>(w.0, w.1, "AdamW weight")?,
        view::<f32>(g.0, g.1, "AdamW gradient")?,
        view::<f32>(m.0, m.1, "AdamW first moment")?,
        view::<f32>(v.0, v.1, "AdamW second moment")?,
    ];
    let n = views[0].len();
    if views.iter().any(|t| t.len() != n) {
        bail!("AdamW: weight, gradient and moments differ in length");
    }
    let out = dev.alloc_zeros::<f32>(3 * n)?;
    let mut builder = func.builder();
    for t in &views {
        builder.arg(t);
    }
    builder.arg(&out);
    let len = n as i64;
    builder.arg(&len);
    let (bc1, bc2) = a.bias_correction;
    for f in [&a.lr, &a.beta1, &a.beta2, &a.eps, &a.weight_decay, &bc1, &bc2, &a.grad_scale] {
        builder.arg(f);
    }
    // SAFETY: grid-stride over n; reads four arrays of n floats, writes 3·n.
    unsafe { builder.launch(elementwise(n)) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}

/// Sizes of a per-pixel loss over NCHW maps.
#[derive(Clone, Copy, Debug)]
pub struct PixelDims {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl PixelDims {
    fn ints(&self) -> Result<[i32; 3]> {
        let dims = [self.n, self.c, self.hw];
        if dims.iter().any(|&v| v > i32::MAX as usize) {
            bail!("per-pixel loss: dimensions {dims:?} too large for the CUDA kernel");
        }
        Ok(dims.map(|v| v as i32))
    }
}

/// An argument of a per-pixel loss kernel.
pub enum LossArg<'a> {
    F32(&'a CudaStorage, &'a Layout, &'static str),
    U32(&'a CudaStorage, &'a Layout, &'static str),
    Float(f32),
    Int(i32),
}

/// Runs loss kernel `name(tensors…, out, n, c, hw, scalars…)` over the n·hw pixels, writing
/// `out_len` floats. `args` are the tensors first, then the scalars after the sizes.
pub fn pixel_loss(
    name: &str,
    tensors: &[LossArg],
    scalars: &[LossArg],
    d: PixelDims,
    out_len: usize,
) -> Result<CudaStorage> {
    let Some(LossArg::F32(first, ..) | LossArg::U32(first, ..)) = tensors.first() else {
        bail!("{name}: no tensor argument");
    };
    let dev = first.device().clone();
    let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
    enum View<'a> {
        F(CudaView<'a, f32>),
        U(CudaView<'a, u32>),
    }
    let views = tensors
        .iter()
        .map(|a| match a {
            LossArg::F32(s, l, what) => Ok(View::F(view::<f32>(s, l, what)?)),
            LossArg::U32(s, l, what) => Ok(View::U(view::<u32>(s, l, what)?)),
            _ => bail!("{name}: a scalar among the tensors"),
        })
        .collect::<Result<Vec<_>>>()?;
    let out = dev.alloc_zeros::<f32>(out_len)?;
    let ints = d.ints()?;
    let mut builder = func.builder();
    for v in &views {
        match v {
            View::F(v) => builder.arg(v),
            View::U(v) => builder.arg(v),
        };
    }
    builder.arg(&out);
    for v in &ints {
        builder.arg(v);
    }
    for s in scalars {
        match s {
            LossArg::Float(f) => builder.arg(f),
            LossArg::Int(i) => builder.arg(i),
            _ => bail!("{name}: a tensor among the scalars"),
        };
    }
    // SAFETY: one thread per pixel of n·hw; each reads its c values (stride hw) of every tensor,
    // whose lengths the callers checked against the dimensions.
    unsafe { builder.launch(elementwise(d.n * d.hw)) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}
