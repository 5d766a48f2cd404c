//! `segdistill selftest`: checks that this build computes what torchvision computes, on the chosen
//! device and precision (see `diagnostics::selftest`); a table, or JSON, and exit status 1 on any failure.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::diagnostics::selftest::{Check, FixtureSet, SelftestConfig, run as run_selftest};
use crate::util::device::{DeviceChoice, Precision, describe};

#[derive(Debug, clap::Args)]
pub struct SelftestArgs {
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Arithmetic of GPU matrix products and convolutions; when left out, tf32 on a GPU (as PyTorch's
    /// convolutions) and fp32 on the CPU, which always computes in fp32.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Folder of torchvision fixtures (parity.safetensors and the weights beside it; write one
    /// with `python bench/make_parity_fixtures.py DIR`). Default: the small set built in (the
    /// one in tests/fixtures/torchvision, hashed weights) and the distillation loss terms' (the
    /// ones in tests/fixtures/kd). A `kd/` sub-folder (`python bench/make_kd_fixtures.py --out
    /// DIR/kd`) checks the loss terms against it; a folder with only `kd/` checks just those.
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// Steps of the seeded training compared between the device and the CPU (0: skip).
    #[arg(long, default_value_t = 20)]
    pub train_steps: usize,
    /// Print the report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
}

fn row(c: &Check) -> String {
    format!("{:<9} {:<58} {:>10.3e} {:>9.1e}  {}", c.group, c.name, c.error, c.bound, if c.ok { "ok" } else { "FAIL" })
}

pub fn run(args: SelftestArgs) -> anyhow::Result<ExitCode> {
    let device = args.device.resolve()?;
    let precision = Precision::apply(args.precision, &device)?;
    if let Some(dir) = &args.fixtures {
        anyhow::ensure!(dir.is_dir(), "--fixtures {}: no such folder", dir.display());
    }
    let fixtures = args.fixtures.map_or(FixtureSet::Builtin, FixtureSet::Folder);
    let cfg = SelftestConfig { device: device.clone(), precision, fixtures, train_steps: args.train_steps };
    let out = |line: &str| if args.json { eprintln!("{line}") } else { println!("{line}") };
    out(&format!("segdistill selftest on {}, precision {precision}", describe(&device)));
    out(&format!("{:<9} {:<58} {:>10} {:>9}  ok", "group", "check", "max rel err", "bound"));
    let report = run_selftest(&cfg, &mut |c| out(&row(c)))?;
    for s in &report.skipped {
        out(&format!("skipped: {s}"));
    }
    let failed = report.checks.iter().filter(|c| !c.ok).count();
    out(&format!("{} checks, {failed} failed", report.checks.len()));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
