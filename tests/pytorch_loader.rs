//! python/segdistill_torch.py builds each model in PyTorch and loads segdistill's weights file;
//! its outputs must equal segdistill's (≤ 1e-4 relative). Runs where torch, torchvision and
//! safetensors are installed (`SEGDISTILL_PYTHON`, else `python3`).

mod common;

use std::collections::HashMap;

use segdistill::model::{Mode, ModelKind};

#[test]
fn pytorch_loads_segdistill_weights_and_computes_the_same_logits() {
    let Some(python) = common::python_with(&["torch", "torchvision", "safetensors"]) else {
        println!("skipped: no Python with torch, torchvision and safetensors (set SEGDISTILL_PYTHON)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/pytorch_loader_check.py");
    let x = common::random_image(67, 91, 3);
    for kind in ModelKind::ALL {
        let t = common::model_with_batch_norm_statistics(kind, 21);
        let weights = dir.path().join(format!("{kind}.safetensors"));
        t.varmap.save(&weights).unwrap();
        let logits = t.model.forward(&x, Mode::Eval).unwrap().logits;
        let reference = dir.path().join(format!("{kind}-reference.safetensors"));
        let tensors = HashMap::from([("image".to_string(), x.clone()), ("logits".to_string(), logits)]);
        candle_core::safetensors::save(&tensors, &reference).unwrap();
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg(kind.name())
            .arg(&weights)
            .arg(&reference)
            .output()
            .unwrap();
        let text = common::stdout(&out);
        println!("{}", text.trim());
        assert!(out.status.success(), "{kind}: {text}{}", common::stderr(&out));
    }
}
