//! `selftest`: does this build, on this device and precision, compute what torchvision computes?
//!
//! Three groups of checks, each a row (max relative error, bound, ok):
//! - **fixtures**: torchvision's own outputs (`parity.safetensors` and the weights beside it,
//!   written by `bench/make_parity_fixtures.py`): FCN-ResNet50, MobileNetV3-Small, LR-ASPP, bilinear
//!   resizing, the losses and their gradients. Models also report how many pixels' arg-max class
//!   agrees with torchvision's. The weights are either files (`torch.save` output) or, in the small
//!   set built into the binary (`tests/fixtures/torchvision`), a listing of every key whose values
//!   come from the hashed formula (`model::weights::hashed`) that the script computes alike.
//! - **ops**: the layers as the models run them on the device (dense, strided, dilated and
//!   depthwise convolution; batch norm with its fused activation, in training and evaluation)
//!   against their textbook formula on the CPU, forward and every gradient. On a GPU also bilinear
//!   resizing against the CPU kernel (on the CPU that kernel *is* the reference, checked by the
//!   fixtures). Under bf16 autocast the inputs enter in bf16, as the networks see them.
//! - **kd**: the distillation loss terms (`kd/` beside the fixtures, written by
//!   `bench/make_kd_fixtures.py`): each term's value and gradient against PyTorch's. A fixtures
//!   folder holding only `kd/` checks just these.
//! - **training**: a short seeded run (synthetic batches, a student with combined distillation
//!   from a seeded teacher) on the device and on the CPU, loss compared step by step. On the CPU
//!   the second run is a repeat: it checks that training is deterministic.
//!
//! Error is `max |ours − ref| / max |ref|` over the whole tensor.

mod checker;
mod fixtures;
mod ops;
mod training;

use std::path::PathBuf;

use candle_core::Device;
use serde::Serialize;

pub use checker::relative_error;
pub use fixtures::{Fixtures, ListingEntry, parse_listing};

use crate::util::device::Precision;
use checker::{Bounds, Checker};
use fixtures::{fixture_checks, kd_check, kd_checks};
use ops::op_checks;
use training::training_check;

/// The parity fixtures' file names.
pub const PARITY_FILE: &str = "parity.safetensors";
pub const FCN_FILE: &str = "fcn_resnet50_random_legacy.pth";
pub const MBV3S_FILE: &str = "mobilenet_v3_small_random.pth";
pub const LRASPP_FILE: &str = "lraspp_mobilenet_v3_large_random.pth";
/// Where a fixture folder lists hashed weights instead of holding weights files.
pub const WEIGHTS_LISTING: &str = "weights.json";

/// The small set (`bench/make_parity_fixtures.py --small`), built in: the default fixtures.
pub(super) const BUILTIN_PARITY: &[u8] = include_bytes!("../../../tests/fixtures/torchvision/parity.safetensors");
pub(super) const BUILTIN_LISTING: &str = include_str!("../../../tests/fixtures/torchvision/weights.json");

/// Which torchvision fixtures the selftest compares with.
#[derive(Clone, Debug)]
pub enum FixtureSet {
    /// The small set built into the binary (hashed weights).
    Builtin,
    /// A folder written by `bench/make_parity_fixtures.py` (either kind).
    Folder(PathBuf),
    /// No fixture checks.
    Skip,
}

/// What to check.
#[derive(Clone, Debug)]
pub struct SelftestConfig {
    pub device: Device,
    pub precision: Precision,
    /// The torchvision fixtures to compare with.
    pub fixtures: FixtureSet,
    /// Steps of the seeded training comparison (0 skips it).
    pub train_steps: usize,
}

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub group: &'static str,
    pub name: String,
    /// max |ours − reference| / max |reference| (for `argmax` rows: the share of disagreeing pixels).
    pub error: f64,
    pub bound: f64,
    pub ok: bool,
    /// Why the check could not compute its value (then it failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// Every check's result.
#[derive(Clone, Debug, Serialize)]
pub struct SelftestReport {
    pub device: String,
    pub precision: Precision,
    pub checks: Vec<Check>,
    /// Groups not run, and why.
    pub skipped: Vec<String>,
}

impl SelftestReport {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
}

/// Runs every check `cfg` asks for, handing each row to `on_check` as it lands. An error is
/// returned only when a check cannot run at all (a missing or unreadable fixture file).
pub fn run(cfg: &SelftestConfig, on_check: &mut dyn FnMut(&Check)) -> anyhow::Result<SelftestReport> {
    let mut checker = Checker {
        bounds: Bounds::for_precision(cfg.precision),
        dtype: cfg.precision.compute_dtype(),
        checks: Vec::new(),
        on_check,
    };
    let mut skipped = Vec::new();
    match &cfg.fixtures {
        FixtureSet::Builtin => {
            fixture_checks(&Fixtures::builtin()?, &cfg.device, &mut checker, &mut skipped);
            for (name, bytes) in super::kd_parity::BUILTIN {
                kd_check(name, &format!("<built-in kd/{name}>"), bytes, &cfg.device, &mut checker);
            }
        }
        FixtureSet::Folder(dir) => {
            let kd_dir = dir.join(super::kd_parity::KD_DIR);
            // A folder with only the `kd/` loss-term fixtures checks just those.
            if dir.join(PARITY_FILE).is_file() || !kd_dir.is_dir() {
                fixture_checks(&Fixtures::load(dir)?, &cfg.device, &mut checker, &mut skipped);
            } else {
                skipped.push(format!("fixtures: no {PARITY_FILE} in {}", dir.display()));
            }
            if kd_dir.is_dir() {
                kd_checks(&kd_dir, &cfg.device, &mut checker)?;
            } else {
                skipped.push(format!("kd: no {} folder", kd_dir.display()));
            }
        }
        FixtureSet::Skip => skipped.push("fixtures: not asked for".into()),
    }
    op_checks(&cfg.device, &mut checker)?;
    if cfg.train_steps > 0 {
        checker.case("training", "seeded training", |checker| {
            training_check(&cfg.device, cfg.precision, cfg.train_steps, checker)
        });
    } else {
        skipped.push("training: 0 steps asked".into());
    }
    Ok(SelftestReport {
        device: crate::util::device::describe(&cfg.device),
        precision: cfg.precision,
        checks: checker.checks,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use candle_core::{DType, Tensor};

    use super::ops::seeded;
    use super::*;

    #[test]
    fn relative_error_is_max_abs_diff_over_max_abs_reference() {
        let r = Tensor::new(&[1f32, -4.0, 2.0], &Device::Cpu).unwrap();
        let o = Tensor::new(&[1.5f32, -4.0, 2.0], &Device::Cpu).unwrap();
        assert!((relative_error(&o, &r).unwrap() - 0.125).abs() < 1e-12);
        assert!(relative_error(&o.reshape((3, 1)).unwrap(), &r).is_ok(), "same count, reshaped");
        assert!(relative_error(&Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(), &r).is_err());
    }

    #[test]
    fn a_wrong_layer_fails_its_check() {
        // The check must be able to fail: a batch norm whose reference is off by a little.
        let mut seen = Vec::new();
        let mut on = |c: &Check| seen.push(c.clone());
        let mut checker = Checker {
            bounds: Bounds::for_precision(Precision::Fp32),
            dtype: DType::F32,
            checks: Vec::new(),
            on_check: &mut on,
        };
        let x = seeded(&[2, 3, 4, 5], 1).unwrap();
        checker.compare("ops", "same", &x, &x, 1e-4);
        checker.compare("ops", "off", &(&x * 1.001).unwrap(), &x, 1e-4);
        assert!(checker.checks[0].ok && !checker.checks[1].ok);
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn cpu_ops_and_a_short_training_pass() {
        let cfg = SelftestConfig {
            device: Device::Cpu,
            precision: Precision::Fp32,
            fixtures: FixtureSet::Skip,
            train_steps: 3,
        };
        let report = run(&cfg, &mut |_| {}).unwrap();
        let failed: Vec<_> = report.checks.iter().filter(|c| !c.ok).collect();
        assert!(failed.is_empty(), "{failed:#?}");
        assert!(report.checks.iter().any(|c| c.group == "training"));
        assert!(report.checks.iter().filter(|c| c.group == "ops").count() >= 6 * 3 + 4 * 4);
        assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    }

    #[test]
    fn a_folder_with_only_kd_fixtures_checks_every_loss_term() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let cfg = SelftestConfig {
            device: Device::Cpu,
            precision: Precision::Fp32,
            fixtures: FixtureSet::Folder(dir),
            train_steps: 0,
        };
        let report = run(&cfg, &mut |_| {}).unwrap();
        let kd: Vec<_> = report.checks.iter().filter(|c| c.group == "kd").collect();
        assert_eq!(kd.len(), 2 * 11 + 1, "value and gradient of every fixture, and the region memory: {kd:#?}");
        assert!(kd.iter().all(|c| c.ok), "{kd:#?}");
        assert!(report.skipped.iter().any(|s| s.contains(PARITY_FILE)), "{:?}", report.skipped);
    }

    /// The loss-term fixtures built into the binary (what `selftest` checks by default) are the
    /// repository's, and pass.
    #[test]
    fn the_built_in_loss_term_fixtures_are_the_committed_ones_and_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(super::super::kd_parity::KD_DIR);
        assert_eq!(super::super::kd_parity::BUILTIN.len(), super::super::kd_parity::fixture_files(&dir).unwrap().len());
        for (name, bytes) in super::super::kd_parity::BUILTIN {
            let p = super::super::kd_parity::check_fixture_bytes(name, name, bytes, &Device::Cpu).unwrap();
            assert!(
                p.loss_error <= 1e-4 && p.grad_error <= 1e-4 && p.memory_error.unwrap_or(0.0) <= 1e-4,
                "{name}: {p:?}"
            );
        }
    }
}
