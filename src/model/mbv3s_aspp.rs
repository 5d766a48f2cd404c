//! `mbv3s-aspp`, the lab's example student: a MobileNetV3-Small encoder (torchvision keys under
//! `backbone.`, last stage dilated → output stride 16), an ASPP on its last features and a
//! DeepLabV3+-style decoder with a skip from the stride-4 features.
//!
//! * ASPP (`aspp.*`, 128 channels): a 1×1 branch (rate 1); three atrous branches with rates 6, 12,
//!   18, each a depthwise-separable 3×3 (depthwise `bN.dw`, pointwise `bN.pw`, as DeepLabV3+ does
//!   to stay light); image pooling (`pool`); concatenation → 1×1 projection (`project`).
//! * Decoder (`decoder.*`): the stride-4 features → 1×1 to 32 channels (`low`); ASPP output
//!   upsampled ×4 bilinearly and concatenated; 3×3 conv to 128 (`fuse`); dropout 0.5; 1×1
//!   classifier (`classifier`); bilinear upsampling ×4 to the input.
//!
//! Feature taps for distillation (real strides and channels of MobileNetV3-Small):
//! `low` = module 1 (16 ch, stride 4), `mid` = module 3 (24 ch, stride 8), `high` = module 12
//! (576 ch, stride 16).

use candle_core::{Module as _, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{Activation, Conv2d, ConvBnAct, ConvOpts, Dropout, Mode, bn_default, global_avg_pool};
use super::mobilenet_v3::{MobileNetV3Config, MobileNetV3Features};
use super::onnx::OnnxGraph;
use super::ops::resize_bilinear;
use super::{FeatureTap, SegOutput};

const LOW: usize = 1;
const MID: usize = 3;
const HIGH: usize = 12;
const ASPP_CHANNELS: usize = 128;
const RATES: [usize; 3] = [6, 12, 18];

/// Atrous spatial pyramid pooling with depthwise-separable atrous branches.
#[derive(Clone, Debug)]
pub struct Aspp {
    b0: ConvBnAct,
    atrous: Vec<(ConvBnAct, ConvBnAct)>,
    pool: ConvBnAct,
    project: ConvBnAct,
}

impl Aspp {
    pub fn new(vb: VarBuilder, in_c: usize, out_c: usize, rates: &[usize]) -> Result<Self> {
        let relu = Activation::Relu;
        let one = ConvOpts::default();
        let atrous = rates
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                let vb = vb.pp(format!("b{}", i + 1));
                let dw = ConvOpts { dilation: r, groups: in_c, ..Default::default() };
                Ok((
                    ConvBnAct::new(vb.pp("dw"), in_c, in_c, 3, dw, bn_default(), relu)?,
                    ConvBnAct::new(vb.pp("pw"), in_c, out_c, 1, one, bn_default(), relu)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            b0: ConvBnAct::new(vb.pp("b0"), in_c, out_c, 1, one, bn_default(), relu)?,
            atrous,
            pool: ConvBnAct::new(vb.pp("pool"), in_c, out_c, 1, one, bn_default(), relu)?,
            project: ConvBnAct::new(vb.pp("project"), out_c * (rates.len() + 2), out_c, 1, one, bn_default(), relu)?,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let mut branches = vec![self.b0.forward(x, mode)?];
        for (dw, pw) in &self.atrous {
            branches.push(pw.forward(&dw.forward(x, mode)?, mode)?);
        }
        let pooled = self.pool.forward(&global_avg_pool(x)?, mode)?;
        let (b, c, _, _) = pooled.dims4()?;
        branches.push(pooled.broadcast_as((b, c, h, w))?.contiguous()?);
        self.project.forward(&Tensor::cat(&branches, 1)?, mode)
    }

    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let mut branches = vec![self.b0.export_onnx(g, x)?];
        for (dw, pw) in &self.atrous {
            let y = dw.export_onnx(g, x)?;
            branches.push(pw.export_onnx(g, &y)?);
        }
        let pooled = g.global_avg_pool(x);
        let pooled = self.pool.export_onnx(g, &pooled)?;
        branches.push(g.resize_like(&pooled, x));
        let refs: Vec<&str> = branches.iter().map(String::as_str).collect();
        let cat = g.concat(&refs, 1);
        self.project.export_onnx(g, &cat)
    }
}

#[derive(Clone, Debug)]
pub struct Mbv3sAspp {
    backbone: MobileNetV3Features,
    aspp: Aspp,
    low: ConvBnAct,
    fuse: ConvBnAct,
    dropout: Dropout,
    classifier: Conv2d,
    num_classes: usize,
}

impl Mbv3sAspp {
    pub fn new(vb: VarBuilder, num_classes: usize) -> Result<Self> {
        let config = MobileNetV3Config::small(true);
        let (low_c, high_c) = (config.channels(LOW), config.channels(HIGH));
        let d = vb.pp("decoder");
        let relu = Activation::Relu;
        Ok(Self {
            backbone: MobileNetV3Features::new(vb.pp("backbone"), config, HIGH)?,
            aspp: Aspp::new(vb.pp("aspp"), high_c, ASPP_CHANNELS, &RATES)?,
            low: ConvBnAct::new(d.pp("low"), low_c, 32, 1, ConvOpts::default(), bn_default(), relu)?,
            fuse: ConvBnAct::new(d.pp("fuse"), ASPP_CHANNELS + 32, 128, 3, ConvOpts::default(), bn_default(), relu)?,
            dropout: Dropout::new(0.5, 1),
            classifier: Conv2d::new(
                d.pp("classifier"),
                128,
                num_classes,
                1,
                ConvOpts { bias: true, ..Default::default() },
            )?,
            num_classes,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<SegOutput> {
        let (_, _, h, w) = x.dims4()?;
        let f = self.backbone.forward(x, mode, &[LOW, MID, HIGH])?;
        let (_, _, lh, lw) = f[0].dims4()?;
        let context = resize_bilinear(&self.aspp.forward(&f[2], mode)?, lh, lw)?;
        let low = self.low.forward(&f[0], mode)?;
        let y = self.fuse.forward(&Tensor::cat(&[context, low], 1)?, mode)?;
        let logits = self.classifier.forward(&self.dropout.forward(&y, mode)?)?;
        let logits = resize_bilinear(&logits, h, w)?;
        let features = ["low", "mid", "high"].into_iter().zip(f).collect();
        Ok(SegOutput { logits, aux: None, features })
    }

    /// The evaluation-mode logits at the input's size.
    pub fn export_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let f = self.backbone.export_onnx(g, x, &[LOW, HIGH])?;
        let context = self.aspp.export_onnx(g, &f[1])?;
        let context = g.resize_like(&context, &f[0]);
        let low = self.low.export_onnx(g, &f[0])?;
        let fused = g.concat(&[&context, &low], 1);
        let y = self.fuse.export_onnx(g, &fused)?;
        let logits = self.classifier.export_onnx(g, &y)?;
        Ok(g.resize_like(&logits, x))
    }

    pub fn feature_taps(&self) -> Vec<FeatureTap> {
        self.backbone.config.taps([LOW, MID, HIGH])
    }
}
