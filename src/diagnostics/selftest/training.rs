//! A short seeded training on the device and on the CPU, loss compared step by step.

use candle_core::Device;

use super::checker::Checker;
use crate::diagnostics::bench::{SyntheticTraining, frozen_model, random_input, random_labels};
use crate::distill::DistillMode;
use crate::model::ModelKind;
use crate::util::device::Precision;

/// The student, mode and batch of the training check: combined distillation (CE, response KD and
/// the feature loss through adapters) exercises every loss and the optimiser.
const TRAIN_STUDENT: ModelKind = ModelKind::Mbv3sTiny;
const TRAIN_MODE: DistillMode = DistillMode::Combined;
const TRAIN_SHAPE: (usize, usize) = (2, 64);

/// The loss of each step of a seeded training on `device`.
fn training_losses(device: &Device, precision: Precision, steps: usize) -> anyhow::Result<Vec<f64>> {
    let (batch, size) = TRAIN_SHAPE;
    let classes = 21;
    let teacher = frozen_model(ModelKind::FcnResnet50, 7, classes, device)?;
    let mut training =
        SyntheticTraining::new(TRAIN_STUDENT, TRAIN_MODE, classes, Some(&teacher), device)?.with_precision(precision);
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps as u64 {
        let x = random_input(batch, size, 1000 + step, device)?;
        let labels = random_labels(batch, size, classes, 2000 + step);
        losses.push(training.step(&x, &labels, Some(&teacher))?);
    }
    Ok(losses)
}

pub(super) fn training_check(
    device: &Device,
    precision: Precision,
    steps: usize,
    checker: &mut Checker,
) -> anyhow::Result<()> {
    let ours = training_losses(device, precision, steps)?;
    let reference = training_losses(&Device::Cpu, Precision::Fp32, steps)?;
    let worst = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| if a.is_finite() && b.is_finite() { (a - b).abs() / b.abs().max(1e-12) } else { f64::INFINITY })
        .fold(0.0, f64::max);
    let against = if device.is_cpu() { "a second CPU run" } else { "the CPU" };
    let name = format!(
        "{steps} steps {} {} (batch {}, {}px) vs {against}: loss per step",
        TRAIN_STUDENT.name(),
        TRAIN_MODE.name(),
        TRAIN_SHAPE.0,
        TRAIN_SHAPE.1
    );
    checker.push("training", name, worst, checker.bounds.training);
    Ok(())
}
