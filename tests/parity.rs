//! Parity with torchvision: models, ops and losses against `tests/fixtures/torchvision`
//! (`parity.safetensors`, computed by torchvision from hashed weights that `weights.json` lists key
//! by key; `bench/make_parity_fixtures.py --small`). Tolerance: max |ours − ref| ≤ 1e-4 · max |ref|.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Device, Tensor, Var};
use common::*;
use segdistill::diagnostics::selftest::{FCN_FILE, LRASPP_FILE, MBV3S_FILE};
use segdistill::distill::{KdForm, PixelAverage, Target, ce, feature, kd};
use segdistill::model::mobilenet_v3::{MobileNetV3Classifier, MobileNetV3Config};
use segdistill::model::weights::StateDict;
use segdistill::model::{Mode, ModelKind, load_state_dict_for_inference, ops};

fn fixtures() -> &'static HashMap<String, Tensor> {
    torchvision_fixtures().tensors()
}

fn fx(name: &str) -> Tensor {
    fixtures().get(name).unwrap_or_else(|| panic!("fixture {name}")).clone()
}

fn weights(file: &str) -> StateDict {
    torchvision_fixtures().weights(file).unwrap()
}

/// max |ours − ref| / max |ref|, asserting ≤ 1e-4 and equal shapes.
fn assert_close(what: &str, ours: &Tensor, reference: &Tensor) {
    // Scalars: torch saved them as shape [1].
    let ours = if ours.rank() == 0 { ours.reshape(reference.shape()).unwrap() } else { ours.clone() };
    assert_eq!(ours.dims(), reference.dims(), "{what}: shape");
    let ours = ours.to_dtype(candle_core::DType::F32).unwrap();
    let diff =
        (&ours - reference).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    let scale = reference.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(scale > 0.0, "{what}: reference is all zeros");
    let rel = diff / scale;
    eprintln!("{what}: max abs diff {diff:.3e}, relative {rel:.3e}");
    assert!(rel <= 1e-4, "{what}: max |ours − ref| = {diff:e} > 1e-4 · {scale}");
}

#[test]
fn fcn_resnet50_matches_torchvision() {
    // torchvision's state dict, key by key: 334 keys, of which the 55 int64 counters
    // (num_batches_tracked of every BN: backbone 53, heads 2) are all the model does not take.
    let listing = torchvision_fixtures().listing(FCN_FILE).unwrap();
    assert_eq!(listing.len(), 334);
    let counters: Vec<_> = listing.iter().filter(|(_, _, dtype)| dtype != "F32").collect();
    assert!(counters.iter().all(|(k, shape, _)| k.ends_with("num_batches_tracked") && shape.is_empty()));
    assert_eq!(counters.len(), 53 + 2, "num_batches_tracked of all 55 BNs (backbone 53, heads 2)");
    let loaded = load_state_dict_for_inference(ModelKind::FcnResnet50, weights(FCN_FILE), &Device::Cpu).unwrap();
    assert_eq!(loaded.num_params, 35_322_218, "torchvision's parameter count with the aux head");
    assert_eq!(loaded.weights.len(), 334 - 55, "every float tensor of torchvision's state dict is used");
    let out = loaded.model.forward(&fx("fcn.input"), Mode::Eval).unwrap();
    assert_close("fcn.out", &out.logits, &fx("fcn.out"));
    assert_close("fcn.aux", out.aux.as_ref().unwrap(), &fx("fcn.aux"));
    for layer in ["layer1", "layer2", "layer3", "layer4"] {
        assert_close(&format!("fcn.{layer}"), out.feature(layer).unwrap(), &fx(&format!("fcn.{layer}")));
    }
}

#[test]
fn mobilenet_v3_small_matches_torchvision_blocks_and_logits() {
    assert_eq!(torchvision_fixtures().listing(MBV3S_FILE).unwrap().len(), 244, "torchvision's 244 keys");
    let dict = Arc::new(weights(MBV3S_FILE));
    let (vb, used) = dict.var_builder(&Device::Cpu);
    let model = MobileNetV3Classifier::new(vb, MobileNetV3Config::small(false), 1000).unwrap();
    used.check_all_used(&[]).unwrap();
    let (logits, feats) = model.forward(&fx("mbv3s.input"), Mode::Eval).unwrap();
    assert_eq!(feats.len(), 13);
    for (i, f) in feats.iter().enumerate() {
        assert_close(&format!("mbv3s.features.{i}"), f, &fx(&format!("mbv3s.features.{i}")));
    }
    assert_close("mbv3s.logits", &logits, &fx("mbv3s.logits"));
}

#[test]
fn lraspp_mobilenet_v3_large_matches_torchvision() {
    let loaded = load_state_dict_for_inference(ModelKind::LrasppMbv3l, weights(LRASPP_FILE), &Device::Cpu).unwrap();
    assert_eq!(loaded.num_params, 3_221_538, "torchvision's parameter count");
    let out = loaded.model.forward(&fx("lraspp.input"), Mode::Eval).unwrap();
    assert_close("lraspp.out", &out.logits, &fx("lraspp.out"));
}

#[test]
fn bilinear_resize_matches_f_interpolate() {
    let x = fx("bilinear.input");
    assert_close("bilinear.up_16x20", &ops::resize_bilinear(&x, 16, 20).unwrap(), &fx("bilinear.up_16x20"));
    assert_close("bilinear.down_3x4", &ops::resize_bilinear(&x, 3, 4).unwrap(), &fx("bilinear.down_3x4"));
    assert_close(
        "bilinear.up_16x20 (matmul path)",
        &ops::bilinear::resize_by_matmul(&x, 16, 20).unwrap(),
        &fx("bilinear.up_16x20"),
    );
}

/// Value and gradient w.r.t. the student logits of a loss.
fn value_and_grad(f: impl Fn(&Tensor) -> Tensor) -> (Tensor, Tensor) {
    let student = Var::from_tensor(&fx("loss.student")).unwrap();
    let loss = f(student.as_tensor());
    let grads = loss.backward().unwrap();
    (loss, grads.get(&student).unwrap().clone())
}

fn target() -> Target {
    Target::from_tensor(&fx("loss.target"), None).unwrap()
}

#[test]
fn cross_entropy_with_ignore_index_matches_torch() {
    let t = target();
    let (loss, grad) = value_and_grad(|s| ce::cross_entropy(s, &t).unwrap());
    assert_close("loss.ce_ignore255", &loss, &fx("loss.ce_ignore255"));
    assert_close("loss.ce_ignore255.grad", &grad, &fx("loss.ce_ignore255.grad"));
}

#[test]
fn response_kd_values_and_gradients_match_torch() {
    let teacher = fx("loss.teacher");
    let t = target();
    for tau in [1.0, 4.0] {
        let name = format!("loss.kd_kl_allpix_T{tau}");
        let (loss, grad) = value_and_grad(|s| {
            kd::response_kd(s, &teacher, tau, KdForm::KlDivergence, PixelAverage::All, None).unwrap()
        });
        assert_close(&name, &loss, &fx(&name));
        assert_close(&format!("{name}.grad"), &grad, &fx(&format!("{name}.grad")));
        let name = format!("loss.kd_kl_validpix_T{tau}");
        let (loss, _) = value_and_grad(|s| {
            kd::response_kd(s, &teacher, tau, KdForm::KlDivergence, PixelAverage::Labelled, Some(&t)).unwrap()
        });
        assert_close(&name, &loss, &fx(&name));
        let name = format!("loss.kd_soft_ce_allpix_T{tau}");
        let (loss, _) = value_and_grad(|s| {
            kd::response_kd(s, &teacher, tau, KdForm::SoftCrossEntropy, PixelAverage::All, None).unwrap()
        });
        assert_close(&name, &loss, &fx(&name));
    }
}

/// The fixtures give gradients for the all-pixel KL only; the other KD variants share its code
/// path, and their gradients are checked against central finite differences here.
#[test]
fn kd_variant_gradients_match_finite_differences() {
    let teacher = fx("loss.teacher");
    let t = target();
    let student = fx("loss.student");
    let variants = [
        (KdForm::SoftCrossEntropy, PixelAverage::All),
        (KdForm::KlDivergence, PixelAverage::Labelled),
        (KdForm::SoftCrossEntropy, PixelAverage::Labelled),
    ];
    for (form, avg) in variants {
        let f = |s: &Tensor| kd::response_kd(s, &teacher, 4.0, form, avg, Some(&t)).unwrap();
        let (_, grad) = value_and_grad(f);
        let grad: Vec<f32> = grad.flatten_all().unwrap().to_vec1().unwrap();
        let base: Vec<f64> =
            student.to_dtype(candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let eval = |v: Vec<f64>| -> f64 {
            let x = Tensor::from_vec(v, student.shape(), &Device::Cpu).unwrap();
            let tt = teacher.to_dtype(candle_core::DType::F64).unwrap();
            let tf = Target {
                valid: t.valid.to_dtype(candle_core::DType::F64).unwrap(),
                distilled: t.distilled.to_dtype(candle_core::DType::F64).unwrap(),
                ..t.clone()
            };
            kd::response_kd(&x, &tt, 4.0, form, avg, Some(&tf)).unwrap().to_scalar::<f64>().unwrap()
        };
        for i in (0..base.len()).step_by(97) {
            let h = 1e-4;
            let (mut p, mut m) = (base.clone(), base.clone());
            p[i] += h;
            m[i] -= h;
            let fd = (eval(p) - eval(m)) / (2.0 * h);
            assert!(
                (fd - grad[i] as f64).abs() <= 1e-4 * fd.abs().max(1e-3) + 1e-6,
                "{form:?} {avg:?} element {i}: fd {fd} vs {}",
                grad[i]
            );
        }
    }
}

#[test]
fn cosine_feature_loss_matches_torch() {
    let s = Var::from_tensor(&fx("loss.feat_student")).unwrap();
    let loss = feature::cosine_loss(s.as_tensor(), &fx("loss.feat_teacher")).unwrap();
    assert_close("loss.cosine", &loss, &fx("loss.cosine"));
    let g = loss.backward().unwrap();
    assert_close("loss.cosine.grad", g.get(&s).unwrap(), &fx("loss.cosine.grad"));
}

#[test]
fn every_fixture_is_covered_by_a_test() {
    // Guards against fixtures added upstream that no test compares.
    let covered = |k: &str| {
        k.starts_with("fcn.")
            || k.starts_with("mbv3s.")
            || k.starts_with("lraspp.")
            || k.starts_with("bilinear.")
            || k.starts_with("loss.")
            || k.starts_with("metric.")
    };
    let mut keys: Vec<&String> = fixtures().keys().collect();
    keys.sort();
    for k in keys {
        assert!(covered(k), "fixture {k} is not compared by any test");
    }
}
