//! `mbv3s-tiny`: an ultra-compact student (< 0.5 M parameters). The MobileNetV3-Small encoder up to
//! module 8 (48 channels at stride 16; the expensive 96-channel stage is dropped) with an LR-ASPP
//! head on modules 3 (stride 8) and 8 (stride 16), 64 intermediate channels. Encoder keys are
//! torchvision's (`backbone.{i}`), so ImageNet weights load for the part that exists.
//!
//! Feature taps: `low` = module 1 (16 ch, stride 4), `mid` = module 3 (24 ch, stride 8),
//! `high` = module 8 (48 ch, stride 16).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::Mode;
use super::lraspp::LrasppHead;
use super::mobilenet_v3::{MobileNetV3Config, MobileNetV3Features};
use super::onnx::OnnxGraph;
use super::ops::resize_bilinear;
use super::{FeatureTap, SegOutput};

const LOW: usize = 1;
const MID: usize = 3;
const HIGH: usize = 8;

#[derive(Clone, Debug)]
pub struct Mbv3sTiny {
    backbone: MobileNetV3Features,
    head: LrasppHead,
    num_classes: usize,
}

impl Mbv3sTiny {
    pub fn new(vb: VarBuilder, num_classes: usize) -> Result<Self> {
        let config = MobileNetV3Config::small(true);
        let (mid_c, high_c) = (config.channels(MID), config.channels(HIGH));
        Ok(Self {
            backbone: MobileNetV3Features::new(vb.pp("backbone"), config, HIGH)?,
            head: LrasppHead::new(vb.pp("classifier"), mid_c, high_c, num_classes, 64)?,
            num_classes,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<SegOutput> {
        let (_, _, h, w) = x.dims4()?;
        let f = self.backbone.forward(x, mode, &[LOW, MID, HIGH])?;
        let logits = resize_bilinear(&self.head.forward(&f[1], &f[2], mode)?, h, w)?;
        let features = ["low", "mid", "high"].into_iter().zip(f).collect();
        Ok(SegOutput { logits, aux: None, features })
    }

    /// The evaluation-mode logits at the input's size.
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let f = self.backbone.export_onnx(g, x, &[MID, HIGH])?;
        let logits = self.head.export_onnx(g, &f[0], &f[1])?;
        Ok(g.resize_like(&logits, x))
    }

    pub fn feature_taps(&self) -> Vec<FeatureTap> {
        self.backbone.config.taps([LOW, MID, HIGH])
    }
}
