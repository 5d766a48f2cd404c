//! Launches of the CUDA kernels in `kernels.cu` (built to PTX by `build.rs` with the `cuda`
//! feature) for the custom ops of this module. Inputs are f32 and contiguous; outputs are new
//! zero-initialised buffers.

use candle_core::backend::BackendStorage as _;
use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg as _};
use candle_core::cuda_backend::{CudaStorage, WrapErr as _};
use candle_core::{Layout, Result, bail};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels.ptx"));
const MODULE: &str = "segdistill_ops";

fn view<'a>(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<CudaView<'a, f32>> {
    let slice = s.as_cuda_slice::<f32>()?;
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
    let (av, bv) = (view(a, la, name)?, view(b, lb, name)?);
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
    let input = view(s, l, name)?;
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
