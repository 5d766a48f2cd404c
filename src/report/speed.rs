//! A model's inference speed on this machine. The same network at the same input size runs at
//! the same speed whichever run trained its weights, so a figure is measured once per
//! architecture, class count, input size, device and thread count, and kept in one file per
//! architecture in the runs folder (`speed/<architecture>.json`): every run, the Runs table and
//! the report show the same figure. A measurement taken while the machine is busy (a high load
//! average, or passes that disagree) is tried again, and kept marked if it stays busy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::layers::count_macs;
use crate::model::{LoadedModel, Mode, Model, ModelKind};
use crate::util::device::describe;

/// The folder of the runs folder that holds the measurements, one file per architecture.
pub const CACHE_DIR: &str = "speed";

/// Where the measurements of `kind` are kept: `<runs>/speed/<architecture>.json`.
pub fn cache_path(runs_dir: &Path, kind: ModelKind) -> PathBuf {
    runs_dir.join(CACHE_DIR).join(format!("{}.json", kind.name()))
}

/// Warm-up and timed forward passes of one try.
const WARM_UP: usize = 2;
pub const TIMED: usize = 10;

/// Above this 1-minute load average per core, other work competes with the measurement for the
/// cores (the measurement itself uses all of them).
const BUSY_LOAD_PER_CORE: f64 = 0.75;
/// Above this standard deviation relative to the median, the passes were disturbed.
const BUSY_SPREAD: f64 = 0.25;

/// What a figure is a measurement of: the same key finds the same figure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeedKey {
    pub classes: usize,
    /// The square input's side, in pixels.
    pub size: u32,
    pub device: String,
    pub threads: usize,
}

impl SpeedKey {
    /// The key on `device` with every CPU thread this process may use.
    pub fn new(classes: usize, size: u32, device: &Device) -> Self {
        Self { classes, size, device: describe(device), threads: crate::util::available_threads() }
    }
}

/// One measurement: batch 1, `key.size`², after warm-up, synchronised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Speed {
    pub key: SpeedKey,
    pub macs: u64,
    pub params: usize,
    pub median_ms: f64,
    /// The standard deviation of the timed passes.
    pub spread_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Timed passes of the try kept.
    pub repeats: usize,
    /// Tries made (a busy machine is given more than one).
    pub tries: usize,
    /// The system's 1-minute load average per core before the try kept (Linux), if known.
    pub load_per_core: Option<f64>,
    /// Why the figure cannot be trusted, when every try found the machine busy.
    pub busy: Option<String>,
}

impl Speed {
    /// Whether a stored figure can be a measurement at all (a damaged or hand-edited file with
    /// zero, negative, unordered or absurd times is measured again, not shown).
    pub fn is_plausible(&self) -> bool {
        let times = [self.min_ms, self.median_ms, self.max_ms];
        times.iter().all(|t| t.is_finite() && *t > 0.0 && *t < 600_000.0)
            && self.min_ms <= self.median_ms
            && self.median_ms <= self.max_ms
            && self.spread_ms.is_finite()
            && self.spread_ms >= 0.0
            && self.repeats > 0
            && self.macs > 0
            && self.params > 0
    }

    /// The standard deviation relative to the median.
    fn relative_spread(&self) -> f64 {
        self.spread_ms / self.median_ms
    }
}

/// How a measurement judges and waits out a busy machine.
pub struct Conditions {
    /// The machine's load per core now; `None` where the system does not say.
    pub load_per_core: Box<dyn Fn() -> Option<f64> + Send + Sync>,
    /// Tries at most, while the machine is busy.
    pub tries: usize,
    /// The wait between tries.
    pub pause: Duration,
    /// The standard deviation relative to the median above which the passes count as disturbed.
    pub max_spread: f64,
}

impl Default for Conditions {
    fn default() -> Self {
        Self {
            load_per_core: Box::new(system_load_per_core),
            tries: 3,
            pause: Duration::from_secs(2),
            max_spread: BUSY_SPREAD,
        }
    }
}

/// The 1-minute load average (`/proc/loadavg`) divided by the cores; `None` off Linux.
pub fn system_load_per_core() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let one_minute: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(one_minute / crate::util::available_threads() as f64)
}

/// Why a try's figure cannot be trusted, if it cannot.
fn busy_reason(load_per_core: Option<f64>, median_ms: f64, spread_ms: f64, max_spread: f64) -> Option<String> {
    let cores = crate::util::available_threads();
    if let Some(load) = load_per_core.filter(|l| *l > BUSY_LOAD_PER_CORE) {
        return Some(format!("the machine was busy (load average {:.1} on {cores} cores)", load * cores as f64));
    }
    (spread_ms > max_spread * median_ms)
        .then(|| format!("the passes disagreed (±{spread_ms:.2} ms around {median_ms:.2} ms): other work was running"))
}

/// Multiply-adds and forward times (batch 1, after warm-up, synchronised) at size²×size, sorted.
pub fn time_forward(model: &Model, size: u32, device: &Device) -> anyhow::Result<(u64, Vec<f64>)> {
    let x = Tensor::zeros((1, 3, size as usize, size as usize), candle_core::DType::F32, device)?;
    let (out, macs) = count_macs(|| model.forward(&x, Mode::Eval));
    out?;
    for _ in 0..WARM_UP {
        model.forward(&x, Mode::Eval)?;
    }
    let mut times = Vec::new();
    for _ in 0..TIMED {
        device.synchronize()?;
        let t = Instant::now();
        model.forward(&x, Mode::Eval)?;
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((macs, times))
}

/// Measures `loaded` for `key`: up to `conditions.tries` tries while the machine is busy,
/// keeping the steadiest; the figure says so when every try was busy.
pub fn measure(loaded: &LoadedModel, key: SpeedKey, device: &Device, conditions: &Conditions) -> anyhow::Result<Speed> {
    let mut kept: Option<Speed> = None;
    let mut tries = 0;
    while tries < conditions.tries.max(1) {
        if tries > 0 {
            std::thread::sleep(conditions.pause);
        }
        tries += 1;
        let load_per_core = (conditions.load_per_core)();
        let (macs, times) = time_forward(&loaded.model, key.size, device)?;
        let n = times.len() as f64;
        let mean = times.iter().sum::<f64>() / n;
        let spread_ms = (times.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n).sqrt();
        let median_ms = times[times.len() / 2];
        let speed = Speed {
            key: key.clone(),
            macs,
            params: loaded.num_params,
            median_ms,
            spread_ms,
            min_ms: times[0],
            max_ms: times[times.len() - 1],
            repeats: times.len(),
            tries,
            load_per_core,
            busy: busy_reason(load_per_core, median_ms, spread_ms, conditions.max_spread),
        };
        let steadier = kept.as_ref().is_none_or(|k| {
            (speed.busy.is_none() && k.busy.is_some()) || speed.relative_spread() < k.relative_spread()
        });
        if steadier {
            kept = Some(speed);
        }
        if kept.as_ref().is_some_and(|k| k.busy.is_none()) {
            break;
        }
    }
    let mut speed = kept.context("no try was made")?;
    speed.tries = tries;
    Ok(speed)
}

/// The measurements of one architecture, as its file holds them.
#[derive(Default, Serialize, Deserialize)]
struct CacheFile {
    measurements: Vec<Speed>,
}

fn read_cache(path: &Path) -> CacheFile {
    // A missing or damaged file only means the figures are measured again.
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// The stored figure of `kind` for `key`, if there is a plausible one.
pub fn stored(runs_dir: &Path, kind: ModelKind, key: &SpeedKey) -> Option<Speed> {
    read_cache(&cache_path(runs_dir, kind)).measurements.into_iter().find(|s| &s.key == key && s.is_plausible())
}

/// Stores `speed` as the figure of `kind` for its key (replacing the previous one), atomically.
pub fn store(runs_dir: &Path, kind: ModelKind, speed: &Speed) -> anyhow::Result<()> {
    let path = cache_path(runs_dir, kind);
    let mut cache = read_cache(&path);
    cache.measurements.retain(|s| s.key != speed.key);
    cache.measurements.push(speed.clone());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let json = serde_json::to_vec_pretty(&cache)?;
    crate::util::fs::write_atomic(&path, &json).with_context(|| format!("cannot write {}", path.display()))
}

/// When to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Use the stored figure; measure (and store) it when there is none.
    IfMissing,
    /// Only read what is stored: the machine is busy (e.g. training), times now would be wrong.
    StoredOnly,
    /// Measure now whatever is stored (the Runs tab's Measure again).
    Again,
}

/// The figure of `kind` for `key` in `runs_dir`, measured (with the model `load` gives) when
/// `measure` asks for it; `None` when nothing is stored and `measure` says not to measure. A
/// runs folder that cannot be written (a read-only share) still gets its figure, measured each time.
pub fn speed_of(
    runs_dir: &Path,
    kind: ModelKind,
    key: &SpeedKey,
    measure_now: Measure,
    load: impl FnOnce() -> anyhow::Result<LoadedModel>,
    device: &Device,
    conditions: &Conditions,
) -> anyhow::Result<Option<Speed>> {
    if measure_now != Measure::Again
        && let Some(s) = stored(runs_dir, kind, key)
    {
        return Ok(Some(s));
    }
    if measure_now == Measure::StoredOnly {
        return Ok(None);
    }
    let loaded = load()?;
    let speed = measure(&loaded, key.clone(), device, conditions)?;
    // Not being able to keep the figure costs a measurement next time, not this one.
    store(runs_dir, kind, &speed).ok();
    Ok(Some(speed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(dir: &Path) -> (ModelKind, PathBuf) {
        let kind = ModelKind::Mbv3sTiny;
        let weights = dir.join("student.safetensors");
        let t = crate::model::build_trainable(kind, 21, 0, &Device::Cpu).unwrap();
        t.varmap.save(&weights).unwrap();
        (kind, weights)
    }

    fn idle() -> Conditions {
        Conditions { load_per_core: Box::new(|| Some(0.1)), tries: 3, pause: Duration::ZERO, max_spread: f64::INFINITY }
    }

    #[test]
    fn one_figure_per_architecture_and_size_shared_by_every_run() {
        let runs = tempfile::tempdir().unwrap();
        let (kind, weights) = tiny(runs.path());
        let key = SpeedKey::new(21, 64, &Device::Cpu);
        let load = || crate::model::load_for_inference(kind, &weights, &Device::Cpu);
        let none = speed_of(runs.path(), kind, &key, Measure::StoredOnly, load, &Device::Cpu, &idle()).unwrap();
        assert_eq!(none, None, "nothing stored yet, and not measured while busy");
        let first =
            speed_of(runs.path(), kind, &key, Measure::IfMissing, load, &Device::Cpu, &idle()).unwrap().unwrap();
        assert!(cache_path(runs.path(), kind).is_file());
        assert!(first.min_ms <= first.median_ms && first.median_ms <= first.max_ms && first.spread_ms >= 0.0);
        assert_eq!((first.repeats, first.tries, first.busy.as_deref()), (TIMED, 1, None));
        // Another run of the same architecture (no model given: loading it would fail) reads it.
        let fail = || -> anyhow::Result<LoadedModel> { anyhow::bail!("a stored figure needs no model") };
        let again = speed_of(runs.path(), kind, &key, Measure::IfMissing, fail, &Device::Cpu, &idle()).unwrap();
        assert_eq!(again, Some(first.clone()));
        // Another size is another figure, in the same file.
        let key96 = SpeedKey { size: 96, ..key.clone() };
        let other = speed_of(runs.path(), kind, &key96, Measure::IfMissing, load, &Device::Cpu, &idle()).unwrap();
        assert!(other.unwrap().macs > first.macs, "measured at the new size");
        assert_eq!(read_cache(&cache_path(runs.path(), kind)).measurements.len(), 2);
        assert_eq!(stored(runs.path(), kind, &key), Some(first.clone()), "the first size is kept");
        // Measure again replaces the figure.
        let re = speed_of(runs.path(), kind, &key, Measure::Again, load, &Device::Cpu, &idle()).unwrap().unwrap();
        assert_eq!(stored(runs.path(), kind, &key), Some(re));
        assert_eq!(read_cache(&cache_path(runs.path(), kind)).measurements.len(), 2);
    }

    #[test]
    fn a_busy_machine_is_tried_again_and_the_figure_marked() {
        let dir = tempfile::tempdir().unwrap();
        let (kind, weights) = tiny(dir.path());
        let loaded = crate::model::load_for_inference(kind, &weights, &Device::Cpu).unwrap();
        let key = SpeedKey::new(21, 64, &Device::Cpu);
        let cores = crate::util::available_threads() as f64;
        let busy = Conditions { load_per_core: Box::new(|| Some(3.0)), ..idle() };
        let s = measure(&loaded, key.clone(), &Device::Cpu, &busy).unwrap();
        assert_eq!(s.tries, 3, "tried again while busy");
        let why = s.busy.expect("marked as measured under load");
        assert!(why.contains(&format!("load average {:.1}", 3.0 * cores)), "{why}");
        // Busy at first, idle at the second try: the idle figure is kept, unmarked.
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let calls = std::sync::Arc::new(calls);
        let c = calls.clone();
        let settling = Conditions {
            load_per_core: Box::new(move || {
                let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Some(if n == 0 { 3.0 } else { 0.1 })
            }),
            ..idle()
        };
        let s = measure(&loaded, key, &Device::Cpu, &settling).unwrap();
        assert_eq!((s.tries, s.busy, s.load_per_core), (2, None, Some(0.1)));
    }

    #[test]
    fn passes_that_disagree_mark_the_figure() {
        assert_eq!(busy_reason(Some(0.2), 4.0, 0.3, BUSY_SPREAD), None);
        assert_eq!(busy_reason(None, 4.0, 0.3, BUSY_SPREAD), None);
        let why = busy_reason(Some(0.2), 4.0, 2.0, BUSY_SPREAD).unwrap();
        assert!(why.contains("±2.00 ms around 4.00 ms"), "{why}");
    }

    #[test]
    fn implausible_stored_figures_are_measured_again() {
        let good = Speed {
            key: SpeedKey::new(21, 64, &Device::Cpu),
            macs: 1,
            params: 1,
            median_ms: 2.0,
            spread_ms: 0.1,
            min_ms: 1.0,
            max_ms: 3.0,
            repeats: 10,
            tries: 1,
            load_per_core: None,
            busy: None,
        };
        assert!(good.is_plausible());
        for bad in [
            Speed { min_ms: 5.0, ..good.clone() },
            Speed { max_ms: f64::NAN, ..good.clone() },
            Speed { median_ms: 1e9, max_ms: 1e9, ..good.clone() },
            Speed { repeats: 0, ..good.clone() },
            Speed { spread_ms: -1.0, ..good.clone() },
        ] {
            assert!(!bad.is_plausible(), "{bad:?}");
        }
        let runs = tempfile::tempdir().unwrap();
        let absurd = Speed { median_ms: -3.0, ..good.clone() };
        store(runs.path(), ModelKind::Mbv3sTiny, &absurd).unwrap();
        assert_eq!(stored(runs.path(), ModelKind::Mbv3sTiny, &good.key), None);
    }
}
