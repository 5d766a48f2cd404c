//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod app;
pub mod http_server;

/// The committed fixtures, `tests/fixtures` (each with the command that makes it in its README).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A few real PASCAL VOC 2012 masks with their split lines, and the 4 real image+mask pairs.
pub fn voc() -> PathBuf {
    fixtures_dir().join("voc2012")
}

/// One real Cityscapes frame (downscaled 256×128) with its gtFine labels.
pub fn cityscapes() -> PathBuf {
    fixtures_dir().join("cityscapes")
}

/// The small torchvision parity set: reference outputs, and hashed weights by listing.
pub fn torchvision_fixtures_dir() -> PathBuf {
    fixtures_dir().join("torchvision")
}

/// The small torchvision parity set, loaded once.
pub fn torchvision_fixtures() -> &'static segdistill::diagnostics::selftest::Fixtures {
    static F: std::sync::OnceLock<segdistill::diagnostics::selftest::Fixtures> = std::sync::OnceLock::new();
    F.get_or_init(|| segdistill::diagnostics::selftest::Fixtures::load(&torchvision_fixtures_dir()).unwrap())
}

/// A weights file for a model of the small parity set (`file` as `weights.json` names it, e.g.
/// `fcn_resnet50_random_legacy.pth`): every float tensor of torchvision's state dict from the
/// hashed formula, as safetensors. Written once into the target's temporary folder, under a name
/// that changes with the listing and the formula, so a stale file is never read.
pub fn torchvision_weights(file: &str) -> PathBuf {
    use segdistill::model::weights::hashed::hashed_values;
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let listing = std::fs::read(torchvision_fixtures_dir().join("weights.json")).unwrap();
    let probe: Vec<u8> = hashed_values("probe.weight", &[4, 3]).iter().flat_map(|v| v.to_le_bytes()).collect();
    let key =
        listing.iter().chain(&probe).fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    let model = file.trim_end_matches(".pth").trim_end_matches("_legacy").trim_end_matches("_random");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hashed-weights");
    let path = dir.join(format!("{model}_hashed-{key:016x}.safetensors"));
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if !path.is_file() {
        std::fs::create_dir_all(&dir).unwrap();
        let dict = torchvision_fixtures().weights(file).unwrap();
        let tensors: std::collections::BTreeMap<String, candle_core::Tensor> =
            dict.keys().map(|k| (k.to_string(), dict.get(k).unwrap().clone())).collect();
        let tmp = dir.join(format!(".{model}-{}.tmp", std::process::id()));
        segdistill::model::weights::save_safetensors(&tensors, &tmp).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

/// Real `torch.save` output of a small model (`mbv3s-tiny`, hashed weights, counters = 3):
/// `mbv3s_tiny_legacy.pth` (legacy format, as torchvision's FCN-ResNet50 file) or
/// `mbv3s_tiny_zip.pth`, and `reference.safetensors` (PyTorch's output for `input`).
pub fn torch_file(name: &str) -> PathBuf {
    fixtures_dir().join("torch").join(name)
}

/// The full real-data check is opt-in: `SEGDISTILL_REAL_DATA=DIR` (a VOC 2012 folder with all
/// 2,913 train+val masks). `None` (and a line saying so) when it is not set.
pub fn real_data(test: &str) -> Option<PathBuf> {
    match std::env::var_os("SEGDISTILL_REAL_DATA") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            println!("skipped {test}: set SEGDISTILL_REAL_DATA=DIR (a full VOC 2012 folder) to run it");
            None
        }
    }
}

/// Runs the built `segdistill` binary with arguments.
pub fn segdistill<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segdistill")).args(args).output().expect("the segdistill binary runs")
}

/// A quick `segdistill train` command line: the tiny student on `data` into `out`, one epoch of
/// batch 4 at 64 px with one loader worker. Each setter changes one of those; `args` adds flags.
pub fn tiny_train(data: impl AsRef<Path>, out: impl AsRef<Path>) -> TrainCli {
    TrainCli {
        data: data.as_ref().into(),
        out: out.as_ref().into(),
        model: "mbv3s-tiny".into(),
        epochs: 1,
        batch: 4,
        size: 64,
        workers: Some(1),
        extra: Vec::new(),
    }
}

/// See [`tiny_train`].
#[derive(Clone)]
pub struct TrainCli {
    data: PathBuf,
    out: PathBuf,
    model: String,
    epochs: usize,
    batch: usize,
    size: usize,
    workers: Option<usize>,
    extra: Vec<OsString>,
}

impl TrainCli {
    pub fn model(mut self, model: &str) -> Self {
        self.model = model.into();
        self
    }

    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Leaves `--workers` out: the CLI's own default.
    pub fn default_workers(mut self) -> Self {
        self.workers = None;
        self
    }

    /// More flags, after the ones above.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.extra.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// The whole argument list, `train` first.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["train".into(), "--data".into(), self.data.clone().into()];
        for (flag, value) in [
            ("--model", self.model.clone()),
            ("--epochs", self.epochs.to_string()),
            ("--batch", self.batch.to_string()),
            ("--size", self.size.to_string()),
        ] {
            args.extend([flag.into(), value.into()]);
        }
        if let Some(workers) = self.workers {
            args.extend(["--workers".into(), workers.to_string().into()]);
        }
        args.extend(["--out".into(), self.out.clone().into()]);
        args.extend(self.extra.iter().cloned());
        args
    }

    /// The command, not started (to spawn it, or run it in another directory).
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_segdistill"));
        command.args(self.to_args());
        command
    }

    /// Runs it to the end.
    pub fn run(&self) -> Output {
        self.command().output().expect("the segdistill binary runs")
    }
}

/// A quick run's settings for the library's `train::run`: the tiny student without distillation
/// on `data`, three epochs of batch 4 at 64 px with two loader workers, into `runs/name`. Change
/// what a test needs with struct update syntax (`TrainConfig { epochs: 1, ..tiny_config(..) }`).
pub fn tiny_config(data: &Path, runs: &Path, name: &str) -> segdistill::train::TrainConfig {
    segdistill::train::TrainConfig {
        name: name.into(),
        runs_dir: runs.to_path_buf(),
        data: data.to_path_buf(),
        model: segdistill::model::ModelKind::Mbv3sTiny,
        distill: segdistill::distill::DistillMode::None,
        epochs: 3,
        batch: 4,
        size: 64,
        workers: 2,
        ..Default::default()
    }
}

/// Trains `cfg` on this thread to the end: its result and every event it sent.
pub fn run_to_end(
    cfg: segdistill::train::TrainConfig,
    resume: bool,
) -> (anyhow::Result<segdistill::train::events::Summary>, Vec<segdistill::train::TrainEvent>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let result = segdistill::train::run(cfg, resume, &segdistill::train::Control::default(), &tx);
    drop(tx);
    (result, rx.iter().collect())
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Reads a tensor from a safetensors file as (shape, raw little-endian bytes, dtype name).
pub fn read_tensor(bytes: &[u8], name: &str) -> (Vec<usize>, Vec<u8>, String) {
    let st = safetensors::SafeTensors::deserialize(bytes).expect("valid safetensors");
    let t = st.tensor(name).unwrap_or_else(|e| panic!("tensor {name}: {e}"));
    (t.shape().to_vec(), t.data().to_vec(), format!("{:?}", t.dtype()))
}

pub fn as_i64(raw: &[u8]) -> Vec<i64> {
    raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
}

pub fn as_f32(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Writes a small demo dataset (VOC format) into a fresh temp dir.
pub fn demo_dataset(train: usize, val: usize, size: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = segdistill::data::demo::DemoConfig { train, val, size, seed: 1, ..Default::default() };
    let root = segdistill::data::demo::generate(dir.path(), &cfg, &|| {}).unwrap();
    (dir, root)
}

/// A small VOC 2012 archive in the official layout (`VOCdevkit/VOC2012/...`), from the demo generator.
pub fn voc_tar() -> Vec<u8> {
    let (_dir, root) = demo_dataset(6, 3, 48);
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all("VOCdevkit/VOC2012", &root).unwrap();
    b.into_inner().unwrap()
}

/// The hex digest of `bytes`, through the code that verifies downloads.
pub fn digest_of(bytes: &[u8], algorithm: segdistill::data::download::checksum::Algorithm) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, bytes).unwrap();
    segdistill::data::download::checksum::digest_file(&p, algorithm, &segdistill::data::download::NoProgress).unwrap()
}

/// A model with seeded weights and non-trivial batch-norm statistics.
pub fn model_with_batch_norm_statistics(
    kind: segdistill::model::ModelKind,
    classes: usize,
) -> segdistill::model::Trainable {
    let t = segdistill::model::build_trainable(kind, classes, 3, &candle_core::Device::Cpu).unwrap();
    let vars = t.varmap.data().lock().unwrap();
    let mut rng = segdistill::util::Rng::new(11);
    for (name, var) in vars.iter() {
        let n = var.elem_count();
        let values: Option<Vec<f32>> = if name.ends_with("running_mean") {
            Some((0..n).map(|_| rng.uniform(-0.5, 0.5)).collect())
        } else if name.ends_with("running_var") {
            Some((0..n).map(|_| rng.uniform(0.5, 1.5)).collect())
        } else {
            None
        };
        if let Some(v) = values {
            var.set(&candle_core::Tensor::from_vec(v, var.shape(), &candle_core::Device::Cpu).unwrap()).unwrap();
        }
    }
    drop(vars);
    t
}

pub fn random_image(h: usize, w: usize, seed: u64) -> candle_core::Tensor {
    let mut rng = segdistill::util::Rng::new(seed);
    let v: Vec<f32> = (0..3 * h * w).map(|_| rng.uniform(-1.0, 1.0)).collect();
    candle_core::Tensor::from_vec(v, (1, 3, h, w), &candle_core::Device::Cpu).unwrap()
}

/// A Python that imports `modules` (`SEGDISTILL_PYTHON`, else `python3`), if there is one: the
/// checks against onnxruntime, TensorBoard and PyTorch run where those are installed.
pub fn python_with(modules: &[&str]) -> Option<String> {
    let python = std::env::var("SEGDISTILL_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python).args(["-c", &format!("import {}", modules.join(", "))]).output().ok()?;
    probe.status.success().then_some(python)
}
