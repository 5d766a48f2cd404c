//! Every distillation loss term against its PyTorch reference (`bench/make_kd_fixtures.py`):
//! value and gradient with respect to the student's input within 1e-4 relative.

use std::path::Path;

use candle_core::Device;
use segdistill::diagnostics::kd_parity::{check_fixture, fixture_files};

const BOUND: f64 = 1e-4;

#[test]
fn every_term_matches_pytorch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kd");
    let files = fixture_files(&dir).unwrap();
    let expected = [
        "at",
        "cirkd-region",
        "cirkd",
        "cwd-features",
        "cwd-logits",
        "dist",
        "dist.tau4",
        "fitnet",
        "ifvd",
        "kd",
        "pairwise",
    ];
    let names: Vec<String> = files.iter().map(|f| f.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, expected, "the fixture set");
    let mut failures = Vec::new();
    for f in &files {
        let p = check_fixture(f, &Device::Cpu).unwrap();
        let memory = p.memory_error.unwrap_or(0.0);
        eprintln!("{:<14} loss {:.2e}  grad {:.2e}  memory {memory:.2e}", p.name, p.loss_error, p.grad_error);
        if !(p.loss_error <= BOUND && p.grad_error <= BOUND && memory <= BOUND) {
            failures
                .push(format!("{}: loss {:.2e}, grad {:.2e}, memory {memory:.2e}", p.name, p.loss_error, p.grad_error));
        }
    }
    assert!(failures.is_empty(), "terms off PyTorch: {failures:?}");
}
