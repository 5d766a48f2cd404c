//! Whether a run folder may be started or resumed, and from where: a fresh start needs a folder
//! that holds no run; a resume takes the run's own configuration and its newest intact checkpoint.

use super::*;

/// A new run needs a folder that is new, empty, or holds nothing but an unfinished claim of no run.
pub(super) fn fresh_start(cfg: TrainConfig, run_dir: &Path) -> anyhow::Result<TrainConfig> {
    let last = checkpoint::last_path(run_dir);
    if let Ok(state) = checkpoint::load_state(&last) {
        anyhow::bail!(
            "run folder {} already holds a run ({} of {} epochs done): pass --resume to continue it, or choose \
             another --out",
            run_dir.display(),
            state.epoch,
            state.config.epochs
        );
    }
    if last.exists() {
        anyhow::bail!(
            "run folder {} already holds a run whose last checkpoint cannot be read: pass --resume to continue it \
             from its newest intact checkpoint, or choose another --out",
            run_dir.display()
        );
    }
    if run_folder::holds_run(run_dir) {
        if run_folder::read_config(run_dir).is_some_and(|c| !c.data.as_os_str().is_empty()) {
            anyhow::bail!(
                "run folder {} already holds a run that has not finished an epoch yet: pass --resume to continue \
                 it with its saved settings, or choose another --out",
                run_dir.display()
            );
        }
        anyhow::bail!(
            "{} holds a config.json that is not a segdistill run's (it names no dataset); choose another folder \
             for --out (the folder is left as it is)",
            run_dir.display()
        );
    }
    let foreign = run_folder::foreign_entries(run_dir);
    if !foreign.is_empty() {
        anyhow::bail!(
            "{} is not empty and not a run folder (it holds {}{}); choose a new or empty folder for --out",
            run_dir.display(),
            foreign.iter().take(3).map(|n| crate::util::fmt::escaped(n)).collect::<Vec<_>>().join(", "),
            if foreign.len() > 3 { format!(" and {} more", foreign.len() - 3) } else { String::new() }
        );
    }
    Ok(cfg)
}

/// Where a resumed run continues from, and with which configuration: the run's own, where
/// `requested` may only change the settings in [`RESUMABLE`](crate::train::config::RESUMABLE), point to
/// inputs that moved (same content), or change the batch size.
pub(super) fn resume_point(
    requested: TrainConfig,
    run_dir: &Path,
    events: &Sender<TrainEvent>,
) -> anyhow::Result<(TrainConfig, Option<Checkpoint>)> {
    let any_checkpoint = checkpoint::last_path(run_dir).exists() || checkpoint::best_path(run_dir).exists();
    let (saved, ckpt) = if any_checkpoint {
        let (ckpt, note) = checkpoint::load_resumable(run_dir)?;
        if let Some(note) = note {
            send(events, TrainEvent::Message(note));
        }
        let reconciled = crate::train::best_weights::reconcile(run_dir, &ckpt.state)?;
        for note in reconciled.notes {
            send(events, TrainEvent::Message(note));
        }
        (ckpt.state.config.clone(), Some(ckpt))
    } else {
        let saved = run_folder::saved_config(run_dir)?.with_context(|| {
            format!("nothing to resume: {} holds no run (start one without --resume)", run_dir.display())
        })?;
        anyhow::ensure!(
            !saved.data.as_os_str().is_empty(),
            "nothing to resume: {} names no dataset, so it is not a segdistill run (start a new run elsewhere)",
            run_folder::config_path(run_dir).display()
        );
        send(
            events,
            TrainEvent::Message("no checkpoint yet: the run starts from its beginning with its saved settings".into()),
        );
        (saved, None)
    };
    // Runs of older versions stored paths as typed; they are read from the current directory.
    let changes = saved.with_absolute_paths().changes_to(&requested);
    let inputs = ckpt.as_ref().map(|c| c.state.inputs.clone()).unwrap_or_default();
    for c in changes.iter().filter(|c| !c.resumable()) {
        let open_splits = |cfg: &TrainConfig| {
            let (quiet, _) = crossbeam_channel::unbounded();
            Ok((
                open_split(cfg, &cfg.train_split, cfg.train_limit, &quiet)?,
                open_split(cfg, &cfg.val_split, cfg.val_limit, &quiet)?,
            ))
        };
        let verdict = if c.refused_on_resume() {
            Err(String::new())
        } else {
            crate::train::relocate::allowed_change(c, &requested, &inputs, &open_splits)
        };
        let note = verdict.map_err(|why| {
            anyhow::anyhow!(
                "cannot resume {} with {} {}: the run was made with {} {}{why} (only {} can change on resume)",
                run_dir.display(),
                crate::train::relocate::flag_of(&c.setting).unwrap_or(&c.setting),
                c.new,
                c.setting,
                c.old,
                crate::train::config::resumable_in_words()
            )
        })?;
        send(events, TrainEvent::Message(note));
    }
    for c in changes.iter().filter(|c| c.resumable() && c.setting != "name" && c.setting != "runs_dir") {
        send(events, TrainEvent::Message(format!("resuming with {} {} (was {})", c.setting, c.new, c.old)));
    }
    Ok((requested, ckpt))
}

/// The export target is checked before training, not after hours of it.
pub(super) fn check_export(cfg: &TrainConfig) -> anyhow::Result<()> {
    let Some(export) = &cfg.export else { return Ok(()) };
    run_folder::check_export_path(export, &cfg.run_dir())?;
    let mut inputs: Vec<(&str, &Path)> = Vec::new();
    if let Some(p) = &cfg.teacher_weights {
        inputs.push(("--teacher-weights", p));
    }
    if let Some(p) = &cfg.backbone_weights {
        inputs.push(("--backbone-weights", p));
    }
    if let Some(p) = &cfg.init_weights {
        inputs.push(("--init-weights", p));
    }
    let output = crate::util::fs::Output { flag: "--export", path: export, extensions: &["safetensors", "onnx"] };
    crate::util::fs::check_outputs(&inputs, &[output])?;
    crate::util::fs::check_writable("--export", export)
}
