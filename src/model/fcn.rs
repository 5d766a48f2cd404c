//! FCN-ResNet50 and FCN-ResNet101 as torchvision builds them (`torchvision/models/segmentation/fcn.py`):
//! a dilated ResNet (output stride 8), `FCNHead(2048 → 512 → classes)` on layer4 and an optional
//! auxiliary `FCNHead(1024 → 256 → classes)` on layer3; logits are resized back to the input with
//! bilinear interpolation (`align_corners=False`). Keys: `backbone.*`, `classifier.{0,1,4}`,
//! `aux_classifier.{0,1,4}`. Feature taps for distillation: the ResNet stages `layer1`–`layer4`.

use candle_core::{Module as _, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{Activation, BatchNorm2d, Conv2d, ConvOpts, Dropout, Mode, bn_default};
use super::onnx::OnnxGraph;
use super::ops::resize_bilinear;
use super::resnet::{ResNet, ResNetDepth, ResNetFeatures};
use super::{FeatureTap, SegOutput};

/// `FCNHead`: 3×3 conv → BN → ReLU → dropout(0.1) → 1×1 conv to the classes.
#[derive(Clone, Debug)]
pub struct FcnHead {
    conv: Conv2d,
    bn: BatchNorm2d,
    dropout: Dropout,
    classifier: Conv2d,
}

impl FcnHead {
    pub fn new(vb: VarBuilder, in_c: usize, classes: usize) -> Result<Self> {
        let inter = in_c / 4;
        Ok(Self {
            conv: Conv2d::new(vb.pp("0"), in_c, inter, 3, ConvOpts::default())?,
            bn: BatchNorm2d::new(vb.pp("1"), inter, bn_default())?,
            dropout: Dropout::new(0.1, in_c as u64),
            classifier: Conv2d::new(vb.pp("4"), inter, classes, 1, ConvOpts { bias: true, ..Default::default() })?,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let y = self.conv.forward_bn_act(x, &self.bn, mode, Activation::Relu, None)?;
        self.classifier.forward(&self.dropout.forward(&y, mode)?)
    }

    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let y = self.conv.export_onnx_bn(g, x, &self.bn, Activation::Relu)?;
        self.classifier.export_onnx(g, &y)
    }
}

#[derive(Clone, Debug)]
pub struct FcnResNet {
    backbone: ResNet,
    classifier: FcnHead,
    aux_classifier: Option<FcnHead>,
    num_classes: usize,
}

impl FcnResNet {
    pub fn new(vb: VarBuilder, depth: ResNetDepth, num_classes: usize, aux: bool) -> Result<Self> {
        Ok(Self {
            backbone: ResNet::new(vb.pp("backbone"), depth, [false, true, true])?,
            classifier: FcnHead::new(vb.pp("classifier"), 2048, num_classes)?,
            aux_classifier: if aux { Some(FcnHead::new(vb.pp("aux_classifier"), 1024, num_classes)?) } else { None },
            num_classes,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Logits at stride 8 (before the resize to the input), and the backbone features.
    pub fn forward_low_res(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Option<Tensor>, ResNetFeatures)> {
        let f = self.backbone.forward(x, mode)?;
        let out = self.classifier.forward(&f.layer4, mode)?;
        let aux = match &self.aux_classifier {
            Some(head) => Some(head.forward(&f.layer3, mode)?),
            None => None,
        };
        Ok((out, aux, f))
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<SegOutput> {
        let (_, _, h, w) = x.dims4()?;
        let (out, aux, f) = self.forward_low_res(x, mode)?;
        Ok(SegOutput {
            logits: resize_bilinear(&out, h, w)?,
            aux: aux.map(|a| resize_bilinear(&a, h, w)).transpose()?,
            features: f.named(),
        })
    }

    /// The evaluation-mode logits at the input's size (no auxiliary head).
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let (_, layer4) = self.backbone.export_onnx(g, x)?;
        let out = self.classifier.export_onnx(g, &layer4)?;
        Ok(g.resize_like(&out, x))
    }

    pub fn feature_taps() -> Vec<FeatureTap> {
        ResNetFeatures::dilated_taps()
    }
}
