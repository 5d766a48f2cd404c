//! The field's distillation methods as loss terms, each a function of the student's tensor (logits
//! or a feature map, after its adapter where it has one) and the teacher's (detached, already at
//! the student's spatial size). Every term is composed from candle operations, so candle's
//! autograd gives its gradient; `tests/kd_parity.rs` checks value and gradient against PyTorch
//! (`bench/make_kd_fixtures.py`).
//!
//! | term | matches | reference |
//! |---|---|---|
//! | [`kd`] | per-pixel class distributions, τ²·KL, labelled pixels | Hinton et al. 2015 |
//! | [`cwd`] | per-channel spatial distributions, τ²·KL / (N·C) | Shu et al., ICCV 2021 |
//! | [`pairwise`] | node-to-node cosine similarity after max pooling | Liu et al., CVPR 2019 |
//! | [`ifvd`] | cosine of each pixel to its class prototype | Wang et al., ECCV 2020 |
//! | [`cirkd_pixel`] | pixel-to-pixel similarity across the images of a batch | Yang et al., CVPR 2022 |
//! | [`cirkd_region`](super::cirkd_region) | pixel-to-region similarity against a memory of class regions | Yang et al., CVPR 2022 |
//! | [`attention_transfer`] | normalised spatial attention Σ_c f² | Zagoruyko & Komodakis, ICLR 2017 |
//! | [`fitnet`] | the (adapted) feature map itself, MSE | Romero et al., ICLR 2015 |
//! | [`dist`] | inter- and intra-class Pearson correlation | Huang et al., NeurIPS 2022 |

use candle_core::{D, DType, Result, Tensor, bail};
use candle_nn::ops::{log_softmax, softmax};

use super::Target;
use super::kd::{self, KdForm, PixelAverage};
use crate::data::VOID;

fn same_shape(what: &str, s: &Tensor, t: &Tensor) -> Result<()> {
    if s.shape() != t.shape() {
        bail!("{what}: student {:?} vs teacher {:?}", s.shape(), t.shape());
    }
    Ok(())
}

/// Σ p_t·(log p_t − log p_s) over everything, from the two log-distributions.
fn kl_sum(log_pt: &Tensor, log_ps: &Tensor) -> Result<Tensor> {
    (log_pt.exp()? * (log_pt - log_ps)?)?.sum_all()
}

/// Hinton's τ²·KL(p_t ‖ p_s) per pixel over the classes, averaged over the labelled pixels only
/// (void pixels, label 255, take no part).
pub fn kd(student: &Tensor, teacher: &Tensor, tau: f64, target: &Target) -> Result<Tensor> {
    kd::response_kd(student, teacher, tau, KdForm::KlDivergence, PixelAverage::Labelled, Some(target))
}

/// Channel-wise distillation: each channel's map becomes a distribution over its H·W positions
/// (softmax at τ); τ²·Σ KL(teacher ‖ student) / (N·C), as CIRKD's `CriterionCWD` (channel norm,
/// KL) and mmrazor's `ChannelWiseDivergence`.
pub fn cwd(student: &Tensor, teacher: &Tensor, tau: f64) -> Result<Tensor> {
    same_shape("CWD", student, teacher)?;
    let (n, c, h, w) = student.dims4()?;
    let log_ps = log_softmax(&(student.reshape((n, c, h * w))? / tau)?, D::Minus1)?;
    let log_pt = log_softmax(&(teacher.detach().reshape((n, c, h * w))? / tau)?, D::Minus1)?;
    kl_sum(&log_pt, &log_ps)? * (tau * tau / (n * c) as f64)
}

/// Max pooling to a grid of nodes with windows of ⌊H·scale⌋ × ⌊W·scale⌋ and ceil mode (a partial
/// last window), as `nn.MaxPool2d(ceil_mode=True)`: (B, C, nodes). The first maximum of a window
/// takes the gradient, as PyTorch's CPU kernel does.
pub fn max_pool_nodes(x: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let kh = ((h as f64 * scale) as usize).max(1);
    let kw = ((w as f64 * scale) as usize).max(1);
    let (ph, pw) = (h.div_ceil(kh), w.div_ceil(kw));
    let host = x.detach().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut idx = Vec::with_capacity(b * c * ph * pw);
    for plane in host.chunks(h * w) {
        for py in 0..ph {
            for px in 0..pw {
                let mut best = (py * kh * w + px * kw, f32::NEG_INFINITY);
                'window: for y in py * kh..((py + 1) * kh).min(h) {
                    for xx in px * kw..((px + 1) * kw).min(w) {
                        let v = plane[y * w + xx];
                        if v > best.1 || v.is_nan() {
                            best = (y * w + xx, v);
                            if v.is_nan() {
                                break 'window;
                            }
                        }
                    }
                }
                idx.push(best.0 as u32);
            }
        }
    }
    let idx = Tensor::from_vec(idx, (b, c, ph * pw), x.device())?;
    x.reshape((b, c, h * w))?.contiguous()?.gather(&idx, 2)
}

/// Structured KD's pairwise term: both maps max-pooled to nodes ([`max_pool_nodes`]), each node
/// divided by its L2 norm (+1e-8, detached, as the reference code), the node-by-node similarity
/// matrices compared by squared error, Σ / (nodes²·B) (`CriterionPairWiseforWholeFeatAfterPool`).
pub fn pairwise(student: &Tensor, teacher: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, _, h, w) = student.dims4()?;
    let (_, _, th, tw) = teacher.dims4()?;
    if (h, w) != (th, tw) {
        bail!("pairwise: student {h}×{w} vs teacher {th}×{tw}");
    }
    let similarity = |f: &Tensor| -> Result<Tensor> {
        let norm = (f.sqr()?.sum_keepdim(1)?.sqrt()? + 1e-8)?.detach();
        let unit = f.broadcast_div(&norm)?;
        unit.transpose(1, 2)?.contiguous()?.matmul(&unit.contiguous()?)
    };
    let s = similarity(&max_pool_nodes(student, scale)?)?;
    let t = similarity(&max_pool_nodes(&teacher.detach(), scale)?)?;
    let nodes = s.dim(1)?;
    (t - s)?.sqr()?.sum_all()? / ((nodes * nodes * b) as f64)
}

/// Per pixel, cos(a, b) over the channels, each vector divided by max(‖v‖, 1e-8) as
/// `F.cosine_similarity`: (B, H·W) from (B, C, H·W).
fn cosine_per_pixel(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let unit =
        |x: &Tensor| -> Result<Tensor> { x.broadcast_div(&x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-8, f64::MAX)?) };
    (unit(a)? * unit(b)?)?.sum(1)
}

/// Labels (B, H, W) of a target, void as 255, resized to h×w by PyTorch's `mode="nearest"`
/// (source index ⌊dst·in/out⌋).
pub fn labels_nearest(target: &Target, h: usize, w: usize) -> Result<Vec<u8>> {
    let (b, lh, lw) = target.host.dims;
    let valid = target.valid.flatten_all()?.to_vec1::<f32>()?;
    let src = |dst: usize, input: usize, output: usize| -> usize {
        if input == output {
            dst
        } else {
            (((dst as f32) * (input as f32 / output as f32)).floor() as usize).min(input - 1)
        }
    };
    let mut out = Vec::with_capacity(b * h * w);
    for i in 0..b {
        for y in 0..h {
            for x in 0..w {
                let p = i * lh * lw + src(y, lh, h) * lw + src(x, lw, w);
                out.push(if valid[p] > 0.0 { target.host.indices[p] as u8 } else { VOID });
            }
        }
    }
    Ok(out)
}

/// Intra-class feature variation: per image, the prototype of each class is the mean feature
/// of its pixels (labels nearest-resized to the map); each pixel's cosine to its own class's
/// prototype (void pixels and classes ≥ `classes` keep their own feature: cosine 1) for the student
/// and the teacher; the MSE between the two maps (CIRKD's `CriterionIFV`).
pub fn ifvd(student: &Tensor, teacher: &Tensor, labels: &[u8], classes: usize) -> Result<Tensor> {
    let (b, _, h, w) = student.dims4()?;
    let (tb, _, th, tw) = teacher.dims4()?;
    if (b, h, w) != (tb, th, tw) || labels.len() != b * h * w {
        bail!("IFVD: student {:?}, teacher {:?}, {} labels", student.shape(), teacher.shape(), labels.len());
    }
    let hw = h * w;
    let (mut onehot, mut counts, mut own) = (vec![0f32; b * classes * hw], vec![0f32; b * classes], vec![1f32; b * hw]);
    for (p, &l) in labels.iter().enumerate() {
        let (i, q) = (p / hw, p % hw);
        if (l as usize) < classes {
            onehot[(i * classes + l as usize) * hw + q] = 1.0;
            counts[i * classes + l as usize] += 1.0;
            own[p] = 0.0;
        }
    }
    let dev = student.device();
    let m = Tensor::from_vec(onehot, (b, classes, hw), dev)?;
    let mt = m.transpose(1, 2)?.contiguous()?;
    let denom = (Tensor::from_vec(counts, (b, 1, classes), dev)? + 1e-6)?;
    let own = Tensor::from_vec(own, (b, 1, hw), dev)?;
    let cos_to_centre = |f: &Tensor| -> Result<Tensor> {
        let c = f.dim(1)?;
        let f = f.reshape((b, c, hw))?.contiguous()?;
        let protos = f.matmul(&mt)?.broadcast_div(&denom)?;
        let centre = (protos.matmul(&m)? + f.broadcast_mul(&own)?)?;
        cosine_per_pixel(&f, &centre)
    };
    let (s, t) = (cos_to_centre(student)?, cos_to_centre(&teacher.detach())?);
    (s - t)?.sqr()?.mean_all()
}

/// CIRKD's pixel-to-pixel relations across images: features L2-normalised per pixel
/// (`F.normalize`, ε = 1e-12); for every ordered pair of images (i, j) the similarity matrix of
/// image i's pixels to image j's, each row a distribution over j's pixels at τ; KL(teacher ‖
/// student) averaged over the rows ("batchmean") and over the B² pairs
/// (`CriterionMiniBatchCrossImagePair`). Channels may differ between the two.
pub fn cirkd_pixel(student: &Tensor, teacher: &Tensor, tau: f64) -> Result<Tensor> {
    let (b, _, h, w) = student.dims4()?;
    let (tb, _, th, tw) = teacher.dims4()?;
    if (b, h, w) != (tb, th, tw) {
        bail!("CIRKD: student {:?} vs teacher {:?}", student.shape(), teacher.shape());
    }
    let p = h * w;
    let relations = |f: &Tensor| -> Result<Tensor> {
        let c = f.dim(1)?;
        let f = f.broadcast_div(&f.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?)?;
        // (B·P, C) rows, one per pixel of the batch; their products, split per pair of images.
        let rows = f.reshape((b, c, p))?.transpose(1, 2)?.reshape((b * p, c))?.contiguous()?;
        let sim = rows.matmul(&rows.t()?.contiguous()?)?.reshape((b, p, b, p))?;
        log_softmax(&(sim / tau)?, D::Minus1)
    };
    let (log_ps, log_pt) = (relations(student)?, relations(&teacher.detach())?);
    kl_sum(&log_pt, &log_ps)? / ((p * b * b) as f64)
}

/// Attention transfer: a(f) = Σ_c f² (as the mean over channels), flattened and L2-normalised per
/// image; the mean over images and positions of (a_s − a_t)² (CIRKD's `CriterionAT`, p = 2).
pub fn attention_transfer(student: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    let (b, _, h, w) = student.dims4()?;
    let (tb, _, th, tw) = teacher.dims4()?;
    if (b, h, w) != (tb, th, tw) {
        bail!("AT: student {:?} vs teacher {:?}", student.shape(), teacher.shape());
    }
    let attention = |f: &Tensor| -> Result<Tensor> {
        let a = f.sqr()?.mean(1)?.reshape((b, h * w))?;
        a.broadcast_div(&a.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?)
    };
    (attention(student)? - attention(&teacher.detach())?)?.sqr()?.mean_all()
}

/// FitNets hints: the mean squared error between the student's adapted map and the teacher's.
pub fn fitnet(student_adapted: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    same_shape("FitNet", student_adapted, teacher)?;
    (student_adapted - teacher.detach())?.sqr()?.mean_all()
}

/// 1 − the mean over rows of the Pearson correlation between the rows of `a` and `b` (N, K):
/// each row centred, x·y / (‖x‖‖y‖ + 1e-8), as DIST's code.
fn one_minus_pearson(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let centre = |x: &Tensor| -> Result<Tensor> { x.broadcast_sub(&x.mean_keepdim(1)?) };
    let (a, b) = (centre(a)?, centre(b)?);
    let norm = |x: &Tensor| -> Result<Tensor> { x.sqr()?.sum(1)?.sqrt() };
    let p = ((&a * &b)?.sum(1)? / ((norm(&a)? * norm(&b)?)? + 1e-8)?)?;
    1.0 - p.mean_all()?
}

/// DIST: predictions softened at τ (softmax over classes); per pixel (B·H·W rows over the classes)
/// the inter-class relation 1 − Pearson, and per class (over every pixel of the batch) the
/// intra-class relation 1 − Pearson; τ²·(β·inter + γ·intra). The segmentation code of DIST uses
/// τ = 1, β = γ = 1 on all pixels.
pub fn dist(student: &Tensor, teacher: &Tensor, tau: f64, beta: f64, gamma: f64) -> Result<Tensor> {
    same_shape("DIST", student, teacher)?;
    let (_, c, _, _) = student.dims4()?;
    let rows = |z: &Tensor| -> Result<Tensor> {
        softmax(&(z / tau)?, 1)?.permute((0, 2, 3, 1))?.reshape(((), c))?.contiguous()
    };
    let (ys, yt) = (rows(student)?, rows(&teacher.detach())?);
    let inter = one_minus_pearson(&ys, &yt)?;
    let intra = one_minus_pearson(&ys.t()?.contiguous()?, &yt.t()?.contiguous()?)?;
    ((inter * beta)? + (intra * gamma)?)? * (tau * tau)
}
