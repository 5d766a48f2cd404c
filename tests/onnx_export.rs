//! ONNX export, checked in Rust: every model of the registry is written as an ONNX file, read
//! back, evaluated by candle-onnx (an independent evaluator of the graph: its own convolution,
//! resize and activations) and compared with segdistill's own forward pass. Batch-norm statistics
//! are randomised first, so folding them into the convolutions is tested, not trivially exact.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use prost::Message as _;
use segdistill::model::onnx::{ExportOptions, IMAGENET_MEAN, IMAGENET_STD, INPUT, InputShape, LOGITS, MASK};
use segdistill::model::{Mode, Model, ModelKind, build_trainable};

/// The file's bytes, decoded again and evaluated by candle-onnx.
fn evaluate(model: &Model, options: &ExportOptions, x: &Tensor) -> HashMap<String, Tensor> {
    let bytes = segdistill::model::onnx::encode(&model.to_onnx(options).unwrap());
    let proto = candle_onnx::onnx::ModelProto::decode(bytes.as_slice()).unwrap();
    candle_onnx::simple_eval(&proto, HashMap::from([(INPUT.to_string(), x.clone())])).unwrap()
}

fn max_relative_error(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
    diff / scale
}

#[test]
fn every_model_exports_a_graph_that_computes_its_logits() {
    // An odd, non-square size: strides, padding and the half-pixel resize all show.
    let x = common::random_image(67, 91, 5);
    for kind in ModelKind::ALL {
        let t = common::model_with_batch_norm_statistics(kind, 21);
        let ours = t.model.forward(&x, Mode::Eval).unwrap().logits;
        let out = evaluate(&t.model, &ExportOptions::default(), &x);
        let err = max_relative_error(&out[LOGITS], &ours);
        println!("{kind}: max relative error {err:.2e}");
        assert!(err <= 1e-4, "{kind}: ONNX logits differ from segdistill's by {err:e} (relative)");
    }
}

#[test]
fn fixed_shapes_normalisation_and_the_mask_output() {
    let kind = ModelKind::Mbv3sAspp;
    let t = common::model_with_batch_norm_statistics(kind, 5);
    let raw = (common::random_image(64, 80, 9) * 0.5).unwrap().affine(1.0, 0.5).unwrap(); // RGB in [0, 1]
    let mean = Tensor::from_slice(&IMAGENET_MEAN, (1, 3, 1, 1), &Device::Cpu).unwrap();
    let std = Tensor::from_slice(&IMAGENET_STD, (1, 3, 1, 1), &Device::Cpu).unwrap();
    let normalized = raw.broadcast_sub(&mean).unwrap().broadcast_div(&std).unwrap();
    let ours = t.model.forward(&normalized, Mode::Eval).unwrap().logits;
    let options = ExportOptions {
        shape: InputShape::Fixed { height: 64, width: 80 },
        normalize: true,
        argmax: true,
        ..Default::default()
    };
    let out = evaluate(&t.model, &options, &raw);
    let err = max_relative_error(&out[LOGITS], &ours);
    assert!(err <= 1e-4, "{err:e}");
    let mask = out[MASK].to_dtype(DType::I64).unwrap();
    assert_eq!(mask.dims(), &[1, 64, 80]);
    let expected = ours.argmax(1).unwrap().to_dtype(DType::I64).unwrap();
    let differing = mask.ne(&expected).unwrap().to_dtype(DType::F32).unwrap().sum_all().unwrap();
    assert_eq!(differing.to_scalar::<f32>().unwrap(), 0.0, "the mask is the logits' arg-max");
}

#[test]
fn an_unsupported_opset_is_refused_with_the_supported_range() {
    let t = build_trainable(ModelKind::Mbv3sTiny, 21, 0, &Device::Cpu).unwrap();
    let err = t.model.to_onnx(&ExportOptions { opset: 11, ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("opset 11") && err.contains("14–17"), "{err}");
}

#[test]
fn onnxruntime_computes_the_same_logits_when_installed() {
    let Some(python) = common::python_with(&["onnxruntime", "onnx", "safetensors", "numpy"]) else {
        println!("skipped: no Python with onnxruntime (set SEGDISTILL_PYTHON); bench/onnx_check.py runs it by hand");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/onnx_check.py");
    let x = common::random_image(67, 91, 7);
    for kind in ModelKind::ALL {
        let t = common::model_with_batch_norm_statistics(kind, 21);
        let logits = t.model.forward(&x, Mode::Eval).unwrap().logits;
        let onnx = dir.path().join(format!("{kind}.onnx"));
        std::fs::write(&onnx, segdistill::model::onnx::encode(&t.model.to_onnx(&ExportOptions::default()).unwrap()))
            .unwrap();
        let reference = dir.path().join(format!("{kind}.safetensors"));
        let tensors = HashMap::from([("image".to_string(), x.clone()), ("logits".to_string(), logits)]);
        candle_core::safetensors::save(&tensors, &reference).unwrap();
        let out = std::process::Command::new(&python).arg(&script).arg(&onnx).arg(&reference).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        println!("{}", text.trim());
        assert!(out.status.success(), "{kind}: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn the_export_command_writes_a_run_and_refuses_bad_requests() {
    use common::{segdistill, stderr, stdout};
    let (_data, root) = common::demo_dataset(8, 4, 64);
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("tiny");
    let trained = common::tiny_train(&root, &run)
        .default_workers()
        .args(["--export"])
        .args([runs.path().join("tiny.onnx")])
        .run();
    assert!(trained.status.success(), "{}", stderr(&trained));
    assert!(runs.path().join("tiny.onnx").is_file(), "train --export FILE.onnx writes the graph");
    let out = runs.path().join("fixed.onnx");
    let done = segdistill(&[
        "export",
        "--run",
        run.to_str().unwrap(),
        "--onnx",
        out.to_str().unwrap(),
        "--size",
        "64",
        "96",
        "--argmax",
    ]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(stdout(&done).contains("1×3×64×96"), "{}", stdout(&done));
    let proto = candle_onnx::read_file(&out).unwrap();
    let outputs: Vec<String> = proto.graph.unwrap().output.into_iter().map(|o| o.name).collect();
    assert_eq!(outputs, [LOGITS, MASK]);
    for (args, expect) in [
        (vec!["--run", "/nonexistent/run"], "is not a run folder"),
        (vec!["--run", run.to_str().unwrap(), "--opset", "9"], "choose 14–17"),
        (vec!["--run", run.to_str().unwrap(), "--size", "8", "8"], "each side must be 32"),
        (vec!["--model", "mbv3s-tiny", "--weights", "/nonexistent.safetensors"], "nonexistent"),
    ] {
        let mut all = vec!["export", "--onnx", out.to_str().unwrap()];
        all.extend(args);
        let r = segdistill(&all);
        assert!(!r.status.success() && stderr(&r).contains(expect), "{all:?}: {}", stderr(&r));
    }
    let overwrite = segdistill(&[
        "export",
        "--run",
        run.to_str().unwrap(),
        "--onnx",
        run.join("student.safetensors").to_str().unwrap(),
    ]);
    assert!(stderr(&overwrite).contains("refusing to overwrite an input"), "{}", stderr(&overwrite));
}
