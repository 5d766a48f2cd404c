#!/usr/bin/env python3
"""Runs a segdistill ONNX export in onnxruntime and compares its output with segdistill's.

Usage: python bench/onnx_check.py MODEL.onnx REFERENCE.safetensors [--bound 1e-4] [--json]

REFERENCE holds the tensors `image` (the graph's input) and `logits` (what segdistill computed for
it; `tests/onnx_export.rs` writes both). Also validates the file with onnx's checker. Prints the
maximum relative error (max |a − b| / max |b|) and the share of pixels whose arg-max class differs;
exits 1 above the bound. Needs: onnxruntime, onnx, safetensors, numpy.
"""
import argparse
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("reference")
    p.add_argument("--bound", type=float, default=1e-4)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    onnx.checker.check_model(onnx.load(a.model), full_check=True)
    ref = load_file(a.reference)
    session = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: ref["image"]})
    logits = outputs[0]
    expected = ref["logits"]
    if logits.shape != expected.shape:
        print(f"shape {logits.shape} != segdistill's {expected.shape}", file=sys.stderr)
        return 1
    err = float(np.abs(logits - expected).max() / max(float(np.abs(expected).max()), 1e-6))
    flipped = float((logits.argmax(1) != expected.argmax(1)).mean())
    result = {
        "model": a.model,
        "onnxruntime": ort.__version__,
        "max_relative_error": err,
        "argmax_changed": flipped,
        "bound": a.bound,
        "ok": err <= a.bound,
    }
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{a.model}: onnxruntime {ort.__version__}, max relative error {err:.2e}, "
              f"arg-max changed on {100 * flipped:.3f}% of pixels (bound {a.bound:g})")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
