//! Hard-swish `x·clamp(x + 3, 0, 6)/6` as one operation with its own derivative.
//!
//! Composed from tensor operations it costs five passes forward and about a dozen backward; it
//! follows most convolutions of MobileNetV3, so on the CPU it is fused.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// PyTorch's `F.hardswish`.
pub fn hardswish(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(HardSwish)
    } else {
        x * ((x + 3.0)? / 6.0)?.clamp(0f32, 1f32)?
    }
}

const CHUNK: usize = 1 << 14;

pub(crate) fn hardswish_value(x: f32) -> f32 {
    x * (x + 3.0).clamp(0.0, 6.0) / 6.0
}

/// d/dx: 0 below −3, 1 above 3, (2x + 3)/6 between (PyTorch's choice at the kinks).
pub(crate) fn hardswish_slope(x: f32) -> f32 {
    if x < -3.0 {
        0.0
    } else if x > 3.0 {
        1.0
    } else {
        (2.0 * x + 3.0) / 6.0
    }
}

struct HardSwish;

impl CustomOp1 for HardSwish {
    fn name(&self) -> &'static str {
        "hardswish"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = super::cpu_f32(s, l, "hardswish input")?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(o, i)| {
            for (o, &v) in o.iter_mut().zip(i) {
                *o = hardswish_value(v);
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &HardSwishGrad)?))
    }
}

/// ∂L/∂x from x (arg 1) and ∂L/∂y (arg 2).
struct HardSwishGrad;

impl candle_core::CustomOp2 for HardSwishGrad {
    fn name(&self) -> &'static str {
        "hardswish-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (super::cpu_f32(s1, l1, "hardswish input")?, super::cpu_f32(s2, l2, "hardswish gradient")?);
        let mut gx = vec![0f32; x.len()];
        gx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK))).for_each(|(o, (xs, gs))| {
            for ((o, &v), &d) in o.iter_mut().zip(xs).zip(gs) {
                *o = d * hardswish_slope(v);
            }
        });
        Ok((CpuStorage::F32(gx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_composed_formula_forward_and_backward() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (3, 4, 17, 5), &dev).unwrap())).unwrap();
        let fused = hardswish(&x).unwrap();
        let composed =
            (x.as_tensor() * ((x.as_tensor() + 3.0).unwrap() / 6.0).unwrap().clamp(0f32, 1f32).unwrap()).unwrap();
        let d = (&fused - &composed).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-6, "forward {d}");
        let mix = Tensor::randn(0f32, 1.0, fused.shape(), &dev).unwrap();
        let g1 = (&fused * &mix).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&composed * &mix).unwrap().sum_all().unwrap().backward().unwrap();
        let d = (g1.get(&x).unwrap() - g2.get(&x).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
    }
}
