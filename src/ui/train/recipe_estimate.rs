//! How long "Train a teacher for this dataset" will take, said before it starts. The figure is
//! an estimate made on this machine: a few training steps of the recipe itself (its model, batch
//! and crop, random inputs, timed as `segdistill bench` times them) and a few single-image
//! forward passes for the validation, measured once per recipe shape on a background thread,
//! then scaled by the recipe's schedule (steps per epoch × epochs, plus each epoch's
//! validation). Not timed: data loading, checkpoints, and a machine busy with other work, which
//! all make the real run somewhat longer.

use crate::diagnostics::bench::{self, BenchConfig};
use crate::distill::DistillMode;
use crate::model::ModelKind;
use crate::train::TrainConfig;
use crate::ui::jobs::{Job, take_finished};
use crate::util::device::{DeviceChoice, Precision};

/// What a measurement depends on: the same shape on the same device costs the same.
#[derive(Clone, Debug, PartialEq)]
pub struct RecipeShape {
    pub model: ModelKind,
    pub batch: usize,
    pub size: usize,
    pub num_classes: usize,
    pub device: DeviceChoice,
}

impl RecipeShape {
    pub fn of(recipe: &TrainConfig, num_classes: usize) -> Self {
        Self {
            model: recipe.model,
            batch: recipe.batch,
            size: recipe.size as usize,
            num_classes,
            device: recipe.device,
        }
    }
}

/// One training step and one validation image of a recipe shape, in seconds, as measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecipeTiming {
    pub step_secs: f64,
    pub eval_image_secs: f64,
}

/// Timed steps after one untimed warm-up; the median is kept (a few steps: about a second of
/// work for the demo recipe on two cores).
const WARMUP: usize = 1;
const REPEATS: usize = 3;

impl RecipeTiming {
    /// Times the shape's training step and its single-image forward pass (blocking: call it
    /// on a background thread).
    pub fn measure(shape: &RecipeShape) -> Result<Self, String> {
        let device = shape.device.resolve().map_err(|e| format!("{e:#}"))?;
        let cfg = BenchConfig {
            models: vec![shape.model],
            modes: vec![DistillMode::None],
            loss_terms: Vec::new(),
            teacher_model: shape.model,
            batch: shape.batch,
            size: shape.size,
            warmup: WARMUP,
            repeats: REPEATS,
            teacher: false,
            infer: true,
            num_classes: shape.num_classes,
            precision: Precision::default_for(&device),
        };
        let results = bench::run(&cfg, &device, &mut |_| {}).map_err(|e| format!("{e:#}"))?;
        let median = |prefix: &str| {
            results.iter().find(|r| r.name.starts_with(prefix)).map(|r| r.median_ms / 1000.0).filter(|s| s.is_finite())
        };
        match (median("train_step/"), median("infer/")) {
            (Some(step_secs), Some(eval_image_secs)) => Ok(Self { step_secs, eval_image_secs }),
            _ => Err("the timing measured nothing".into()),
        }
    }

    /// The run time of `recipe` on `train_images` labelled and `val_images` validation images:
    /// its epochs of full batches (the engine drops a last partial one) and one validation pass
    /// per epoch (timed at the crop size).
    pub fn run_secs(&self, recipe: &TrainConfig, train_images: usize, val_images: usize) -> f64 {
        let drop_last = train_images >= recipe.batch;
        let steps = crate::data::loader::batches_per_epoch(train_images, recipe.batch, drop_last);
        recipe.epochs as f64 * (steps as f64 * self.step_secs + val_images as f64 * self.eval_image_secs)
    }
}

/// The recipe's timing, measured once per shape in the background.
#[derive(Default)]
pub struct RecipeEstimate {
    shape: Option<RecipeShape>,
    job: Option<Job<Result<RecipeTiming, String>>>,
    timing: Option<Result<RecipeTiming, String>>,
}

impl RecipeEstimate {
    /// The timing of `shape`: `None` while it is measured. A new shape starts a new measurement
    /// (the previous one's answer is dropped when it comes).
    pub fn timing(&mut self, ctx: &egui::Context, shape: &RecipeShape) -> Option<&Result<RecipeTiming, String>> {
        if self.shape.as_ref() != Some(shape) {
            self.shape = Some(shape.clone());
            self.timing = None;
            let measured = shape.clone();
            self.job = Some(Job::spawn("timing the teacher recipe", ctx, move |_| RecipeTiming::measure(&measured)));
        }
        if let Some(done) = take_finished(&mut self.job) {
            self.timing = Some(done);
        }
        self.timing.as_ref()
    }
}

/// "about 3 min", "about 40 s", "about 1 h 10 min": an estimate's precision, no more.
pub fn about(secs: f64) -> String {
    if !secs.is_finite() {
        return "unknown".into();
    }
    let secs = secs.max(1.0);
    if secs < 60.0 {
        return format!("about {} s", ((secs / 10.0).ceil() * 10.0) as u64);
    }
    let minutes = (secs / 60.0).round() as u64;
    if minutes < 60 {
        format!("about {minutes} min")
    } else {
        format!("about {} h {:02} min", minutes / 60, minutes % 60)
    }
}

/// The hover of "Train a teacher for this dataset": what the recipe trains (its own model, crop,
/// epochs) and how long that takes here, or why that is not known yet.
pub fn recipe_hover(
    recipe: &TrainConfig,
    train_images: usize,
    val_images: usize,
    timing: Option<&Result<RecipeTiming, String>>,
) -> String {
    let what = format!(
        "Trains {} for {} epochs at its own {}-px crop (batch {}, lr {}) on this dataset's {train_images} labelled \
         images, then points the teacher field at it.",
        recipe.model, recipe.epochs, recipe.size, recipe.batch, recipe.optimizer.lr
    );
    let time = match timing {
        None => "Estimated time: measuring a few training steps of this recipe on this machine…".to_string(),
        Some(Ok(t)) => format!(
            "Estimated time: {} on this machine ({:.2} s per step × {} epochs, plus validation; estimated from a \
             few timed steps of this recipe, without data loading: a busy machine takes longer).",
            about(t.run_secs(recipe, train_images, val_images)),
            t.step_secs,
            recipe.epochs
        ),
        Some(Err(e)) => format!("Estimated time: unknown (the timing failed: {e})."),
    };
    format!("{what}\n{time}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_time_counts_full_batches_and_each_epochs_validation() {
        let recipe = TrainConfig { epochs: 20, batch: 8, ..Default::default() };
        let t = RecipeTiming { step_secs: 0.5, eval_image_secs: 0.01 };
        // 150 images: 18 full batches of 8 (the last 6 images wait for the next epoch).
        let expected = 20.0 * (18.0 * 0.5 + 100.0 * 0.01);
        assert!((t.run_secs(&recipe, 150, 100) - expected).abs() < 1e-9);
        // Fewer images than a batch: one partial batch.
        assert!((t.run_secs(&recipe, 5, 0) - 20.0 * 0.5).abs() < 1e-9);
    }

    #[test]
    fn durations_read_as_estimates() {
        assert_eq!(about(3.0), "about 10 s");
        assert_eq!(about(41.0), "about 50 s");
        assert_eq!(about(170.0), "about 3 min");
        assert_eq!(about(4200.0), "about 1 h 10 min");
        assert_eq!(about(f64::NAN), "unknown");
    }

    #[test]
    fn the_hover_names_the_recipes_own_crop_and_the_estimate() {
        let recipe = TrainConfig { epochs: 20, batch: 8, size: 128, ..Default::default() };
        let t = RecipeTiming { step_secs: 0.4, eval_image_secs: 0.005 };
        let hover = recipe_hover(&recipe, 150, 100, Some(&Ok(t)));
        assert!(hover.contains("20 epochs at its own 128-px crop"), "{hover}");
        assert!(hover.contains("Estimated time: about 3 min on this machine"), "{hover}");
        assert!(recipe_hover(&recipe, 150, 100, None).contains("measuring"));
    }
}
