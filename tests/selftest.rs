//! `segdistill selftest` end to end on the CPU: it passes on torchvision's fixtures (by default
//! the small set built in, the one in `tests/fixtures/torchvision`), and it fails (exit 1, the row
//! named) when a reference value is off.

mod common;

use common::*;

fn report(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

#[test]
fn selftest_on_the_cpu_passes_every_check() {
    // No --fixtures: the built-in small set.
    let out = segdistill(&["selftest", "--device", "cpu", "--train-steps", "4", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = report(&out);
    assert_eq!(r["precision"], "fp32");
    let checks = r["checks"].as_array().unwrap();
    assert!(checks.len() >= 60, "{} checks", checks.len());
    for group in ["fixtures", "ops", "training"] {
        assert!(checks.iter().any(|c| c["group"] == group), "no {group} checks");
    }
    for c in checks {
        assert_eq!(c["ok"], true, "{c}");
        assert!(c["error"].as_f64().unwrap() <= 1e-4, "{c}");
    }
    assert!(checks.iter().any(|c| c["name"] == "fcn.out argmax"));
    assert_eq!(r["skipped"].as_array().unwrap().len(), 0, "{}", r["skipped"]);
    assert!(stderr(&out).contains("0 failed"), "the table goes to stderr with --json");
}

#[test]
fn a_wrong_reference_value_fails_its_row() {
    // A copy of the fixtures (FCN left out) where one LR-ASPP output value is off by 1 %.
    let tmp = tempfile::tempdir().unwrap();
    let src = torchvision_fixtures_dir();
    let mut listing: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("weights.json")).unwrap()).unwrap();
    assert!(listing["files"].as_object_mut().unwrap().remove("fcn_resnet50_random_legacy.pth").is_some());
    std::fs::write(tmp.path().join("weights.json"), listing.to_string()).unwrap();
    let dev = candle_core::Device::Cpu;
    let mut tensors = candle_core::safetensors::load(src.join("parity.safetensors"), &dev).unwrap();
    let out_ref = tensors["lraspp.out"].clone();
    tensors.insert("lraspp.out".into(), (out_ref * 1.01).unwrap());
    candle_core::safetensors::save(&tensors, tmp.path().join("parity.safetensors")).unwrap();

    let out =
        segdistill(&["selftest", "--device", "cpu", "--fixtures", tmp.path().to_str().unwrap(), "--train-steps", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let row = text.lines().find(|l| l.contains("lraspp.out") && !l.contains("argmax")).unwrap_or_default();
    assert!(row.contains("FAIL"), "{text}");
    assert!(text.contains("skipped: fcn"), "the absent FCN file is reported as skipped: {text}");
    assert!(text.contains("skipped: training"), "{text}");
}

#[test]
fn a_missing_fixtures_folder_is_named() {
    let out = segdistill(&["selftest", "--device", "cpu", "--fixtures", "/nonexistent/fixtures"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/fixtures"), "{}", stderr(&out));
}
