//! How a check becomes a row: the bounds at each precision, the relative error, the report's
//! rows as they land.

use candle_core::{DType, Device, Tensor};

use super::Check;
use crate::util::device::Precision;

/// The bounds of each kind of check at a precision.
///
/// fp32 is the project's parity bound (1e-4 of the reference's largest value). tf32 rounds both
/// operands of every product to a 10-bit mantissa (unit round-off 2⁻¹¹ ≈ 4.9e-4) and accumulates in
/// fp32: one layer lands within a few round-offs of its largest value, and a 50-layer network
/// compounds that, so single ops get 5e-3, whole models 3e-2, and — the bound that matters for
/// segmentation — at most 0.1 % of pixels may change their arg-max class. Losses are fp32 in every
/// mode, but their inputs come from tf32 layers only in the training check.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub(super) op: f64,
    pub(super) model: f64,
    pub(super) argmax: f64,
    pub(super) loss: f64,
    pub(super) training: f64,
}

impl Bounds {
    pub(super) fn for_precision(p: Precision) -> Self {
        match p {
            // Training: 20 steps on two devices sum in different orders; AdamW's first steps
            // are sign-like (±lr), so a tiny difference can flip an update — still far below 1 %.
            Precision::Fp32 => Self { op: 1e-4, model: 1e-4, argmax: 1e-3, loss: 1e-4, training: 1e-3 },
            Precision::Tf32 => Self { op: 5e-3, model: 3e-2, argmax: 1e-3, loss: 1e-4, training: 2e-2 },
            // bf16 keeps 8 significant bits (unit round-off 2⁻⁸ ≈ 3.9e-3) on both operands and
            // on every activation between layers; products still accumulate in fp32.
            Precision::Bf16 => Self { op: 2e-2, model: 1e-1, argmax: 1e-3, loss: 1e-4, training: 5e-2 },
        }
    }
}

pub(super) struct Checker<'a> {
    pub(super) bounds: Bounds,
    /// The dtype inputs enter the networks and layers in (bf16 under autocast).
    pub(super) dtype: DType,
    pub(super) checks: Vec<Check>,
    pub(super) on_check: &'a mut dyn FnMut(&Check),
}

impl Checker<'_> {
    pub(super) fn push(&mut self, group: &'static str, name: String, error: f64, bound: f64) {
        let check = Check { group, name, error, bound, ok: error.is_finite() && error <= bound, error_message: None };
        (self.on_check)(&check);
        self.checks.push(check);
    }

    /// A check whose computation failed: a failed row carrying the reason.
    pub(super) fn failed(&mut self, group: &'static str, name: String, why: &anyhow::Error) {
        let check =
            Check { group, name, error: f64::INFINITY, bound: 0.0, ok: false, error_message: Some(format!("{why:#}")) };
        (self.on_check)(&check);
        self.checks.push(check);
    }

    /// Runs one case; an error in it becomes a failed row named `name` instead of ending the run.
    pub(super) fn case(&mut self, group: &'static str, name: &str, f: impl FnOnce(&mut Self) -> anyhow::Result<()>) {
        if let Err(e) = f(self) {
            self.failed(group, name.to_string(), &e);
        }
    }

    /// Compares `ours` (any device) with `reference` (CPU), which must have the same shape.
    pub(super) fn compare(&mut self, group: &'static str, name: &str, ours: &Tensor, reference: &Tensor, bound: f64) {
        let error = relative_error(ours, reference).unwrap_or(f64::INFINITY);
        self.push(group, name.to_string(), error, bound);
    }
}

/// max |a − b| / max |b| (shapes must agree; scalars saved by torch as [1] are reshaped).
pub fn relative_error(ours: &Tensor, reference: &Tensor) -> anyhow::Result<f64> {
    let ours = ours.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let reference = reference.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let ours = if ours.elem_count() == reference.elem_count() { ours.reshape(reference.shape())? } else { ours };
    anyhow::ensure!(ours.dims() == reference.dims(), "shape {:?} vs reference {:?}", ours.dims(), reference.dims());
    let diff = (&ours - &reference)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
    let scale = reference.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
    Ok(if scale > 0.0 { diff / scale } else { diff })
}

/// The share of pixels whose arg-max over classes (dim 1) differs.
pub(super) fn argmax_disagreement(ours: &Tensor, reference: &Tensor) -> anyhow::Result<f64> {
    let a = ours.to_device(&Device::Cpu)?.argmax(1)?.flatten_all()?.to_vec1::<u32>()?;
    let b = reference.argmax(1)?.flatten_all()?.to_vec1::<u32>()?;
    anyhow::ensure!(a.len() == b.len() && !a.is_empty(), "arg-max shapes differ");
    Ok(a.iter().zip(&b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64)
}
