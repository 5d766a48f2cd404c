//! CIRKD's pixel-to-region relations (Yang et al., CVPR 2022, "Cross-Image Relational Knowledge
//! Distillation for Semantic Segmentation", §3.3): a memory of class regions, each the teacher's
//! mean embedding of one class in one image, and a loss that makes every labelled student pixel
//! relate to those regions as the teacher's pixel does.
//!
//! Following the reference code's `StudentSegContrast` (its region queue):
//! - features are L2-normalised per pixel (`F.normalize`, ε = 1e-12), the student's after its 1×1
//!   adapter to the teacher's channels;
//! - labels are nearest-resized to the feature grid; per image, for each class present (ascending),
//!   the normalised mean of the teacher's unit vectors over the class's pixels is written into that
//!   class's next slot (a ring of `slots` per class); the batch is written *before* the loss reads
//!   the memory, as in the reference;
//! - each labelled pixel's similarities to the regions, divided by τ (the similarity temperature,
//!   0.1), are a distribution over the regions; KL(teacher ‖ student) averaged over the labelled
//!   pixels (the KD temperature of the reference, 1, leaves nothing to scale).
//!
//! Where this differs from the reference, and why: the reference fills its queue with random unit
//! vectors and samples `1024 / classes + 1` slots per class out of 2000 each step; here the memory
//! starts empty and every written slot takes part, with `1024 / classes + 1` slots per class (the
//! same number of regions per step once full). Nothing is random, so a run is reproducible from
//! its checkpoint alone, and early steps do not distil relations to noise.
//!
//! Pixels without a label (void, and whole images without labels) neither write regions nor take
//! part as anchors: their class is unknown.

use candle_core::{D, Device, Result, Tensor, bail};
use candle_nn::ops::log_softmax;

use crate::data::VOID;

/// Slots per class by default: the reference's regions per step (1024) spread over the classes.
pub fn default_slots(classes: usize) -> usize {
    1024 / classes.max(1) + 1
}

/// The similarity temperature of both CIRKD relations (the reference's `contrast_temperature`).
pub const DEFAULT_TAU: f64 = 0.1;

/// Per class, a ring of region embeddings (unit vectors of the teacher's channels).
#[derive(Clone, Debug, PartialEq)]
pub struct RegionMemory {
    pub classes: usize,
    pub slots: usize,
    pub dim: usize,
    /// (classes, slots, dim), row-major; unwritten slots are zero.
    pub embeddings: Vec<f32>,
    /// Per class, the slot the next region goes to.
    pub next: Vec<usize>,
    /// Per class, how many slots hold a region (at most `slots`).
    pub filled: Vec<usize>,
}

impl RegionMemory {
    pub fn new(classes: usize, slots: usize, dim: usize) -> Self {
        Self {
            classes,
            slots,
            dim,
            embeddings: vec![0.0; classes * slots * dim],
            next: vec![0; classes],
            filled: vec![0; classes],
        }
    }

    /// Writes the batch's regions: `teacher` (B, dim, H, W) (raw; normalised here), `labels`
    /// B·H·W, nearest-resized to the grid (255 = void; labels ≥ `classes` are skipped too).
    pub fn enqueue(&mut self, teacher: &Tensor, labels: &[u8]) -> Result<()> {
        let (b, c, h, w) = teacher.dims4()?;
        let p = h * w;
        if c != self.dim || labels.len() != b * p {
            bail!(
                "CIRKD region memory: {c} channels (memory holds {}), {} labels for {b}×{h}×{w}",
                self.dim,
                labels.len()
            );
        }
        let host = teacher.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut unit = vec![0f64; c];
        for i in 0..b {
            let feats = &host[i * c * p..(i + 1) * c * p];
            let lab = &labels[i * p..(i + 1) * p];
            for class in 0..self.classes {
                let mut sum = vec![0f64; c];
                let mut count = 0usize;
                for (q, _) in lab.iter().enumerate().filter(|(_, l)| **l as usize == class && **l != VOID) {
                    for (k, u) in unit.iter_mut().enumerate() {
                        *u = feats[k * p + q] as f64;
                    }
                    let norm = unit.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                    for (s, u) in sum.iter_mut().zip(&unit) {
                        *s += u / norm;
                    }
                    count += 1;
                }
                if count == 0 {
                    continue;
                }
                let mean: Vec<f64> = sum.iter().map(|s| s / count as f64).collect();
                let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                let slot = self.next[class];
                let at = (class * self.slots + slot) * c;
                for (e, m) in self.embeddings[at..at + c].iter_mut().zip(&mean) {
                    *e = (m / norm) as f32;
                }
                self.next[class] = (slot + 1) % self.slots;
                self.filled[class] = (self.filled[class] + 1).min(self.slots);
            }
        }
        Ok(())
    }

    /// The written regions, (n, dim), class by class; `None` while the memory is empty.
    pub fn regions(&self, device: &Device) -> Result<Option<Tensor>> {
        let mut rows = Vec::new();
        for class in 0..self.classes {
            let at = class * self.slots * self.dim;
            rows.extend_from_slice(&self.embeddings[at..at + self.filled[class] * self.dim]);
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let n = rows.len() / self.dim;
        Tensor::from_vec(rows, (n, self.dim), device).map(Some)
    }

    /// The memory as three tensors, for checkpoints: embeddings (classes, slots, dim), and the
    /// per-class next slot and count as (classes) f32 (exact: both are below 2²⁴).
    pub fn to_tensors(&self, device: &Device) -> Result<[Tensor; 3]> {
        let counters = |v: &[usize]| Tensor::from_vec(v.iter().map(|&x| x as f32).collect(), self.classes, device);
        Ok([
            Tensor::from_vec(self.embeddings.clone(), (self.classes, self.slots, self.dim), device)?,
            counters(&self.next)?,
            counters(&self.filled)?,
        ])
    }

    /// The inverse of [`Self::to_tensors`]; counters out of range are an error (a damaged file).
    pub fn from_tensors(embeddings: &Tensor, next: &Tensor, filled: &Tensor) -> Result<Self> {
        let (classes, slots, dim) = embeddings.dims3()?;
        let counters = |t: &Tensor, max: usize| -> Result<Vec<usize>> {
            let v = t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            if v.len() != classes || v.iter().any(|&x| !(x >= 0.0 && (x as usize) <= max && x.fract() == 0.0)) {
                bail!("CIRKD region memory: counters {v:?} do not fit {classes} classes of {slots} slots");
            }
            Ok(v.into_iter().map(|x| x as usize).collect())
        };
        let memory = Self {
            classes,
            slots,
            dim,
            embeddings: embeddings.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
            next: counters(next, slots.saturating_sub(1))?,
            filled: counters(filled, slots)?,
        };
        Ok(memory)
    }
}

/// Per pixel L2 normalisation over the channels (`F.normalize`, ε = 1e-12), as (B·H·W, C) rows.
fn unit_rows(f: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = f.dims4()?;
    let f = f.broadcast_div(&f.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?)?;
    f.permute((0, 2, 3, 1))?.reshape((b * h * w, c))?.contiguous()
}

/// The pixel-to-region term: `student` the student's map after its adapter (B, C, H, W),
/// `teacher` the teacher's map on the same grid (B, C, H, W), `labels` B·H·W (255 = void),
/// `regions` the memory's regions (n, C) (already holding this batch's, see [`RegionMemory`]).
/// Without a labelled pixel or a region the term is 0 (still a function of the student, so its
/// gradient is defined and zero).
pub fn cirkd_region(
    student: &Tensor,
    teacher: &Tensor,
    labels: &[u8],
    classes: usize,
    regions: Option<&Tensor>,
    tau: f64,
) -> Result<Tensor> {
    if student.shape() != teacher.shape() {
        bail!("CIRKD regions: student {:?} vs teacher {:?}", student.shape(), teacher.shape());
    }
    let (b, _, h, w) = student.dims4()?;
    if labels.len() != b * h * w {
        bail!("CIRKD regions: {} labels for a {b}×{h}×{w} map", labels.len());
    }
    let anchors: Vec<u32> = labels
        .iter()
        .enumerate()
        .filter(|(_, l)| (**l as usize) < classes && **l != VOID)
        .map(|(i, _)| i as u32)
        .collect();
    let zero = || student.sum_all()? * 0.0;
    let Some(regions) = regions else { return zero() };
    if anchors.is_empty() {
        return zero();
    }
    let n = anchors.len();
    let idx = Tensor::from_vec(anchors, n, student.device())?;
    let relations = |f: &Tensor| -> Result<Tensor> {
        let rows = unit_rows(f)?.index_select(&idx, 0)?;
        log_softmax(&(rows.matmul(&regions.t()?)? / tau)?, D::Minus1)
    };
    let (log_ps, log_pt) = (relations(student)?, relations(&teacher.detach())?);
    (log_pt.exp()? * (log_pt - log_ps)?)?.sum_all()? / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_after(labels: &[u8]) -> RegionMemory {
        let dev = Device::Cpu;
        let teacher = Tensor::arange(1f32, 1. + 2. * 3. * 4., &dev).unwrap().reshape((2, 3, 2, 2)).unwrap();
        let mut m = RegionMemory::new(2, 2, 3);
        m.enqueue(&teacher, labels).unwrap();
        m
    }

    #[test]
    fn unlabelled_images_write_no_region_and_get_no_term() {
        // Image 0 has classes 0 and 1, image 1 none.
        let m = memory_after(&[0, 1, 1, VOID, VOID, VOID, VOID, VOID]);
        assert_eq!((m.filled.clone(), m.next.clone()), (vec![1, 1], vec![1, 1]));
        let empty = memory_after(&[VOID; 8]);
        assert_eq!(empty, RegionMemory::new(2, 2, 3), "an unlabelled batch leaves the memory as it was");
        let dev = Device::Cpu;
        let s = Tensor::randn(0f32, 1., (2, 3, 2, 2), &dev).unwrap();
        let regions = m.regions(&dev).unwrap();
        let v = cirkd_region(&s, &s.affine(2., 1.).unwrap(), &[VOID; 8], 2, regions.as_ref(), 0.1).unwrap();
        assert_eq!(v.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn a_class_ring_wraps_and_counters_round_trip() {
        let dev = Device::Cpu;
        let teacher = Tensor::randn(0f32, 1., (2, 3, 2, 2), &dev).unwrap();
        let mut m = RegionMemory::new(2, 2, 3);
        for _ in 0..3 {
            m.enqueue(&teacher, &[0, 0, 0, 0, 0, VOID, VOID, VOID]).unwrap();
        }
        assert_eq!((m.filled.clone(), m.next.clone()), (vec![2, 0], vec![0, 0]), "6 writes into a ring of 2");
        let [e, n, f] = m.to_tensors(&dev).unwrap();
        assert_eq!(RegionMemory::from_tensors(&e, &n, &f).unwrap(), m);
        let bad = Tensor::new(&[5f32, 0.], &dev).unwrap();
        assert!(RegionMemory::from_tensors(&e, &bad, &f).is_err(), "a slot past the ring is refused");
    }
}
