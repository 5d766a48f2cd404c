//! The end of an epoch: evaluation, the record of it, and the checkpoints it writes.

use super::*;
use crate::train::checkpoint_policy::{self, CheckpointAction};

impl<'a> Session<'a> {
    /// Evaluates the finished epoch and writes its checkpoints: `last` first (the epoch is never
    /// lost, whatever happens after), then the best weights when they improved.
    pub(super) fn end_epoch(&mut self, epoch: usize, elapsed: f64) -> anyhow::Result<()> {
        let evaluated = evaluate(&self.student, self.data.val.clone(), self.val_resize(), &self.device, &|_, _| {});
        let outcome: EvalOutcome = match evaluated {
            Ok(outcome) => outcome,
            Err(e) => {
                // The checkpoint still says "every batch of this epoch done": a resume goes straight
                // to this evaluation again.
                self.state.train_seconds = elapsed;
                let last = checkpoint::last_path(&self.run_dir);
                self.save(last.clone(), CheckpointKind::Last)?;
                return Err(e.context(format!(
                    "evaluating after epoch {} failed; the epoch's training is saved in {} and --resume evaluates it again",
                    epoch + 1,
                    last.display()
                )));
            }
        };
        for message in &outcome.skipped {
            if !self.skipped_val.contains(message) {
                self.emit(TrainEvent::Message(format!("skipped validation sample: {message}")));
                self.skipped_val.push(message.clone());
            }
        }
        let scores = outcome.confusion.scores();
        let lr = self.schedule.lr(self.state.step.saturating_sub(1));
        let train_loss = self.state.epoch_loss_sum / self.state.epoch_loss_count.max(1) as f64;
        let eval = EvalMetrics {
            epoch,
            step: self.state.step,
            val_loss: outcome.val_loss,
            miou: scores.miou,
            pixel_acc: scores.pixel_acc,
            iou: scores.iou.clone(),
            ms_per_image: outcome.ms_per_image,
        };
        self.log.epoch(train_loss, lr, &eval, elapsed)?;
        self.log_evaluation(&eval, &outcome.images);
        self.state.history.push(EpochRecord {
            epoch,
            step: self.state.step,
            train_loss,
            val_loss: outcome.val_loss,
            miou: scores.miou,
            pixel_acc: scores.pixel_acc,
            iou: scores.iou,
            lr,
            ms_per_image: outcome.ms_per_image,
        });
        self.schedule.on_epoch_end(scores.miou);
        self.state.plateau = self.schedule.plateau.clone();
        self.state.epoch = epoch + 1;
        self.state.batch_in_epoch = 0;
        self.state.epoch_loss_sum = 0.0;
        self.state.epoch_loss_count = 0;
        self.state.train_seconds = elapsed;
        self.emit(TrainEvent::Evaluated(eval));

        let improved = scores.miou.is_finite() && self.state.best.as_ref().is_none_or(|b| scores.miou > b.miou);
        let student_weights = varmap_tensors(&self.student_vars);
        if improved {
            let weights_digest = Some(crate::model::weights::digest::of_tensors(&student_weights)?);
            self.state.best = Some(BestRecord { miou: scores.miou, epoch, weights_digest });
        }
        for action in checkpoint_policy::after_epoch(epoch, improved, self.cfg.checkpoint_every) {
            match action {
                CheckpointAction::Last => self.save(checkpoint::last_path(&self.run_dir), CheckpointKind::Last)?,
                CheckpointAction::Best => self.save(checkpoint::best_path(&self.run_dir), CheckpointKind::Best)?,
                CheckpointAction::StudentWeights => {
                    let student = checkpoint::student_path(&self.run_dir);
                    self.folder.write(|| {
                        save_safetensors(&student_weights, &student).with_context(|| {
                            format!("cannot write the best student weights {} (disk full?)", student.display())
                        })
                    })?;
                }
                CheckpointAction::BestImages => {
                    let path = crate::train::run_folder::best_images_path(&self.run_dir);
                    let images = serde_json::to_string(&outcome.images)?;
                    self.folder.write(|| {
                        crate::util::fs::write_atomic(&path, images.as_bytes())
                            .with_context(|| format!("cannot write {} (disk full?)", path.display()))
                    })?;
                }
                CheckpointAction::Periodic { epochs_done } => {
                    self.save(checkpoint::periodic_path(&self.run_dir, epochs_done), CheckpointKind::Periodic)?
                }
            }
        }
        Ok(())
    }

    pub(super) fn save(&self, path: PathBuf, kind: CheckpointKind) -> anyhow::Result<()> {
        let ckpt = Checkpoint {
            state: CheckpointState { optimizer: self.optimizer.state.clone(), ..self.state.clone() },
            model: varmap_tensors(&self.student_vars),
            adapters: varmap_tensors(&self.adapter_vars),
            moments: self.optimizer.moment_tensors(),
        };
        self.folder.write(|| checkpoint::save(&path, &ckpt))?;
        self.emit(TrainEvent::CheckpointSaved { kind, path, epoch: self.state.epoch, step: self.state.step });
        Ok(())
    }

    /// `--export`: the best student's weights (`.safetensors`) or its ONNX graph (`.onnx`).
    pub(super) fn export(&self) -> anyhow::Result<()> {
        let Some(dst) = &self.cfg.export else { return Ok(()) };
        let src = checkpoint::student_path(&self.run_dir);
        if dst.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
            let options = crate::model::onnx::ExportOptions::default();
            let done = crate::model::onnx::export_file(self.cfg.model, &src, dst, &options)?;
            self.emit(TrainEvent::Message(format!("best student exported as ONNX to {}", done.path.display())));
            return Ok(());
        }
        let bytes = std::fs::read(&src).with_context(|| format!("cannot read {}", src.display()))?;
        crate::util::fs::write_atomic(dst, &bytes).with_context(|| format!("cannot write {}", dst.display()))?;
        self.emit(TrainEvent::Message(format!("best student weights saved to {}", dst.display())));
        Ok(())
    }
}
