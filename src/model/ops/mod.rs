//! Operations candle lacks (or runs slowly), each with a backward pass.

pub mod activation;
pub mod adamw;
pub mod batch_norm;
pub mod bilinear;
pub mod conv;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
#[cfg(feature = "cuda")]
pub mod cudnn;
pub mod depthwise;
pub mod gate;
pub mod gemm;

#[cfg(test)]
pub(crate) mod testing;

pub use bilinear::resize_bilinear;
pub use depthwise::{DepthwiseParams, depthwise_conv2d};

use candle_core::{CpuStorage, Layout, Result, bail};

/// Runs `f` with the CUDA storage of `t`, a tensor an operation carries besides its arguments
/// (candle hands an op only its arguments' storage); `what` names it when it is not on the GPU.
#[cfg(feature = "cuda")]
pub(crate) fn with_cuda<R>(
    t: &candle_core::Tensor,
    what: &str,
    f: impl FnOnce(&candle_core::CudaStorage, &Layout) -> Result<R>,
) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cuda(s) => f(s, layout),
        _ => bail!("{what} is not on the GPU"),
    }
}

/// The f32 values of a contiguous CPU tensor, or an error naming `what` (e.g. "depthwise conv
/// input") — every CPU kernel here works on contiguous f32 buffers.
pub(crate) fn cpu_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("{what} must be f32") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what} must be contiguous"),
    }
}

/// The output positions `o` in `0..out_len` of a strided convolution tap whose input position
/// `o·stride + offset − padding` lies in `0..in_len`.
pub(crate) fn valid_outputs(
    in_len: usize,
    out_len: usize,
    stride: usize,
    padding: usize,
    offset: usize,
) -> std::ops::Range<usize> {
    let (s, pad, off) = (stride as i64, padding as i64, offset as i64);
    let lo = if pad > off { (pad - off + s - 1) / s } else { 0 };
    let hi = ((in_len as i64 - 1 + pad - off).div_euclid(s) + 1).clamp(0, out_len as i64);
    (lo.min(hi) as usize)..(hi as usize)
}
