//! Teachers end to end: a teacher architecture trains like any model (FCN-ResNet50 with its
//! auxiliary head), and a finished run can be the teacher of another (`--teacher-run`).

mod common;

use common::*;
use segdistill::model::{ModelKind, load_for_inference};

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// A one-epoch run of `model` at 32 px on 4 training and 2 validation images.
fn train(data: &str, out: &str, model: &str, extra: &[&str]) -> std::process::Output {
    tiny_train(data, out)
        .model(model)
        .batch(2)
        .size(32)
        .args(["--train-limit", "4", "--val-limit", "2"])
        .args(extra)
        .run()
}

#[test]
fn fcn_resnet50_trains_and_its_run_teaches_a_student() {
    let (tmp, data) = demo_dataset(4, 2, 48);
    let teacher_run = tmp.path().join("runs/fcn");
    let out = train(s(&data), s(&teacher_run), "fcn-resnet50", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Its weights are torchvision's layout, auxiliary head included: loadable as any FCN file.
    let weights = teacher_run.join("student.safetensors");
    let loaded = load_for_inference(ModelKind::FcnResnet50, &weights, &candle_core::Device::Cpu).unwrap();
    assert_eq!(loaded.num_params, 35_322_218, "torchvision's FCN-ResNet50 count, aux head included");

    let student_run = tmp.path().join("runs/student");
    let out =
        train(s(&data), s(&student_run), "mbv3s-tiny", &["--distill", "response", "--teacher-run", s(&teacher_run)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("from fcn-resnet50"), "{}", stderr(&out));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(student_run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["teacher"], "fcn-resnet50");
    assert_eq!(config["teacher_weights"].as_str().unwrap(), weights.canonicalize().unwrap().to_str().unwrap());

    // A student run teaches another student the same way (the model comes from the run).
    let second = tmp.path().join("runs/second");
    let out = train(s(&data), s(&second), "mbv3s-tiny", &["--distill", "combined", "--teacher-run", s(&student_run)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("from mbv3s-tiny"), "{}", stderr(&out));
}

#[test]
fn teacher_run_errors_name_the_folder() {
    let (tmp, data) = demo_dataset(2, 1, 48);
    let empty = tmp.path().join("not-a-run");
    std::fs::create_dir_all(&empty).unwrap();
    let out =
        train(s(&data), s(&tmp.path().join("r")), "mbv3s-tiny", &["--distill", "response", "--teacher-run", s(&empty)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not-a-run") && stderr(&out).contains("no run there"), "{}", stderr(&out));
    let both = ["--distill", "response", "--teacher-run", s(&empty), "--teacher-model", "fcn-resnet50"];
    let out = train(s(&data), s(&tmp.path().join("r2")), "mbv3s-tiny", &both);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
}

#[test]
fn a_teacher_trains_from_a_full_file_or_from_imagenet_resnet_weights() {
    let (tmp, data) = demo_dataset(2, 1, 48);
    // Fine-tuning from torchvision's FCN-ResNet50 (every key of its state dict, aux head included;
    // hashed values). The legacy pickle format itself is tested on real torch.save output in
    // weights_loading.rs.
    let fixture = torchvision_weights("fcn_resnet50_random_legacy.pth");
    let run = tmp.path().join("finetune");
    let out = train(s(&data), s(&run), "fcn-resnet50", &["--init-weights", s(&fixture)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("started from 279 tensors"), "334 keys less 55 counters: {}", stderr(&out));
    // Real torch.save output in the legacy format, int64 counters included (a small model).
    let legacy = torch_file("mbv3s_tiny_legacy.pth");
    let run = tmp.path().join("finetune-legacy");
    let out = train(s(&data), s(&run), "mbv3s-tiny", &["--init-weights", s(&legacy)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("started from 154 tensors"), "179 keys less 25 counters: {}", stderr(&out));

    // An ImageNet ResNet-50 file: the FCN's backbone under torchvision's resnet50 names, plus the
    // classifier (`fc.*`) an ImageNet file has and the FCN ignores.
    let dict = segdistill::model::weights::StateDict::load(&fixture).unwrap();
    let mut tensors: std::collections::HashMap<String, candle_core::Tensor> =
        dict.keys().filter_map(|k| Some((k.strip_prefix("backbone.")?.to_string(), dict.get(k)?.clone()))).collect();
    let dev = candle_core::Device::Cpu;
    tensors
        .insert("fc.weight".into(), candle_core::Tensor::zeros((1000, 2048), candle_core::DType::F32, &dev).unwrap());
    tensors.insert("fc.bias".into(), candle_core::Tensor::zeros(1000, candle_core::DType::F32, &dev).unwrap());
    let resnet = tmp.path().join("resnet50.safetensors");
    candle_core::safetensors::save(&tensors, &resnet).unwrap();
    let run = tmp.path().join("from-imagenet");
    let out = train(s(&data), s(&run), "fcn-resnet50", &["--backbone-weights", s(&resnet)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("ImageNet backbone tensors"), "{}", stderr(&out));

    // A file of another architecture is refused with the keys it lacks.
    let run = tmp.path().join("wrong");
    let mbv3 = torchvision_weights("mobilenet_v3_small_random.pth");
    let out = train(s(&data), s(&run), "fcn-resnet50", &["--init-weights", s(&mbv3)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let name = mbv3.file_name().unwrap().to_str().unwrap();
    assert!(stderr(&out).contains(name), "{}", stderr(&out));
}

#[test]
fn frozen_batch_norm_keeps_statistics_scale_and_shift_while_the_rest_learns() {
    let (tmp, data) = demo_dataset(4, 2, 48);
    let first = tmp.path().join("first");
    let out = train(s(&data), s(&first), "mbv3s-tiny", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let start = first.join("student.safetensors");
    let frozen = tmp.path().join("frozen");
    let out = train(s(&data), s(&frozen), "mbv3s-tiny", &["--init-weights", s(&start), "--freeze-bn"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dev = candle_core::Device::Cpu;
    let before = candle_core::safetensors::load(&start, &dev).unwrap();
    let after = candle_core::safetensors::load(frozen.join("student.safetensors"), &dev).unwrap();
    let same = |k: &str| {
        let a = after.get(k).unwrap_or_else(|| panic!("{k} missing"));
        (a - &before[k]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() == 0.0
    };
    let bn_layers: Vec<String> =
        before.keys().filter_map(|k| k.strip_suffix(".running_mean").map(str::to_string)).collect();
    assert!(bn_layers.len() > 10, "{bn_layers:?}");
    for layer in &bn_layers {
        for part in ["running_mean", "running_var", "weight", "bias"] {
            assert!(same(&format!("{layer}.{part}")), "{layer}.{part} changed under --freeze-bn");
        }
    }
    let convs: Vec<&String> = before.keys().filter(|k| before[*k].rank() == 4).collect();
    assert!(convs.iter().any(|k| !same(k)), "the convolutions still learn");
}
