//! LR-ASPP on MobileNetV3-Large as torchvision builds it (`torchvision/models/segmentation/lraspp.py`):
//! the dilated MobileNetV3-Large features give a stride-8 "low" map (module 4, 40 channels) and a
//! stride-16 "high" map (module 16, 960 channels); the head gates a 1×1 projection of "high" with a
//! global-context sigmoid, upsamples it to "low" and adds per-class 1×1 classifiers of both.
//! Keys: `backbone.{i}.*`, `classifier.cbr.{0,1}`, `classifier.scale.1`, `classifier.low_classifier`,
//! `classifier.high_classifier`.

use candle_core::{Module as _, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{Activation, BatchNorm2d, Conv2d, ConvOpts, Mode, bn_default, global_avg_pool};
use super::mobilenet_v3::{MobileNetV3Config, MobileNetV3Features};
use super::onnx::OnnxGraph;
use super::ops::resize_bilinear;
use super::{FeatureTap, SegOutput};

/// `LRASPPHead`.
#[derive(Clone, Debug)]
pub struct LrasppHead {
    cbr_conv: Conv2d,
    cbr_bn: BatchNorm2d,
    scale: Conv2d,
    low_classifier: Conv2d,
    high_classifier: Conv2d,
}

impl LrasppHead {
    pub fn new(vb: VarBuilder, low_c: usize, high_c: usize, classes: usize, inter: usize) -> Result<Self> {
        let biased = ConvOpts { bias: true, ..Default::default() };
        Ok(Self {
            cbr_conv: Conv2d::new(vb.pp("cbr.0"), high_c, inter, 1, ConvOpts::default())?,
            cbr_bn: BatchNorm2d::new(vb.pp("cbr.1"), inter, bn_default())?,
            scale: Conv2d::new(vb.pp("scale.1"), high_c, inter, 1, ConvOpts::default())?,
            low_classifier: Conv2d::new(vb.pp("low_classifier"), low_c, classes, 1, biased)?,
            high_classifier: Conv2d::new(vb.pp("high_classifier"), inter, classes, 1, biased)?,
        })
    }

    /// Logits at the low map's resolution.
    pub fn forward(&self, low: &Tensor, high: &Tensor, mode: Mode) -> Result<Tensor> {
        let x = self.cbr_conv.forward_bn_act(high, &self.cbr_bn, mode, Activation::Relu, None)?;
        let s = candle_nn::ops::sigmoid(&self.scale.forward(&global_avg_pool(high)?)?)?;
        let x = x.broadcast_mul(&s)?;
        let (_, _, h, w) = low.dims4()?;
        let x = resize_bilinear(&x, h, w)?;
        self.low_classifier.forward(low)? + self.high_classifier.forward(&x)?
    }

    pub fn export_onnx(&self, g: &mut OnnxGraph, low: &str, high: &str) -> Result<String> {
        let x = self.cbr_conv.export_onnx_bn(g, high, &self.cbr_bn, Activation::Relu)?;
        let pooled = g.global_avg_pool(high);
        let s = self.scale.export_onnx(g, &pooled)?;
        let s = g.sigmoid(&s);
        let x = g.mul(&x, &s);
        let x = g.resize_like(&x, low);
        let low_logits = self.low_classifier.export_onnx(g, low)?;
        let high_logits = self.high_classifier.export_onnx(g, &x)?;
        Ok(g.add(&low_logits, &high_logits))
    }
}

/// `lraspp_mobilenet_v3_large`.
#[derive(Clone, Debug)]
pub struct LrasppMobileNetV3Large {
    backbone: MobileNetV3Features,
    head: LrasppHead,
    num_classes: usize,
}

const LOW: usize = 4;
const HIGH: usize = 16;
/// Distillation tap at stride 4 (24 channels), in front of the head's stride-8 "low" input.
const TAP_LOW: usize = 3;

impl LrasppMobileNetV3Large {
    pub fn new(vb: VarBuilder, num_classes: usize) -> Result<Self> {
        let config = MobileNetV3Config::large(true);
        let (low_c, high_c) = (config.channels(LOW), config.channels(HIGH));
        Ok(Self {
            backbone: MobileNetV3Features::new(vb.pp("backbone"), config, HIGH)?,
            head: LrasppHead::new(vb.pp("classifier"), low_c, high_c, num_classes, 128)?,
            num_classes,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<SegOutput> {
        let (_, _, h, w) = x.dims4()?;
        let f = self.backbone.forward(x, mode, &[TAP_LOW, LOW, HIGH])?;
        let logits = resize_bilinear(&self.head.forward(&f[1], &f[2], mode)?, h, w)?;
        let mut f = f.into_iter();
        let features = ["low", "mid", "high"].into_iter().zip(f.by_ref()).collect();
        Ok(SegOutput { logits, aux: None, features })
    }

    /// The evaluation-mode logits at the input's size.
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let f = self.backbone.export_onnx(g, x, &[LOW, HIGH])?;
        let logits = self.head.export_onnx(g, &f[0], &f[1])?;
        Ok(g.resize_like(&logits, x))
    }

    pub fn feature_taps(&self) -> Vec<FeatureTap> {
        self.backbone.config.taps([TAP_LOW, LOW, HIGH])
    }
}
