//! Response-based distillation on NCHW logits, per pixel over the class dimension, with the
//! teacher's distribution p_t = softmax(z_t/τ) and the student's log p_s = log_softmax(z_s/τ):
//!
//! * [`KdForm::SoftCrossEntropy`] — the lab's H(σ(z_t/τ), σ(z_s/τ)) = −Σ p_t log p_s (no τ²);
//! * [`KdForm::KlDivergence`] — Hinton's τ²·KL(p_t ‖ p_s) = τ²·Σ p_t (log p_t − log p_s).
//!
//! Averaged over every pixel, or over labelled pixels only. The teacher receives no gradient.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::model::ops::cpu_f32;
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
    if student.device().is_cpu()
        && student.dtype() == DType::F32
        && teacher.dtype() == DType::F32
        && student.rank() == 4
    {
        return student.contiguous()?.apply_op2(&teacher.detach().contiguous()?, FusedKd { tau: tau as f32, form });
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
        (PixelAverage::Labelled, Some(t)) if t.num_valid > 0 => (per * &t.valid)?.sum_all()? / t.num_valid as f64,
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
}

/// Per pixel of one row (W pixels, classes C planes apart): log-sum-exp of `z/τ`.
pub(super) fn row_lse(
    z: &[f32],
    c: usize,
    hw: usize,
    off: usize,
    w: usize,
    tau: f32,
    max: &mut [f32],
    lse: &mut [f32],
) {
    max.iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
    for k in 0..c {
        for (m, &v) in max.iter_mut().zip(&z[k * hw + off..k * hw + off + w]) {
            *m = m.max(v / tau);
        }
    }
    lse.iter_mut().for_each(|s| *s = 0.0);
    for k in 0..c {
        for ((s, &v), &m) in lse.iter_mut().zip(&z[k * hw + off..k * hw + off + w]).zip(max.iter()) {
            *s += (v / tau - m).exp();
        }
    }
    for (s, &m) in lse.iter_mut().zip(max.iter()) {
        *s = s.ln() + m;
    }
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
        let mut out = vec![0f32; n * hw];
        out.par_chunks_mut(w).enumerate().for_each(|(row, o)| {
            let (b, y) = (row / h, row % h);
            let (zs, zt) = (&zs[b * c * hw..(b + 1) * c * hw], &zt[b * c * hw..(b + 1) * c * hw]);
            let off = y * w;
            let (mut m, mut lse_s, mut lse_t) = (vec![0f32; w], vec![0f32; w], vec![0f32; w]);
            row_lse(zs, c, hw, off, w, tau, &mut m, &mut lse_s);
            row_lse(zt, c, hw, off, w, tau, &mut m, &mut lse_t);
            for k in 0..c {
                let (a, t) = (&zs[k * hw + off..k * hw + off + w], &zt[k * hw + off..k * hw + off + w]);
                for (i, v) in o.iter_mut().enumerate() {
                    let log_pt = t[i] / tau - lse_t[i];
                    let log_ps = a[i] / tau - lse_s[i];
                    *v += match form {
                        KdForm::SoftCrossEntropy => -log_pt.exp() * log_ps,
                        KdForm::KlDivergence => tau * tau * log_pt.exp() * (log_pt - log_ps),
                    };
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, h, w))))
    }

    fn bwd(
        &self,
        student: &Tensor,
        teacher: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = FusedKdGrad { tau: self.tau, form: self.form, teacher: teacher.clone(), grad: grad.contiguous()? };
        Ok((Some(student.apply_op1_no_bwd(&op)?), None))
    }
}

/// ∂/∂z_s of the per-pixel term times its upstream gradient g: g·(p_s − p_t)/τ (soft CE, as
/// Σp_t = 1), τ²·g·(p_s − p_t)/τ (KL).
struct FusedKdGrad {
    tau: f32,
    form: KdForm,
    teacher: Tensor,
    grad: Tensor,
}

impl candle_core::CustomOp1 for FusedKdGrad {
    fn name(&self) -> &'static str {
        "kd-per-pixel-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = l.shape().dims4()?;
        let zs = cpu_f32(s, l, "KD student logits")?;
        let (t_storage, t_layout) = self.teacher.storage_and_layout();
        let (g_storage, g_layout) = self.grad.storage_and_layout();
        let (candle_core::Storage::Cpu(ts), candle_core::Storage::Cpu(gs)) = (&*t_storage, &*g_storage) else {
            bail!("KD gradient: tensors must be on the CPU")
        };
        let (zt, g) = (cpu_f32(ts, t_layout, "KD teacher logits")?, cpu_f32(gs, g_layout, "KD gradient")?);
        let (hw, tau) = (h * w, self.tau);
        let scale = match self.form {
            KdForm::SoftCrossEntropy => 1.0 / tau,
            KdForm::KlDivergence => tau,
        };
        let mut out = vec![0f32; zs.len()];
        // Parallel over images; within an image, rows of pixels.
        out.par_chunks_mut(c * hw).enumerate().for_each(|(b, o)| {
            let (zs, zt) = (&zs[b * c * hw..(b + 1) * c * hw], &zt[b * c * hw..(b + 1) * c * hw]);
            let g = &g[b * hw..(b + 1) * hw];
            let (mut m, mut lse_s, mut lse_t) = (vec![0f32; w], vec![0f32; w], vec![0f32; w]);
            for y in 0..h {
                let off = y * w;
                row_lse(zs, c, hw, off, w, tau, &mut m, &mut lse_s);
                row_lse(zt, c, hw, off, w, tau, &mut m, &mut lse_t);
                for k in 0..c {
                    let r = k * hw + off..k * hw + off + w;
                    let (a, t, dst) = (&zs[r.clone()], &zt[r.clone()], &mut o[r]);
                    for i in 0..w {
                        let ps = (a[i] / tau - lse_s[i]).exp();
                        let pt = (t[i] / tau - lse_t[i]).exp();
                        dst[i] = g[off + i] * scale * (ps - pt);
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
    use candle_core::{Device, Var};

    #[test]
    fn fused_term_and_gradient_match_the_composed_formula() {
        let dev = Device::Cpu;
        for form in [KdForm::SoftCrossEntropy, KdForm::KlDivergence] {
            let s = Var::from_tensor(&Tensor::randn(0f32, 3.0, (2, 5, 4, 7), &dev).unwrap()).unwrap();
            let t = Tensor::randn(0f32, 3.0, (2, 5, 4, 7), &dev).unwrap();
            let fused = per_pixel(&s, &t, 4.0, form).unwrap();
            let composed = per_pixel_composed(&s, &t, 4.0, form).unwrap();
            let diff = |a: &Tensor, b: &Tensor| {
                let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
                (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() / scale
            };
            assert!(diff(&fused, &composed) < 1e-5, "{form:?} forward");
            let mix = Tensor::randn(0f32, 1.0, fused.shape(), &dev).unwrap();
            let g1 = (&fused * &mix).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&composed * &mix).unwrap().sum_all().unwrap().backward().unwrap();
            let d = diff(g1.get(&s).unwrap(), g2.get(&s).unwrap());
            assert!(d < 1e-4, "{form:?} gradient: {d}");
        }
    }
}
