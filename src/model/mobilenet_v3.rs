//! MobileNetV3 (Small and Large) as torchvision builds it (`torchvision/models/mobilenetv3.py`):
//! inverted residual blocks with optional squeeze-and-excitation, BN eps 0.001 / momentum 0.01;
//! `dilated = True` turns the last stage's stride into dilation 2 (output stride 16), as
//! torchvision does for segmentation. Keys: `<features>.0.{0,1}` (stem), `<features>.{i}.block.{j}`
//! (blocks; `fc1`/`fc2` in SE), `<features>.{last}.{0,1}`, and for the ImageNet classifier
//! `classifier.{0,3}`. Segmentation models put the features under `backbone.` (torchvision's
//! `IntermediateLayerGetter`), the classifier model under `features.`.

use super::onnx::OnnxGraph;
use candle_core::{Module as _, Result, Tensor};
use candle_nn::{BatchNormConfig, VarBuilder};

use super::layers::{Activation, Conv2d, ConvBnAct, ConvOpts, Dropout, Linear, Mode, bn_config, global_avg_pool};

fn bn() -> BatchNormConfig {
    bn_config(0.001, 0.1)
}

/// torchvision's `_make_divisible`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let new_v = ((v + d / 2.0) / d).floor().max(1.0) as usize * divisor;
    let new_v = new_v.max(divisor);
    if (new_v as f64) < 0.9 * v { new_v + divisor } else { new_v }
}

/// One inverted residual block (`InvertedResidualConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockConfig {
    pub input: usize,
    pub kernel: usize,
    pub expanded: usize,
    pub out: usize,
    pub use_se: bool,
    pub use_hs: bool,
    pub stride: usize,
    pub dilation: usize,
}

// One argument per column of torchvision's table keeps the tables below readable.
#[allow(clippy::too_many_arguments)]
#[rustfmt::skip]
const fn b(input: usize, kernel: usize, expanded: usize, out: usize, use_se: bool, hs: bool, stride: usize, dilation: usize) -> BlockConfig {
    BlockConfig { input, kernel, expanded, out, use_se, use_hs: hs, stride, dilation }
}

/// A MobileNetV3 variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MobileNetV3Config {
    pub blocks: Vec<BlockConfig>,
    /// Width of the ImageNet classifier's hidden layer.
    pub last_channel: usize,
}

impl MobileNetV3Config {
    #[rustfmt::skip]
    pub fn small(dilated: bool) -> Self {
        let d = if dilated { 2 } else { 1 };
        Self {
            blocks: vec![
                b(16, 3, 16, 16, true, false, 2, 1),
                b(16, 3, 72, 24, false, false, 2, 1),
                b(24, 3, 88, 24, false, false, 1, 1),
                b(24, 5, 96, 40, true, true, 2, 1),
                b(40, 5, 240, 40, true, true, 1, 1),
                b(40, 5, 240, 40, true, true, 1, 1),
                b(40, 5, 120, 48, true, true, 1, 1),
                b(48, 5, 144, 48, true, true, 1, 1),
                b(48, 5, 288, 96, true, true, 2, d),
                b(96, 5, 576, 96, true, true, 1, d),
                b(96, 5, 576, 96, true, true, 1, d),
            ],
            last_channel: 1024,
        }
    }

    #[rustfmt::skip]
    pub fn large(dilated: bool) -> Self {
        let d = if dilated { 2 } else { 1 };
        Self {
            blocks: vec![
                b(16, 3, 16, 16, false, false, 1, 1),
                b(16, 3, 64, 24, false, false, 2, 1),
                b(24, 3, 72, 24, false, false, 1, 1),
                b(24, 5, 72, 40, true, false, 2, 1),
                b(40, 5, 120, 40, true, false, 1, 1),
                b(40, 5, 120, 40, true, false, 1, 1),
                b(40, 3, 240, 80, false, true, 2, 1),
                b(80, 3, 200, 80, false, true, 1, 1),
                b(80, 3, 184, 80, false, true, 1, 1),
                b(80, 3, 184, 80, false, true, 1, 1),
                b(80, 3, 480, 112, true, true, 1, 1),
                b(112, 3, 672, 112, true, true, 1, 1),
                b(112, 5, 672, 160, true, true, 2, d),
                b(160, 5, 960, 160, true, true, 1, d),
                b(160, 5, 960, 160, true, true, 1, d),
            ],
            last_channel: 1280,
        }
    }

    /// Channels of feature module `i` (0 = stem, 1..=blocks, blocks+1 = last conv).
    pub fn channels(&self, i: usize) -> usize {
        match i {
            0 => self.blocks[0].input,
            i if i <= self.blocks.len() => self.blocks[i - 1].out,
            _ => 6 * self.blocks[self.blocks.len() - 1].out,
        }
    }

    /// Output stride of feature module `i`.
    pub fn stride(&self, i: usize) -> usize {
        let mut s = 2;
        for blk in self.blocks.iter().take(i.min(self.blocks.len())) {
            if blk.dilation == 1 {
                s *= blk.stride;
            }
        }
        s
    }

    /// The distillation taps `low`, `mid`, `high` at feature modules `idx`.
    pub fn taps(&self, idx: [usize; 3]) -> Vec<super::FeatureTap> {
        ["low", "mid", "high"]
            .into_iter()
            .zip(idx)
            .map(|(name, i)| super::FeatureTap { name, channels: self.channels(i), stride: self.stride(i) })
            .collect()
    }

    pub fn num_modules(&self) -> usize {
        self.blocks.len() + 2
    }
}

/// torchvision's `SqueezeExcitation` with ReLU and Hardsigmoid.
#[derive(Clone, Debug)]
struct SqueezeExcitation {
    fc1: Conv2d,
    fc2: Conv2d,
}

impl SqueezeExcitation {
    fn new(vb: VarBuilder, channels: usize, squeeze: usize) -> Result<Self> {
        let o = ConvOpts { bias: true, ..Default::default() };
        Ok(Self {
            fc1: Conv2d::new(vb.pp("fc1"), channels, squeeze, 1, o)?,
            fc2: Conv2d::new(vb.pp("fc2"), squeeze, channels, 1, o)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = self.fc1.forward(&global_avg_pool(x)?)?.relu()?;
        let s = super::layers::hardsigmoid(&self.fc2.forward(&s)?)?;
        super::ops::gate::channel_gate(x, &s)
    }

    fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let pooled = g.global_avg_pool(x);
        let s = self.fc1.export_onnx(g, &pooled)?;
        let s = g.relu(&s);
        let s = self.fc2.export_onnx(g, &s)?;
        let s = g.hardsigmoid(&s);
        Ok(g.mul(x, &s))
    }
}

#[derive(Clone, Debug)]
struct InvertedResidual {
    expand: Option<ConvBnAct>,
    depthwise: ConvBnAct,
    se: Option<SqueezeExcitation>,
    project: ConvBnAct,
    residual: bool,
}

impl InvertedResidual {
    fn new(vb: VarBuilder, c: &BlockConfig) -> Result<Self> {
        let vb = vb.pp("block");
        let act = if c.use_hs { Activation::Hardswish } else { Activation::Relu };
        let mut idx = 0;
        let mut next = || {
            idx += 1;
            idx - 1
        };
        let expand = if c.expanded != c.input {
            Some(ConvBnAct::new(vb.pp(next()), c.input, c.expanded, 1, ConvOpts::default(), bn(), act)?)
        } else {
            None
        };
        let stride = if c.dilation > 1 { 1 } else { c.stride };
        let dw = ConvOpts { stride, dilation: c.dilation, groups: c.expanded, ..Default::default() };
        let depthwise = ConvBnAct::new(vb.pp(next()), c.expanded, c.expanded, c.kernel, dw, bn(), act)?;
        let se = if c.use_se {
            Some(SqueezeExcitation::new(vb.pp(next()), c.expanded, make_divisible((c.expanded / 4) as f64, 8))?)
        } else {
            None
        };
        let project = ConvBnAct::new(vb.pp(next()), c.expanded, c.out, 1, ConvOpts::default(), bn(), Activation::None)?;
        Ok(Self { expand, depthwise, se, project, residual: c.stride == 1 && c.input == c.out })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut y = match &self.expand {
            Some(e) => e.forward(x, mode)?,
            None => x.clone(),
        };
        y = self.depthwise.forward(&y, mode)?;
        if let Some(se) = &self.se {
            y = se.forward(&y)?;
        }
        y = self.project.forward(&y, mode)?;
        if self.residual { y + x } else { Ok(y) }
    }

    fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let mut y = match &self.expand {
            Some(e) => e.export_onnx(g, x)?,
            None => x.to_string(),
        };
        y = self.depthwise.export_onnx(g, &y)?;
        if let Some(se) = &self.se {
            y = se.export_onnx(g, &y)?;
        }
        y = self.project.export_onnx(g, &y)?;
        Ok(if self.residual { g.add(&y, x) } else { y })
    }
}

#[derive(Clone, Debug)]
enum FeatureModule {
    Conv(ConvBnAct),
    Block(Box<InvertedResidual>),
}

/// The `features` sequence: stem, inverted residual blocks, last 1×1 conv — or a prefix of it.
#[derive(Clone, Debug)]
pub struct MobileNetV3Features {
    modules: Vec<FeatureModule>,
    pub config: MobileNetV3Config,
}

impl MobileNetV3Features {
    /// Builds modules `0..=last` (all of them with `last = config.num_modules() − 1`); `vb` points
    /// at the container whose children are named `0`, `1`, ….
    pub fn new(vb: VarBuilder, config: MobileNetV3Config, last: usize) -> Result<Self> {
        let mut modules = Vec::new();
        let hs = Activation::Hardswish;
        let stem = ConvOpts { stride: 2, ..Default::default() };
        modules.push(FeatureModule::Conv(ConvBnAct::new(vb.pp(0), 3, config.blocks[0].input, 3, stem, bn(), hs)?));
        for (i, blk) in config.blocks.iter().enumerate().take(last) {
            modules.push(FeatureModule::Block(Box::new(InvertedResidual::new(vb.pp(i + 1), blk)?)));
        }
        if last > config.blocks.len() {
            let i = config.blocks.len() + 1;
            let c_in = config.blocks[config.blocks.len() - 1].out;
            modules.push(FeatureModule::Conv(ConvBnAct::new(
                vb.pp(i),
                c_in,
                6 * c_in,
                1,
                ConvOpts::default(),
                bn(),
                hs,
            )?));
        }
        Ok(Self { modules, config })
    }

    pub fn len(&self) -> usize {
        self.modules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Runs every module; returns the outputs of the modules listed in `taps` (in that order).
    pub fn forward(&self, x: &Tensor, mode: Mode, taps: &[usize]) -> Result<Vec<Tensor>> {
        self.walk(x.clone(), taps, |m, y| match m {
            FeatureModule::Conv(c) => c.forward(y, mode),
            FeatureModule::Block(b) => b.forward(y, mode),
        })
    }

    /// The graph of [`Self::forward`] in evaluation mode: the names of the tapped maps.
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str, taps: &[usize]) -> Result<Vec<String>> {
        self.walk(x.to_string(), taps, |m, y| match m {
            FeatureModule::Conv(c) => c.export_onnx(g, y),
            FeatureModule::Block(b) => b.export_onnx(g, y),
        })
    }

    /// Applies `step` module after module, keeping the outputs of the modules in `taps`.
    fn walk<T: Clone>(
        &self,
        x: T,
        taps: &[usize],
        mut step: impl FnMut(&FeatureModule, &T) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = vec![None; taps.len()];
        let mut y = x;
        for (i, m) in self.modules.iter().enumerate() {
            y = step(m, &y)?;
            for (slot, &t) in out.iter_mut().zip(taps) {
                if t == i {
                    *slot = Some(y.clone());
                }
            }
        }
        out.into_iter()
            .zip(taps)
            .map(|(t, i)| t.ok_or_else(|| candle_core::Error::Msg(format!("feature {i} is beyond the last module"))))
            .collect()
    }
}

/// The ImageNet classifier (`mobilenet_v3_small()` / `_large()`), used to check the backbone
/// against torchvision's logits.
#[derive(Clone, Debug)]
pub struct MobileNetV3Classifier {
    pub features: MobileNetV3Features,
    fc1: Linear,
    fc2: Linear,
    dropout: Dropout,
}

impl MobileNetV3Classifier {
    pub fn new(vb: VarBuilder, config: MobileNetV3Config, classes: usize) -> Result<Self> {
        let last = config.num_modules() - 1;
        let c = config.channels(last);
        let hidden = config.last_channel;
        Ok(Self {
            features: MobileNetV3Features::new(vb.pp("features"), config, last)?,
            fc1: Linear::new(vb.pp("classifier.0"), c, hidden)?,
            fc2: Linear::new(vb.pp("classifier.3"), hidden, classes)?,
            dropout: Dropout::new(0.2, 3),
        })
    }

    /// Logits (B, classes) and every feature module's output.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Vec<Tensor>)> {
        let all: Vec<usize> = (0..self.features.len()).collect();
        let feats = self.features.forward(x, mode, &all)?;
        let last = feats.last().ok_or_else(|| candle_core::Error::Msg("no features".into()))?;
        let pooled = global_avg_pool(last)?.flatten_from(1)?;
        let h = super::layers::hardswish(&self.fc1.forward(&pooled)?)?;
        let logits = self.fc2.forward(&self.dropout.forward(&h, mode)?)?;
        Ok((logits, feats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_torchvision() {
        for (v, expect) in [
            (72.0 / 4.0, 24),
            (240.0 / 4.0, 64),
            (16.0 / 4.0, 8),
            (96.0 / 4.0, 24),
            (576.0 / 4.0, 144),
            (120.0 / 4.0, 32),
        ] {
            assert_eq!(make_divisible(v, 8), expect, "{v}");
        }
    }

    #[test]
    fn strides_and_channels_of_small_dilated() {
        let c = MobileNetV3Config::small(true);
        assert_eq!((c.channels(1), c.stride(1)), (16, 4));
        assert_eq!((c.channels(3), c.stride(3)), (24, 8));
        assert_eq!((c.channels(8), c.stride(8)), (48, 16));
        assert_eq!((c.channels(12), c.stride(12)), (576, 16));
        assert_eq!(MobileNetV3Config::small(false).stride(12), 32);
        assert_eq!(MobileNetV3Config::large(true).channels(16), 960);
    }
}
