//! Response-based distillation on NCHW logits, per pixel over the class dimension, with the
//! teacher's distribution p_t = softmax(z_t/τ) and the student's log p_s = log_softmax(z_s/τ):
//!
//! * [`KdForm::SoftCrossEntropy`] — the lab's H(σ(z_t/τ), σ(z_s/τ)) = −Σ p_t log p_s (no τ²);
//! * [`KdForm::KlDivergence`] — Hinton's τ²·KL(p_t ‖ p_s) = τ²·Σ p_t (log p_t − log p_s).
//!
//! Averaged over every pixel, or over labelled pixels only. The teacher receives no gradient.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::Target;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KdForm {
    /// −Σ p_t log p_s (the lab's formula).
    #[value(name = "soft-ce")]
    SoftCrossEntropy,
    /// τ²·KL(p_t ‖ p_s) (Hinton et al.).
    #[value(name = "kl")]
    KlDivergence,
}

/// Which pixels the per-pixel terms are averaged over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PixelAverage {
    All,
    /// Non-void pixels only (needs the target).
    Labelled,
}

/// The per-pixel KD term, (B, H, W).
fn per_pixel(student: &Tensor, teacher: &Tensor, tau: f64, form: KdForm) -> Result<Tensor> {
    let log_ps = candle_nn::ops::log_softmax(&(student / tau)?, 1)?;
    let log_pt = candle_nn::ops::log_softmax(&(teacher.detach() / tau)?, 1)?;
    let pt = log_pt.exp()?;
    match form {
        KdForm::SoftCrossEntropy => (pt * log_ps)?.sum(1)?.neg(),
        KdForm::KlDivergence => (pt * (log_pt - log_ps)?)?.sum(1)? * (tau * tau),
    }
}

/// Response-KD loss between student and teacher logits of the same shape.
pub fn response_kd(
    student: &Tensor,
    teacher: &Tensor,
    tau: f64,
    form: KdForm,
    average: PixelAverage,
    target: Option<&Target>,
) -> Result<Tensor> {
    if student.shape() != teacher.shape() {
        candle_core::bail!("KD: student logits {:?} vs teacher {:?}", student.shape(), teacher.shape());
    }
    let per = per_pixel(student, teacher, tau, form)?;
    match (average, target) {
        (PixelAverage::All, _) => per.mean_all(),
        (PixelAverage::Labelled, Some(t)) if t.num_valid > 0 => (per * &t.valid)?.sum_all()? / t.num_valid as f64,
        (PixelAverage::Labelled, Some(_)) => (per * 0.0)?.sum_all(),
        (PixelAverage::Labelled, None) => {
            candle_core::bail!("KD over labelled pixels needs the target")
        }
    }
}
