//! The per-pixel losses on a GPU (cuda build): cross-entropy, response KD and the cosine
//! feature term, each one kernel forward and one backward (`model/ops/kernels.cu`), instead of a
//! dozen candle operations over the class planes. The CPU has its own fused kernels
//! (`ce.rs`, `kd.rs`, `feature.rs`); both are checked against torchvision by `selftest`.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

/// Whether these kernels handle `t` (cuda build, f32 NCHW on a GPU).
pub fn supports(t: &Tensor) -> bool {
    cfg!(feature = "cuda") && t.device().is_cuda() && t.dtype() == DType::F32 && t.rank() == 4
}

/// w·(−log softmax(z)_y) per pixel, (B, H, W): `indices` (B, 1, H, W) u32, `weight` (B, H, W).
pub fn cross_entropy_per_pixel(logits: &Tensor, indices: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let op = PixelLoss { kind: Kind::Ce, others: vec![indices.contiguous()?, weight.contiguous()?] };
    logits.contiguous()?.apply_op1(op)
}

/// The response-KD term per pixel, (B, H, W) (`kl`: τ²·KL, else soft cross-entropy).
pub fn kd_per_pixel(student: &Tensor, teacher: &Tensor, tau: f32, kl: bool) -> Result<Tensor> {
    let op = PixelLoss { kind: Kind::Kd { tau, kl }, others: vec![teacher.detach().contiguous()?] };
    student.contiguous()?.apply_op1(op)
}

/// cos(student, teacher) per pixel over the channels, (B, H, W).
pub fn cosine_per_pixel(student: &Tensor, teacher: &Tensor, eps: f32) -> Result<Tensor> {
    let op = PixelLoss { kind: Kind::Cosine { eps }, others: vec![teacher.detach().contiguous()?] };
    student.contiguous()?.apply_op1(op)
}

#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
enum Kind {
    Ce,
    Kd { tau: f32, kl: bool },
    Cosine { eps: f32 },
}

/// A per-pixel loss of the first argument; `others` are the constant inputs (labels and weights,
/// or the teacher's map). With `grad`, the operation is the backward pass: ∂/∂(first argument).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct PixelLoss {
    kind: Kind,
    others: Vec<Tensor>,
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct PixelLossGrad {
    kind: Kind,
    others: Vec<Tensor>,
    grad: Tensor,
}

impl CustomOp1 for PixelLoss {
    fn name(&self) -> &'static str {
        "pixel-loss-gpu"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the GPU loss kernels run on a GPU only")
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, _, h, w) = l.shape().dims4()?;
        let out = launch(self.kind, false, (s, l), &self.others, None)?;
        Ok((out, Shape::from((n, h, w))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = PixelLossGrad { kind: self.kind, others: self.others.clone(), grad: grad.contiguous()? };
        Ok(Some(arg.apply_op1_no_bwd(&op)?))
    }
}

impl CustomOp1 for PixelLossGrad {
    fn name(&self) -> &'static str {
        "pixel-loss-gpu-grad"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the GPU loss kernels run on a GPU only")
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let out = launch(self.kind, true, (s, l), &self.others, Some(&self.grad))?;
        Ok((out, l.shape().clone()))
    }
}

/// Launches the forward (`backward` false) or gradient kernel of `kind`.
#[cfg(feature = "cuda")]
fn launch(
    kind: Kind,
    backward: bool,
    (s, l): (&candle_core::CudaStorage, &Layout),
    others: &[Tensor],
    grad: Option<&Tensor>,
) -> Result<candle_core::CudaStorage> {
    use crate::model::ops::cuda::{LossArg, PixelDims, pixel_loss};
    let (n, c, h, w) = l.shape().dims4()?;
    let d = PixelDims { n, c, hw: h * w };
    // Read guards on the constant inputs for the launch's duration.
    let guards: Vec<_> = others.iter().chain(grad).map(|t| t.storage_and_layout()).collect();
    let cuda = |i: usize| -> Result<(&candle_core::CudaStorage, &Layout)> {
        match &*guards[i].0 {
            candle_core::Storage::Cuda(c) => Ok((c, guards[i].1)),
            _ => candle_core::bail!("a loss input is not on the GPU"),
        }
    };
    let check = |i: usize, len: usize, what: &str| -> Result<()> {
        let got = guards[i].1.shape().elem_count();
        if got != len {
            candle_core::bail!("{what}: {got} values for {len}");
        }
        Ok(())
    };
    let first = LossArg::F32(s, l, "loss input");
    let (pixels, values) = (n * h * w, n * c * h * w);
    let out_len = if backward { values } else { pixels };
    match kind {
        Kind::Ce => {
            check(0, pixels, "cross-entropy labels")?;
            check(1, pixels, "cross-entropy weights")?;
            let ((is, il), (ws, wl)) = (cuda(0)?, cuda(1)?);
            let mut args = vec![first, LossArg::U32(is, il, "labels"), LossArg::F32(ws, wl, "weights")];
            if backward {
                check(2, pixels, "cross-entropy gradient")?;
                let (gs, gl) = cuda(2)?;
                args.push(LossArg::F32(gs, gl, "gradient"));
            }
            let name = if backward { "ce_bwd_f32" } else { "ce_fwd_f32" };
            pixel_loss(name, &args, &[], d, out_len)
        }
        Kind::Kd { tau, kl } => {
            check(0, values, "teacher logits")?;
            let (ts, tl) = cuda(0)?;
            let mut args = vec![first, LossArg::F32(ts, tl, "teacher logits")];
            if backward {
                check(1, pixels, "KD gradient")?;
                let (gs, gl) = cuda(1)?;
                args.push(LossArg::F32(gs, gl, "gradient"));
            }
            let name = if backward { "kd_bwd_f32" } else { "kd_fwd_f32" };
            pixel_loss(name, &args, &[LossArg::Float(tau), LossArg::Int(i32::from(kl))], d, out_len)
        }
        Kind::Cosine { eps } => {
            check(0, values, "teacher features")?;
            let (ts, tl) = cuda(0)?;
            let mut args = vec![first, LossArg::F32(ts, tl, "teacher features")];
            if backward {
                check(1, pixels, "cosine gradient")?;
                let (gs, gl) = cuda(1)?;
                args.push(LossArg::F32(gs, gl, "gradient"));
            }
            let name = if backward { "cos_bwd_f32" } else { "cos_fwd_f32" };
            pixel_loss(name, &args, &[LossArg::Float(eps)], d, out_len)
        }
    }
}
