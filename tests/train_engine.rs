//! The training engine end to end on the demo dataset: three distillation modes learn, the
//! teacher stays frozen, stop/resume is bit-identical, NaN stops a run without losing its last
//! checkpoint, and the event stream obeys pause / resume / stop.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use candle_core::{Device, Tensor};
use common::*;
use segdistill::data::Dataset;
use segdistill::data::transforms::Resize;
use segdistill::distill::{self, DistillMode, FeatureDistiller, LossConfig, Target, TeacherSignal};
use segdistill::model::{Mode, ModelKind, build_trainable};
use segdistill::train::checkpoint;
use segdistill::train::config::ScheduleKind;
use segdistill::train::events::{EndReason, TrainEvent};
use segdistill::train::validate::evaluate;
use segdistill::train::{TrainConfig, start};

fn teacher_weights() -> PathBuf {
    torchvision_weights("fcn_resnet50_random_legacy.pth")
}

fn config(data: &Path, runs: &Path, name: &str, model: ModelKind, mode: DistillMode) -> TrainConfig {
    let mut c = TrainConfig {
        model,
        distill: mode,
        teacher_weights: mode.needs_teacher().then(teacher_weights),
        scale: (0.75, 1.25),
        seed: 7,
        ..tiny_config(data, runs, name)
    };
    c.optimizer.lr = 3e-3;
    c.schedule.kind = ScheduleKind::Constant;
    c
}

fn untrained_miou(cfg: &TrainConfig) -> f64 {
    let t = build_trainable(cfg.model, 21, cfg.seed, &Device::Cpu).unwrap();
    let mut val = Dataset::open(&cfg.data, None, "val").unwrap();
    val.retain_present();
    let out = evaluate(&t.model, Arc::new(val), Resize::ShorterSide(cfg.size), &Device::Cpu, &|_, _| {}).unwrap();
    out.confusion.mean_iou()
}

#[test]
fn each_mode_learns_on_the_demo_data() {
    let (_d, data) = demo_dataset(48, 8, 72);
    let runs = tempfile::tempdir().unwrap();
    for mode in [DistillMode::None, DistillMode::Response, DistillMode::Feature] {
        let mut cfg = config(&data, runs.path(), mode.name(), ModelKind::Mbv3sTiny, mode);
        (cfg.epochs, cfg.batch, cfg.optimizer.lr) = (6, 8, 5e-3);
        let before = untrained_miou(&cfg);
        let (result, events) = run_to_end(cfg.clone(), false);
        let summary = result.unwrap_or_else(|e| panic!("{mode:?}: {e:#}"));
        assert_eq!(summary.reason, EndReason::Completed);
        let steps: Vec<_> =
            events.iter().filter_map(|e| if let TrainEvent::Step(s) = e { Some(s.clone()) } else { None }).collect();
        assert_eq!(steps.len(), 36, "6 steps × 6 epochs");
        let mean =
            |s: &[segdistill::train::events::StepMetrics]| s.iter().map(|m| m.loss).sum::<f64>() / s.len() as f64;
        let (first, last) = (mean(&steps[..6]), mean(&steps[30..]));
        assert!(last < first, "{mode:?}: loss falls ({first:.4} → {last:.4})");
        assert_eq!(steps[0].kd.is_some(), mode == DistillMode::Response, "{mode:?}: KD logged only when used");
        assert_eq!(steps[0].feature.is_some(), mode == DistillMode::Feature);
        let evals: Vec<_> = events
            .iter()
            .filter_map(|e| if let TrainEvent::Evaluated(m) = e { Some(m.clone()) } else { None })
            .collect();
        assert_eq!(evals.len(), 6);
        let best = summary.best_miou.unwrap();
        eprintln!(
            "{mode:?}: loss {first:.3} → {last:.3}, mIoU {before:.4} → {:?}",
            evals.iter().map(|e| e.miou).collect::<Vec<_>>()
        );
        assert!(best > before + 0.05, "{mode:?}: best mIoU {best:.4} not above untrained {before:.4}");
        // More than background: some object class is segmented.
        let objects = evals.last().unwrap().iou.iter().skip(1).flatten().filter(|&&v| v > 0.1).count();
        assert!(objects >= 1, "{mode:?}: no object class reaches IoU 0.1");
        // Feature mode trains its adapters: they moved from their seeded initial values.
        let ckpt = checkpoint::load(&checkpoint::last_path(&cfg.run_dir())).unwrap();
        if mode == DistillMode::Feature {
            assert_eq!(ckpt.adapters.len(), 6, "three 1×1 adapters (weight + bias)");
            let vm = candle_nn::VarMap::new();
            let vb = segdistill::model::weights::init::seeded_var_builder(&vm, cfg.seed ^ 0xADA9, &Device::Cpu);
            let student = build_trainable(cfg.model, 21, 0, &Device::Cpu).unwrap();
            FeatureDistiller::new(
                vb,
                &student.model.feature_taps(),
                &segdistill::model::fcn::FcnResNet::feature_taps(),
            )
            .unwrap();
            let init = vm.data().lock().unwrap()["adapters.high.weight"].as_tensor().clone();
            let moved = (&ckpt.adapters["adapters.high.weight"] - &init)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(moved > 1e-4, "adapters were trained (moved {moved})");
        } else {
            assert!(ckpt.adapters.is_empty());
        }
        assert!(checkpoint::student_path(&cfg.run_dir()).is_file());
        let csv = std::fs::read_to_string(cfg.run_dir().join("metrics.csv")).unwrap();
        assert_eq!(csv.lines().filter(|l| l.starts_with("step,")).count(), 36);
        assert_eq!(csv.lines().filter(|l| l.starts_with("epoch,")).count(), 6);
    }

    // `report` over the three runs: the table, the curves and the overlays.
    let out = runs.path().join("report");
    let dirs: Vec<String> =
        ["none", "response", "feature"].iter().map(|n| runs.path().join(n).display().to_string()).collect();
    let mut args = vec!["report"];
    args.extend(dirs.iter().map(|s| s.as_str()));
    args.extend(["--out", out.to_str().unwrap(), "--overlays", "2", "--device", "cpu"]);
    let o = segdistill(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for row in [
        "| teacher | fcn-resnet50 |",
        "| none | mbv3s-tiny | none |",
        "| response | mbv3s-tiny | response |",
        "| feature | mbv3s-tiny | feature |",
    ] {
        assert!(md.contains(row), "missing `{row}` in\n{md}");
    }
    assert!(md.contains("+0.") || md.contains("-0."), "Δ mIoU against the no-distillation run: {md}");
    let mut pngs = vec!["loss.png".to_string(), "val_loss.png".into(), "miou.png".into()];
    for n in ["none", "response", "feature"] {
        pngs.push(format!("overlays_{n}_best.png"));
        pngs.push(format!("overlays_{n}_worst.png"));
    }
    for p in pngs {
        let img = image::open(out.join(&p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(img.width() >= 600 && img.height() >= 150, "{p} is {}×{}", img.width(), img.height());
        assert!(md.contains(&format!("]({p})")), "report.md links {p}");
    }
}

#[test]
fn the_teacher_receives_no_gradient() {
    // A teacher made of trainable variables, so that a missing detach would show up as a gradient.
    let dev = Device::Cpu;
    let teacher = build_trainable(ModelKind::FcnResnet50, 21, 1, &dev).unwrap();
    let student = build_trainable(ModelKind::Mbv3sTiny, 21, 2, &dev).unwrap();
    let x = Tensor::randn(0f32, 1., (2, 3, 32, 32), &dev).unwrap();
    let labels: Vec<u8> = (0..2 * 32 * 32).map(|i| (i % 21) as u8).collect();
    let target = Target::new(&labels, (2, 32, 32), None, &dev).unwrap();
    let adapters = candle_nn::VarMap::new();
    let vb = segdistill::model::weights::init::seeded_var_builder(&adapters, 3, &dev);
    let distiller = FeatureDistiller::new(vb, &student.model.feature_taps(), &teacher.model.feature_taps()).unwrap();
    for mode in [DistillMode::Response, DistillMode::Feature, DistillMode::Combined] {
        let t_out = teacher.model.forward(&x, Mode::Eval).unwrap();
        let signal = TeacherSignal { logits: Some(&t_out.logits), features: &t_out.features };
        let s_out = student.model.forward(&x, Mode::train(1)).unwrap();
        let loss = distill::total_loss(mode, &LossConfig::default(), &s_out, Some(&signal), &target, Some(&distiller))
            .unwrap();
        let grads = loss.total.backward().unwrap();
        let teacher_vars = teacher.varmap.all_vars();
        let with_grad = teacher_vars.iter().filter(|v| grads.get(v).is_some()).count();
        assert_eq!(with_grad, 0, "{mode:?}: {with_grad} teacher tensors got a gradient");
        let student_with_grad = student.varmap.all_vars().iter().filter(|v| grads.get(v).is_some()).count();
        assert!(student_with_grad > 50, "{mode:?}: the student does learn");
    }
}

fn deterministic_columns(csv: &str) -> Vec<String> {
    // Drop images_per_sec and elapsed_s (timings).
    csv.lines().map(|l| l.split(',').take(11).collect::<Vec<_>>().join(",")).collect()
}

fn history_without_timing(path: &Path) -> Vec<(usize, usize, f64, f64, f64)> {
    let c = checkpoint::load(path).unwrap();
    c.state.history.iter().map(|h| (h.epoch, h.step, h.train_loss, h.val_loss, h.miou)).collect()
}

fn assert_same_weights(a: &Path, b: &Path) {
    let (a, b) = (checkpoint::load(a).unwrap(), checkpoint::load(b).unwrap());
    assert_eq!(a.model.len(), b.model.len());
    for (k, t) in &a.model {
        let d = (t - &b.model[k]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0, "{k} differs by {d}");
    }
    for (k, t) in &a.moments {
        let d = (t - &b.moments[k]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0, "optimizer moment {k} differs");
    }
    assert_eq!(a.state.step, b.state.step);
    assert_eq!(a.state.optimizer, b.state.optimizer);
}

#[test]
fn stopped_and_resumed_runs_end_bit_identical() {
    let (_d, data) = demo_dataset(20, 6, 64);
    let runs = tempfile::tempdir().unwrap();
    // Dropout (mbv3s-aspp), colour jitter, random scale and response KD all in play.
    let base = |name: &str| {
        let mut c = config(&data, runs.path(), name, ModelKind::Mbv3sAspp, DistillMode::Response);
        c.epochs = 2;
        c.schedule.kind = ScheduleKind::Poly;
        c
    };
    let (r, _) = run_to_end(base("straight"), false);
    r.unwrap();
    // Stopped after epoch 1, then resumed.
    let mut first = base("split");
    first.stop_after_epoch = Some(1);
    let (r, _) = run_to_end(first, false);
    assert_eq!(r.unwrap().reason, EndReason::Stopped);
    let (r, events) = run_to_end(base("split"), true);
    assert_eq!(r.unwrap().reason, EndReason::Completed);
    assert!(events.iter().any(|e| matches!(e, TrainEvent::Started(i) if i.resumed_from == Some((1, 5)))));
    let (a, b) = (runs.path().join("straight"), runs.path().join("split"));
    assert_same_weights(&checkpoint::last_path(&a), &checkpoint::last_path(&b));
    assert_eq!(history_without_timing(&checkpoint::last_path(&a)), history_without_timing(&checkpoint::last_path(&b)));
    let csv = |d: &Path| deterministic_columns(&std::fs::read_to_string(d.join("metrics.csv")).unwrap());
    assert_eq!(csv(&a), csv(&b), "metrics.csv rows equal");

    // Stopped mid-epoch through the engine API, then resumed: the same again.
    let handle = start(base("mid"), false);
    for e in handle.events.iter() {
        if matches!(&e, TrainEvent::Step(s) if s.step == 3) {
            handle.stop();
        }
        if matches!(e, TrainEvent::Finished(_) | TrainEvent::Failed { .. }) {
            assert!(matches!(e, TrainEvent::Finished(ref s) if s.reason == EndReason::Stopped), "{e:?}");
            break;
        }
    }
    drop(handle);
    let stopped = checkpoint::load(&checkpoint::last_path(&runs.path().join("mid"))).unwrap();
    assert!(stopped.state.batch_in_epoch > 0, "stopped inside an epoch");
    let (r, _) = run_to_end(base("mid"), true);
    r.unwrap();
    assert_same_weights(&checkpoint::last_path(&a), &checkpoint::last_path(&runs.path().join("mid")));
    assert_eq!(csv(&a), csv(&runs.path().join("mid")));
}

#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let (_d, data) = demo_dataset(12, 4, 64);
    let runs = tempfile::tempdir().unwrap();
    let mut cfg = config(&data, runs.path(), "nan", ModelKind::Mbv3sTiny, DistillMode::None);
    cfg.stop_after_epoch = Some(1);
    run_to_end(cfg.clone(), false).0.unwrap();
    // A resume keeps the saved optimiser settings: switch clipping off in the saved state, then
    // resume with an absurd learning rate, so the weights overflow within a step.
    let run_dir = cfg.run_dir();
    let mut saved = checkpoint::load(&checkpoint::last_path(&run_dir)).unwrap();
    saved.state.config.optimizer.grad_clip = None;
    checkpoint::save(&checkpoint::last_path(&run_dir), &saved).unwrap();
    let good = std::fs::read(checkpoint::last_path(&run_dir)).unwrap();
    cfg.stop_after_epoch = None;
    cfg.optimizer.lr = 1e30;
    cfg.optimizer.grad_clip = None;
    let (result, events) = run_to_end(cfg, true);
    let err = format!("{:#}", result.expect_err("the run must fail"));
    let last = checkpoint::last_path(&run_dir).display().to_string();
    assert!(err.contains("loss became") && err.contains(&last) && err.contains("(epoch 1,"), "{err}");
    assert!(err.contains("turn gradient clipping on"), "clipping was off: {err}");
    assert!(!events.iter().any(|e| matches!(e, TrainEvent::CheckpointSaved { .. })), "nothing saved after the NaN");
    assert_eq!(
        std::fs::read(checkpoint::last_path(&run_dir)).unwrap(),
        good,
        "last good checkpoint kept byte for byte"
    );
    // The engine thread reports it as a Failed event.
    let mut c2 = config(&data, runs.path(), "nan", ModelKind::Mbv3sTiny, DistillMode::None);
    c2.optimizer.lr = 1e30;
    c2.optimizer.grad_clip = None;
    let handle = start(c2, true);
    let last = handle.events.iter().last().unwrap();
    assert!(matches!(last, TrainEvent::Failed { ref message, .. } if message.contains("loss became")), "{last:?}");
}

#[test]
fn event_stream_follows_pause_resume_and_stop() {
    let (_d, data) = demo_dataset(16, 4, 64);
    let runs = tempfile::tempdir().unwrap();
    let mut cfg = config(&data, runs.path(), "api", ModelKind::Mbv3sTiny, DistillMode::None);
    cfg.epochs = 50;
    let handle = start(cfg.clone(), false);
    let next = |pred: &dyn Fn(&TrainEvent) -> bool| -> TrainEvent {
        loop {
            let e = handle.events.recv_timeout(Duration::from_secs(60)).expect("an event within 60 s");
            if pred(&e) {
                return e;
            }
        }
    };
    let started = next(&|e| matches!(e, TrainEvent::Started(_)));
    let TrainEvent::Started(info) = started else { unreachable!() };
    assert_eq!((info.train_images, info.val_images, info.steps_per_epoch), (16, 4, 4));
    next(&|e| matches!(e, TrainEvent::Step(_)));
    handle.pause();
    next(&|e| matches!(e, TrainEvent::Paused));
    // While paused, no steps arrive.
    std::thread::sleep(Duration::from_millis(300));
    assert!(handle.events.try_iter().all(|e| !matches!(e, TrainEvent::Step(_))), "no steps while paused");
    handle.resume();
    next(&|e| matches!(e, TrainEvent::Resumed));
    next(&|e| matches!(e, TrainEvent::Step(_)));
    handle.stop();
    let end = next(&|e| matches!(e, TrainEvent::Finished(_) | TrainEvent::Failed { .. }));
    assert!(matches!(end, TrainEvent::Finished(ref s) if s.reason == EndReason::Stopped), "{end:?}");
    assert!(checkpoint::last_path(&cfg.run_dir()).is_file(), "stop writes a checkpoint");
}

#[test]
fn every_loss_term_trains_the_student_only_and_the_presets_are_their_term_lists() {
    use segdistill::distill::loss_terms::{LossTerms, TermsDistiller};
    let dev = Device::Cpu;
    let teacher = build_trainable(ModelKind::FcnResnet50, 21, 1, &dev).unwrap();
    let student = build_trainable(ModelKind::Mbv3sTiny, 21, 2, &dev).unwrap();
    let x = Tensor::randn(0f32, 1., (2, 3, 32, 32), &dev).unwrap();
    let labels: Vec<u8> = (0..2 * 32 * 32).map(|i| if i % 7 == 0 { 255 } else { (i % 21) as u8 }).collect();
    let target = Target::new(&labels, (2, 32, 32), None, &dev).unwrap();
    let adapters = candle_nn::VarMap::new();
    let vb = segdistill::model::weights::init::seeded_var_builder(&adapters, 3, &dev);
    let (s_taps, t_taps) = (student.model.feature_taps(), teacher.model.feature_taps());
    let t_out = teacher.model.forward(&x, Mode::Eval).unwrap();
    let signal = TeacherSignal { logits: Some(&t_out.logits), features: &t_out.features };
    let s_out = student.model.forward(&x, Mode::train(1)).unwrap();

    let all: LossTerms =
        "ce,kd,cwd-logits,cwd-features,pairwise,ifvd,cirkd,cirkd-region,at,fitnet,dist".parse().unwrap();
    let d = TermsDistiller::new(all, vb.clone(), &s_taps, &t_taps, 21).unwrap();
    assert_eq!(d.teacher_maps(), ["layer4"]);
    let parts = distill::terms_loss(&d, &LossConfig::default(), &s_out, Some(&signal), &target).unwrap();
    assert_eq!(parts.terms.len(), 11);
    for (k, v) in &parts.terms {
        let v = v.to_scalar::<f32>().unwrap();
        assert!(v.is_finite() && v >= 0.0, "{}: {v}", k.name());
    }
    let grads = parts.total.backward().unwrap();
    assert_eq!(teacher.varmap.all_vars().iter().filter(|v| grads.get(v).is_some()).count(), 0, "teacher gradient");
    assert!(student.varmap.all_vars().iter().filter(|v| grads.get(v).is_some()).count() > 50);
    assert_eq!(adapters.all_vars().iter().filter(|v| grads.get(v).is_some()).count(), 6, "three adapters learn");

    // A preset and its term list give the same loss (the feature adapters shared by name).
    let cfg = LossConfig::default();
    let preset = FeatureDistiller::new(vb.clone(), &s_taps, &t_taps).unwrap();
    let old = distill::total_loss(DistillMode::Combined, &cfg, &s_out, Some(&signal), &target, Some(&preset)).unwrap();
    let list = TermsDistiller::new(LossTerms::preset(DistillMode::Combined, &cfg), vb, &s_taps, &t_taps, 21).unwrap();
    let new = distill::terms_loss(&list, &cfg, &s_out, Some(&signal), &target).unwrap();
    let (a, b) = (old.total.to_scalar::<f32>().unwrap(), new.total.to_scalar::<f32>().unwrap());
    assert!((a - b).abs() <= 1e-6 * a.abs(), "preset {a} vs term list {b}");
}

#[test]
fn a_term_list_run_logs_every_term_by_name() {
    let (_d, data) = demo_dataset(8, 4, 64);
    let runs = tempfile::tempdir().unwrap();
    let mut cfg = config(&data, runs.path(), "terms", ModelKind::Mbv3sTiny, DistillMode::None);
    cfg.loss_terms = Some("ce=1,kd=0.5,cwd-logits=3,at=100".parse().unwrap());
    cfg.teacher_weights = Some(teacher_weights());
    cfg.epochs = 1;
    let (result, events) = run_to_end(cfg.clone(), false);
    result.unwrap();
    let steps: Vec<_> =
        events.iter().filter_map(|e| if let TrainEvent::Step(s) = e { Some(s.clone()) } else { None }).collect();
    assert!(!steps.is_empty());
    let names: Vec<&str> = steps[0].terms.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ce", "kd", "cwd-logits", "at"]);
    assert_eq!(steps[0].kd, Some(steps[0].terms[1].1), "the kd column is the kd term");
    let csv = std::fs::read_to_string(runs.path().join("terms/metrics.csv")).unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",term_ce,term_kd,term_cwd-logits,term_at"), "{csv}");
    let saved = checkpoint::load_state(&runs.path().join("terms/checkpoints/last.safetensors"));
    if let Ok(state) = saved {
        assert_eq!(state.config.loss_terms, cfg.loss_terms, "the term list is part of the run");
    }
}
