//! AdamW's update as one GPU kernel per parameter tensor (cuda build): candle's tensor
//! operations take about a dozen kernels and allocations per parameter per step
//! (`train::optim` keeps them on the CPU, where they are bit-exact with saved runs).

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

/// The hyper-parameters of one update.
#[derive(Clone, Copy, Debug)]
pub struct AdamwStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// The update's number, from 1 (bias correction).
    pub t: i32,
    pub grad_scale: f64,
}

/// Whether [`adamw_update_gpu`] handles this parameter (cuda build, f32 on a GPU).
pub fn gpu_supports(w: &Tensor) -> bool {
    cfg!(feature = "cuda") && w.device().is_cuda() && w.dtype() == DType::F32
}

/// The updated weight and moments (w', m', v') from weight `w`, gradient `g` and moments `m`,
/// `v` (zeros before the first update give PyTorch's first step exactly).
pub fn adamw_update_gpu(
    w: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    step: AdamwStep,
) -> Result<(Tensor, Tensor, Tensor)> {
    let n = w.elem_count();
    let op = AdamwGpu { v: v.contiguous()?, step };
    let packed = w.contiguous()?.apply_op3_no_bwd(&g.contiguous()?, &m.contiguous()?, &op)?;
    let part = |i: usize| packed.narrow(0, i * n, n)?.reshape(w.shape());
    Ok((part(0)?, part(1)?, part(2)?))
}

// Read only by the CUDA kernel's launch.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct AdamwGpu {
    /// The second moment (a fourth input; custom operations take three).
    v: Tensor,
    step: AdamwStep,
}

impl CustomOp3 for AdamwGpu {
    fn name(&self) -> &'static str {
        "adamw-gpu"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the fused AdamW update runs on a GPU only")
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
        let s = self.step;
        let args = super::cuda::AdamwArgs {
            lr: s.lr as f32,
            beta1: s.beta1 as f32,
            beta2: s.beta2 as f32,
            eps: s.eps as f32,
            weight_decay: s.weight_decay as f32,
            bias_correction: ((1.0 - s.beta1.powi(s.t)) as f32, (1.0 - s.beta2.powi(s.t)) as f32),
            grad_scale: s.grad_scale as f32,
        };
        let out = super::with_cuda(&self.v, "AdamW's second moment", |vs, vl| {
            super::cuda::adamw((s1, l1), (s2, l2), (s3, l3), (vs, vl), args)
        })?;
        Ok((out, Shape::from(3 * l1.shape().elem_count())))
    }
}
