//! Students train: gradients reach every parameter, taps have the documented shapes, dropout is
//! seeded, batch norm updates its running statistics, and a finite-difference check through a
//! whole network.

use candle_core::{DType, Device, Tensor, Var};
use segdistill::distill::{self, DistillMode, FeatureDistiller, LossConfig, Target, TeacherSignal};
use segdistill::model::fcn::FcnResNet;
use segdistill::model::{Mode, ModelKind, build_trainable};

fn input(b: usize, h: usize, w: usize) -> Tensor {
    let n = b * 3 * h * w;
    let v: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    Tensor::from_vec(v, (b, 3, h, w), &Device::Cpu).unwrap()
}

fn labels(b: usize, h: usize, w: usize) -> Target {
    let l: Vec<u8> = (0..b * h * w).map(|i| if i % 17 == 0 { 255 } else { ((i / 13) % 21) as u8 }).collect();
    Target::new(&l, (b, h, w), None, &Device::Cpu).unwrap()
}

#[test]
fn feature_taps_have_the_documented_strides_and_channels() {
    let dev = Device::Cpu;
    let x = input(1, 64, 96);
    for kind in ModelKind::STUDENTS {
        let t = build_trainable(kind, 21, 0, &dev).unwrap();
        let out = t.model.forward(&x, Mode::Eval).unwrap();
        assert_eq!(out.logits.dims(), [1, 21, 64, 96], "{kind}: logits at input size");
        for tap in t.model.feature_taps() {
            let f = out.feature(tap.name).unwrap();
            assert_eq!(f.dims(), [1, tap.channels, 64 / tap.stride, 96 / tap.stride], "{kind} {}", tap.name);
        }
    }
}

#[test]
fn every_student_parameter_gets_a_gradient_in_each_mode() {
    let dev = Device::Cpu;
    let (b, h, w) = (2, 32, 32);
    let x = input(b, h, w);
    let target = labels(b, h, w);
    let teacher_logits = Tensor::randn(0f32, 1., (b, 21, h, w), &dev).unwrap();
    let teacher_feats: Vec<(&'static str, Tensor)> = FcnResNet::feature_taps()
        .iter()
        .map(|t| (t.name, Tensor::randn(0f32, 1., (b, t.channels, h / t.stride, w / t.stride), &dev).unwrap()))
        .collect();
    for kind in [ModelKind::Mbv3sAspp, ModelKind::Mbv3sTiny] {
        for mode in [DistillMode::None, DistillMode::Response, DistillMode::Feature, DistillMode::Combined] {
            let t = build_trainable(kind, 21, 1, &dev).unwrap();
            let adapters = candle_nn::VarMap::new();
            let vb = segdistill::model::weights::init::seeded_var_builder(&adapters, 2, &dev);
            let distiller = FeatureDistiller::new(vb, &t.model.feature_taps(), &FcnResNet::feature_taps()).unwrap();
            let out = t.model.forward(&x, Mode::train(3)).unwrap();
            let signal = TeacherSignal { logits: Some(&teacher_logits), features: &teacher_feats };
            let loss =
                distill::total_loss(mode, &LossConfig::default(), &out, Some(&signal), &target, Some(&distiller))
                    .unwrap();
            let grads = loss.total.backward().unwrap();
            for (name, var) in t.varmap.data().lock().unwrap().iter() {
                if name.ends_with("running_mean") || name.ends_with("running_var") {
                    continue;
                }
                let g = grads.get(var).unwrap_or_else(|| panic!("{kind} {mode:?}: no gradient for {name}"));
                let n = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(n.is_finite(), "{kind} {mode:?}: {name} gradient is not finite");
            }
            let adapter_grads = adapters.all_vars().iter().filter(|v| grads.get(v).is_some()).count();
            let expect = if mode.uses_features() { adapters.all_vars().len() } else { 0 };
            assert_eq!(adapter_grads, expect, "{kind} {mode:?}: adapters trained only in feature modes");
        }
    }
}

#[test]
fn gradient_through_a_whole_student_matches_finite_differences() {
    let dev = Device::Cpu;
    let t = build_trainable(ModelKind::Mbv3sTiny, 21, 5, &dev).unwrap();
    let x = input(1, 32, 32);
    let target = labels(1, 32, 32);
    let loss_of = || {
        let out = t.model.forward(&x, Mode::Eval).unwrap();
        distill::ce::cross_entropy(&out.logits, &target).unwrap()
    };
    let grads = loss_of().backward().unwrap();
    // A depthwise weight deep in the encoder and the head's bias.
    for name in ["backbone.4.block.1.0.weight", "classifier.low_classifier.bias", "backbone.0.0.weight"] {
        let var: Var = t.varmap.data().lock().unwrap()[name].clone();
        let g: Vec<f32> = grads.get(&var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let base: Vec<f32> = var.flatten_all().unwrap().to_vec1().unwrap();
        let i = g.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap().0;
        let h = 1e-2f32;
        let eval_at = |v: f32| {
            let mut p = base.clone();
            p[i] = v;
            var.set(&Tensor::from_vec(p, var.shape(), &dev).unwrap()).unwrap();
            loss_of().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
        };
        let fd = (eval_at(base[i] + h) - eval_at(base[i] - h)) / (2.0 * h as f64);
        eval_at(base[i]);
        assert!((fd - g[i] as f64).abs() <= 0.02 * fd.abs() + 1e-4, "{name}[{i}]: fd {fd} vs autograd {}", g[i]);
    }
}

#[test]
fn dropout_is_seeded_and_batch_norm_tracks_statistics() {
    let dev = Device::Cpu;
    let t = build_trainable(ModelKind::Mbv3sAspp, 21, 0, &dev).unwrap();
    let x = input(2, 32, 32);
    let a = t.model.forward(&x, Mode::train(7)).unwrap().logits;
    let b = t.model.forward(&x, Mode::train(7)).unwrap().logits;
    let c = t.model.forward(&x, Mode::train(8)).unwrap().logits;
    let diff = |p: &Tensor, q: &Tensor| (p - q).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(
        diff(&a, &b) < 1e-6 * a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0),
        "same step seed, same masks"
    );
    assert!(diff(&a, &c) > 1e-4, "another seed, other masks");
    let rm = t.varmap.data().lock().unwrap()["aspp.b0.1.running_mean"]
        .as_tensor()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(rm > 0.0, "running means moved away from 0 in train mode");
    let e1 = t.model.forward(&x, Mode::Eval).unwrap().logits;
    let e2 = t.model.forward(&x, Mode::Eval).unwrap().logits;
    assert_eq!(diff(&e1, &e2), 0.0, "eval mode is deterministic");
}
