//! torchvision's segmentation zoo (FCN-ResNet101, DeepLabV3 on ResNet-50/101 and MobileNetV3-Large)
//! against torchvision itself. `tests/fixtures/zoo` (from `bench/make_zoo_fixtures.py`) holds each
//! model's `state_dict` listing and its outputs for one input, with every tensor filled by a
//! formula both sides compute (`weights::hashed`): the test writes that file, loads it through the
//! same loader a published `.pth` goes through (every key and shape checked), and compares the
//! logits and aux logits (≤ 1e-4 of the largest value). The ImageNet backbone listings check
//! `--backbone-weights` for the new backbones.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use segdistill::model::weights::hashed::hashed_state_dict;
use segdistill::model::weights::save_safetensors;
use segdistill::model::{Mode, ModelKind, build_trainable, load_backbone, load_for_inference};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zoo")
}

struct Zoo {
    json: serde_json::Value,
}

impl Zoo {
    fn load() -> Self {
        let text = std::fs::read_to_string(fixtures().join("zoo.json")).expect("tests/fixtures/zoo/zoo.json");
        Self { json: serde_json::from_str(&text).unwrap() }
    }

    fn listing(&self, name: &str) -> Vec<(String, Vec<usize>)> {
        self.json["listings"][name]
            .as_array()
            .unwrap_or_else(|| panic!("no listing for {name}"))
            .iter()
            .map(|e| {
                let shape = e[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                (e[0].as_str().unwrap().to_string(), shape)
            })
            .collect()
    }

    /// The listing's tensors, hashed, as a safetensors file in `dir`.
    fn write_file(&self, name: &str, dir: &Path) -> PathBuf {
        let dict = hashed_state_dict(&self.listing(name), &Device::Cpu).unwrap();
        let path = dir.join(format!("{name}.safetensors"));
        save_safetensors(&dict, &path).unwrap();
        path
    }
}

fn max_rel(ours: &Tensor, reference: &Tensor) -> f32 {
    assert_eq!(ours.dims(), reference.dims());
    let diff = (ours - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = reference.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    diff / scale
}

const SEGMENTATION: [(&str, ModelKind); 4] = [
    ("fcn-resnet101", ModelKind::FcnResnet101),
    ("deeplabv3-resnet50", ModelKind::DeeplabV3Resnet50),
    ("deeplabv3-resnet101", ModelKind::DeeplabV3Resnet101),
    ("deeplabv3-mbv3l", ModelKind::DeeplabV3Mbv3l),
];

#[test]
fn zoo_models_load_torchvision_layouts_and_match_its_outputs() {
    let zoo = Zoo::load();
    let tmp = tempfile::tempdir().unwrap();
    for (name, kind) in SEGMENTATION {
        assert_eq!(kind.name(), name);
        let file = zoo.write_file(name, tmp.path());
        // Every key and shape of torchvision's state_dict, no more and no fewer.
        let loaded = load_for_inference(kind, &file, &Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let reference =
            candle_core::safetensors::load(fixtures().join(format!("{name}.safetensors")), &Device::Cpu).unwrap();
        let out = loaded.model.forward(&reference["input"], Mode::Eval).unwrap();
        let (out_err, aux_err) =
            (max_rel(&out.logits, &reference["out"]), max_rel(&out.aux.unwrap(), &reference["aux"]));
        eprintln!("{name}: out {out_err:.2e}, aux {aux_err:.2e} of the largest value");
        assert!(out_err <= 1e-4 && aux_err <= 1e-4, "{name}: out {out_err:.2e}, aux {aux_err:.2e}");
        assert_eq!(loaded.model.num_classes(), zoo.json["num_classes"].as_u64().unwrap() as usize);
    }
}

#[test]
fn a_zoo_file_of_another_architecture_is_refused_by_name() {
    let zoo = Zoo::load();
    let tmp = tempfile::tempdir().unwrap();
    let file = zoo.write_file("deeplabv3-resnet50", tmp.path());
    // FCN-ResNet101 asks for layer3.6 and up, which a ResNet-50 file lacks; its ASPP keys are extra.
    let err = load_for_inference(ModelKind::FcnResnet101, &file, &Device::Cpu).err().expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("holds a deeplabv3-resnet50, not a fcn-resnet101"), "says what the file is: {msg}");
    assert!(msg.contains(file.to_str().unwrap()), "names the file: {msg}");
    // Every architecture is told apart by its keys.
    for (name, kind) in SEGMENTATION {
        let keys: std::collections::HashSet<String> = zoo.listing(name).into_iter().map(|(k, _)| k).collect();
        assert_eq!(ModelKind::detect(|k| keys.contains(k)), Some(kind), "{name}");
    }
    assert_eq!(ModelKind::detect(|_| false), None);
}

#[test]
fn imagenet_backbones_load_into_the_zoo_architectures() {
    let zoo = Zoo::load();
    let tmp = tempfile::tempdir().unwrap();
    for (backbone, kinds) in [
        ("resnet101", &[ModelKind::FcnResnet101, ModelKind::DeeplabV3Resnet101][..]),
        ("mobilenet_v3_large", &[ModelKind::DeeplabV3Mbv3l][..]),
    ] {
        let file = zoo.write_file(backbone, tmp.path());
        let classifier_tensors =
            zoo.listing(backbone).iter().filter(|(k, _)| k.starts_with("fc.") || k.starts_with("classifier.")).count();
        for &kind in kinds {
            assert_eq!(kind.backbone(), backbone);
            let model = build_trainable(kind, 5, 1, &Device::Cpu).unwrap();
            let loaded = load_backbone(&model.varmap, &file).unwrap_or_else(|e| panic!("{kind}: {e:#}"));
            assert_eq!(loaded, zoo.listing(backbone).len() - classifier_tensors, "{kind}: every backbone tensor");
        }
    }
}

#[test]
fn deeplabv3_trains_with_gradients_through_every_head() {
    // MobileNetV3-Large keeps this fast; the ResNet variants share the head and the backbone code
    // that FCN-ResNet50's training test covers.
    let dev = Device::Cpu;
    let t = build_trainable(ModelKind::DeeplabV3Mbv3l, 3, 7, &dev).unwrap();
    let x = Tensor::randn(0f32, 1., (2, 3, 48, 40), &dev).unwrap();
    let out = t.model.forward(&x, Mode::train(3)).unwrap();
    assert_eq!(out.logits.dims(), &[2, 3, 48, 40]);
    let aux = out.aux.expect("aux head in training");
    let loss = (out.logits.sqr().unwrap().mean_all().unwrap() + aux.sqr().unwrap().mean_all().unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    let vars = t.varmap.data().lock().unwrap();
    for key in [
        "classifier.0.convs.4.1.weight", // the image-pooling branch
        "classifier.0.convs.3.0.weight", // the rate-36 branch
        "classifier.0.project.0.weight",
        "classifier.4.weight",
        "aux_classifier.0.weight",
        "backbone.0.0.weight",
    ] {
        let g = grads.get(vars[key].as_tensor()).unwrap_or_else(|| panic!("no gradient for {key}"));
        let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 0.0 && norm.is_finite(), "{key}: |grad|² = {norm}");
    }
}

#[test]
fn every_architecture_is_recognised_from_its_keys_and_counts_torchvisions_parameters() {
    // torchvision's counts with 21 classes and the aux head (`sum(p.numel() for p in m.parameters())`).
    let published = [
        (ModelKind::FcnResnet101, 54_314_346),
        (ModelKind::DeeplabV3Resnet50, 42_004_074),
        (ModelKind::DeeplabV3Resnet101, 60_996_202),
        (ModelKind::DeeplabV3Mbv3l, 11_029_328),
    ];
    for kind in ModelKind::ALL {
        let t = build_trainable(kind, 21, 0, &Device::Cpu).unwrap();
        if let Some((_, count)) = published.iter().find(|(k, _)| *k == kind) {
            assert_eq!(t.num_params, *count, "{kind}");
        }
        let vars = t.varmap.data().lock().unwrap();
        assert_eq!(ModelKind::detect(|k| vars.contains_key(k)), Some(kind), "{kind}");
    }
}
