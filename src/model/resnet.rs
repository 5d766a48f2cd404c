//! ResNet-50 and ResNet-101 backbones as torchvision builds them (`torchvision/models/resnet.py`), with
//! `replace_stride_with_dilation` for segmentation: FCN uses `[False, True, True]`, so layer3 and
//! layer4 keep stride 8 and dilate instead (the first block of a dilated layer keeps the previous
//! dilation, as in torchvision's `_make_layer`). Keys: `conv1`, `bn1`, `layer{1..4}.{i}.conv{1..3}`,
//! `bn{1..3}`, `downsample.{0,1}`.

use super::onnx::OnnxGraph;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{Activation, BatchNorm2d, Conv2d, ConvOpts, Mode, bn_default};

const EXPANSION: usize = 4;

#[derive(Clone, Debug)]
struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    conv3: Conv2d,
    bn3: BatchNorm2d,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl Bottleneck {
    fn new(
        vb: VarBuilder,
        inplanes: usize,
        planes: usize,
        stride: usize,
        dilation: usize,
        downsample: bool,
    ) -> Result<Self> {
        let width = planes;
        let out = planes * EXPANSION;
        let downsample = if downsample {
            let o = ConvOpts { stride, ..Default::default() };
            Some((
                Conv2d::new(vb.pp("downsample.0"), inplanes, out, 1, o)?,
                BatchNorm2d::new(vb.pp("downsample.1"), out, bn_default())?,
            ))
        } else {
            None
        };
        Ok(Self {
            conv1: Conv2d::new(vb.pp("conv1"), inplanes, width, 1, ConvOpts::default())?,
            bn1: BatchNorm2d::new(vb.pp("bn1"), width, bn_default())?,
            conv2: Conv2d::new(vb.pp("conv2"), width, width, 3, ConvOpts { stride, dilation, ..Default::default() })?,
            bn2: BatchNorm2d::new(vb.pp("bn2"), width, bn_default())?,
            conv3: Conv2d::new(vb.pp("conv3"), width, out, 1, ConvOpts::default())?,
            bn3: BatchNorm2d::new(vb.pp("bn3"), out, bn_default())?,
            downsample,
        })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let y = self.conv1.forward_bn_act(x, &self.bn1, mode, Activation::Relu, None)?;
        let y = self.conv2.forward_bn_act(&y, &self.bn2, mode, Activation::Relu, None)?;
        let identity = match &self.downsample {
            Some((conv, bn)) => conv.forward_bn_act(x, bn, mode, Activation::None, None)?,
            None => x.clone(),
        };
        self.conv3.forward_bn_act(&y, &self.bn3, mode, Activation::Relu, Some(&identity))
    }

    fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let y = self.conv1.export_onnx_bn(g, x, &self.bn1, Activation::Relu)?;
        let y = self.conv2.export_onnx_bn(g, &y, &self.bn2, Activation::Relu)?;
        let y = self.conv3.export_onnx_bn(g, &y, &self.bn3, Activation::None)?;
        let identity = match &self.downsample {
            Some((conv, bn)) => conv.export_onnx_bn(g, x, bn, Activation::None)?,
            None => x.to_string(),
        };
        let sum = g.add(&y, &identity);
        Ok(g.relu(&sum))
    }
}

/// The four stages' outputs.
pub struct ResNetFeatures {
    /// (B, 256, H/4, W/4)
    pub layer1: Tensor,
    /// (B, 512, H/8, W/8)
    pub layer2: Tensor,
    /// (B, 1024, H/8, W/8) with dilation (H/16 without)
    pub layer3: Tensor,
    /// (B, 2048, H/8, W/8) with dilation (H/32 without)
    pub layer4: Tensor,
}

impl ResNetFeatures {
    /// The stages by their tap names, for distillation.
    pub fn named(self) -> Vec<(&'static str, Tensor)> {
        vec![("layer1", self.layer1), ("layer2", self.layer2), ("layer3", self.layer3), ("layer4", self.layer4)]
    }

    /// The taps of a backbone dilated for segmentation (`[false, true, true]`: output stride 8).
    pub fn dilated_taps() -> Vec<super::FeatureTap> {
        use super::FeatureTap;
        vec![
            FeatureTap { name: "layer1", channels: 256, stride: 4 },
            FeatureTap { name: "layer2", channels: 512, stride: 8 },
            FeatureTap { name: "layer3", channels: 1024, stride: 8 },
            FeatureTap { name: "layer4", channels: 2048, stride: 8 },
        ]
    }
}

/// The depths torchvision's segmentation models use: bottleneck blocks per stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResNetDepth {
    R50,
    R101,
}

impl ResNetDepth {
    fn blocks(self) -> [usize; 4] {
        match self {
            Self::R50 => [3, 4, 6, 3],
            Self::R101 => [3, 4, 23, 3],
        }
    }
}

/// A ResNet without its classifier.
#[derive(Clone, Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    layers: [Vec<Bottleneck>; 4],
}

impl ResNet {
    /// `dilate[i]` replaces the stride of layer i+2 with dilation.
    pub fn new(vb: VarBuilder, depth: ResNetDepth, dilate: [bool; 3]) -> Result<Self> {
        let conv1 =
            Conv2d::new(vb.pp("conv1"), 3, 64, 7, ConvOpts { stride: 2, padding: Some(3), ..Default::default() })?;
        let bn1 = BatchNorm2d::new(vb.pp("bn1"), 64, bn_default())?;
        let (mut inplanes, mut dilation) = (64, 1);
        let mut make_layer =
            |name: &str, planes: usize, blocks: usize, stride: usize, dilate: bool| -> Result<Vec<Bottleneck>> {
                let vb = vb.pp(name);
                let previous_dilation = dilation;
                let stride = if dilate {
                    dilation *= stride;
                    1
                } else {
                    stride
                };
                let downsample = stride != 1 || inplanes != planes * EXPANSION;
                let mut v = vec![Bottleneck::new(vb.pp(0), inplanes, planes, stride, previous_dilation, downsample)?];
                inplanes = planes * EXPANSION;
                for i in 1..blocks {
                    v.push(Bottleneck::new(vb.pp(i), inplanes, planes, 1, dilation, false)?);
                }
                Ok(v)
            };
        let blocks = depth.blocks();
        let layers = [
            make_layer("layer1", 64, blocks[0], 1, false)?,
            make_layer("layer2", 128, blocks[1], 2, dilate[0])?,
            make_layer("layer3", 256, blocks[2], 2, dilate[1])?,
            make_layer("layer4", 512, blocks[3], 2, dilate[2])?,
        ];
        Ok(Self { conv1, bn1, layers })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<ResNetFeatures> {
        let x = self.conv1.forward_bn_act(x, &self.bn1, mode, Activation::Relu, None)?;
        // 3×3/2 max-pool with padding 1: after a ReLU every value is ≥ 0, so zero padding equals
        // PyTorch's −∞ padding (candle's pooling has no padding argument). Training needs its
        // gradient, which candle's pooling lacks for overlapping windows.
        let x = if mode.is_train() {
            super::layers::max_pool_3x3_s2_nonnegative(&x)?
        } else {
            x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?.max_pool2d_with_stride(3, 2)?
        };
        let run = |x: &Tensor, blocks: &[Bottleneck]| -> Result<Tensor> {
            blocks.iter().try_fold(x.clone(), |x, b| b.forward(&x, mode))
        };
        let layer1 = run(&x, &self.layers[0])?;
        let layer2 = run(&layer1, &self.layers[1])?;
        let layer3 = run(&layer2, &self.layers[2])?;
        let layer4 = run(&layer3, &self.layers[3])?;
        Ok(ResNetFeatures { layer1, layer2, layer3, layer4 })
    }

    /// The graph of [`Self::forward`] in evaluation mode: the names of layer3 and layer4.
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<(String, String)> {
        let y = self.conv1.export_onnx_bn(g, x, &self.bn1, Activation::Relu)?;
        let mut y = g.max_pool_3x3_s2(&y);
        let mut stages = Vec::new();
        for blocks in &self.layers {
            for b in blocks {
                y = b.export_onnx(g, &y)?;
            }
            stages.push(y.clone());
        }
        Ok((stages[2].clone(), stages[3].clone()))
    }
}
