//! Batch normalisation of NCHW tensors in one fused operation per direction: in training with the
//! batch's statistics, in evaluation with the running ones (one multiply-add per value instead of
//! candle-nn's four broadcast operations).
//!
//! candle-nn composes it from about ten tensor operations (a transposed copy, two means, a
//! subtraction, a division, the affine pair, and the transpose back), each a pass over the
//! activations, and its backward pass twice as many. The fused CPU kernel reads the input twice
//! forward (statistics, then output) and three times backward, with the textbook gradient
//! `∂x = γ·σ⁻¹/M · (M·∂y − Σ∂y − x̂·Σ(∂y·x̂))`. The activation that follows (ReLU, hard-swish)
//! is applied in the same pass, and its derivative taken from the recomputed normalised value in
//! the backward pass, so the activation adds no tensor and no gradient of its own to the graph.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::cpu_f32;

/// Per-channel batch statistics: mean and biased variance over (N, H, W).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    /// Values per channel (N·H·W).
    pub count: usize,
}

/// The activation applied to the normalised values inside the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusedActivation {
    Identity,
    Relu,
    Hardswish,
}

impl FusedActivation {
    #[inline]
    pub(crate) fn value(self, u: f32) -> f32 {
        match self {
            Self::Identity => u,
            Self::Relu => u.max(0.0),
            Self::Hardswish => super::activation::hardswish_value(u),
        }
    }

    /// The derivative, with PyTorch's choices at the kinks (ReLU: 0 at 0).
    #[inline]
    fn slope(self, u: f32) -> f32 {
        match self {
            Self::Identity => 1.0,
            Self::Relu => {
                if u > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Hardswish => super::activation::hardswish_slope(u),
        }
    }
}

/// Whether [`batch_norm_train`] and [`batch_norm_eval`] handle this input (f32 on the CPU).
pub fn supports(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() == 4
}

/// `act(γ·(x − μ)/√(σ² + ε) + β)` with the batch's μ and σ²; returns the statistics too (for
/// the running averages).
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    act: FusedActivation,
) -> Result<(Tensor, BatchStats)> {
    let stats = Arc::new(Mutex::new(BatchStats::default()));
    let op = BatchNormFused { eps: eps as f32, act, running: None, stats: stats.clone() };
    let y = x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    let stats = stats.lock().map(|s| s.clone()).unwrap_or_default();
    Ok((y, stats))
}

/// `act(γ·(x − μ)/√(σ² + ε) + β)` with given (running) statistics, as evaluation computes it: one
/// pass instead of candle-nn's four broadcast operations and the activation's pass.
pub fn batch_norm_eval(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running: BatchStats,
    eps: f64,
    act: FusedActivation,
) -> Result<Tensor> {
    let op = BatchNormFused { eps: eps as f32, act, running: Some(running), stats: Arc::default() };
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

struct BatchNormFused {
    eps: f32,
    act: FusedActivation,
    /// Fixed statistics (evaluation); `None` normalises with the batch's own (training).
    running: Option<BatchStats>,
    /// The statistics used, written by the forward pass, read by the backward pass and the caller.
    stats: Arc<Mutex<BatchStats>>,
}

/// Normalisation as one multiply-add per value: `u = x·scale + shift`.
fn plane_affine(gamma: f32, beta: f32, mean: f32, var: f32, eps: f32) -> (f32, f32) {
    let scale = gamma / (var + eps).sqrt();
    (scale, beta - mean * scale)
}

/// The index ranges of channel `ch`'s planes, one per image.
fn channel_planes(n: usize, c: usize, hw: usize, ch: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..n).map(move |b| (b * c + ch) * hw..(b * c + ch + 1) * hw)
}

fn compute_stats(x: &[f32], n: usize, c: usize, hw: usize) -> BatchStats {
    let count = n * hw;
    let per_channel: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            // Shifted sums (by the first value) keep the variance accurate when |mean| ≫ std.
            let shift = x.get(ch * hw).copied().unwrap_or(0.0) as f64;
            let (mut s, mut s2) = (0f64, 0f64);
            for r in channel_planes(n, c, hw, ch) {
                let (mut ps, mut ps2) = (0f32, 0f32);
                for chunk in x[r].chunks(1024) {
                    let (mut cs, mut cs2) = (0f32, 0f32);
                    for &v in chunk {
                        let d = v - shift as f32;
                        cs += d;
                        cs2 += d * d;
                    }
                    ps += cs;
                    ps2 += cs2;
                }
                s += ps as f64;
                s2 += ps2 as f64;
            }
            let m = s / count as f64;
            ((shift + m) as f32, (s2 / count as f64 - m * m).max(0.0) as f32)
        })
        .collect();
    BatchStats {
        mean: per_channel.iter().map(|p| p.0).collect(),
        var: per_channel.iter().map(|p| p.1).collect(),
        count,
    }
}

impl CustomOp3 for BatchNormFused {
    fn name(&self) -> &'static str {
        "batch-norm"
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
        let (n, c, h, w) = l1.shape().dims4()?;
        let hw = h * w;
        let x = cpu_f32(s1, l1, "batch norm input")?;
        let (gamma, beta) = (cpu_f32(s2, l2, "batch norm weight")?, cpu_f32(s3, l3, "batch norm bias")?);
        if gamma.len() != c || beta.len() != c {
            bail!("batch norm over {c} channels with {} weights and {} biases", gamma.len(), beta.len());
        }
        let stats = match &self.running {
            Some(r) if r.mean.len() == c && r.var.len() == c => r.clone(),
            Some(r) => bail!("batch norm over {c} channels with {} running means", r.mean.len()),
            None => compute_stats(x, n, c, hw),
        };
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(hw).enumerate().for_each(|(plane, out)| {
            let ch = plane % c;
            let (scale, shift) = plane_affine(gamma[ch], beta[ch], stats.mean[ch], stats.var[ch], self.eps);
            let act = self.act;
            for (o, &v) in out.iter_mut().zip(&x[plane * hw..(plane + 1) * hw]) {
                *o = act.value(v * scale + shift);
            }
        });
        if let Ok(mut s) = self.stats.lock() {
            *s = stats;
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        let c = weight.elem_count();
        // β only enters through the activation's derivative (C values).
        let beta = if self.act == FusedActivation::Identity { vec![0.0; c] } else { bias.to_vec1::<f32>()? };
        let op = BatchNormGrad { eps: self.eps, act: self.act, beta, fixed_stats: self.running.is_some(), stats };
        // One buffer: ∂x (N·C·H·W values), then ∂γ and ∂β (C each).
        let packed = x.apply_op3_no_bwd(weight, &grad.contiguous()?, &op)?;
        let nx = x.elem_count();
        let gx = packed.narrow(0, 0, nx)?.reshape(x.shape())?;
        // Compact copies: views would keep the activation-sized buffer alive with the parameters'
        // gradients until the optimizer step (candle's `copy` clones the whole buffer under a view,
        // so `force_contiguous`).
        let gw = packed.narrow(0, nx, c)?.force_contiguous()?;
        let gb = packed.narrow(0, nx + c, c)?.force_contiguous()?;
        Ok((Some(gx), Some(gw), Some(gb)))
    }
}

struct BatchNormGrad {
    eps: f32,
    act: FusedActivation,
    beta: Vec<f32>,
    /// The statistics were constants (evaluation), not functions of the batch.
    fixed_stats: bool,
    stats: BatchStats,
}

impl CustomOp3 for BatchNormGrad {
    fn name(&self) -> &'static str {
        "batch-norm-grad"
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
        let (n, c, h, w) = l1.shape().dims4()?;
        let hw = h * w;
        let (x, gamma, dy) = (
            cpu_f32(s1, l1, "batch norm input")?,
            cpu_f32(s2, l2, "batch norm weight")?,
            cpu_f32(s3, l3, "batch norm gradient")?,
        );
        let st = &self.stats;
        if st.mean.len() != c {
            bail!("batch norm backward without the forward statistics");
        }
        if gamma.len() != c || self.beta.len() != c {
            bail!("batch norm backward over {c} channels with {} weights", gamma.len());
        }
        let inv_std: Vec<f32> = st.var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let affine: Vec<(f32, f32)> =
            (0..c).map(|ch| plane_affine(gamma[ch], self.beta[ch], st.mean[ch], st.var[ch], self.eps)).collect();
        let act = self.act;
        // ∂L/∂u for the normalised value u = γ·x̂ + β, from ∂L/∂y through the activation; u is
        // recomputed exactly as the forward pass computed it, so the activation's mask agrees.
        let du = |ch: usize, g: f32, v: f32| -> f32 {
            if act == FusedActivation::Identity {
                g
            } else {
                let (scale, shift) = affine[ch];
                g * act.slope(v * scale + shift)
            }
        };
        // Σ∂u and Σ∂u·x̂ per channel.
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (m, is) = (st.mean[ch], inv_std[ch]);
                let (mut sdy, mut sdyx) = (0f64, 0f64);
                for r in channel_planes(n, c, hw, ch) {
                    let (mut a, mut b) = (0f32, 0f32);
                    for (&g, &v) in dy[r.clone()].iter().zip(&x[r]) {
                        let g = du(ch, g, v);
                        a += g;
                        b += g * (v - m);
                    }
                    sdy += a as f64;
                    sdyx += b as f64;
                }
                (sdy as f32, (sdyx * is as f64) as f32)
            })
            .collect();
        let count = (n * hw) as f32;
        let mut out = vec![0f32; x.len() + 2 * c];
        let (gx, rest) = out.split_at_mut(x.len());
        gx.par_chunks_mut(hw).enumerate().for_each(|(plane, gxp)| {
            let ch = plane % c;
            let (m, is) = (st.mean[ch], inv_std[ch]);
            let (sdy, sdyx) = sums[ch];
            let k = gamma[ch] * is / count;
            let r = plane * hw..(plane + 1) * hw;
            if self.fixed_stats {
                // ∂x = γ·σ⁻¹·∂u: the statistics do not depend on x.
                for ((o, &g), &v) in gxp.iter_mut().zip(&dy[r.clone()]).zip(&x[r]) {
                    *o = gamma[ch] * is * du(ch, g, v);
                }
                return;
            }
            for ((o, &g), &v) in gxp.iter_mut().zip(&dy[r.clone()]).zip(&x[r]) {
                let xhat = (v - m) * is;
                *o = k * (count * du(ch, g, v) - sdy - xhat * sdyx);
            }
        });
        for ch in 0..c {
            rest[ch] = sums[ch].1;
            rest[c + ch] = sums[ch].0;
        }
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * c)))
    }
}

// ---------------------------------------------------------------------------------------------
// The GPU path (cuda build): the same operation with its statistics kept on the device, so a
// training step never waits for them. `kernels.cu`: `bn_stats` (one block per channel), `bn_apply`,
// and `bn_grad_sums` + `bn_grad_input` for the backward pass.

/// Whether [`batch_norm_train_gpu`] and [`batch_norm_eval_gpu`] handle this input (cuda build, f32
/// NCHW on a GPU).
pub fn gpu_supports(x: &Tensor) -> bool {
    cfg!(feature = "cuda") && x.device().is_cuda() && x.dtype() == DType::F32 && x.rank() == 4
}

impl FusedActivation {
    /// The activation's code in `kernels.cu`.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn kernel_code(self) -> i32 {
        match self {
            Self::Identity => 0,
            Self::Relu => 1,
            Self::Hardswish => 2,
        }
    }
}

/// Training-mode batch norm on a GPU: the output and the batch statistics `[μ (C), σ² (C)]`
/// (biased variance), which stay on the device.
pub fn batch_norm_train_gpu(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    act: FusedActivation,
) -> Result<(Tensor, Tensor)> {
    let x = x.contiguous()?;
    let stats = x.apply_op1_no_bwd(&BatchStatsGpu)?;
    let op = BatchNormGpu { eps: eps as f32, act, stats: stats.clone(), fixed: false };
    let y = x.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    Ok((y, stats))
}

/// Evaluation-mode batch norm on a GPU with the running statistics.
pub fn batch_norm_eval_gpu(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    act: FusedActivation,
) -> Result<Tensor> {
    let stats = Tensor::cat(&[running_mean.to_dtype(DType::F32)?, running_var.to_dtype(DType::F32)?], 0)?.detach();
    let op = BatchNormGpu { eps: eps as f32, act, stats, fixed: true };
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

/// Sizes for the kernels, from the input's layout.
#[cfg(feature = "cuda")]
fn bn_args(l: &Layout, eps: f32, act: FusedActivation) -> Result<super::cuda::BnArgs> {
    let (n, c, h, w) = l.shape().dims4()?;
    Ok(super::cuda::BnArgs { n, c, hw: h * w, eps, act: act.kernel_code() })
}

/// The GPU kernels have no CPU counterpart here (the CPU has `BatchNormFused`).
fn gpu_only(name: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!("{name} runs on a GPU only"))
}

struct BatchStatsGpu;

impl candle_core::CustomOp1 for BatchStatsGpu {
    fn name(&self) -> &'static str {
        "batch-norm-stats"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        Err(gpu_only(self.name()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let a = bn_args(l, 0.0, FusedActivation::Identity)?;
        Ok((super::cuda::bn_stats((s, l), a)?, Shape::from(2 * a.c)))
    }
}

struct BatchNormGpu {
    eps: f32,
    act: FusedActivation,
    /// [μ (C), σ² (C)] on the device: the batch's (training) or the running ones (`fixed`).
    stats: Tensor,
    fixed: bool,
}

impl CustomOp3 for BatchNormGpu {
    fn name(&self) -> &'static str {
        "batch-norm-gpu"
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
        Err(gpu_only(self.name()))
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
        let a = bn_args(l1, self.eps, self.act)?;
        let y = super::with_cuda(&self.stats, "batch norm statistics", |ss, sl| {
            super::cuda::bn_apply((s1, l1), (s2, l2), (s3, l3), (ss, sl), a)
        })?;
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = weight.elem_count();
        let op = BatchNormGpuGrad {
            eps: self.eps,
            act: self.act,
            beta: bias.clone(),
            stats: self.stats.clone(),
            fixed: self.fixed,
        };
        // One buffer: ∂x, then ∂γ and ∂β (C each), as the CPU op returns them.
        let packed = x.apply_op3_no_bwd(weight, &grad.contiguous()?, &op)?;
        let nx = x.elem_count();
        let gx = packed.narrow(0, 0, nx)?.reshape(x.shape())?;
        let gw = packed.narrow(0, nx, c)?.force_contiguous()?;
        let gb = packed.narrow(0, nx + c, c)?.force_contiguous()?;
        Ok((Some(gx), Some(gw), Some(gb)))
    }
}

// Read only by the CUDA kernels' launch.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct BatchNormGpuGrad {
    eps: f32,
    act: FusedActivation,
    beta: Tensor,
    stats: Tensor,
    fixed: bool,
}

impl CustomOp3 for BatchNormGpuGrad {
    fn name(&self) -> &'static str {
        "batch-norm-gpu-grad"
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
        Err(gpu_only(self.name()))
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
        let a = bn_args(l1, self.eps, self.act)?;
        let beta = self.beta.contiguous()?;
        let out = super::with_cuda(&beta, "batch norm bias", |bs, bl| {
            super::with_cuda(&self.stats, "batch norm statistics", |ss, sl| {
                super::cuda::bn_grad((s1, l1), (s3, l3), (s2, l2), (bs, bl), (ss, sl), a, self.fixed)
            })
        })?;
        Ok((out, Shape::from(a.n * a.c * a.hw + 2 * a.c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::testing::{max_rel_diff, mixed_gradients};
    use candle_core::{Device, Var};

    /// The textbook composition, differentiated by candle.
    fn composed(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
        let mean = x.mean_keepdim(3).unwrap().mean_keepdim(2).unwrap().mean_keepdim(0).unwrap();
        let xc = x.broadcast_sub(&mean).unwrap();
        let var = xc.sqr().unwrap().mean_keepdim(3).unwrap().mean_keepdim(2).unwrap().mean_keepdim(0).unwrap();
        let xhat = xc.broadcast_div(&(var + eps).unwrap().sqrt().unwrap()).unwrap();
        let c = w.elem_count();
        xhat.broadcast_mul(&w.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
    }

    #[test]
    fn forward_statistics_and_gradients_match_the_composed_formula() {
        let dev = Device::Cpu;
        for (n, c, h, w) in [(2, 3, 5, 7), (4, 5, 1, 1), (1, 2, 9, 4)] {
            // An offset mean checks the variance stays accurate.
            let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (n, c, h, w), &dev).unwrap() + 30.0).unwrap()).unwrap();
            let wt = Var::from_tensor(&Tensor::randn(1f32, 0.3, c, &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, c, &dev).unwrap()).unwrap();
            let (ours, stats) = batch_norm_train(&x, &wt, &b, 1e-5, FusedActivation::Identity).unwrap();
            let reference = composed(&x, &wt, &b, 1e-5);
            assert!(max_rel_diff(&ours, &reference) < 1e-4, "forward {n}×{c}×{h}×{w}");
            let mean =
                x.mean_keepdim(3).unwrap().mean_keepdim(2).unwrap().mean_keepdim(0).unwrap().flatten_all().unwrap();
            assert!(max_rel_diff(&Tensor::new(stats.mean.as_slice(), &dev).unwrap(), &mean) < 1e-5);
            assert_eq!(stats.count, n * h * w);
            let grads = mixed_gradients(&ours, &reference, [&x, &wt, &b]);
            for (what, (g1, g2)) in ["input", "weight", "bias"].into_iter().zip(grads) {
                let d = max_rel_diff(&g1, &g2);
                assert!(d < 2e-3, "{what} gradient {n}×{c}×{h}×{w}: {d}");
            }
        }
    }

    #[test]
    fn evaluation_with_running_statistics_matches_the_composed_formula() {
        let dev = Device::Cpu;
        let (n, c, h, w) = (2, 3, 4, 5);
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (n, c, h, w), &dev).unwrap()).unwrap();
        let wt = Var::from_tensor(&Tensor::randn(1f32, 0.5, c, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[0.5f32, -1.0, 2.0], &dev).unwrap()).unwrap();
        let running = BatchStats { mean: vec![0.3, -0.2, 1.0], var: vec![2.0, 0.5, 4.0], count: 0 };
        let ours = batch_norm_eval(&x, &wt, &b, running.clone(), 1e-3, FusedActivation::Relu).unwrap();
        let shape = (1, c, 1, 1);
        let mean = Tensor::new(running.mean.as_slice(), &dev).unwrap().reshape(shape).unwrap();
        let std = (Tensor::new(running.var.as_slice(), &dev).unwrap() + 1e-3).unwrap().sqrt().unwrap();
        let reference = x
            .broadcast_sub(&mean)
            .unwrap()
            .broadcast_div(&std.reshape(shape).unwrap())
            .unwrap()
            .broadcast_mul(&wt.reshape(shape).unwrap())
            .unwrap()
            .broadcast_add(&b.reshape(shape).unwrap())
            .unwrap()
            .relu()
            .unwrap();
        assert!(max_rel_diff(&ours, &reference) < 1e-5, "forward");
        let grads = mixed_gradients(&ours, &reference, [&x, &wt, &b]);
        for (what, (g1, g2)) in ["input", "weight", "bias"].into_iter().zip(grads) {
            let d = max_rel_diff(&g1, &g2);
            assert!(d < 1e-4, "{what} gradient: {d}");
        }
    }

    #[test]
    fn fused_activations_match_the_composed_formula_forward_and_backward() {
        let dev = Device::Cpu;
        let (n, c, h, w) = (2, 3, 6, 5);
        for act in [FusedActivation::Relu, FusedActivation::Hardswish] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (n, c, h, w), &dev).unwrap()).unwrap();
            let wt = Var::from_tensor(&Tensor::randn(1f32, 0.5, c, &dev).unwrap()).unwrap();
            // Biases that shift part of each channel across the activations' kinks.
            let b = Var::from_tensor(&Tensor::new(&[0.5f32, -1.0, 2.0], &dev).unwrap()).unwrap();
            let (ours, _) = batch_norm_train(&x, &wt, &b, 1e-5, act).unwrap();
            let normalised = composed(&x, &wt, &b, 1e-5);
            let reference = match act {
                FusedActivation::Relu => normalised.relu().unwrap(),
                _ => super::super::activation::hardswish(&normalised).unwrap(),
            };
            assert!(max_rel_diff(&ours, &reference) < 1e-4, "{act:?} forward");
            let grads = mixed_gradients(&ours, &reference, [&x, &wt, &b]);
            for (what, (g1, g2)) in ["input", "weight", "bias"].into_iter().zip(grads) {
                let d = max_rel_diff(&g1, &g2);
                assert!(d < 2e-3, "{act:?} {what} gradient: {d}");
            }
        }
    }
}
