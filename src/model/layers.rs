//! Building blocks shared by the architectures, laid out so that VarBuilder paths equal
//! torchvision's `state_dict` keys (`Conv2dNormActivation` → `<p>.0` conv, `<p>.1` norm).

use candle_core::{DType, Module as _, Result, Tensor, Var};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{BatchNormConfig, Init, ModuleT as _, VarBuilder};
use rayon::prelude::*;

use super::onnx::{ConvSpec, OnnxGraph};
use super::ops::batch_norm;
use super::ops::conv::{self, ConvParams};
use super::ops::{DepthwiseParams, depthwise_conv2d};
use crate::util::Rng;

/// Whether a forward pass trains (batch statistics, dropout) or evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Eval,
    /// Training; `seed` drives dropout masks for this step (deterministic, resumable).
    /// `freeze_bn`: batch norm normalises with its running statistics and leaves them as they are
    /// (torchvision's `FrozenBatchNorm2d`; for batches too small for reliable statistics).
    Train {
        seed: u64,
        freeze_bn: bool,
    },
}

impl Mode {
    /// Training with batch norm learning from the batch (the usual case).
    pub fn train(seed: u64) -> Self {
        Mode::Train { seed, freeze_bn: false }
    }

    pub fn is_train(self) -> bool {
        matches!(self, Mode::Train { .. })
    }

    /// Whether batch norm normalises with (and updates its running averages from) the batch's
    /// statistics.
    pub fn batch_statistics(self) -> bool {
        matches!(self, Mode::Train { freeze_bn: false, .. })
    }
}

thread_local! {
    /// Multiply-adds counted by convolutions and linear layers while [`count_macs`] runs.
    static MACS: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` and returns the multiply-adds its convolutions and linear layers performed (on this
/// thread), the usual "FLOPs" of segmentation papers (normalisation, activations and resizing
/// are not counted).
pub fn count_macs<T>(f: impl FnOnce() -> T) -> (T, u64) {
    MACS.with(|m| m.set(Some(0)));
    let out = f();
    let n = MACS.with(|m| m.take()).unwrap_or(0);
    (out, n)
}

fn add_macs(n: usize) {
    MACS.with(|m| {
        if let Some(v) = m.get() {
            m.set(Some(v + n as u64));
        }
    });
}

/// torchvision's convolution init (`kaiming_normal_(mode="fan_out", nonlinearity="relu")`).
pub const CONV_INIT: Init =
    Init::Kaiming { dist: NormalOrUniform::Normal, fan: FanInOut::FanOut, non_linearity: NonLinearity::ReLU };

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    Hardswish,
    Hardsigmoid,
    Sigmoid,
}

pub fn hardsigmoid(x: &Tensor) -> Result<Tensor> {
    ((x + 3.0)? / 6.0)?.clamp(0f32, 1f32)
}

pub fn hardswish(x: &Tensor) -> Result<Tensor> {
    super::ops::activation::hardswish(x)
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::None => Ok(x.clone()),
            Self::Relu => x.relu(),
            Self::Hardswish => hardswish(x),
            Self::Hardsigmoid => hardsigmoid(x),
            Self::Sigmoid => candle_nn::ops::sigmoid(x),
        }
    }
}

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

/// Batch norm configurations used by the architectures.
pub fn bn_config(eps: f64, momentum: f64) -> BatchNormConfig {
    BatchNormConfig { eps, remove_mean: true, affine: true, momentum }
}

/// PyTorch's default `BatchNorm2d` (eps 1e-5, momentum 0.1).
pub fn bn_default() -> BatchNormConfig {
    bn_config(1e-5, 0.1)
}

/// `BatchNorm2d` that trains or evaluates with the forward mode.
#[derive(Clone, Debug)]
pub struct BatchNorm2d(candle_nn::BatchNorm);

impl BatchNorm2d {
    pub fn new(vb: VarBuilder, c: usize, cfg: BatchNormConfig) -> Result<Self> {
        Ok(Self(candle_nn::batch_norm(c, cfg, vb)?))
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_act(x, mode, Activation::None)
    }

    /// γ and β (the layer is always affine in these architectures).
    pub fn weight_and_bias(&self) -> Option<(&Tensor, &Tensor)> {
        self.0.weight_and_bias()
    }

    /// `act(bn(x))`; on the CPU one fused operation (see `ops::batch_norm`).
    pub fn forward_act(&self, x: &Tensor, mode: Mode, act: Activation) -> Result<Tensor> {
        if x.dtype() != DType::F32 && self.0.running_mean().dtype() == DType::F32 {
            // Autocast: normalisation and its statistics in fp32 (as PyTorch's autocast keeps
            // batch norm), the output back in the activations' dtype.
            return self.forward_act(&x.to_dtype(DType::F32)?, mode, act)?.to_dtype(x.dtype());
        }
        // Activations the kernel does not know are applied after it.
        let (fused, after) = match act {
            Activation::None => (batch_norm::FusedActivation::Identity, Activation::None),
            Activation::Relu => (batch_norm::FusedActivation::Relu, Activation::None),
            Activation::Hardswish => (batch_norm::FusedActivation::Hardswish, Activation::None),
            Activation::Hardsigmoid | Activation::Sigmoid => (batch_norm::FusedActivation::Identity, act),
        };
        if batch_norm::supports(x)
            && let Some((weight, bias)) = self.0.weight_and_bias()
        {
            let y = if mode.batch_statistics() {
                let (y, stats) = batch_norm::batch_norm_train(x, weight, bias, self.0.eps(), fused)?;
                self.update_running_stats(&stats)?;
                y
            } else {
                let running = batch_norm::BatchStats {
                    mean: self.0.running_mean().to_dtype(DType::F32)?.to_vec1()?,
                    var: self.0.running_var().to_dtype(DType::F32)?.to_vec1()?,
                    count: 0,
                };
                batch_norm::batch_norm_eval(x, weight, bias, running, self.0.eps(), fused)?
            };
            return after.apply(&y);
        }
        if batch_norm::gpu_supports(x)
            && let Some((weight, bias)) = self.0.weight_and_bias()
        {
            let y = if mode.batch_statistics() {
                let (y, stats) = batch_norm::batch_norm_train_gpu(x, weight, bias, self.0.eps(), fused)?;
                let c = weight.elem_count();
                let (n, _, h, w) = x.dims4()?;
                self.update_running_stats_on_device(&stats.narrow(0, 0, c)?, &stats.narrow(0, c, c)?, n * h * w)?;
                y
            } else {
                let (mean, var) = (self.0.running_mean(), self.0.running_var());
                batch_norm::batch_norm_eval_gpu(x, weight, bias, mean, var, self.0.eps(), fused)?
            };
            return after.apply(&y);
        }
        // Elsewhere (other dtypes) candle-nn's batch norm; note candle's ReLU derivative is 1
        // at exactly 0 where PyTorch's (and the fused kernels') is 0.
        act.apply(&self.0.forward_t(x, mode.batch_statistics())?)
    }

    /// PyTorch's running averages from the batch's statistics as device tensors (no host wait):
    /// the variance enters unbiased (·M/(M − 1)).
    fn update_running_stats_on_device(&self, mean: &Tensor, var: &Tensor, count: usize) -> Result<()> {
        let m = self.0.momentum();
        let (mean_var, var_var) = (Var::from_tensor(self.0.running_mean())?, Var::from_tensor(self.0.running_var())?);
        let unbiased = count as f64 / (count as f64 - 1.0).max(1.0);
        let mean = mean.detach().to_dtype(mean_var.dtype())?;
        let var = (var.detach().to_dtype(var_var.dtype())? * unbiased)?;
        mean_var.set(&((mean_var.as_tensor() * (1.0 - m))? + (mean * m)?)?)?;
        var_var.set(&((var_var.as_tensor() * (1.0 - m))? + (var * m)?)?)
    }

    /// [`Self::update_running_stats_on_device`] with statistics the CPU kernel computed.
    fn update_running_stats(&self, s: &batch_norm::BatchStats) -> Result<()> {
        let dev = self.0.running_mean().device();
        let mean = Tensor::from_slice(&s.mean, s.mean.len(), dev)?;
        let var = Tensor::from_slice(&s.var, s.var.len(), dev)?;
        self.update_running_stats_on_device(&mean, &var, s.count)
    }
}

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

// ONNX export (see `super::onnx`): each layer emits the nodes of its evaluation-mode forward.

impl Activation {
    pub fn export_onnx(self, g: &mut OnnxGraph, x: &str) -> String {
        match self {
            Self::None => x.to_string(),
            Self::Relu => g.relu(x),
            Self::Hardswish => g.hardswish(x),
            Self::Hardsigmoid => g.hardsigmoid(x),
            Self::Sigmoid => g.sigmoid(x),
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

impl BatchNorm2d {
    /// The convolution `(weight, bias)` that computes `bn(conv(x))` in evaluation mode:
    /// `w·γ/√(var + ε)` and `(b − mean)·γ/√(var + ε) + β`, in f64 for the scale.
    pub fn fold(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let c = weight.dim(0)?;
        let f64s = |t: &Tensor| t.to_dtype(DType::F64);
        let (gamma, beta) = match self.0.weight_and_bias() {
            Some((g, b)) => (f64s(g)?, f64s(b)?),
            None => (Tensor::ones(c, DType::F64, weight.device())?, Tensor::zeros(c, DType::F64, weight.device())?),
        };
        let scale = (gamma / (f64s(self.0.running_var())? + self.0.eps())?.sqrt()?)?;
        let conv_bias = match bias {
            Some(b) => f64s(b)?,
            None => Tensor::zeros(c, DType::F64, weight.device())?,
        };
        let folded_bias = ((conv_bias - f64s(self.0.running_mean())?)? * &scale)?.add(&beta)?;
        let folded_weight = f64s(weight)?.broadcast_mul(&scale.reshape((c, 1, 1, 1))?)?;
        Ok((folded_weight.to_dtype(DType::F32)?, folded_bias.to_dtype(DType::F32)?))
    }
}

impl ConvBnAct {
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        self.conv.export_onnx_bn(g, x, &self.bn, self.act)
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
            let var = Var::from_tensor(&x).unwrap();
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
