//! Batch norm that trains or evaluates with the forward mode, and its folding into a convolution.

use candle_core::{DType, Result, Tensor, Var};
use candle_nn::{BatchNormConfig, ModuleT as _, VarBuilder};

use crate::model::ops::batch_norm;

use super::*;

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
