//! Feature-based distillation: 1 − cosine similarity per pixel between a student feature map
//! (projected by a learned 1×1 adapter to the teacher's channels) and the teacher's map, resized
//! bilinearly to the student's resolution (the teacher's stride-8 maps meet stride-4/8/16 student
//! taps). Pairs: student `low` ↔ teacher `layer1`, `mid` ↔ `layer2`, `high` ↔ `layer4` (or the same
//! tap names when the teacher is a student-type network).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module as _, Result, Shape, Tensor, bail};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::model::layers::{Conv2d, ConvOpts};
use crate::model::ops::{cpu_f32, resize_bilinear};
use crate::model::{FeatureTap, SegOutput};

/// PyTorch's `F.cosine_similarity` eps.
const EPS: f64 = 1e-8;

/// Mean over (B, H, W) of 1 − cos(student[b,:,h,w], teacher[b,:,h,w]); shapes must match.
/// Each vector is divided by max(‖v‖, ε) first, as `F.cosine_similarity` does.
pub fn cosine_loss(student: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    if student.shape() != teacher.shape() {
        candle_core::bail!("cosine loss: student {:?} vs teacher {:?}", student.shape(), teacher.shape());
    }
    let cos = if student.device().is_cpu() && student.dtype() == DType::F32 && teacher.dtype() == DType::F32 {
        let op = FusedCosine { saved: Arc::default() };
        student.contiguous()?.apply_op2(&teacher.detach().contiguous()?, op)?
    } else if super::gpu::supports(student) && teacher.dtype() == DType::F32 {
        super::gpu::cosine_per_pixel(student, teacher, EPS as f32)?
    } else {
        cosine_composed(student, teacher)?
    };
    (1.0 - cos)?.mean_all()
}

/// cos per pixel from tensor operations (any device and dtype), (B, H, W).
fn cosine_composed(student: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    let unit =
        |x: &Tensor| -> Result<Tensor> { x.broadcast_div(&x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(EPS, f64::MAX)?) };
    (unit(student)? * unit(&teacher.detach())?)?.sum(1)
}

/// Per pixel of the maps: the clamped norms and the cosine, kept by the forward pass.
#[derive(Clone, Debug, Default)]
struct CosineParts {
    norm_s: Vec<f32>,
    norm_t: Vec<f32>,
    cos: Vec<f32>,
}

/// cos per pixel in one pass over both maps (and one more for the student's gradient), instead of
/// two normalisations, a product and a sum whose reductions run across the channel planes (the
/// maps are up to 2,048 channels deep).
struct FusedCosine {
    saved: Arc<Mutex<CosineParts>>,
}

/// Σ s², Σ t², Σ s·t over channels for the pixels of one row (`off` into each plane).
fn row_sums(s: &[f32], t: &[f32], c: usize, hw: usize, off: usize, [ss, tt, st]: [&mut [f32]; 3]) {
    let w = ss.len();
    for k in 0..c {
        let r = k * hw + off..k * hw + off + w;
        for (i, (&a, &b)) in s[r.clone()].iter().zip(&t[r]).enumerate() {
            ss[i] += a * a;
            tt[i] += b * b;
            st[i] += a * b;
        }
    }
}

impl CustomOp2 for FusedCosine {
    fn name(&self) -> &'static str {
        "cosine-per-pixel"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        if l2.shape() != l1.shape() {
            bail!("cosine loss: student {:?} vs teacher {:?}", l1.shape(), l2.shape());
        }
        let (s, t) = (cpu_f32(s1, l1, "student features")?, cpu_f32(s2, l2, "teacher features")?);
        let hw = h * w;
        let mut parts = CosineParts { norm_s: vec![0.0; n * hw], norm_t: vec![0.0; n * hw], cos: vec![0.0; n * hw] };
        let rows = parts.norm_s.par_chunks_mut(w).zip(parts.norm_t.par_chunks_mut(w)).zip(parts.cos.par_chunks_mut(w));
        rows.enumerate().for_each(|(row, ((ns, nt), cos))| {
            let (b, off) = (row / h, (row % h) * w);
            let img = b * c * hw..(b + 1) * c * hw;
            let mut st = vec![0f32; w];
            row_sums(&s[img.clone()], &t[img], c, hw, off, [&mut *ns, &mut *nt, &mut st]);
            for i in 0..w {
                ns[i] = ns[i].sqrt().max(EPS as f32);
                nt[i] = nt[i].sqrt().max(EPS as f32);
                cos[i] = st[i] / (ns[i] * nt[i]);
            }
        });
        let cos = parts.cos.clone();
        if let Ok(mut saved) = self.saved.lock() {
            *saved = parts;
        }
        Ok((CpuStorage::F32(cos), Shape::from((n, h, w))))
    }

    fn bwd(
        &self,
        student: &Tensor,
        teacher: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let parts = self.saved.lock().map(|p| p.clone()).unwrap_or_default();
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let gs = student.apply_op2_no_bwd(teacher, &FusedCosineGrad { parts, grad: g })?;
        Ok((Some(gs), None))
    }
}

/// ∂cos/∂s = (t/‖t‖ − cos·s/‖s‖)/‖s‖ per pixel (t/(ε‖t‖) where ‖s‖ ≤ ε, as the clamp makes the
/// norm a constant there), times the upstream gradient.
struct FusedCosineGrad {
    parts: CosineParts,
    grad: Vec<f32>,
}

impl CustomOp2 for FusedCosineGrad {
    fn name(&self) -> &'static str {
        "cosine-per-pixel-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let (s, t) = (cpu_f32(s1, l1, "student features")?, cpu_f32(s2, l2, "teacher features")?);
        let (hw, p) = (h * w, &self.parts);
        if p.cos.len() != n * hw || self.grad.len() != n * hw {
            bail!("cosine loss backward without the forward pass's values");
        }
        let mut out = vec![0f32; s.len()];
        out.par_chunks_mut(c * hw).enumerate().for_each(|(b, o)| {
            let img = b * c * hw..(b + 1) * c * hw;
            let (s, t) = (&s[img.clone()], &t[img]);
            let px = b * hw..(b + 1) * hw;
            let (ns, nt, cos, g) = (&p.norm_s[px.clone()], &p.norm_t[px.clone()], &p.cos[px.clone()], &self.grad[px]);
            // Per pixel: ∂ = a·t − b·s with a = g/(‖s‖‖t‖), b = g·cos/‖s‖² (0 where ‖s‖ is clamped).
            let a: Vec<f32> = (0..hw).map(|i| g[i] / (ns[i] * nt[i])).collect();
            let bcoef: Vec<f32> =
                (0..hw).map(|i| if ns[i] > EPS as f32 { g[i] * cos[i] / (ns[i] * ns[i]) } else { 0.0 }).collect();
            for (k, dst) in o.chunks_mut(hw).enumerate() {
                let (sk, tk) = (&s[k * hw..(k + 1) * hw], &t[k * hw..(k + 1) * hw]);
                for i in 0..hw {
                    dst[i] = a[i] * tk[i] - bcoef[i] * sk[i];
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::testing::{max_rel_diff, mixed_gradients};
    use candle_core::{Device, Var};

    #[test]
    fn fused_cosine_and_its_gradient_match_the_composed_formula() {
        let dev = Device::Cpu;
        let dims = (2, 6, 3, 5);
        // Pixel (0, ·, 1, 2) of the student has a norm below ε: the clamp's branch. Its gradient is
        // ~10⁸ times the others', so the two kinds of pixels are compared separately.
        let clamped = Tensor::zeros(dims, DType::F32, &dev)
            .unwrap()
            .slice_assign(&[0..1, 0..6, 1..2, 2..3], &Tensor::ones((1, 6, 1, 1), DType::F32, &dev).unwrap())
            .unwrap();
        let regular = (1.0 - &clamped).unwrap();
        let s = Tensor::randn(0f32, 1.0, dims, &dev).unwrap();
        let s = Var::from_tensor(&((&s * &regular).unwrap() + (&s * 1e-9).unwrap() * &clamped).unwrap()).unwrap();
        let t = Tensor::randn(0f32, 2.0, dims, &dev).unwrap();
        let fused = s.as_tensor().contiguous().unwrap().apply_op2(&t, FusedCosine { saved: Arc::default() }).unwrap();
        let composed = cosine_composed(&s, &t).unwrap();
        assert!(max_rel_diff(&fused, &composed) < 1e-5, "forward");
        let [(g1, g2)] = mixed_gradients(&fused, &composed, [&s]);
        for (what, mask) in [("regular pixels", &regular), ("clamped pixel", &clamped)] {
            let d = max_rel_diff(&(&g1 * mask).unwrap(), &(&g2 * mask).unwrap());
            assert!(d < 1e-4, "{what} gradient: {d}");
        }
    }
}
