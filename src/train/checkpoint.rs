//! Checkpoints: one safetensors file holding the student's variables (`model/…`), the feature
//! adapters (`adapters/…`), the optimiser moments (`optim/…`) and, in its metadata, the JSON state
//! (config, epoch, step, schedule, best score, history). One file written atomically (temp file +
//! fsync + rename) means a crash or a kill can never leave a checkpoint half-written or out of
//! step with its optimiser state.
//!
//! Layout of a run folder:
//! `config.json`, `metrics.csv`, `checkpoints/{last,best,epoch-NNN}.safetensors`,
//! `student.safetensors` (best weights alone, loadable by `predict`/`eval`), `best_images.json`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::optim::OptimizerState;
use super::run_folder::files;
use super::schedule::PlateauState;
use crate::model::weights::digest;

const STATE_KEY: &str = "segdistill.state";
pub const FORMAT_VERSION: u32 = 1;

/// One finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub miou: f64,
    pub pixel_acc: f64,
    pub iou: Vec<Option<f64>>,
    pub lr: f64,
    pub ms_per_image: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestRecord {
    pub miou: f64,
    pub epoch: usize,
    /// Digest of the student's weights at that epoch ([`digest::of_tensors`]): which file holds
    /// the best weights is checked by content, not by trusting the order files were written in.
    /// `None` in runs written before digests were kept.
    #[serde(default)]
    pub weights_digest: Option<String>,
}

/// Everything but the tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub version: u32,
    pub config: TrainConfig,
    /// Epochs completed.
    pub epoch: usize,
    /// Batches done in the epoch under way (0 at an epoch boundary).
    pub batch_in_epoch: usize,
    /// Optimisation steps done.
    pub step: usize,
    /// Running sums of the epoch under way, for its mean training loss.
    pub epoch_loss_sum: f64,
    pub epoch_loss_count: usize,
    pub optimizer: OptimizerState,
    pub plateau: PlateauState,
    pub best: Option<BestRecord>,
    pub history: Vec<EpochRecord>,
    /// Wall-clock seconds spent training (all sessions).
    pub train_seconds: f64,
    /// Wall-clock seconds spent building the teacher cache (all sessions; 0 without one).
    #[serde(default)]
    pub cache_seconds: f64,
    /// What the run's inputs held when it started, so that a resume can follow them to a new
    /// place (a moved dataset, a teacher file copied elsewhere, the run taken to another machine).
    #[serde(default)]
    pub inputs: InputDigests,
}

/// Digests of a run's inputs (`None`: not recorded, in runs made before they were kept).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InputDigests {
    /// [`Dataset::fingerprint`](crate::data::Dataset::fingerprint) of the training split, then
    /// of the validation split.
    pub data: Option<String>,
    /// SHA-256 of the teacher's weights file.
    pub teacher: Option<String>,
}

/// A checkpoint in memory.
pub struct Checkpoint {
    pub state: CheckpointState,
    pub model: BTreeMap<String, Tensor>,
    pub adapters: BTreeMap<String, Tensor>,
    pub moments: BTreeMap<String, Tensor>,
}

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(files::CHECKPOINTS)
}

pub fn last_path(run_dir: &Path) -> PathBuf {
    checkpoints_dir(run_dir).join(files::LAST)
}

pub fn best_path(run_dir: &Path) -> PathBuf {
    checkpoints_dir(run_dir).join(files::BEST)
}

pub fn periodic_path(run_dir: &Path, epoch: usize) -> PathBuf {
    checkpoints_dir(run_dir).join(format!("epoch-{epoch:03}.safetensors"))
}

/// The best student weights alone (keys as the model's), for predict/eval/Browse.
pub fn student_path(run_dir: &Path) -> PathBuf {
    run_dir.join(files::STUDENT)
}

fn prefixed(prefix: &str, tensors: &BTreeMap<String, Tensor>) -> anyhow::Result<Vec<(String, Tensor)>> {
    tensors.iter().map(|(k, v)| Ok((format!("{prefix}/{k}"), v.to_device(&Device::Cpu)?.contiguous()?))).collect()
}

/// Writes a checkpoint atomically.
pub fn save(path: &Path, ckpt: &Checkpoint) -> anyhow::Result<()> {
    let mut all = prefixed("model", &ckpt.model)?;
    all.extend(prefixed("adapters", &ckpt.adapters)?);
    all.extend(prefixed("optim", &ckpt.moments)?);
    let mut meta = HashMap::new();
    meta.insert(STATE_KEY.to_string(), serde_json::to_string(&ckpt.state)?);
    meta.insert(digest::METADATA_KEY.to_string(), digest::of_views(all.iter().map(|(k, v)| (k.as_str(), v))));
    let bytes = safetensors::serialize(all.iter().map(|(k, v)| (k.as_str(), v)), Some(meta))
        .with_context(|| format!("serialising checkpoint {}", path.display()))?;
    crate::util::fs::write_atomic(path, &bytes)
        .with_context(|| format!("cannot write checkpoint {} (disk full?)", path.display()))
}

/// Reads only a checkpoint's state (its safetensors header), not its tensors: what a run is,
/// how far it got, cheaply.
pub fn load_state(path: &Path) -> anyhow::Result<CheckpointState> {
    use std::io::Read as _;
    let damaged = |what: &str| anyhow::anyhow!("checkpoint {} is damaged: {what}", path.display());
    let mut file =
        std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot read checkpoint {}: {e}", path.display()))?;
    let file_len = file.metadata().map_or(0, |m| m.len());
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| damaged("shorter than a header"))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > file_len.saturating_sub(8) || header_len > MAX_HEADER {
        return Err(damaged("its header length is out of range"));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|_| damaged("truncated header"))?;
    let json: serde_json::Value = serde_json::from_slice(&header).map_err(|e| damaged(&e.to_string()))?;
    let state_json = json
        .get("__metadata__")
        .and_then(|m| m.get(STATE_KEY))
        .and_then(|s| s.as_str())
        .with_context(|| format!("{} is not a segdistill checkpoint (no training state)", path.display()))?;
    parse_state(path, state_json)
}

/// safetensors caps headers at 100 MB; a state with a long history is a few hundred kB.
const MAX_HEADER: u64 = 100 << 20;

fn parse_state(path: &Path, state_json: &str) -> anyhow::Result<CheckpointState> {
    let state: CheckpointState = serde_json::from_str(state_json)
        .with_context(|| format!("checkpoint {} has an unreadable state", path.display()))?;
    anyhow::ensure!(
        state.version == FORMAT_VERSION,
        "checkpoint {} has format version {} (this segdistill reads {FORMAT_VERSION})",
        path.display(),
        state.version
    );
    Ok(state)
}

/// Reads a checkpoint, checking it is complete, of a known version and (when it carries one)
/// that its tensors match their digest.
pub fn load(path: &Path) -> anyhow::Result<Checkpoint> {
    let bytes =
        crate::util::fs::read_regular(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let damaged = |e: safetensors::SafeTensorError| {
        let detail = crate::model::weights::safetensors_error(path, &bytes, e);
        anyhow::anyhow!("checkpoint {detail}")
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(damaged)?;
    let state_json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .with_context(|| format!("{} is not a segdistill checkpoint (no training state)", path.display()))?;
    let state = parse_state(path, state_json)?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(damaged)?;
    digest::verify(&st, meta.metadata().as_ref())
        .map_err(|detail| anyhow::anyhow!("checkpoint {} is damaged: {detail}", path.display()))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| anyhow::anyhow!("checkpoint {} is damaged: {e}", path.display()))?;
    let (mut model, mut adapters, mut moments) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for (k, v) in tensors {
        if let Some(n) = k.strip_prefix("model/") {
            model.insert(n.to_string(), v);
        } else if let Some(n) = k.strip_prefix("adapters/") {
            adapters.insert(n.to_string(), v);
        } else if let Some(n) = k.strip_prefix("optim/") {
            moments.insert(n.to_string(), v);
        }
    }
    Ok(Checkpoint { state, model, adapters, moments })
}

/// The checkpoint a resume continues from: `last`, or, when it cannot be read or fails its
/// digest, the most advanced intact one among `best` and the periodic ones, with a note saying
/// which and why. The training after that checkpoint is done again.
pub fn load_resumable(run_dir: &Path) -> anyhow::Result<(Checkpoint, Option<String>)> {
    let last = last_path(run_dir);
    let err = match load(&last) {
        Ok(c) => return Ok((c, None)),
        Err(e) => e,
    };
    let mut others = vec![best_path(run_dir)];
    if let Ok(rd) = std::fs::read_dir(checkpoints_dir(run_dir)) {
        others.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("epoch-"))),
        );
    }
    let fallback = others
        .into_iter()
        .filter_map(|p| load(&p).ok().map(|c| (p, c)))
        .max_by_key(|(_, c)| (c.state.step, c.state.epoch));
    match fallback {
        Some((path, ckpt)) => {
            let note = format!(
                "{err:#}; resuming from {} instead (epoch {}, step {}): the training after it is done again",
                path.display(),
                ckpt.state.epoch,
                ckpt.state.step
            );
            Ok((ckpt, Some(note)))
        }
        None => Err(
            err.context(format!("no other intact checkpoint in {} to resume from", checkpoints_dir(run_dir).display()))
        ),
    }
}

/// Removes temp files a killed process left behind (`.<name>.tmp-<pid>`).
pub fn remove_stale_temp_files(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            std::fs::remove_file(e.path()).ok(); // best effort: another process may own it
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_tensors_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let mut model = BTreeMap::new();
        model.insert("a.weight".to_string(), Tensor::arange(0f32, 6., &dev).unwrap().reshape((2, 3)).unwrap());
        let mut moments = BTreeMap::new();
        moments.insert("a.weight.m".to_string(), Tensor::ones((2, 3), candle_core::DType::F32, &dev).unwrap());
        let state = CheckpointState {
            version: FORMAT_VERSION,
            config: TrainConfig::default(),
            epoch: 2,
            batch_in_epoch: 3,
            step: 23,
            epoch_loss_sum: 1.25,
            epoch_loss_count: 3,
            optimizer: OptimizerState { t: 23 },
            plateau: PlateauState::default(),
            best: Some(BestRecord { miou: 0.1 + 0.2, epoch: 1, weights_digest: Some("d".into()) }),
            history: vec![],
            train_seconds: 1.5,
            cache_seconds: 0.25,
            inputs: InputDigests { data: Some("a".into()), teacher: None },
        };
        let p = dir.path().join("c.safetensors");
        save(&p, &Checkpoint { state: state.clone(), model, adapters: BTreeMap::new(), moments }).unwrap();
        let back = load(&p).unwrap();
        assert_eq!(back.state, state, "floats round-trip exactly through JSON");
        assert_eq!(load_state(&p).unwrap(), state, "the header alone gives the same state");
        assert_eq!(back.model["a.weight"].to_vec2::<f32>().unwrap(), [[0., 1., 2.], [3., 4., 5.]]);
        assert!(back.moments.contains_key("a.weight.m"));
        // A truncated checkpoint is an error naming the file.
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let err = load(&p).err().unwrap().to_string();
        assert!(err.contains("c.safetensors") && err.contains("truncated"), "{err}");
        // Bytes appended are not called a truncation.
        std::fs::write(&p, [bytes.as_slice(), b"junk"].concat()).unwrap();
        let err = load(&p).err().unwrap().to_string();
        assert!(err.contains("4 unexpected bytes after its data") && !err.contains("truncated"), "{err}");
        // One flipped bit in a tensor is found by the digest.
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&p, &flipped).unwrap();
        let err = load(&p).err().unwrap().to_string();
        assert!(err.contains("c.safetensors") && err.contains("do not match the digest"), "{err}");
        std::fs::write(&p, &bytes[..12]).unwrap();
        let err = load_state(&p).err().unwrap().to_string();
        assert!(err.contains("c.safetensors") && err.contains("damaged"), "{err}");
    }

    #[test]
    fn any_f64_parses_back_bit_exactly_from_the_state_json() {
        // serde_json's default float parser may miss by an ulp; the state's loss sum must not
        // (a resumed run's epoch loss would differ from an uninterrupted one's).
        let mut rng = crate::util::Rng::new(11);
        for _ in 0..20_000 {
            let v = f64::from_bits(rng.next_u64() >> 2) * if rng.next_f32() < 0.5 { 1.0 } else { -1.0 };
            let back: f64 = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e}");
        }
    }
}
