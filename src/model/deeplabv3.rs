//! DeepLabV3 as torchvision builds it (`torchvision/models/segmentation/deeplabv3.py`): a dilated
//! backbone, the `DeepLabHead` (ASPP with atrous rates 12/24/36 and an image-pooling branch, a
//! 3×3 conv, a 1×1 classifier) on its last map, and an optional auxiliary `FCNHead` on an earlier
//! one; logits are resized back to the input (bilinear, `align_corners=False`).
//!
//! Backbones (as torchvision's builders pick them):
//! - ResNet-50 / ResNet-101 dilated to output stride 8: head on `layer4` (2048 channels), aux on
//!   `layer3` (1024). Feature taps `layer1`–`layer4`, as FCN's.
//! - MobileNetV3-Large dilated to output stride 16: head on module 16 (960 channels, "C5"), aux on
//!   module 4 (40 channels, stride 8, "C2"). Feature taps `low` (module 3, 24 channels, stride 4),
//!   `mid` (module 4) and `high` (module 16), as LR-ASPP's.
//!
//! Keys: `backbone.*`, `classifier.0.convs.{0..4}` (ASPP branches; the pooling branch's conv and
//! BN are `convs.4.{1,2}`), `classifier.0.project.{0,1}`, `classifier.{1,2,4}`,
//! `aux_classifier.{0,1,4}`.

use candle_core::{Module as _, Result, Tensor};
use candle_nn::VarBuilder;

use super::fcn::FcnHead;
use super::layers::{Activation, BatchNorm2d, Conv2d, ConvOpts, Dropout, Mode, bn_default, global_avg_pool};
use super::mobilenet_v3::{MobileNetV3Config, MobileNetV3Features};
use super::onnx::OnnxGraph;
use super::ops::resize_bilinear;
use super::resnet::{ResNet, ResNetDepth, ResNetFeatures};
use super::{FeatureTap, NamedFeatures, SegOutput};

/// Output channels of every ASPP branch and of the head's 3×3 conv.
const ASPP_CHANNELS: usize = 256;
/// torchvision's `DeepLabHead` default.
const ATROUS_RATES: [usize; 3] = [12, 24, 36];

/// A conv (`<p>.0`, no bias) → BN (`<p>.1`) → ReLU branch.
#[derive(Clone, Debug)]
struct ConvBnRelu {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ConvBnRelu {
    fn new(vb: VarBuilder, conv: &str, bn: &str, in_c: usize, k: usize, dilation: usize) -> Result<Self> {
        Ok(Self {
            conv: Conv2d::new(vb.pp(conv), in_c, ASPP_CHANNELS, k, ConvOpts { dilation, ..Default::default() })?,
            bn: BatchNorm2d::new(vb.pp(bn), ASPP_CHANNELS, bn_default())?,
        })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.conv.forward_bn_act(x, &self.bn, mode, Activation::Relu, None)
    }

    fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        self.conv.export_onnx_bn(g, x, &self.bn, Activation::Relu)
    }
}

/// `ASPP`: a 1×1 branch, three dilated 3×3 branches, an image-pooling branch, concatenated and
/// projected back to 256 channels (then dropout 0.5).
#[derive(Clone, Debug)]
struct Aspp {
    branches: Vec<ConvBnRelu>,
    pooling: ConvBnRelu,
    project: ConvBnRelu,
    dropout: Dropout,
}

impl Aspp {
    fn new(vb: VarBuilder, in_c: usize) -> Result<Self> {
        let convs = vb.pp("convs");
        let mut branches = vec![ConvBnRelu::new(convs.pp(0), "0", "1", in_c, 1, 1)?];
        for (i, rate) in ATROUS_RATES.into_iter().enumerate() {
            branches.push(ConvBnRelu::new(convs.pp(i + 1), "0", "1", in_c, 3, rate)?);
        }
        // `ASPPPooling` is (AdaptiveAvgPool2d, conv, BN, ReLU): its conv and BN are children 1 and 2.
        let pooling = ConvBnRelu::new(convs.pp(ATROUS_RATES.len() + 1), "1", "2", in_c, 1, 1)?;
        let project = ConvBnRelu::new(vb.pp("project"), "0", "1", (ATROUS_RATES.len() + 2) * ASPP_CHANNELS, 1, 1)?;
        Ok(Self { branches, pooling, project, dropout: Dropout::new(0.5, 0xA5BB) })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let mut maps = self.branches.iter().map(|br| br.forward(x, mode)).collect::<Result<Vec<_>>>()?;
        // Bilinear upsampling of a 1×1 map is the map repeated.
        let pooled = self.pooling.forward(&global_avg_pool(x)?, mode)?;
        maps.push(pooled.broadcast_as((b, ASPP_CHANNELS, h, w))?.contiguous()?);
        let y = self.project.forward(&Tensor::cat(&maps, 1)?, mode)?;
        self.dropout.forward(&y, mode)
    }

    fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let mut maps = self.branches.iter().map(|br| br.export_onnx(g, x)).collect::<Result<Vec<_>>>()?;
        let pooled = g.global_avg_pool(x);
        let pooled = self.pooling.export_onnx(g, &pooled)?;
        // torchvision upsamples the pooled 1×1 map bilinearly: a broadcast.
        maps.push(g.resize_like(&pooled, x));
        let refs: Vec<&str> = maps.iter().map(String::as_str).collect();
        let cat = g.concat(&refs, 1);
        self.project.export_onnx(g, &cat)
    }
}

/// `DeepLabHead`: ASPP → 3×3 conv → BN → ReLU → 1×1 conv to the classes.
#[derive(Clone, Debug)]
pub struct DeepLabHead {
    aspp: Aspp,
    conv: ConvBnRelu,
    classifier: Conv2d,
}

impl DeepLabHead {
    pub fn new(vb: VarBuilder, in_c: usize, classes: usize) -> Result<Self> {
        Ok(Self {
            aspp: Aspp::new(vb.pp("0"), in_c)?,
            conv: ConvBnRelu::new(vb.clone(), "1", "2", ASPP_CHANNELS, 3, 1)?,
            classifier: Conv2d::new(
                vb.pp("4"),
                ASPP_CHANNELS,
                classes,
                1,
                ConvOpts { bias: true, ..Default::default() },
            )?,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.classifier.forward(&self.conv.forward(&self.aspp.forward(x, mode)?, mode)?)
    }

    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let y = self.aspp.export_onnx(g, x)?;
        let y = self.conv.export_onnx(g, &y)?;
        self.classifier.export_onnx(g, &y)
    }
}

/// The backbones torchvision pairs with DeepLabV3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeepLabBackbone {
    ResNet50,
    ResNet101,
    MobileNetV3Large,
}

/// MobileNetV3-Large modules: the `low` tap, the aux head's input ("C2") and the head's ("C5").
const MBV3_LOW: usize = 3;
const MBV3_AUX: usize = 4;
const MBV3_OUT: usize = 16;

#[derive(Clone, Debug)]
enum Backbone {
    ResNet(ResNet),
    MobileNet(MobileNetV3Features),
}

/// The maps one backbone pass yields.
struct BackboneMaps {
    /// The head's input.
    out: Tensor,
    /// The aux head's input.
    aux: Tensor,
    features: NamedFeatures,
}

impl Backbone {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<BackboneMaps> {
        match self {
            Self::ResNet(r) => {
                let f = r.forward(x, mode)?;
                let (out, aux) = (f.layer4.clone(), f.layer3.clone());
                Ok(BackboneMaps { out, aux, features: f.named() })
            }
            Self::MobileNet(m) => {
                let f = m.forward(x, mode, &[MBV3_LOW, MBV3_AUX, MBV3_OUT])?;
                let (aux, out) = (f[1].clone(), f[2].clone());
                Ok(BackboneMaps { out, aux, features: ["low", "mid", "high"].into_iter().zip(f).collect() })
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct DeepLabV3 {
    backbone: Backbone,
    classifier: DeepLabHead,
    aux_classifier: Option<FcnHead>,
    num_classes: usize,
}

impl DeepLabV3 {
    pub fn new(vb: VarBuilder, backbone: DeepLabBackbone, num_classes: usize, aux: bool) -> Result<Self> {
        let bvb = vb.pp("backbone");
        let (net, out_c, aux_c) = match backbone {
            DeepLabBackbone::ResNet50 | DeepLabBackbone::ResNet101 => {
                let depth = if backbone == DeepLabBackbone::ResNet50 { ResNetDepth::R50 } else { ResNetDepth::R101 };
                (Backbone::ResNet(ResNet::new(bvb, depth, [false, true, true])?), 2048, 1024)
            }
            DeepLabBackbone::MobileNetV3Large => {
                let config = MobileNetV3Config::large(true);
                let (out_c, aux_c) = (config.channels(MBV3_OUT), config.channels(MBV3_AUX));
                (Backbone::MobileNet(MobileNetV3Features::new(bvb, config, MBV3_OUT)?), out_c, aux_c)
            }
        };
        Ok(Self {
            backbone: net,
            classifier: DeepLabHead::new(vb.pp("classifier"), out_c, num_classes)?,
            aux_classifier: if aux { Some(FcnHead::new(vb.pp("aux_classifier"), aux_c, num_classes)?) } else { None },
            num_classes,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Logits and aux logits at the backbone's resolution (stride 8, or 16 for MobileNetV3), and
    /// the feature taps.
    pub fn forward_low_res(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Option<Tensor>, NamedFeatures)> {
        let maps = self.backbone.forward(x, mode)?;
        let out = self.classifier.forward(&maps.out, mode)?;
        let aux = self.aux_classifier.as_ref().map(|head| head.forward(&maps.aux, mode)).transpose()?;
        Ok((out, aux, maps.features))
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<SegOutput> {
        let (_, _, h, w) = x.dims4()?;
        let (out, aux, features) = self.forward_low_res(x, mode)?;
        Ok(SegOutput {
            logits: resize_bilinear(&out, h, w)?,
            aux: aux.map(|a| resize_bilinear(&a, h, w)).transpose()?,
            features,
        })
    }

    /// The evaluation-mode logits at the input's size (no auxiliary head).
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let out = match &self.backbone {
            Backbone::ResNet(r) => r.export_onnx(g, x)?.1,
            Backbone::MobileNet(m) => m.export_onnx(g, x, &[MBV3_OUT])?.remove(0),
        };
        let logits = self.classifier.export_onnx(g, &out)?;
        Ok(g.resize_like(&logits, x))
    }

    pub fn feature_taps(&self) -> Vec<FeatureTap> {
        match &self.backbone {
            Backbone::ResNet(_) => ResNetFeatures::dilated_taps(),
            Backbone::MobileNet(m) => m.config.taps([MBV3_LOW, MBV3_AUX, MBV3_OUT]),
        }
    }
}
