//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod http_server;
use std::process::{Command, Output};

/// `../shared` beside the checkout (override with SEGDISTILL_SHARED). Tests that need it fail
/// loudly when it is missing: a skipped parity test would be a test that cannot fail.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("SEGDISTILL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(
        dir.join("fixtures/torchvision").is_dir(),
        "shared data not found at {} (set SEGDISTILL_SHARED)",
        dir.display()
    );
    dir
}

pub fn shared_voc() -> PathBuf {
    shared_dir().join("data/voc2012")
}

/// Runs the built `segdistill` binary with arguments.
pub fn segdistill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segdistill")).args(args).output().expect("the segdistill binary runs")
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
    let cfg = segdistill::data::demo::DemoConfig { train, val, size, seed: 1 };
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
