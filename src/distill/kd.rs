//! Response-based distillation on NCHW logits, per pixel over the class dimension, with the
//! teacher's distribution p_t = softmax(z_t/τ) and the student's log p_s = log_softmax(z_s/τ):
//!
//! * [`KdForm::SoftCrossEntropy`] — the lab's H(σ(z_t/τ), σ(z_s/τ)) = −Σ p_t log p_s (no τ²);
//! * [`KdForm::KlDivergence`] — Hinton's τ²·KL(p_t ‖ p_s) = τ²·Σ p_t (log p_t − log p_s).
//!
//! Averaged over every pixel, or over labelled pixels only. The teacher receives no gradient.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::model::ops::cpu_f32;
use serde::{Deserialize, Serialize};

use super::Target;
use super::softmax::{self, ClassPlanes};

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
    if student.device().is_cpu()
        && student.dtype() == DType::F32
        && teacher.dtype() == DType::F32
        && student.rank() == 4
    {
        let op = FusedKd { tau: tau as f32, form, lse: Arc::default() };
        return student.contiguous()?.apply_op2(&teacher.detach().contiguous()?, op);
    }
    if super::gpu::supports(student) && teacher.dtype() == DType::F32 {
        return super::gpu::kd_per_pixel(student, teacher, tau as f32, form == KdForm::KlDivergence);
    }
    per_pixel_composed(student, teacher, tau, form)
}

/// The same term from tensor operations (any device and dtype).
fn per_pixel_composed(student: &Tensor, teacher: &Tensor, tau: f64, form: KdForm) -> Result<Tensor> {
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
        (PixelAverage::Labelled, Some(t)) if t.num_distilled > 0 => {
            (per * &t.distilled)?.sum_all()? / t.num_distilled as f64
        }
        (PixelAverage::Labelled, Some(_)) => (per * 0.0)?.sum_all(),
        (PixelAverage::Labelled, None) => {
            candle_core::bail!("KD over labelled pixels needs the target")
        }
    }
}

/// The per-pixel KD term in one pass over both logit tensors (and one more for its gradient),
/// instead of the dozen tensor operations of two log-softmaxes and their backward passes.
struct FusedKd {
    tau: f32,
    form: KdForm,
    /// log Σ e^(z/τ) per pixel of the student and the teacher, kept for the backward pass.
    lse: Arc<Mutex<(Vec<f32>, Vec<f32>)>>,
}

impl CustomOp2 for FusedKd {
    fn name(&self) -> &'static str {
        "kd-per-pixel"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        if l2.shape() != l1.shape() {
            bail!("KD: student {:?} vs teacher {:?}", l1.shape(), l2.shape());
        }
        let (zs, zt) = (cpu_f32(s1, l1, "KD student logits")?, cpu_f32(s2, l2, "KD teacher logits")?);
        let (hw, tau, form) = (h * w, self.tau, self.form);
        let inv_tau = 1.0 / tau;
        let mut out = vec![0f32; n * hw];
        let (mut lse_s, mut lse_t) = (vec![0f32; n * hw], vec![0f32; n * hw]);
        out.par_chunks_mut(w).zip(lse_s.par_chunks_mut(w).zip(lse_t.par_chunks_mut(w))).enumerate().for_each(
            |(row, (o, (ls, lt)))| {
                let (b, off) = (row / h, (row % h) * w);
                let (ps, pt) = (ClassPlanes::of_image(zs, b, c, hw), ClassPlanes::of_image(zt, b, c, hw));
                let mut max = vec![0f32; w];
                ps.row_lse(off, tau, &mut max, ls);
                pt.row_lse(off, tau, &mut max, lt);
                for k in 0..c {
                    for (i, (v, (&a, &t))) in
                        o.iter_mut().zip(ps.row(k, off, w).iter().zip(pt.row(k, off, w))).enumerate()
                    {
                        let log_pt = t * inv_tau - lt[i];
                        let log_ps = a * inv_tau - ls[i];
                        *v += match form {
                            KdForm::SoftCrossEntropy => -softmax::exp(log_pt) * log_ps,
                            KdForm::KlDivergence => tau * tau * softmax::exp(log_pt) * (log_pt - log_ps),
                        };
                    }
                }
            },
        );
        if let Ok(mut saved) = self.lse.lock() {
            *saved = (lse_s, lse_t);
        }
        Ok((CpuStorage::F32(out), Shape::from((n, h, w))))
    }

    fn bwd(
        &self,
        student: &Tensor,
        teacher: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (lse_s, lse_t) = self.lse.lock().map(|l| l.clone()).unwrap_or_default();
        let op = FusedKdGrad {
            tau: self.tau,
            form: self.form,
            teacher: teacher.clone(),
            lse_s,
            lse_t,
            grad: grad.contiguous()?,
        };
        Ok((Some(student.apply_op1_no_bwd(&op)?), None))
    }
}

/// ∂/∂z_s of the per-pixel term times its upstream gradient g: g·(p_s − p_t)/τ (soft CE, as
/// Σp_t = 1), τ²·g·(p_s − p_t)/τ (KL).
struct FusedKdGrad {
    tau: f32,
    form: KdForm,
    teacher: Tensor,
    lse_s: Vec<f32>,
    lse_t: Vec<f32>,
    grad: Tensor,
}

impl candle_core::CustomOp1 for FusedKdGrad {
    fn name(&self) -> &'static str {
        "kd-per-pixel-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let zs = cpu_f32(s, l, "KD student logits")?;
        let (t_storage, t_layout) = self.teacher.storage_and_layout();
        let (g_storage, g_layout) = self.grad.storage_and_layout();
        let (candle_core::Storage::Cpu(ts), candle_core::Storage::Cpu(gs)) = (&*t_storage, &*g_storage) else {
            bail!("KD gradient: tensors must be on the CPU")
        };
        let (zt, g) = (cpu_f32(ts, t_layout, "KD teacher logits")?, cpu_f32(gs, g_layout, "KD gradient")?);
        let hw = h * w;
        if self.lse_s.len() != n * hw || self.lse_t.len() != n * hw || g.len() != n * hw {
            bail!("KD backward without the forward pass's values");
        }
        let inv_tau = 1.0 / self.tau;
        let scale = match self.form {
            KdForm::SoftCrossEntropy => inv_tau,
            KdForm::KlDivergence => self.tau,
        };
        let mut out = vec![0f32; zs.len()];
        // Parallel over images; within an image, rows of pixels.
        out.par_chunks_mut(c * hw).enumerate().for_each(|(b, o)| {
            let (ps, pt) = (ClassPlanes::of_image(zs, b, c, hw), ClassPlanes::of_image(zt, b, c, hw));
            for y in 0..h {
                let (off, p0) = (y * w, b * hw + y * w);
                let (ls, lt, g) = (&self.lse_s[p0..p0 + w], &self.lse_t[p0..p0 + w], &g[p0..p0 + w]);
                for k in 0..c {
                    let (a, t) = (ps.row(k, off, w), pt.row(k, off, w));
                    let dst = &mut o[k * hw + off..k * hw + off + w];
                    for i in 0..w {
                        let p_s = softmax::exp(a[i] * inv_tau - ls[i]);
                        let p_t = softmax::exp(t[i] * inv_tau - lt[i]);
                        dst[i] = g[i] * scale * (p_s - p_t);
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::testing::{max_rel_diff, mixed_gradients};
    use candle_core::{Device, Var};

    #[test]
    fn fused_term_and_gradient_match_the_composed_formula() {
        let dev = Device::Cpu;
        for form in [KdForm::SoftCrossEntropy, KdForm::KlDivergence] {
            let s = Var::from_tensor(&Tensor::randn(0f32, 3.0, (2, 5, 4, 7), &dev).unwrap()).unwrap();
            let t = Tensor::randn(0f32, 3.0, (2, 5, 4, 7), &dev).unwrap();
            let fused = per_pixel(&s, &t, 4.0, form).unwrap();
            let composed = per_pixel_composed(&s, &t, 4.0, form).unwrap();
            assert!(max_rel_diff(&fused, &composed) < 1e-5, "{form:?} forward");
            let [(g1, g2)] = mixed_gradients(&fused, &composed, [&s]);
            let d = max_rel_diff(&g1, &g2);
            assert!(d < 1e-4, "{form:?} gradient: {d}");
        }
    }
}
