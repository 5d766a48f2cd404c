//! What a session writes to its TensorBoard log: step scalars, evaluations and overlays.

use super::*;

impl<'a> Session<'a> {
    /// Writes to the TensorBoard log; the first failure is reported and ends the log, not the run.
    pub(super) fn tensorboard_write(&mut self, write: impl FnOnce(&mut EventWriter) -> anyhow::Result<()>) {
        let Some(tb) = &mut self.tensorboard else { return };
        if let Err(e) = write(tb) {
            self.tensorboard = None;
            self.emit(TrainEvent::Message(format!("TensorBoard log stopped: {e:#}")));
        }
    }

    pub(super) fn log_step_scalars(&mut self, m: &StepMetrics) {
        let mut values = vec![("train/loss".to_string(), m.loss), ("train/ce".into(), m.ce), ("train/lr".into(), m.lr)];
        values.extend(m.kd.map(|v| ("train/kd".to_string(), v)));
        values.extend(m.feature.map(|v| ("train/feature".to_string(), v)));
        // A term list logs every term by name (`ce`, `kd` and `feature` are above already).
        values.extend(
            m.terms
                .iter()
                .filter(|(n, _)| !matches!(n.as_str(), "ce" | "kd" | "feature"))
                .map(|(n, v)| (format!("train/{n}"), *v)),
        );
        self.tensorboard_write(|tb| tb.scalars(m.step, &values));
    }

    /// The evaluation's scalars (validation loss, mIoU, pixel accuracy, IoU per class) and the
    /// best and worst validation images (ground truth | prediction).
    pub(super) fn log_evaluation(&mut self, eval: &EvalMetrics, images: &[ImageScore]) {
        if self.tensorboard.is_none() {
            return;
        }
        let names = self.data.val.classes().names.clone();
        let mut values = vec![
            ("val/loss".to_string(), eval.val_loss),
            ("val/mIoU".into(), eval.miou),
            ("val/pixel_accuracy".into(), eval.pixel_acc),
        ];
        for (c, iou) in eval.iou.iter().enumerate() {
            if let Some(v) = iou {
                values.push((format!("val_IoU/{}", names.get(c).map_or("?", String::as_str)), *v));
            }
        }
        self.tensorboard_write(|tb| tb.scalars(eval.step, &values));
        let ranked = || images.iter().filter(|s| s.miou.is_finite());
        let best = ranked().max_by(|a, b| a.miou.total_cmp(&b.miou));
        let worst = ranked().min_by(|a, b| a.miou.total_cmp(&b.miou));
        for (tag, score) in [("overlays/best", best), ("overlays/worst", worst)] {
            let Some(score) = score else { continue };
            match self.overlay_of(&score.id) {
                Ok(Some(img)) => self.tensorboard_write(|tb| tb.image(eval.step, tag, &img)),
                Ok(None) => {}
                Err(e) => self.emit(TrainEvent::Message(format!("no {tag} image for TensorBoard: {e:#}"))),
            }
        }
    }

    /// A validation image with its ground truth and the student's prediction blended over it,
    /// side by side.
    pub(super) fn overlay_of(&self, id: &str) -> anyhow::Result<Option<image::RgbImage>> {
        let val = &self.data.val;
        let Some(index) = val.samples.iter().position(|s| s.id == id) else { return Ok(None) };
        let sample = val.load(index)?;
        let pred = crate::train::predict::predict(&self.student, &sample.image, self.val_resize(), &self.device)?;
        let classes = val.classes();
        let voc = classes.dataset == "voc";
        let truth = crate::data::overlay::overlay(&sample.image, &sample.mask, classes, 0.55, voc);
        let predicted = crate::data::overlay::overlay(&sample.image, &pred.mask, classes, 0.55, voc);
        let (w, h) = truth.dimensions();
        let mut both = image::RgbImage::new(2 * w, h);
        image::imageops::replace(&mut both, &truth, 0, 0);
        image::imageops::replace(&mut both, &predicted, w as i64, 0);
        Ok(Some(both))
    }
}
