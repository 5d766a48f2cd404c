#!/usr/bin/env python3
"""Loads a segdistill weights file with python/segdistill_torch.py and compares PyTorch's output
with segdistill's on the same input.

Usage: python bench/pytorch_loader_check.py MODEL WEIGHTS.safetensors REFERENCE.safetensors [--bound 1e-4]

REFERENCE holds `image` and segdistill's `logits` for it (tests/pytorch_loader.rs writes both).
Prints the maximum relative error and exits 1 above the bound.
"""
import argparse
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import segdistill_torch  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("weights")
    p.add_argument("reference")
    p.add_argument("--bound", type=float, default=1e-4)
    a = p.parse_args()
    torch.set_grad_enabled(False)
    model = segdistill_torch.load(a.weights, a.model)
    ref = load_file(a.reference)
    out = model(ref["image"])["out"]
    expected = ref["logits"]
    err = float((out - expected).abs().max() / expected.abs().max().clamp_min(1e-6))
    print(f"{a.model}: torch {torch.__version__}, max relative error {err:.2e} (bound {a.bound:g})")
    return 0 if err <= a.bound else 1


if __name__ == "__main__":
    sys.exit(main())
