//! Building a session: the datasets, the student (and its starting weights), the teacher and
//! its cache, the optimiser, schedule and logs, from the configuration and the resume point.

use super::*;

pub(super) struct Datasets {
    pub(super) train: Arc<Dataset>,
    pub(super) val: Arc<Dataset>,
    /// Images without masks for the distillation terms (`--unlabeled`).
    pub(super) unlabeled: Option<Arc<Dataset>>,
}

/// The teacher caches a run reads (both `None`: the teacher runs live).
#[derive(Default)]
pub(super) struct TeacherCaches {
    pub(super) train: Option<Arc<TeacherCache>>,
    pub(super) unlabeled: Option<Arc<TeacherCache>>,
}

pub(in crate::train) fn open_split(
    cfg: &TrainConfig,
    split: &str,
    limit: Option<usize>,
    events: &Sender<TrainEvent>,
) -> anyhow::Result<Arc<Dataset>> {
    let mut ds = Dataset::open(&cfg.data, cfg.dataset, split)?;
    if ds.kind == crate::data::DatasetKind::Voc
        && let Ok(list) = crate::data::voc::read_split_list(&ds.root, split)
    {
        for d in &list.duplicates {
            send(events, TrainEvent::Message(d.to_error().to_string()));
        }
    }
    let dropped = ds.retain_present();
    if !dropped.is_empty() {
        send(
            events,
            TrainEvent::Message(format!(
                "{} of {} ids in split '{split}' have no image or mask and are skipped (`segdistill check-data` lists them)",
                dropped.len(),
                dropped.len() + ds.len()
            )),
        );
    }
    if let Some(n) = limit {
        ds.truncate(n);
    }
    anyhow::ensure!(!ds.is_empty(), "split '{split}' of {} has no usable samples", ds.root.display());
    Ok(Arc::new(ds))
}

/// Median-frequency class weights from the training masks (decoded on all cores). Masks that
/// cannot be read are left out (training skips their samples and says so).
pub(super) fn class_weights(ds: &Dataset) -> Vec<f32> {
    let hists = crate::util::par::par_map(ds.len(), |i| ds.load_mask(i).map(|m| m.histogram()));
    let mut counts = vec![0u64; ds.num_classes()];
    for h in hists.into_iter().flatten() {
        for (c, n) in counts.iter_mut().enumerate() {
            *n += h[c];
        }
    }
    distill::ce::class_weights_from_counts(&counts)
}

/// The variables an optimiser updates: everything but batch-norm running statistics.
pub(crate) fn trainable(varmap: &VarMap, prefix: &str) -> Vec<(String, Var)> {
    let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut v: Vec<(String, Var)> = vars
        .iter()
        .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
        .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Whether variable `name` is a batch norm's scale or shift: a `weight`/`bias` beside a
/// `running_mean` (the layer's keys in torchvision's layout).
pub(super) fn is_batch_norm_affine(varmap: &VarMap, name: &str) -> bool {
    let Some(layer) = name.strip_suffix(".weight").or_else(|| name.strip_suffix(".bias")) else { return false };
    varmap.data().lock().unwrap_or_else(|p| p.into_inner()).contains_key(&format!("{layer}.running_mean"))
}

pub(super) fn load_varmap(
    varmap: &VarMap,
    tensors: &BTreeMap<String, Tensor>,
    what: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let vars = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    for (name, var) in vars.iter() {
        let t = tensors.get(name).with_context(|| format!("{} lacks {what} variable {name}", path.display()))?;
        var.set(&t.to_device(var.device())?)?;
    }
    Ok(())
}

impl<'a> Session<'a> {
    pub(super) fn new(
        cfg: TrainConfig,
        run_dir: PathBuf,
        resumed: Option<Checkpoint>,
        folder: &'a RunFolder,
        control: &'a Control,
        events: &'a Sender<TrainEvent>,
    ) -> anyhow::Result<Self> {
        let device = cfg.device.resolve()?;
        crate::train::memory_budget::check_here(&cfg, &device)?;
        let precision = Precision::apply(cfg.precision, &device)?;
        let train = open_split(&cfg, &cfg.train_split, cfg.train_limit, events)?;
        let unlabeled = match &cfg.unlabeled {
            Some(spec) => {
                let mut ds = crate::data::unlabeled::open(spec, &train)?;
                ds.retain_present();
                Some(Arc::new(ds))
            }
            None => None,
        };
        let data = Datasets { train, val: open_split(&cfg, &cfg.val_split, cfg.val_limit, events)?, unlabeled };
        let num_classes = data.train.num_classes();
        let trainable_student = build_trainable(cfg.model, num_classes, cfg.seed, &device)?;
        let (student, student_vars) = (trainable_student.model, trainable_student.varmap);
        let teacher = match (&cfg.teacher_weights, cfg.needs_teacher()) {
            (Some(path), true) => {
                let t = load_for_inference(cfg.teacher, path, &device).context("loading the teacher")?;
                anyhow::ensure!(
                    !cfg.uses_teacher_logits() || t.model.num_classes() == num_classes,
                    "the teacher {} predicts {} classes but the dataset has {num_classes}",
                    path.display(),
                    t.model.num_classes()
                );
                Some(t.model)
            }
            _ => None,
        };
        let adapter_vars = VarMap::new();
        let (distiller, terms) = match (&cfg.loss_terms, &teacher) {
            (Some(list), _) => {
                let vb = seeded_var_builder(&adapter_vars, cfg.seed ^ 0xADA9, &device);
                let teacher_taps = teacher.as_ref().map(|t| t.feature_taps()).unwrap_or_default();
                (
                    None,
                    Some(TermsDistiller::new(list.clone(), vb, &student.feature_taps(), &teacher_taps, num_classes)?),
                )
            }
            (None, Some(t)) if cfg.distill.uses_features() => {
                let vb = seeded_var_builder(&adapter_vars, cfg.seed ^ 0xADA9, &device);
                (Some(FeatureDistiller::new(vb, &student.feature_taps(), &t.feature_taps())?), None)
            }
            _ => (None, None),
        };
        let class_weights = cfg.class_weights.then(|| class_weights(&data.train));
        let drop_last = data.train.len() >= cfg.batch;
        let steps_per_epoch = batches_per_epoch(data.train.len(), cfg.batch, drop_last);
        let total_steps = steps_per_epoch * cfg.epochs;
        let mut params = trainable(&student_vars, "model/");
        if cfg.freeze_bn {
            params.retain(|(name, _)| !is_batch_norm_affine(&student_vars, name.trim_start_matches("model/")));
        }
        params.extend(trainable(&adapter_vars, "adapters/"));
        let mut optimizer = Optimizer::new(cfg.optimizer.clone(), params);
        let mut schedule = Schedule::new(cfg.schedule.clone(), cfg.optimizer.lr, total_steps, steps_per_epoch);

        // Rows of metrics.csv are kept up to where the checkpoint stood when it was written.
        let mut log_until = None;
        let state = match resumed {
            Some(ckpt) => {
                log_until = Some((ckpt.state.epoch, ckpt.state.step));
                let path = checkpoint::last_path(&run_dir);
                load_varmap(&student_vars, &ckpt.model, "student", &path)?;
                load_varmap(&adapter_vars, &ckpt.adapters, "adapter", &path)?;
                optimizer.load_moments(&ckpt.moments, ckpt.state.optimizer.clone())?;
                schedule.plateau = ckpt.state.plateau.clone();
                let mut state = CheckpointState { config: cfg.clone(), ..ckpt.state };
                let old_batch = ckpt.state.config.batch;
                if old_batch != cfg.batch {
                    let old_drop_last = data.train.len() >= old_batch;
                    let old_steps = batches_per_epoch(data.train.len(), old_batch, old_drop_last).max(1);
                    let (step_before, batch_before) = (state.step, state.batch_in_epoch);
                    // The same place in the epoch (in samples) and in the schedule (in epochs).
                    state.batch_in_epoch = state.batch_in_epoch * old_batch / cfg.batch;
                    state.step = state.epoch * steps_per_epoch + state.batch_in_epoch;
                    send(
                        events,
                        TrainEvent::Message(format!(
                            "batch size {} (was {old_batch}): {steps_per_epoch} steps per epoch instead of {old_steps}; \
                             the learning-rate schedule is re-laid over {total_steps} steps and continues at the same \
                             point (step {step_before} → {}, batch {batch_before} → {} of this epoch); the result is \
                             not bit-identical to a run trained at one batch size",
                            cfg.batch, state.step, state.batch_in_epoch
                        )),
                    );
                }
                state
            }
            None => {
                if let Some(path) = &cfg.backbone_weights {
                    let n = load_backbone(&student_vars, path).context("loading the backbone weights")?;
                    send(
                        events,
                        TrainEvent::Message(format!("loaded {n} ImageNet backbone tensors from {}", path.display())),
                    );
                }
                if let Some(path) = &cfg.init_weights {
                    let loaded = load_student_weights(&student_vars, path).context("loading the initial weights")?;
                    let mut note = format!("started from {} tensors of {}", loaded.loaded, path.display());
                    if let Some(c) = &loaded.new_classifier {
                        note.push_str(&format!(
                            "; it predicts {} classes and this dataset has {}, so its final classifier layers \
                             ({}) start afresh",
                            c.file_classes,
                            c.model_classes,
                            c.keys.join(", ")
                        ));
                    }
                    send(events, TrainEvent::Message(note));
                }
                CheckpointState {
                    version: checkpoint::FORMAT_VERSION,
                    config: cfg.clone(),
                    epoch: 0,
                    batch_in_epoch: 0,
                    step: 0,
                    epoch_loss_sum: 0.0,
                    epoch_loss_count: 0,
                    optimizer: OptimizerState::default(),
                    plateau: Default::default(),
                    best: None,
                    history: Vec::new(),
                    train_seconds: 0.0,
                    cache_seconds: 0.0,
                    inputs: InputDigests {
                        data: Some(crate::train::relocate::data_digest(&data.train, &data.val)),
                        teacher: match (&teacher, &cfg.teacher_weights) {
                            (Some(_), Some(path)) => Some(crate::train::relocate::file_digest(path)?),
                            _ => None,
                        },
                    },
                }
            }
        };
        let (log, log_note) = MetricsLog::open(
            &crate::train::run_folder::metrics_path(&run_dir),
            Some(log_until.unwrap_or((state.epoch, state.step))),
            &{
                let names: Option<Vec<String>> =
                    cfg.loss_terms.as_ref().map(|t| t.0.iter().map(|t| t.kind.name().to_string()).collect());
                names.unwrap_or_default()
            },
        )?;
        if let Some(note) = log_note {
            send(events, TrainEvent::Message(note));
        }
        let tensorboard = match EventWriter::create(&run_dir, (state.step > 0).then_some(state.step)) {
            Ok(w) => Some(w),
            Err(e) => {
                send(events, TrainEvent::Message(format!("no TensorBoard log this session: {e:#}")));
                None
            }
        };
        Ok(Self {
            cfg,
            run_dir,
            device,
            precision,
            events,
            control,
            folder,
            student,
            student_vars,
            teacher,
            distiller,
            terms,
            adapter_vars,
            optimizer,
            schedule,
            class_weights,
            data,
            steps_per_epoch,
            total_steps,
            state,
            log,
            tensorboard,
            skipped_train: BTreeMap::new(),
            skipped_val: Vec::new(),
            skipped_unlabeled: BTreeMap::new(),
        })
    }

    pub(super) fn augment(&self) -> Augment {
        Augment {
            resize: Resize::ShorterSide(self.cfg.size),
            scale_range: self.cfg.scale,
            crop: Some((self.cfg.size, self.cfg.size)),
            hflip: self.cfg.hflip,
            jitter: self.cfg.color_jitter.then(ColorJitter::default),
        }
    }

    pub(super) fn loader_config(&self) -> LoaderConfig {
        let workers = if self.cfg.workers == 0 { crate::util::available_threads() } else { self.cfg.workers };
        LoaderConfig {
            batch_size: self.cfg.batch,
            shuffle: true,
            drop_last: self.data.train.len() >= self.cfg.batch,
            workers,
            prefetch: 2 * workers,
            seed: self.cfg.seed,
        }
    }

    pub(super) fn val_resize(&self) -> Resize {
        Resize::ShorterSide(self.cfg.val_size.unwrap_or(self.cfg.size))
    }

    /// The teacher caches of the labelled and the unlabelled images, when the run distils and the
    /// cache is on; `None` when the user stopped while they were being built. Every image of a
    /// step gets its teacher targets the same way: when either set cannot be cached, the teacher
    /// runs live for both; once both are cached the teacher itself is dropped.
    pub(super) fn teacher_caches(&mut self) -> anyhow::Result<Option<TeacherCaches>> {
        let sets: Vec<(Arc<Dataset>, &str)> = std::iter::once((self.data.train.clone(), "teacher cache"))
            .chain(self.data.unlabeled.clone().map(|u| (u, "teacher cache (unlabelled images)")))
            .collect();
        let mut caches = Vec::new();
        for (dataset, what) in sets {
            let t0 = Instant::now();
            match self.prepare_teacher_cache(&dataset, what)? {
                Some(Prepared::Stopped) => return Ok(None),
                Some(Prepared::Ready(cache)) => {
                    if !cache.unusable().is_empty() {
                        self.emit(TrainEvent::Message(format!(
                            "{} image(s) of split '{}' could not be decoded for the teacher cache; training skips them",
                            cache.unusable().len(),
                            dataset.split
                        )));
                    }
                    self.emit(TrainEvent::Message(format!(
                        "teacher outputs cached for split '{}' in {} ({:.0} s)",
                        dataset.split,
                        cache.dir().display(),
                        t0.elapsed().as_secs_f64()
                    )));
                    caches.push(Some(Arc::new(cache)));
                }
                Some(Prepared::Skipped(why)) => {
                    self.emit(TrainEvent::Message(why));
                    caches.push(None);
                }
                None => caches.push(None),
            }
        }
        if caches.iter().any(Option::is_none) {
            return Ok(Some(TeacherCaches::default()));
        }
        self.emit(TrainEvent::Message("the teacher no longer runs during training".into()));
        self.teacher = None;
        let mut caches = caches.into_iter().flatten();
        Ok(Some(TeacherCaches { train: caches.next(), unlabeled: caches.next() }))
    }

    /// Builds or opens the teacher cache of `dataset` when the run distils and the cache is on
    /// (`None` otherwise).
    fn prepare_teacher_cache(&mut self, dataset: &Dataset, what: &str) -> anyhow::Result<Option<Prepared>> {
        let (Some(teacher), Some(weights)) = (&self.teacher, &self.cfg.teacher_weights) else { return Ok(None) };
        if !self.cfg.teacher_cache {
            return Ok(None);
        }
        let maps = match (&self.distiller, &self.terms) {
            (Some(d), _) => Some(d.teacher_maps()),
            (None, Some(t)) => Some(t.teacher_maps()),
            (None, None) => None,
        };
        let features = match maps {
            Some(maps) => {
                let taps = teacher.feature_taps();
                maps.iter().filter_map(|n| taps.iter().find(|t| t.name == *n)).map(|t| (t.name, t.stride)).collect()
            }
            None => Vec::new(),
        };
        let spec =
            CacheSpec { base: Resize::ShorterSide(self.cfg.size), logits: self.cfg.uses_teacher_logits(), features };
        let location = CacheLocation {
            root: self.cfg.teacher_cache_root(),
            budget_bytes: (self.cfg.teacher_cache_gb.max(0.0) * 1e9) as u64,
        };
        let what = what.to_string();
        let events = self.events;
        let mut progress = |done, total| send(events, TrainEvent::Preparing { what: what.clone(), done, total });
        let t0 = Instant::now();
        let prepared =
            teacher_cache::prepare(teacher, weights, dataset, spec, &location, &self.device, &mut progress, &|| {
                self.wait_while_paused()
            })
            .context("building the teacher cache")?;
        self.state.cache_seconds += t0.elapsed().as_secs_f64();
        Ok(Some(prepared))
    }
}
