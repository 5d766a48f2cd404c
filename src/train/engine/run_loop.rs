//! The loop: batches, steps, pauses and stops, with the ETA.

use super::*;

impl<'a> Session<'a> {
    pub(super) fn train(&mut self) -> anyhow::Result<Summary> {
        let resumed_from = (self.state.step > 0).then_some((self.state.epoch, self.state.step));
        let info = RunInfo {
            run_dir: self.run_dir.clone(),
            model: self.cfg.model.name().into(),
            params: {
                let vars = self.student_vars.data().lock().unwrap_or_else(|p| p.into_inner());
                crate::model::count_params(vars.iter().map(|(k, v)| (k.as_str(), v.elem_count())))
            },
            teacher: self.cfg.needs_teacher().then(|| self.cfg.teacher.name().to_string()),
            mode: self.cfg.loss_name(),
            device: format!("{}, {}", describe(&self.device), self.precision),
            train_images: self.data.train.len(),
            unlabeled_images: self.data.unlabeled.as_ref().map_or(0, |u| u.len()),
            val_images: self.data.val.len(),
            total_steps: self.total_steps,
            steps_per_epoch: self.steps_per_epoch,
            class_names: self.data.train.classes().names.clone(),
            resumed_from,
        };
        self.emit(TrainEvent::Started(info));
        let Some(caches) = self.teacher_caches()? else { return Ok(self.summary(EndReason::Stopped)) };
        let images = SegmentationBatches { dataset: self.data.train.clone(), augment: self.augment() };
        let source = Arc::new(TrainBatches { images, cache: caches.train });
        let unlabeled_source = self.data.unlabeled.clone().map(|dataset| {
            let images = SegmentationBatches { dataset, augment: self.augment() };
            Arc::new(UnlabeledBatches {
                images: TrainBatches { images, cache: caches.unlabeled },
                per_step: self.cfg.unlabeled_per_batch(),
                steps_per_epoch: self.steps_per_epoch,
            })
        });
        let loader_cfg = self.loader_config();
        let session_start = Instant::now();
        let seconds_before = self.state.train_seconds;
        let first_epoch = self.state.epoch;
        let mut step_time_ema: Option<f64> = None;
        let mut eval_seconds: Option<f64> = None;

        for epoch in first_epoch..self.cfg.epochs {
            // Mid-epoch resume: skip the batches already trained on (their order is seeded).
            let skip = self.state.batch_in_epoch;
            let loader = Loader::with_order(source.clone(), &loader_cfg, epoch as u64, Some(skip));
            let mut unlabeled = unlabeled_source
                .as_ref()
                .map(|u| Loader::with_order(u.clone(), &u.loader_config(&loader_cfg), epoch as u64, Some(skip)));
            for batch in loader {
                if !self.wait_while_paused() {
                    return self.stop(session_start, seconds_before);
                }
                let batch = batch.map_err(|e: DataError| anyhow::anyhow!(e))?;
                // The unlabelled images of this step are taken even when the labelled batch is
                // skipped, so both walks stay at the same step.
                let extra = match unlabeled.as_mut().and_then(|l| l.next()) {
                    Some(u) => Some(u.map_err(|e: DataError| anyhow::anyhow!(e))?),
                    None => None,
                };
                self.note_skipped(&batch.batch.skipped)?;
                if let Some(u) = &extra {
                    self.note_skipped_unlabeled(&u.batch.skipped);
                }
                if batch.batch.batch_size == 0 {
                    // Every sample of this batch was skipped: nothing to learn from, but the batch
                    // counts, so a resume skips the same batches.
                    self.state.batch_in_epoch += 1;
                    continue;
                }
                let t0 = Instant::now();
                let (batch, unlabeled_rows) = match &extra {
                    Some(u) => TrainBatch::joined(&batch, u)?,
                    None => (batch, 0),
                };
                let metrics = self.train_step(&batch, unlabeled_rows, epoch)?;
                let batch = &batch.batch;
                let dt = t0.elapsed().as_secs_f64();
                let ema = step_time_ema.map_or(dt, |e| 0.9 * e + 0.1 * dt);
                step_time_ema = Some(ema);
                let remaining_steps = self.total_steps.saturating_sub(self.state.step) as f64;
                let remaining_evals = (self.cfg.epochs - epoch) as f64;
                let m = StepMetrics {
                    images_per_sec: batch.batch_size as f64 / ema,
                    eta_secs: remaining_steps * ema + remaining_evals * eval_seconds.unwrap_or(0.0),
                    ..metrics
                };
                self.log.step(&m, seconds_before + session_start.elapsed().as_secs_f64())?;
                self.log_step_scalars(&m);
                self.emit(TrainEvent::Step(m));
            }
            let t_eval = Instant::now();
            self.end_epoch(epoch, seconds_before + session_start.elapsed().as_secs_f64())?;
            eval_seconds = Some(t_eval.elapsed().as_secs_f64());
            let session_epochs = epoch + 1 - first_epoch;
            let stop_here =
                self.cfg.stop_after_epoch.is_some_and(|n| session_epochs >= n && epoch + 1 < self.cfg.epochs);
            if self.control.stop_requested() || stop_here {
                return Ok(self.summary(EndReason::Stopped));
            }
        }
        self.export()?;
        Ok(self.summary(EndReason::Completed))
    }

    /// Reports each newly skipped training sample once; fails only when no sample is left.
    pub(super) fn note_skipped(&mut self, skipped: &[(usize, String)]) -> anyhow::Result<()> {
        for (index, message) in skipped {
            if self.skipped_train.insert(*index, message.clone()).is_none() {
                self.emit(TrainEvent::Message(format!("skipped training sample: {message}")));
            }
        }
        let total = self.data.train.len();
        if self.skipped_train.len() >= total {
            let first = self.skipped_train.values().next().cloned().unwrap_or_default();
            anyhow::bail!(
                "no usable sample left in split '{}' of {}: all {total} were skipped (first: {first}); \
                 `segdistill check-data` lists every problem",
                self.data.train.split,
                self.data.train.root.display()
            );
        }
        Ok(())
    }

    /// Reports each newly skipped unlabelled image once (the run goes on without it).
    fn note_skipped_unlabeled(&mut self, skipped: &[(usize, String)]) {
        for (index, message) in skipped {
            if self.skipped_unlabeled.insert(*index, message.clone()).is_none() {
                self.emit(TrainEvent::Message(format!("skipped unlabelled image: {message}")));
            }
        }
    }

    /// Blocks while paused; false if a stop was requested.
    pub(super) fn wait_while_paused(&self) -> bool {
        if self.control.is_paused() && !self.control.stop_requested() {
            self.emit(TrainEvent::Paused);
            while self.control.is_paused() && !self.control.stop_requested() {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.emit(TrainEvent::Resumed);
        }
        !self.control.stop_requested()
    }

    pub(super) fn stop(&mut self, session_start: Instant, seconds_before: f64) -> anyhow::Result<Summary> {
        self.state.train_seconds = seconds_before + session_start.elapsed().as_secs_f64();
        if self.state.step > 0 {
            self.save(checkpoint::last_path(&self.run_dir), CheckpointKind::Last)?;
        }
        Ok(self.summary(EndReason::Stopped))
    }

    /// One step on `train_batch`, whose last `unlabeled_rows` images have no labels.
    pub(super) fn train_step(
        &mut self,
        train_batch: &TrainBatch,
        unlabeled_rows: usize,
        epoch: usize,
    ) -> anyhow::Result<StepMetrics> {
        let batch = &train_batch.batch;
        let (b, h, w) = (batch.batch_size, batch.height, batch.width);
        // Under autocast (bf16) the networks take bf16 images; the losses get fp32 outputs back.
        let x =
            Tensor::from_slice(&batch.images, (b, 3, h, w), &self.device)?.to_dtype(self.precision.compute_dtype())?;
        let target = Target::with_unlabeled(
            &batch.masks,
            (b, h, w),
            unlabeled_rows,
            self.class_weights.as_deref(),
            &self.device,
        )?;
        let cached = train_batch.teacher.as_ref().map(|t| t.to_tensors(&self.device)).transpose()?;
        let teacher_out = match (&cached, &self.teacher) {
            (None, Some(t)) => Some(t.forward(&x, Mode::Eval)?),
            _ => None,
        };
        let signal = match (&cached, &teacher_out) {
            (Some(c), _) => Some(TeacherSignal { logits: c.logits.as_ref(), features: &c.features }),
            (None, Some(o)) => Some(TeacherSignal { logits: Some(&o.logits), features: &o.features }),
            (None, None) => None,
        };
        let step = self.state.step;
        let seed = Rng::for_item(self.cfg.seed, 0x5EED, step as u64).next_u64();
        let lr = self.schedule.lr(step);
        let model = StepModel {
            student: &self.student,
            distiller: self.distiller.as_ref(),
            terms: self.terms.as_ref(),
            optimizer: &mut self.optimizer,
            mode: self.cfg.distill,
            loss: &self.cfg.loss,
            grad_clip: self.cfg.optimizer.grad_clip,
            freeze_bn: self.cfg.freeze_bn,
        };
        let inputs = StepBatch { images: &x, target: &target, teacher: signal.as_ref(), dropout_seed: seed, lr };
        let LossValues { total: loss, ce, kd, feature, terms } = match optimization_step(model, inputs)? {
            StepOutcome::Updated(values) => values,
            StepOutcome::NonFiniteLoss(v) | StepOutcome::NonFiniteGradient(v) => {
                return Err(NonFiniteLoss::new(v, step + 1, lr, self).into());
            }
        };
        self.state.step += 1;
        self.state.batch_in_epoch += 1;
        self.state.epoch_loss_sum += loss;
        self.state.epoch_loss_count += 1;
        Ok(StepMetrics {
            epoch,
            step: self.state.step,
            total_steps: self.total_steps,
            steps_per_epoch: self.steps_per_epoch,
            loss,
            ce,
            kd,
            feature,
            terms: terms.into_iter().map(|(k, v)| (k.name().to_string(), v)).collect(),
            lr,
            images_per_sec: 0.0,
            eta_secs: 0.0,
        })
    }
}
