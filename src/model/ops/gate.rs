//! Squeeze-and-excitation gating `y = x · s` (x: N×C×H×W, s: N×C×1×1) as one operation with its
//! own gradient.
//!
//! As candle's `broadcast_mul` it is one pass forward and three backward: `∂y·s` (a broadcast
//! product), `∂y·x` (a full-size product) and its sum over H×W into `∂s`. Fused, the backward pass
//! reads `∂y` and `x` once and writes `∂x` while it sums `∂s` per channel plane. MobileNetV3
//! gates most of its expanded activations this way.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::cpu_f32;

/// `x · s` with `s` broadcast over each channel plane.
pub fn channel_gate(x: &Tensor, s: &Tensor) -> Result<Tensor> {
    let (n, c, _, _) = x.dims4()?;
    if s.dims4()? != (n, c, 1, 1) {
        bail!("channel gate {:?} does not fit activations {:?}", s.shape(), x.shape());
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 && s.dtype() == DType::F32 {
        x.contiguous()?.apply_op2(&s.contiguous()?, ChannelGate)
    } else {
        x.broadcast_mul(s)
    }
}

/// Values per channel plane of a contiguous (N, C, H, W) layout.
fn plane_len(l: &Layout) -> Result<usize> {
    let (_, _, h, w) = l.shape().dims4()?;
    Ok(h * w)
}

struct ChannelGate;

impl CustomOp2 for ChannelGate {
    fn name(&self) -> &'static str {
        "channel-gate"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, s) = (cpu_f32(s1, l1, "gated activations")?, cpu_f32(s2, l2, "channel gate")?);
        let hw = plane_len(l1)?;
        let mut y = vec![0f32; x.len()];
        if hw > 0 {
            y.par_chunks_mut(hw).zip(x.par_chunks(hw)).zip(s.par_iter()).for_each(|((y, x), &g)| {
                y.iter_mut().zip(x).for_each(|(y, x)| *y = x * g);
            });
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, s: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // One buffer: ∂x, then ∂s.
        let packed = x.apply_op3_no_bwd(s, &grad.contiguous()?, &ChannelGateGrad)?;
        let nx = x.elem_count();
        let gx = packed.narrow(0, 0, nx)?.reshape(x.shape())?;
        let gs = packed.narrow(0, nx, s.elem_count())?.reshape(s.shape())?.force_contiguous()?;
        Ok((Some(gx), Some(gs)))
    }
}

/// ∂x = ∂y·s and ∂s = Σ_plane ∂y·x, from x, s and ∂y.
struct ChannelGateGrad;

impl CustomOp3 for ChannelGateGrad {
    fn name(&self) -> &'static str {
        "channel-gate-grad"
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
        let (x, s, dy) = (
            cpu_f32(s1, l1, "gated activations")?,
            cpu_f32(s2, l2, "channel gate")?,
            cpu_f32(s3, l3, "channel gate gradient")?,
        );
        if dy.len() != x.len() {
            bail!("channel gate gradient of {} values for {} activations", dy.len(), x.len());
        }
        let hw = plane_len(l1)?;
        let mut out = vec![0f32; x.len() + s.len()];
        let (gx, gs) = out.split_at_mut(x.len());
        if hw > 0 {
            gx.par_chunks_mut(hw)
                .zip(x.par_chunks(hw).zip(dy.par_chunks(hw)))
                .zip(s.par_iter().zip(gs.par_iter_mut()))
                .for_each(|((gx, (x, dy)), (&g, gs))| {
                    // f64 for the plane's sum (up to 128² terms), as a reduction would keep it exact-ish.
                    let mut sum = 0f64;
                    for ((gx, &x), &d) in gx.iter_mut().zip(x).zip(dy) {
                        *gx = d * g;
                        sum += (d * x) as f64;
                    }
                    *gs = sum as f32;
                });
        }
        Ok((CpuStorage::F32(out), Shape::from(x.len() + s.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::testing::{max_rel_diff, mixed_gradients};
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_broadcast_product_forward_and_backward() {
        let dev = Device::Cpu;
        for (n, c, h, w) in [(2, 5, 7, 9), (1, 3, 1, 1), (3, 16, 32, 32)] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
            let s = Var::from_tensor(&Tensor::rand(0f32, 1.0, (n, c, 1, 1), &dev).unwrap()).unwrap();
            let ours = channel_gate(&x, &s).unwrap();
            let reference = x.broadcast_mul(&s).unwrap();
            assert_eq!(max_rel_diff(&ours, &reference), 0.0, "{n}×{c}×{h}×{w} forward");
            for (what, (a, b)) in ["x", "s"].into_iter().zip(mixed_gradients(&ours, &reference, [&x, &s])) {
                assert!(max_rel_diff(&a, &b) < 1e-5, "{n}×{c}×{h}×{w} ∂{what}: {}", max_rel_diff(&a, &b));
            }
        }
    }

    #[test]
    fn a_gate_of_the_wrong_shape_is_an_error() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev).unwrap();
        assert!(channel_gate(&x, &Tensor::zeros((2, 4, 1, 1), DType::F32, &dev).unwrap()).is_err());
    }
}
