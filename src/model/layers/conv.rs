//! The 2-D convolution (depthwise ones on their own kernel), with batch norm folded in for
//! frozen weights and in ONNX export.

use candle_core::{DType, Module as _, Result, Tensor};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};

use crate::model::onnx::{ConvSpec, OnnxGraph};
use crate::model::ops::batch_norm;
use crate::model::ops::conv::{self, ConvParams};
use crate::model::ops::{DepthwiseParams, depthwise_conv2d};

use super::macs::add_macs;
use super::*;

/// torchvision's convolution init (`kaiming_normal_(mode="fan_out", nonlinearity="relu")`).
pub const CONV_INIT: Init =
    Init::Kaiming { dist: NormalOrUniform::Normal, fan: FanInOut::FanOut, non_linearity: NonLinearity::ReLU };

/// Convolution options beyond the kernel size.
#[derive(Clone, Copy, Debug)]
pub struct ConvOpts {
    pub stride: usize,
    pub dilation: usize,
    pub groups: usize,
    pub bias: bool,
    /// `None`: "same" padding for odd kernels, `(k − 1) / 2 · dilation`.
    pub padding: Option<usize>,
}

impl Default for ConvOpts {
    fn default() -> Self {
        Self { stride: 1, dilation: 1, groups: 1, bias: false, padding: None }
    }
}

/// A 2-D convolution; depthwise ones (`groups = in = out`) run on our fast kernel.
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
    /// The weight and bias with the following batch norm folded in, made on the first
    /// evaluation of frozen weights ([`Self::forward_bn_act`]). It cannot go stale: frozen
    /// weights never change, and their batch norm's running statistics move only in training
    /// mode with batch statistics, which frozen models (teachers, inference) never run in.
    folded: std::sync::OnceLock<(Tensor, Vec<f32>)>,
}

impl Conv2d {
    pub fn new(vb: VarBuilder, in_c: usize, out_c: usize, k: usize, o: ConvOpts) -> Result<Self> {
        let weight = vb.get_with_hints((out_c, in_c / o.groups, k, k), "weight", CONV_INIT)?;
        let bias = if o.bias { Some(vb.get_with_hints(out_c, "bias", Init::Const(0.))?) } else { None };
        let padding = o.padding.unwrap_or((k - 1) / 2 * o.dilation);
        Ok(Self {
            weight,
            bias,
            stride: o.stride,
            padding,
            dilation: o.dilation,
            groups: o.groups,
            folded: Default::default(),
        })
    }

    /// `act(bn(self(x)) + residual)` (no residual: `act(bn(self(x)))`).
    ///
    /// Frozen weights (a teacher, a model loaded for inference: tensors, not trained variables)
    /// evaluated on the CPU run as one convolution with the batch norm folded into its weight
    /// and bias (computed once, in f64) and the bias, residual and activation applied as each
    /// output is written: two passes over the activations fewer per layer, three for a ResNet
    /// block's last convolution. Everything else runs the layers one after the other.
    pub fn forward_bn_act(
        &self,
        x: &Tensor,
        bn: &BatchNorm2d,
        mode: Mode,
        act: Activation,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        if let Some((p, fused)) = self.frozen_path(x, bn, mode, act) {
            if self.folded.get().is_none() {
                let (w, b) = bn.fold(&self.weight, self.bias.as_ref())?;
                // A concurrent first call may have set it meanwhile: either result is the same.
                let _ = self.folded.set((w, b.to_vec1()?));
            }
            if let Some((weight, bias)) = self.folded.get() {
                let y = conv::conv2d_gemm_frozen(x, weight, p, bias, residual, fused)?;
                self.count_macs_of(&y)?;
                return Ok(y);
            }
        }
        let y = self.forward(x)?;
        match residual {
            None => bn.forward_act(&y, mode, act),
            Some(r) => act.apply(&(bn.forward(&y, mode)? + r)?),
        }
    }

    /// The convolution's geometry and the fused activation when [`Self::forward_bn_act`] can fold.
    fn frozen_path(
        &self,
        x: &Tensor,
        bn: &BatchNorm2d,
        mode: Mode,
        act: Activation,
    ) -> Option<(ConvParams, batch_norm::FusedActivation)> {
        let fused = match act {
            Activation::None => batch_norm::FusedActivation::Identity,
            Activation::Relu => batch_norm::FusedActivation::Relu,
            Activation::Hardswish => batch_norm::FusedActivation::Hardswish,
            Activation::Hardsigmoid | Activation::Sigmoid => return None,
        };
        let trained = self.weight.is_variable() || bn.weight_and_bias().is_some_and(|(g, _)| g.is_variable());
        let (_, _, k, kw) = self.weight.dims4().ok()?;
        let dense = self.groups == 1 && k == kw;
        let cpu_f32 = x.device().is_cpu() && x.dtype() == DType::F32 && self.weight.dtype() == DType::F32;
        (mode == Mode::Eval && !trained && dense && cpu_f32)
            .then_some((ConvParams { k, stride: self.stride, padding: self.padding, dilation: self.dilation }, fused))
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Adds the multiply-adds that produced output `y` to [`count_macs`]'s tally.
    fn count_macs_of(&self, y: &Tensor) -> Result<()> {
        let (_, c_in_per_group, k, kw) = self.weight.dims4()?;
        add_macs(y.elem_count() * c_in_per_group * k * kw);
        Ok(())
    }
}

impl candle_core::Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.dtype() != self.weight.dtype() {
            // Autocast (`--precision bf16`): the fp32 master weights enter in the activations'
            // dtype; the cast is differentiable, so their gradients come back in fp32.
            let cast = Self {
                weight: self.weight.to_dtype(x.dtype())?,
                bias: self.bias.as_ref().map(|b| b.to_dtype(x.dtype())).transpose()?,
                ..self.clone()
            };
            return cast.forward(x);
        }
        let c = self.weight.dims()[0];
        let (_, _, k, _) = self.weight.dims4()?;
        let y = if self.groups > 1 && self.groups == c && self.weight.dims()[1] == 1 {
            let p = DepthwiseParams { stride: self.stride, padding: self.padding, dilation: self.dilation };
            depthwise_conv2d(x, &self.weight, p)?
        } else if self.groups == 1 && self.weight.dim(3)? == k && conv::supports(x) {
            let p = ConvParams { k, stride: self.stride, padding: self.padding, dilation: self.dilation };
            conv::conv2d_gemm(x, &self.weight, p)?
        } else {
            x.conv2d(&self.weight, self.padding, self.stride, self.dilation, self.groups)?
        };
        self.count_macs_of(&y)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, c, 1, 1))?),
            None => Ok(y),
        }
    }
}

impl Conv2d {
    fn spec<'a>(&self, weight: &'a Tensor, bias: Option<&'a Tensor>) -> ConvSpec<'a> {
        ConvSpec {
            weight,
            bias,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
        }
    }

    /// The convolution alone (with its own bias, if any).
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        g.conv(x, self.spec(&self.weight, self.bias.as_ref()))
    }

    /// `act(bn(conv(x)))` as one convolution (batch norm folded into its weight and bias) and
    /// the activation.
    pub fn export_onnx_bn(&self, g: &mut OnnxGraph, x: &str, bn: &BatchNorm2d, act: Activation) -> Result<String> {
        let (weight, bias) = bn.fold(&self.weight, self.bias.as_ref())?;
        let y = g.conv(x, self.spec(&weight, Some(&bias)))?;
        Ok(act.export_onnx(g, &y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A conv (with or without bias) and a batch norm with random running statistics, built
    /// from plain tensors (frozen, as a loaded teacher) or from variables (trainable).
    fn conv_bn(
        cin: usize,
        cout: usize,
        k: usize,
        bias: bool,
        trainable: bool,
    ) -> (Conv2d, BatchNorm2d, candle_nn::VarMap) {
        let dev = Device::Cpu;
        let r = |shape: &[usize], lo: f32, hi: f32| Tensor::rand(lo, hi, shape, &dev).unwrap();
        let mut t = std::collections::HashMap::new();
        t.insert("c.weight".to_string(), r(&[cout, cin, k, k], -0.5, 0.5));
        if bias {
            t.insert("c.bias".to_string(), r(&[cout], -0.5, 0.5));
        }
        t.insert("b.weight".to_string(), r(&[cout], 0.5, 1.5));
        t.insert("b.bias".to_string(), r(&[cout], -0.5, 0.5));
        t.insert("b.running_mean".to_string(), r(&[cout], -0.5, 0.5));
        t.insert("b.running_var".to_string(), r(&[cout], 0.2, 2.0));
        let varmap = candle_nn::VarMap::new();
        let vb = if trainable {
            // Fresh variables (their values do not matter to the tests that use them).
            VarBuilder::from_varmap(&varmap, DType::F32, &dev)
        } else {
            VarBuilder::from_tensors(t, DType::F32, &dev)
        };
        let o = ConvOpts { bias, padding: Some(k / 2), ..Default::default() };
        let conv = Conv2d::new(vb.pp("c"), cin, cout, k, o).unwrap();
        let bn = BatchNorm2d::new(vb.pp("b"), cout, bn_default()).unwrap();
        (conv, bn, varmap)
    }

    #[test]
    fn frozen_convolutions_fold_batch_norm_and_match_the_layers_one_after_the_other() {
        use crate::model::ops::testing::max_rel_diff;
        let dev = Device::Cpu;
        // Batch 1 (one image on all threads: the epilogue runs after the products) and batch 5
        // (images spread over the threads: each image finished as it is written).
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for (n, k, bias, act, with_residual) in [
            (1, 3, false, Activation::Relu, false),
            (5, 3, true, Activation::Hardswish, false),
            (1, 1, false, Activation::Relu, true),
            (5, 1, false, Activation::None, true),
            (2, 3, false, Activation::None, false),
        ] {
            let (conv, bn, _) = conv_bn(6, 7, k, bias, false);
            assert!(
                conv.frozen_path(&Tensor::zeros((1, 6, 4, 4), DType::F32, &dev).unwrap(), &bn, Mode::Eval, act)
                    .is_some()
            );
            let x = Tensor::randn(0f32, 1.0, (n, 6, 9, 11), &dev).unwrap();
            let residual = Tensor::randn(0f32, 1.0, (n, 7, 9, 11), &dev).unwrap();
            let r = with_residual.then_some(&residual);
            let unfolded = {
                let y = bn.forward(&conv.forward(&x).unwrap(), Mode::Eval).unwrap();
                let y = if let Some(r) = r { (y + r).unwrap() } else { y };
                act.apply(&y).unwrap()
            };
            let folded = pool.install(|| conv.forward_bn_act(&x, &bn, Mode::Eval, act, r).unwrap());
            let d = max_rel_diff(&folded, &unfolded);
            assert!(d < 1e-5, "n {n} k {k} bias {bias} {act:?} residual {with_residual}: {d}");
            // The folded weights are made once and reused.
            let again = conv.forward_bn_act(&x, &bn, Mode::Eval, act, r).unwrap();
            assert_eq!(max_rel_diff(&again, &folded), 0.0);
        }
    }

    #[test]
    fn trained_or_training_convolutions_never_fold() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 6, 4, 4), DType::F32, &dev).unwrap();
        let (conv, bn, _vars) = conv_bn(6, 7, 3, false, true);
        assert!(conv.frozen_path(&x, &bn, Mode::Eval, Activation::Relu).is_none(), "variables change every step");
        let (conv, bn, _) = conv_bn(6, 7, 3, false, false);
        let train = Mode::Train { seed: 0, freeze_bn: true };
        assert!(conv.frozen_path(&x, &bn, train, Activation::Relu).is_none(), "training mode");
        assert!(conv.frozen_path(&x, &bn, Mode::Eval, Activation::Sigmoid).is_none(), "no fused sigmoid");
    }
}
