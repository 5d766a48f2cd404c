//! Feature-based distillation: 1 − cosine similarity per pixel between a student feature map
//! (projected by a learned 1×1 adapter to the teacher's channels) and the teacher's map, resized
//! bilinearly to the student's resolution (the teacher's stride-8 maps meet stride-4/8/16 student
//! taps). Pairs: student `low` ↔ teacher `layer1`, `mid` ↔ `layer2`, `high` ↔ `layer4` (or the same
//! tap names when the teacher is a student-type network).

use candle_core::{Module as _, Result, Tensor};
use candle_nn::VarBuilder;

use crate::model::layers::{Conv2d, ConvOpts};
use crate::model::ops::resize_bilinear;
use crate::model::{FeatureTap, SegOutput};

/// PyTorch's `F.cosine_similarity` eps.
const EPS: f64 = 1e-8;

/// Mean over (B, H, W) of 1 − cos(student[b,:,h,w], teacher[b,:,h,w]); shapes must match.
/// Each vector is divided by max(‖v‖, ε) first, as `F.cosine_similarity` does.
pub fn cosine_loss(student: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    if student.shape() != teacher.shape() {
        candle_core::bail!("cosine loss: student {:?} vs teacher {:?}", student.shape(), teacher.shape());
    }
    let unit =
        |x: &Tensor| -> Result<Tensor> { x.broadcast_div(&x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(EPS, f64::MAX)?) };
    let cos = (unit(student)? * unit(&teacher.detach())?)?.sum(1)?;
    (1.0 - cos)?.mean_all()
}

/// Which student tap learns from which FCN-ResNet50 map.
pub const FCN_PAIRS: [(&str, &str); 3] = [("low", "layer1"), ("mid", "layer2"), ("high", "layer4")];

/// The tap pairs for a teacher: FCN's ResNet stages, or the same names when the teacher is
/// itself a student-type network (distilling a larger student into a smaller one).
pub fn pairs_for(teacher: &[FeatureTap]) -> [(&'static str, &'static str); 3] {
    if teacher.iter().any(|t| t.name == "layer1") {
        FCN_PAIRS
    } else {
        [("low", "low"), ("mid", "mid"), ("high", "high")]
    }
}

/// The learned 1×1 adapters (`adapters.<tap>.{weight,bias}`) and the feature loss.
#[derive(Clone, Debug)]
pub struct FeatureDistiller {
    adapters: Vec<(&'static str, &'static str, Conv2d)>,
}

impl FeatureDistiller {
    pub fn new(vb: VarBuilder, student: &[FeatureTap], teacher: &[FeatureTap]) -> Result<Self> {
        let mut adapters = Vec::new();
        for (s_name, t_name) in pairs_for(teacher) {
            let s = student.iter().find(|t| t.name == s_name);
            let t = teacher.iter().find(|t| t.name == t_name);
            let (Some(s), Some(t)) = (s, t) else {
                candle_core::bail!("feature distillation needs student tap `{s_name}` and teacher map `{t_name}`")
            };
            let conv = Conv2d::new(
                vb.pp("adapters").pp(s_name),
                s.channels,
                t.channels,
                1,
                ConvOpts { bias: true, ..Default::default() },
            )?;
            adapters.push((s_name, t_name, conv));
        }
        Ok(Self { adapters })
    }

    /// The teacher maps the pairs read.
    pub fn teacher_maps(&self) -> Vec<&'static str> {
        self.adapters.iter().map(|(_, t, _)| *t).collect()
    }

    /// Mean over the pairs of the cosine loss.
    pub fn loss(&self, student: &SegOutput, teacher_features: &[(&'static str, Tensor)]) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (s_name, t_name, adapter) in &self.adapters {
            let s = student
                .feature(s_name)
                .ok_or_else(|| candle_core::Error::Msg(format!("student has no `{s_name}` features")))?;
            let t = teacher_features
                .iter()
                .find(|(n, _)| n == t_name)
                .map(|(_, t)| t)
                .ok_or_else(|| candle_core::Error::Msg(format!("teacher has no `{t_name}` features")))?;
            let (_, _, h, w) = s.dims4()?;
            let t = resize_bilinear(&t.detach(), h, w)?;
            let l = cosine_loss(&adapter.forward(s)?, &t)?;
            total = Some(match total {
                Some(acc) => (acc + l)?,
                None => l,
            });
        }
        match total {
            Some(t) => t / self.adapters.len() as f64,
            None => candle_core::bail!("no feature pairs"),
        }
    }
}
