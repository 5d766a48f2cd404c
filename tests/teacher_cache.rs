//! The teacher cache against the live teacher (torchvision's FCN-ResNet50 architecture with the
//! fixture's weights): the same view gives the same targets up to f16 rounding; augmented crops
//! agree with the teacher run on the crop itself; damaged entries are rebuilt; a run uses the
//! cache (and can turn it off).

mod common;

use std::path::{Path, PathBuf};

use candle_core::{Device, IndexOp as _, Tensor};
use common::*;
use segdistill::data::Dataset;
use segdistill::data::loader::collate;
use segdistill::data::transforms::{Augment, Geometry, Resize, normalize};
use segdistill::distill::DistillMode;
use segdistill::distill::teacher_cache::{self, CacheLocation, CacheSpec, Prepared, TeacherCache};
use segdistill::model::{Mode, Model, ModelKind, load_for_inference};
use segdistill::train::TrainConfig;
use segdistill::train::events::TrainEvent;
use segdistill::util::Rng;

/// The base view the teacher sees: sizes on its stride-8 grid, where the live teacher's own
/// resize of its logits (`align_corners = false`) and the cache's stride geometry coincide. (Other
/// sizes differ by the live resize's sub-cell stretch; training crops are multiples of 8.)
const BASE: Resize = Resize::Fixed { width: 72, height: 64 };

fn teacher_weights() -> PathBuf {
    torchvision_weights("fcn_resnet50_random_legacy.pth")
}

fn spec() -> CacheSpec {
    CacheSpec { base: BASE, logits: true, features: vec![("layer1", 4), ("layer2", 8), ("layer4", 8)] }
}

fn build(teacher: &Model, ds: &Dataset, root: &Path) -> (TeacherCache, Vec<(usize, usize)>) {
    let mut progress = Vec::new();
    let location = CacheLocation { root: root.to_path_buf(), budget_bytes: 1 << 30 };
    let prepared = teacher_cache::prepare(
        teacher,
        &teacher_weights(),
        ds,
        spec(),
        &location,
        &Device::Cpu,
        &mut |d, t| progress.push((d, t)),
        &|| true,
    )
    .unwrap();
    match prepared {
        Prepared::Ready(c) => (c, progress),
        _ => panic!("the cache was not built"),
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Largest |a − b| relative to the largest |b|.
fn rel_max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Per image (batches of one, so no padding): the live teacher's logits and features on the
/// augmented view, and the cached targets for the same view, in the order logits, layer1, layer2,
/// layer4.
fn live_and_cached(
    teacher: &Model,
    cache: &TeacherCache,
    ds: &Dataset,
    aug: &Augment,
    seed: u64,
) -> Vec<Vec<(Tensor, Tensor)>> {
    (0..ds.len())
        .map(|i| {
            let item = aug.apply(ds.load(i).unwrap(), &mut Rng::new(seed + i as u64));
            let batch = collate(&[i], vec![item]);
            let shape = (1, 3, batch.height, batch.width);
            let x = Tensor::from_vec(batch.images.clone(), shape, &Device::Cpu).unwrap();
            let live = teacher.forward(&x, Mode::Eval).unwrap();
            let pairs = [(i, batch.geometries[0])];
            let cached = cache.targets(&pairs, (batch.height, batch.width)).unwrap().to_tensors(&Device::Cpu).unwrap();
            let mut maps = vec![(live.logits.clone(), cached.logits.unwrap())];
            for (name, t) in &cached.features {
                maps.push((live.feature(name).unwrap().clone(), t.clone()));
            }
            maps
        })
        .collect()
}

#[test]
fn cached_targets_equal_the_live_teacher_on_the_same_view_and_follow_crops() {
    let (_d, data) = demo_dataset(6, 2, 80);
    let ds = Dataset::open(&data, None, "train").unwrap();
    let teacher = load_for_inference(ModelKind::FcnResnet50, &teacher_weights(), &Device::Cpu).unwrap().model;
    let root = tempfile::tempdir().unwrap();
    let (cache, progress) = build(&teacher, &ds, root.path());
    assert_eq!(progress.last(), Some(&(ds.len(), ds.len())), "progress reaches the total");

    // Same view (the base resize, no augmentation): identical up to f16 storage.
    let same_view = Augment::eval(BASE);
    for (i, maps) in live_and_cached(&teacher, &cache, &ds, &same_view, 0).iter().enumerate() {
        for (name, (l, c)) in ["logits", "layer1", "layer2", "layer4"].iter().zip(maps) {
            assert_eq!(l.dims(), c.dims(), "image {i} {name}");
            let d = rel_max_diff(&values(c), &values(l));
            assert!(d < 2e-3, "image {i} {name}: cached vs live differ by {d} of the range");
        }
    }

    // Crops of the base image at offsets on the teacher's stride-8 grid: layer1 (receptive field
    // 35 px, 4 px cells) away from the crop border sees exactly what it saw in the whole image, so
    // the cache must reproduce the teacher run on the crop itself — and a cache cut one cell off
    // must not.
    let (crop, interior) = (56usize, 5..9usize);
    let (mut err, mut wrong) = (Vec::new(), Vec::new());
    for i in 0..ds.len() {
        let sample = ds.load(i).unwrap();
        let (src_w, src_h) = sample.image.dimensions();
        let (base, g0) = same_view.apply(sample, &mut Rng::new(0));
        let x = Tensor::from_vec(
            normalize(&base.image),
            (1, 3, g0.out_height as usize, g0.out_width as usize),
            &Device::Cpu,
        )
        .unwrap();
        for (cx, cy) in [(0, 0), (8, 0), (16, 8)] {
            if cx + crop > g0.out_width as usize || cy + crop > g0.out_height as usize {
                continue;
            }
            let view = x.narrow(2, cy, crop).unwrap().narrow(3, cx, crop).unwrap();
            let live = teacher.forward(&view, Mode::Eval).unwrap().feature("layer1").unwrap().clone();
            let g = Geometry {
                src_width: src_w,
                src_height: src_h,
                crop_x: cx as u32,
                crop_y: cy as u32,
                out_width: crop as u32,
                out_height: crop as u32,
                ..g0
            };
            let cached = cache.targets(&[(i, g)], (crop, crop)).unwrap().to_tensors(&Device::Cpu).unwrap();
            let cached = cached.features.iter().find(|(n, _)| *n == "layer1").unwrap().1.clone();
            let cells = |t: &Tensor| values(&t.i((.., .., interior.clone(), interior.clone())).unwrap());
            err.extend(cells(&cached).into_iter().zip(cells(&live)));
            let shifted = cached.i((.., .., .., 1..)).unwrap().pad_with_same(3, 0, 1).unwrap();
            wrong.extend(cells(&shifted).into_iter().zip(cells(&live)));
        }
    }
    assert!(err.len() > 1000, "enough crops compared ({})", err.len());
    let (err, wrong) = (rel_mean_diff(&err), rel_mean_diff(&wrong));
    eprintln!("layer1 crop interiors: mean |cached − live| = {err:.5} of the mean |live|; one cell off: {wrong:.4}");
    assert!(err < 2e-3, "cached crops disagree with the live teacher: {err}");
    assert!(wrong > 50.0 * err, "the comparison cannot tell a misplaced crop ({wrong} vs {err})");
}

/// Mean |a − b| over the pairs (a, b), relative to the mean |b|.
fn rel_mean_diff(pairs: &[(f32, f32)]) -> f32 {
    let num: f32 = pairs.iter().map(|(a, b)| (a - b).abs()).sum();
    let den: f32 = pairs.iter().map(|(_, b)| b.abs()).sum();
    num / den.max(1e-6)
}

#[test]
fn a_second_build_reuses_entries_and_rebuilds_damaged_ones() {
    let (_d, data) = demo_dataset(5, 1, 48);
    let ds = Dataset::open(&data, None, "train").unwrap();
    let teacher = load_for_inference(ModelKind::FcnResnet50, &teacher_weights(), &Device::Cpu).unwrap().model;
    let root = tempfile::tempdir().unwrap();
    let (cache, first) = build(&teacher, &ds, root.path());
    assert_eq!(first.first(), Some(&(0, 5)));
    let intact = std::fs::read(cache.entry_path(2)).unwrap();
    std::fs::remove_file(cache.entry_path(0)).unwrap();
    let truncated = std::fs::read(cache.entry_path(1)).unwrap();
    std::fs::write(cache.entry_path(1), &truncated[..truncated.len() / 2]).unwrap();
    let err = cache.read(1, None).unwrap_err().to_string();
    assert!(err.contains("truncated") && err.contains(&cache.entry_path(1).display().to_string()), "{err}");
    // One flipped bit in the data of entry 3: same length, a valid header; only the checksum knows.
    let mut flipped = std::fs::read(cache.entry_path(3)).unwrap();
    let at = flipped.len() - 5;
    flipped[at] ^= 0x04;
    std::fs::write(cache.entry_path(3), &flipped).unwrap();
    // Image 4 replaced in place by another picture of the same size: its entry is stale.
    let image4 = &ds.samples[4].image;
    let mut replaced = segdistill::data::image::read_rgb(image4).unwrap();
    replaced.pixels_mut().for_each(|p| p.0 = [255 - p.0[0], p.0[2], p.0[1]]);
    replaced.save_with_format(image4, image::ImageFormat::Jpeg).unwrap();
    let entry4 = std::fs::read(cache.entry_path(4)).unwrap();

    let (_, second) = build(&teacher, &ds, root.path());
    assert_eq!(second.first(), Some(&(1, 5)), "the missing, damaged and stale entries are recomputed, no other");
    assert_eq!(second.last(), Some(&(5, 5)));
    assert_eq!(std::fs::read(cache.entry_path(2)).unwrap(), intact, "intact entries are kept");
    assert_ne!(std::fs::read(cache.entry_path(4)).unwrap(), entry4, "the replaced image got a new entry");
    cache.read(1, None).unwrap();
    cache.read(3, None).unwrap();
    // A touched but unchanged image (new time, same bytes) keeps its entry.
    let bytes = std::fs::read(image4).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(image4, &bytes).unwrap();
    let (_, third) = build(&teacher, &ds, root.path());
    assert!(third.is_empty(), "nothing to rebuild: {third:?}");
}

fn run_config(data: &Path, runs: &Path, name: &str) -> TrainConfig {
    TrainConfig {
        distill: DistillMode::Combined,
        teacher_weights: Some(teacher_weights()),
        epochs: 1,
        batch: 2,
        size: 48,
        workers: 1,
        ..tiny_config(data, runs, name)
    }
}

fn run_events(cfg: TrainConfig) -> Vec<TrainEvent> {
    let (result, events) = run_to_end(cfg, false);
    result.unwrap();
    events
}

#[test]
fn a_run_builds_the_cache_once_and_it_can_be_turned_off_or_refused() {
    let (_d, data) = demo_dataset(4, 2, 48);
    let runs = tempfile::tempdir().unwrap();
    let messages = |ev: &[TrainEvent]| -> Vec<String> {
        ev.iter().filter_map(|e| if let TrainEvent::Message(m) = e { Some(m.clone()) } else { None }).collect()
    };
    let preparing = |ev: &[TrainEvent]| ev.iter().filter(|e| matches!(e, TrainEvent::Preparing { .. })).count();

    let first = run_events(run_config(&data, runs.path(), "a"));
    assert!(messages(&first).iter().any(|m| m.contains("teacher outputs cached")), "{:?}", messages(&first));
    assert_eq!(preparing(&first), 5, "progress from 0 to 4 images");
    let cache_root = runs.path().join("teacher-cache");
    assert_eq!(std::fs::read_dir(&cache_root).unwrap().count(), 1, "one cache folder");

    // A second run with the same teacher and data reuses it without recomputing anything.
    let second = run_events(run_config(&data, runs.path(), "b"));
    assert_eq!(preparing(&second), 0);
    assert!(messages(&second).iter().any(|m| m.contains("teacher outputs cached")));

    let off = run_events(TrainConfig { teacher_cache: false, ..run_config(&data, runs.path(), "c") });
    assert!(!messages(&off).iter().any(|m| m.contains("cache")), "{:?}", messages(&off));

    let tiny_budget = TrainConfig {
        teacher_cache_gb: 1e-6,
        teacher_cache_dir: Some(runs.path().join("other-cache")),
        ..run_config(&data, runs.path(), "d")
    };
    let refused = run_events(tiny_budget);
    assert!(messages(&refused).iter().any(|m| m.contains("budget") && m.contains("live")), "{:?}", messages(&refused));
    assert!(refused.iter().any(|e| matches!(e, TrainEvent::Step(_))), "the run trains with the live teacher");
}
