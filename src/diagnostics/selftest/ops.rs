//! The layers as the models run them on the device, against their textbook formula on the CPU:
//! forward value and every gradient.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use super::checker::Checker;
use crate::model::layers::{Activation, BatchNorm2d, Conv2d, ConvOpts, bn_default};
use crate::model::{Mode, ops};
use crate::util::Rng;

/// Seeded normal values of `shape` on the CPU.
pub(super) fn seeded(shape: &[usize], seed: u64) -> anyhow::Result<Tensor> {
    let mut rng = Rng::new(seed);
    let n = shape.iter().product();
    Ok(Tensor::from_vec((0..n).map(|_| rng.normal()).collect::<Vec<f32>>(), shape, &Device::Cpu)?)
}

/// Forward value and the gradients (input, then each parameter) of Σ mix·f(x), with `x` and the
/// `params` made variables on `device`; every result comes back on the CPU.
fn forward_backward(
    device: &Device,
    x: &Tensor,
    params: &[&Tensor],
    mix_seed: u64,
    f: &dyn Fn(&Tensor, &[Tensor]) -> anyhow::Result<Tensor>,
) -> anyhow::Result<Vec<Tensor>> {
    let xv = Var::from_tensor(&x.to_device(device)?)?;
    let pv: Vec<Var> = params.iter().map(|p| Var::from_tensor(&p.to_device(device)?)).collect::<Result<_, _>>()?;
    let pt: Vec<Tensor> = pv.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(xv.as_tensor(), &pt)?;
    let wrt: Vec<&Tensor> = std::iter::once(xv.as_tensor()).chain(&pt).collect();
    value_and_mixed_gradients(&y, &wrt, mix_seed)
}

/// `y` and the gradients of Σ mix·y (one seeded random weight per element, so every entry of
/// every gradient counts) with respect to each of `wrt`, all on the CPU.
fn value_and_mixed_gradients(y: &Tensor, wrt: &[&Tensor], mix_seed: u64) -> anyhow::Result<Vec<Tensor>> {
    let mix = seeded(y.dims(), mix_seed)?.to_device(y.device())?;
    let grads = (y * &mix)?.sum_all()?.backward()?;
    let mut out = vec![y.to_device(&Device::Cpu)?];
    for t in wrt {
        let g = grads.get(t).ok_or_else(|| anyhow::anyhow!("no gradient reached an input"))?;
        out.push(g.to_device(&Device::Cpu)?);
    }
    Ok(out)
}

/// A layer built by the model's own constructor on `device`, its variables set to `values`.
fn layer_with<L>(
    device: &Device,
    varmap: &VarMap,
    values: &[(&str, &Tensor)],
    build: impl FnOnce(VarBuilder) -> candle_core::Result<L>,
) -> anyhow::Result<L> {
    let layer = build(VarBuilder::from_varmap(varmap, DType::F32, device))?;
    let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    for (name, value) in values {
        let var = vars.get(*name).ok_or_else(|| anyhow::anyhow!("the layer has no variable `{name}`"))?;
        var.set(&value.to_device(device)?)?;
    }
    Ok(layer)
}

/// The convolution layer's forward value and its gradients (input, weight) of Σ mix·y on `device`.
fn conv_layer_grads(
    device: &Device,
    dtype: DType,
    x: &Tensor,
    weight: &Tensor,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<Conv2d>,
    mix_seed: u64,
) -> anyhow::Result<Vec<Tensor>> {
    let varmap = VarMap::new();
    let layer = layer_with(device, &varmap, &[("weight", weight)], build)?;
    let wv = varmap.data().lock().unwrap_or_else(|p| p.into_inner()).get("weight").cloned();
    let wv = wv.ok_or_else(|| anyhow::anyhow!("the convolution has no `weight`"))?;
    let xv = Var::from_tensor(&x.to_device(device)?.to_dtype(dtype)?)?;
    let y = candle_core::Module::forward(&layer, xv.as_tensor())?;
    value_and_mixed_gradients(&y, &[xv.as_tensor(), wv.as_tensor()], mix_seed)
}

/// A convolution to check: name, input dims, output channels, kernel, stride, dilation, depthwise.
type ConvCase = (&'static str, [usize; 4], usize, usize, usize, usize, bool);

pub(super) fn op_checks(device: &Device, checker: &mut Checker) -> anyhow::Result<()> {
    let bound = checker.bounds.op;
    // (name, input N·Cin·H·W, Cout, K, stride, dilation, depthwise)
    let convs: [ConvCase; 6] = [
        ("conv 3x3", [2, 16, 19, 23], 24, 3, 1, 1, false),
        ("conv 3x3 stride 2", [2, 8, 33, 30], 16, 3, 2, 1, false),
        ("conv 3x3 dilation 2", [1, 12, 21, 17], 8, 3, 1, 2, false),
        ("conv 1x1", [2, 32, 11, 13], 40, 1, 1, 1, false),
        ("depthwise 3x3", [2, 24, 17, 19], 24, 3, 1, 1, true),
        ("depthwise 5x5 stride 2", [2, 16, 23, 21], 16, 5, 2, 1, true),
    ];
    for (i, (name, dims, cout, k, stride, dilation, depthwise)) in convs.into_iter().enumerate() {
        checker.case("ops", name, |checker| {
            let seed = 100 + 10 * i as u64;
            let x = seeded(&dims, seed)?;
            let cin = dims[1];
            let groups = if depthwise { cin } else { 1 };
            let w = (seeded(&[cout, cin / groups, k, k], seed + 1)? * (1.0 / ((cin / groups * k * k) as f64).sqrt()))?;
            let opts = ConvOpts { stride, dilation, groups, ..Default::default() };
            let pad = (k - 1) / 2 * dilation;
            let ours =
                conv_layer_grads(device, checker.dtype, &x, &w, |vb| Conv2d::new(vb, cin, cout, k, opts), seed + 2)?;
            let reference = forward_backward(&Device::Cpu, &x, &[&w], seed + 2, &|x, p| {
                Ok(reference_conv(x, &p[0], pad, stride, dilation, groups)?)
            })?;
            checker.compare("ops", &format!("{name} forward"), &ours[0], &reference[0], bound);
            checker.compare("ops", &format!("{name} grad input"), &ours[1], &reference[1], bound);
            checker.compare("ops", &format!("{name} grad weight"), &ours[2], &reference[2], bound);
            Ok(())
        });
    }

    for (i, act) in [Activation::Relu, Activation::Hardswish, Activation::None].into_iter().enumerate() {
        let name = format!("batch norm + {act:?} (train)").to_lowercase();
        checker.case("ops", &name.clone(), |checker| {
            let seed = 300 + 10 * i as u64;
            let (n, c, h, w) = (4, 12, 9, 11);
            let x = (seeded(&[n, c, h, w], seed)? * 2.0)?.broadcast_add(&seeded(&[1, c, 1, 1], seed + 1)?)?;
            let gamma = (seeded(&[c], seed + 2)?.abs()? + 0.5)?;
            let beta = seeded(&[c], seed + 3)?;
            let varmap = VarMap::new();
            let values = [("weight", &gamma), ("bias", &beta)];
            let bn = layer_with(device, &varmap, &values, |vb| BatchNorm2d::new(vb, c, bn_default()))?;
            let ours = bn_grads(device, checker.dtype, &bn, &x, act, Mode::train(0), seed + 4)?;
            let reference = forward_backward(&Device::Cpu, &x, &[&gamma, &beta], seed + 4, &|x, p| {
                reference_batch_norm(x, &p[0], &p[1], None, 1e-5, act)
            })?;
            checker.compare("ops", &format!("{name} forward"), &ours[0], &reference[0], bound);
            checker.compare("ops", &format!("{name} grad input"), &ours[1], &reference[1], bound);
            checker.compare("ops", &format!("{name} grad weight"), &ours[2], &reference[2], bound);
            checker.compare("ops", &format!("{name} grad bias"), &ours[3], &reference[3], bound);
            Ok(())
        });
    }

    checker.case("ops", "batch norm + hardswish (eval)", |checker| {
        let (n, c, h, w) = (2, 10, 7, 9);
        let x = seeded(&[n, c, h, w], 350)?;
        let gamma = (seeded(&[c], 351)?.abs()? + 0.5)?;
        let beta = seeded(&[c], 352)?;
        let mean = (seeded(&[c], 353)? * 0.5)?;
        let var = (seeded(&[c], 354)?.abs()? + 0.5)?;
        let varmap = VarMap::new();
        let values = [("weight", &gamma), ("bias", &beta), ("running_mean", &mean), ("running_var", &var)];
        let bn = layer_with(device, &varmap, &values, |vb| BatchNorm2d::new(vb, c, bn_default()))?;
        let act = Activation::Hardswish;
        let ours = bn_grads(device, checker.dtype, &bn, &x, act, Mode::Eval, 355)?;
        let reference = forward_backward(&Device::Cpu, &x, &[&gamma, &beta], 355, &|x, p| {
            reference_batch_norm(x, &p[0], &p[1], Some((&mean, &var)), 1e-5, act)
        })?;
        let name = "batch norm + hardswish (eval)";
        for (i, part) in ["forward", "grad input", "grad weight", "grad bias"].iter().enumerate() {
            checker.compare("ops", &format!("{name} {part}"), &ours[i], &reference[i], bound);
        }
        Ok(())
    });

    if !device.is_cpu() {
        checker.case("ops", "bilinear 13x17→40x31", |checker| {
            let x = seeded(&[2, 5, 13, 17], 400)?;
            let f = |x: &Tensor, _: &[Tensor]| Ok(ops::resize_bilinear(x, 40, 31)?);
            let ours = forward_backward(device, &x.to_dtype(checker.dtype)?, &[], 401, &f)?;
            let reference = forward_backward(&Device::Cpu, &x, &[], 401, &f)?;
            checker.compare("ops", "bilinear 13x17→40x31 forward", &ours[0], &reference[0], bound);
            checker.compare("ops", "bilinear 13x17→40x31 grad input", &ours[1], &reference[1], bound);
            Ok(())
        });
    }
    Ok(())
}

/// Convolution as candle computes it generically (im2col and a matrix product forward,
/// a transposed convolution backward): an implementation independent of ours.
fn reference_conv(
    x: &Tensor,
    w: &Tensor,
    pad: usize,
    stride: usize,
    dilation: usize,
    groups: usize,
) -> candle_core::Result<Tensor> {
    x.conv2d(w, pad, stride, dilation, groups)
}

/// Batch norm from its definition — training mode (biased batch variance) or with fixed
/// `running` statistics — then the activation;
/// ReLU's derivative at 0 is PyTorch's 0.
fn reference_batch_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running: Option<(&Tensor, &Tensor)>,
    eps: f64,
    act: Activation,
) -> anyhow::Result<Tensor> {
    let c = x.dim(1)?;
    let (centered, var) = match running {
        Some((mean, var)) => (x.broadcast_sub(&mean.reshape((1, c, 1, 1))?)?, var.reshape((1, c, 1, 1))?),
        None => {
            let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
            let centered = x.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
            (centered, var)
        }
    };
    let norm = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    let y = norm.broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?.broadcast_add(&beta.reshape((1, c, 1, 1))?)?;
    Ok(match act {
        Activation::Relu => y.relu()?,
        Activation::Hardswish => (&y * ((&y + 3.0)? / 6.0)?.clamp(0f32, 1f32)?)?,
        _ => y,
    })
}

/// The batch-norm layer's training forward and gradients (input, weight, bias) on `device`.
fn bn_grads(
    device: &Device,
    dtype: DType,
    bn: &BatchNorm2d,
    x: &Tensor,
    act: Activation,
    mode: Mode,
    seed: u64,
) -> anyhow::Result<Vec<Tensor>> {
    let xv = Var::from_tensor(&x.to_device(device)?.to_dtype(dtype)?)?;
    let y = bn.forward_act(xv.as_tensor(), mode, act)?;
    let (gamma, beta) = bn.weight_and_bias().ok_or_else(|| anyhow::anyhow!("batch norm without affine parameters"))?;
    value_and_mixed_gradients(&y, &[xv.as_tensor(), gamma, beta], seed)
}
