//! The blocks built from the layers: conv-norm-activation, seeded dropout, linear, pooling.

use candle_core::{Module as _, Result, Tensor};
use candle_nn::{BatchNormConfig, Init, VarBuilder};
use rayon::prelude::*;

use crate::model::onnx::OnnxGraph;
use crate::util::Rng;

use super::macs::add_macs;
use super::*;

/// torchvision's `Conv2dNormActivation`: conv (`<p>.0`) → batch norm (`<p>.1`) → activation.
#[derive(Clone, Debug)]
pub struct ConvBnAct {
    conv: Conv2d,
    bn: BatchNorm2d,
    act: Activation,
}

impl ConvBnAct {
    pub fn new(
        vb: VarBuilder,
        in_c: usize,
        out_c: usize,
        k: usize,
        o: ConvOpts,
        bn: BatchNormConfig,
        act: Activation,
    ) -> Result<Self> {
        Ok(Self {
            conv: Conv2d::new(vb.pp("0"), in_c, out_c, k, ConvOpts { bias: false, ..o })?,
            bn: BatchNorm2d::new(vb.pp("1"), out_c, bn)?,
            act,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.conv.forward_bn_act(x, &self.bn, mode, self.act, None)
    }

    pub fn out_channels(&self) -> usize {
        self.conv.out_channels()
    }
}

impl ConvBnAct {
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        self.conv.export_onnx_bn(g, x, &self.bn, self.act)
    }
}

/// Dropout whose masks come from the training step's seed, so a resumed run draws the same masks.
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f32,
    /// Distinguishes this layer's masks from other layers' in the same step.
    id: u64,
}

impl Dropout {
    pub fn new(p: f32, id: u64) -> Self {
        Self { p, id }
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let Mode::Train { seed, .. } = mode else {
            return Ok(x.clone());
        };
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        // One generator per chunk, so the mask is drawn in parallel and still depends only on the
        // seed (not on how rayon splits the work).
        const CHUNK: usize = 1 << 16;
        let (p, keep) = (self.p, 1.0 / (1.0 - self.p));
        let mut mask = vec![0f32; x.elem_count()];
        mask.par_chunks_mut(CHUNK).enumerate().for_each(|(i, chunk)| {
            let mut rng = Rng::for_item(seed, 0x000D_8090_u64 ^ self.id, i as u64);
            chunk.iter_mut().for_each(|m| *m = if rng.next_f32() < p { 0.0 } else { keep });
        });
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x * mask
    }
}

/// Global average pooling to (N, C, 1, 1).
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.mean_keepdim(3)?.mean_keepdim(2)
}

/// 3×3, stride 2, padding 1 max-pooling of a non-negative map (after a ReLU, zero padding equals
/// PyTorch's −∞), as the maximum of nine strided views: candle differentiates `maximum` (ties
/// share the gradient; after a ReLU they are zeros, whose gradient the ReLU stops anyway), while
/// its own pooling has no backward pass for overlapping windows.
pub fn max_pool_3x3_s2_nonnegative(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = ((h.max(1) - 1) / 2 + 1, (w.max(1) - 1) / 2 + 1);
    // One zero before; after, enough that every view of 2·o values fits (padded length 2·o + 2).
    let padded = x.pad_with_zeros(2, 1, 2 * oh + 1 - h)?.pad_with_zeros(3, 1, 2 * ow + 1 - w)?;
    let mut out: Option<Tensor> = None;
    for ky in 0..3 {
        for kx in 0..3 {
            // Rows ky, ky + 2, …: a window of 2·oh rows seen as (oh, 2), keeping the first of each pair.
            let view = padded.narrow(2, ky, 2 * oh)?.narrow(3, kx, 2 * ow)?.contiguous()?;
            let view = view.reshape((n, c, oh, 2, ow, 2))?.narrow(3, 0, 1)?.narrow(5, 0, 1)?.reshape((n, c, oh, ow))?;
            out = Some(match out {
                Some(o) => o.maximum(&view)?,
                None => view,
            });
        }
    }
    out.ok_or_else(|| candle_core::Error::Msg("empty pooling window".into()))
}

/// A fully connected layer (`<p>.weight` (out, in), `<p>.bias`).
#[derive(Clone, Debug)]
pub struct Linear(candle_nn::Linear);

impl Linear {
    pub fn new(vb: VarBuilder, in_f: usize, out_f: usize) -> Result<Self> {
        let w = vb.get_with_hints((out_f, in_f), "weight", Init::Randn { mean: 0., stdev: 0.01 })?;
        let b = vb.get_with_hints(out_f, "bias", Init::Const(0.))?;
        Ok(Self(candle_nn::Linear::new(w, Some(b))))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if x.dtype() != self.0.weight().dtype() {
            let bias = self.0.bias().map(|b| b.to_dtype(x.dtype())).transpose()?;
            candle_nn::Linear::new(self.0.weight().to_dtype(x.dtype())?, bias).forward(x)?
        } else {
            self.0.forward(x)?
        };
        add_macs(y.elem_count() * self.0.weight().dim(1)?);
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn differentiable_max_pool_matches_candles_and_routes_each_gradient_to_one_input() {
        for (h, w) in [(7, 8), (8, 7), (1, 2), (16, 16)] {
            let x = Tensor::rand(0.1f32, 1.0, (2, 3, h, w), &Device::Cpu).unwrap();
            let reference = x
                .pad_with_zeros(2, 1, 1)
                .unwrap()
                .pad_with_zeros(3, 1, 1)
                .unwrap()
                .max_pool2d_with_stride(3, 2)
                .unwrap();
            let var = candle_core::Var::from_tensor(&x).unwrap();
            let ours = max_pool_3x3_s2_nonnegative(var.as_tensor()).unwrap();
            assert_eq!(ours.dims(), reference.dims(), "{h}×{w}");
            let diff = (&ours - &reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(diff, 0.0, "{h}×{w}");
            let grads = ours.sum_all().unwrap().backward().unwrap();
            let g = grads.get(&var).unwrap();
            // Random values have no ties: each output's gradient lands on exactly one input.
            let total = g.sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!((total - ours.elem_count() as f32).abs() < 1e-3, "{h}×{w}: {total}");
            let maxed = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(maxed.iter().all(|v| v.fract() == 0.0 && *v >= 0.0), "whole counts only");
        }
    }
}
