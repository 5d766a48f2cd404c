//! Losses: cross-entropy on labels, response-based KD on logits, feature-based KD on feature maps,
//! and their weighted combination α·CE + β·KD + γ·feat.

pub mod ce;
pub mod cirkd_region;
pub mod feature;
mod gpu;
pub mod kd;
pub mod loss_terms;
mod softmax;
mod target;
pub mod teacher_cache;
pub mod terms;

use candle_core::{DType, Result, Tensor};
use serde::{Deserialize, Serialize};

pub use feature::FeatureDistiller;
pub use kd::{KdForm, PixelAverage};
pub use target::Target;

/// Which distillation signals a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DistillMode {
    /// Labels only (α·CE).
    None,
    /// α·CE + β·KD on the logits.
    Response,
    /// α·CE + γ·feature KD.
    Feature,
    /// α·CE + β·KD + γ·feature KD.
    Combined,
}

impl DistillMode {
    pub fn uses_logits(self) -> bool {
        matches!(self, Self::Response | Self::Combined)
    }

    pub fn uses_features(self) -> bool {
        matches!(self, Self::Feature | Self::Combined)
    }

    pub fn needs_teacher(self) -> bool {
        self != Self::None
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Response => "response",
            Self::Feature => "feature",
            Self::Combined => "combined",
        }
    }
}

/// Loss weights and KD options. Defaults: α = 1, β = 0.5, γ = 0.3, τ = 4, the lab's soft
/// cross-entropy averaged over all pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LossConfig {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub tau: f64,
    pub kd_form: KdForm,
    pub kd_average: PixelAverage,
    /// Weight of the auxiliary head's cross-entropy, for models that have one (FCN's layer3 head;
    /// torchvision's reference recipe: 0.5).
    pub aux_weight: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            beta: 0.5,
            gamma: 0.3,
            tau: 4.0,
            kd_form: KdForm::SoftCrossEntropy,
            kd_average: PixelAverage::All,
            aux_weight: 0.5,
        }
    }
}

/// The total loss (for backward) and its parts (for logging, already weighted out: raw values).
pub struct LossParts {
    pub total: Tensor,
    pub ce: Tensor,
    pub kd: Option<Tensor>,
    pub feature: Option<Tensor>,
    /// With a term list: every term's unweighted value, in the list's order.
    pub terms: Vec<(loss_terms::TermKind, Tensor)>,
}

/// What the teacher said about a batch (detached).
pub struct TeacherSignal<'a> {
    /// (B, classes, H, W) at the student's output resolution.
    pub logits: Option<&'a Tensor>,
    pub features: &'a [(&'static str, Tensor)],
}

/// fp32 copies of a teacher signal's logits and features, when any of them is in another
/// precision (autocast); `None` when the signal is fp32 already (or absent).
#[allow(clippy::type_complexity)]
fn teacher_f32_copies(
    teacher: Option<&TeacherSignal>,
) -> Result<Option<(Option<Tensor>, Vec<(&'static str, Tensor)>)>> {
    match teacher {
        Some(t)
            if t.logits.is_some_and(|l| l.dtype() != DType::F32)
                || t.features.iter().any(|(_, f)| f.dtype() != DType::F32) =>
        {
            let logits = t.logits.map(|l| l.to_dtype(DType::F32)).transpose()?;
            let features =
                t.features.iter().map(|(n, f)| Ok((*n, f.to_dtype(DType::F32)?))).collect::<Result<Vec<_>>>()?;
            Ok(Some((logits, features)))
        }
        _ => Ok(None),
    }
}

/// α·CE + β·KD + γ·feat for `mode`.
pub fn total_loss(
    mode: DistillMode,
    cfg: &LossConfig,
    student: &crate::model::SegOutput,
    teacher: Option<&TeacherSignal>,
    target: &Target,
    distiller: Option<&FeatureDistiller>,
) -> Result<LossParts> {
    // Autocast (`--precision bf16`): the networks ran in bf16; every loss, its soft-max and its
    // reductions run in fp32, on fp32 copies of what they read.
    let student = &student.to_dtype(DType::F32)?;
    let teacher_f32 = teacher_f32_copies(teacher)?;
    let teacher_cast =
        teacher_f32.as_ref().map(|(logits, features)| TeacherSignal { logits: logits.as_ref(), features });
    let teacher = teacher_cast.as_ref().or(teacher);
    let ce = ce::cross_entropy(&student.logits, target)?;
    let mut total = (&ce * cfg.alpha)?;
    if let Some(aux) = &student.aux
        && cfg.aux_weight > 0.0
    {
        // Supervision only: distillation reads the main head.
        total = (total + (ce::cross_entropy(aux, target)? * (cfg.alpha * cfg.aux_weight))?)?;
    }
    let mut kd = None;
    let mut feature = None;
    if mode.uses_logits() {
        let t = teacher
            .and_then(|t| t.logits)
            .ok_or_else(|| candle_core::Error::Msg("response KD without teacher logits".into()))?;
        let l = kd::response_kd(&student.logits, t, cfg.tau, cfg.kd_form, cfg.kd_average, Some(target))?;
        total = (total + (&l * cfg.beta)?)?;
        kd = Some(l);
    }
    if mode.uses_features() {
        let (Some(t), Some(d)) = (teacher, distiller) else {
            candle_core::bail!("feature KD without teacher features or adapters")
        };
        let l = d.loss(student, t.features)?;
        total = (total + (&l * cfg.gamma)?)?;
        feature = Some(l);
    }
    Ok(LossParts { total, ce, kd, feature, terms: Vec::new() })
}

/// Σ weight·term over a term list (`--loss`), with the same fp32 treatment as [`total_loss`].
/// `ce` is the cross-entropy term's value (computed for the log when the list has none), `kd` the
/// `response` or `kd` term's, `feature` the `feature` term's.
pub fn terms_loss(
    terms: &loss_terms::TermsDistiller,
    cfg: &LossConfig,
    student: &crate::model::SegOutput,
    teacher: Option<&TeacherSignal>,
    target: &Target,
) -> Result<LossParts> {
    let student = &student.to_dtype(DType::F32)?;
    let teacher_f32 = teacher_f32_copies(teacher)?;
    let teacher_cast =
        teacher_f32.as_ref().map(|(logits, features)| TeacherSignal { logits: logits.as_ref(), features });
    let teacher = teacher_cast.as_ref().or(teacher);
    let (total, parts) = terms.loss(cfg, student, teacher, target)?;
    use loss_terms::TermKind;
    let find = |k: TermKind| parts.iter().find(|(p, _)| *p == k).map(|(_, v)| v.clone());
    let ce = match find(TermKind::Ce) {
        Some(ce) => ce,
        None => ce::cross_entropy(&student.logits.detach(), target)?,
    };
    let kd = find(TermKind::Response).or_else(|| find(TermKind::Kd));
    let feature = find(TermKind::Feature);
    Ok(LossParts { total, ce, kd, feature, terms: parts })
}
