//! One optimisation step, the one definition the engine and `bench`/`selftest` share: student
//! forward in train mode, the distillation loss, a NaN/Inf check, backward, gradient-norm
//! clipping (with its own check), and the optimiser's update.

use candle_core::{DType, Tensor};

use super::optim::Optimizer;
use crate::distill::loss_terms::{TermKind, TermsDistiller};
use crate::distill::{self, DistillMode, FeatureDistiller, LossConfig, Target, TeacherSignal};
use crate::model::{Mode, Model};

/// What a step is made of besides its batch.
pub struct StepModel<'a> {
    pub student: &'a Model,
    pub distiller: Option<&'a FeatureDistiller>,
    /// The loss as a term list (`--loss`); `None`: the `mode` preset.
    pub terms: Option<&'a TermsDistiller>,
    pub optimizer: &'a mut Optimizer,
    pub mode: DistillMode,
    pub loss: &'a LossConfig,
    /// Largest global gradient norm (`None`: no clipping).
    pub grad_clip: Option<f64>,
    /// Batch norm keeps its running statistics ([`Mode::Train`]'s `freeze_bn`).
    pub freeze_bn: bool,
}

/// One batch: images in the dtype the networks run in, labels, and the teacher's signal.
pub struct StepBatch<'a> {
    pub images: &'a Tensor,
    pub target: &'a Target,
    pub teacher: Option<&'a TeacherSignal<'a>>,
    /// Seeds this step's dropout masks (deterministic, resumable).
    pub dropout_seed: u64,
    pub lr: f64,
}

/// The loss and its parts, read from the device in one transfer.
#[derive(Clone, Debug, PartialEq)]
pub struct LossValues {
    pub total: f64,
    pub ce: f64,
    pub kd: Option<f64>,
    pub feature: Option<f64>,
    /// With a term list: every term's unweighted value.
    pub terms: Vec<(TermKind, f64)>,
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    /// The weights were updated.
    Updated(LossValues),
    /// The loss was not finite: nothing was updated.
    NonFiniteLoss(f64),
    /// The gradient norm was not finite: nothing was updated.
    NonFiniteGradient(f64),
}

/// Runs one step; the weights change only when it returns [`StepOutcome::Updated`].
pub fn optimization_step(m: StepModel, batch: StepBatch) -> anyhow::Result<StepOutcome> {
    let out = m.student.forward(batch.images, Mode::Train { seed: batch.dropout_seed, freeze_bn: m.freeze_bn })?;
    let parts = match m.terms {
        Some(terms) => distill::terms_loss(terms, m.loss, &out, batch.teacher, batch.target)?,
        None => distill::total_loss(m.mode, m.loss, &out, batch.teacher, batch.target, m.distiller)?,
    };
    // Every part in one read: on a GPU each read waits for the device.
    let read: Vec<&Tensor> = [Some(&parts.total), Some(&parts.ce), parts.kd.as_ref(), parts.feature.as_ref()]
        .into_iter()
        .flatten()
        .chain(parts.terms.iter().map(|(_, v)| v))
        .collect();
    let mut values = Tensor::stack(&read, 0)?.to_dtype(DType::F64)?.to_vec1::<f64>()?.into_iter();
    let mut next = || values.next().ok_or_else(|| anyhow::anyhow!("a loss part was not read"));
    let (total, ce) = (next()?, next()?);
    let kd = parts.kd.as_ref().map(|_| next()).transpose()?;
    let feature = parts.feature.as_ref().map(|_| next()).transpose()?;
    let terms = parts.terms.iter().map(|(k, _)| Ok((*k, next()?))).collect::<anyhow::Result<Vec<_>>>()?;
    if !total.is_finite() {
        return Ok(StepOutcome::NonFiniteLoss(total));
    }
    let grads = parts.total.backward()?;
    let scale = match m.grad_clip {
        Some(max) => {
            let norm = m.optimizer.grad_norm(&grads)?;
            if !norm.is_finite() {
                return Ok(StepOutcome::NonFiniteGradient(norm));
            }
            if norm > max { max / (norm + 1e-6) } else { 1.0 }
        }
        None => 1.0,
    };
    m.optimizer.step(&grads, batch.lr, scale)?;
    Ok(StepOutcome::Updated(LossValues { total, ce, kd, feature, terms }))
}
