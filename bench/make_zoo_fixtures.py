#!/usr/bin/env python3
"""Reference outputs of torchvision's segmentation zoo for `tests/zoo.rs`, small enough for the repo.

Every parameter and buffer is filled by a formula both sides compute exactly (`hashed_values`
below; `segdistill::model::weights::hashed` in Rust), so no weights file is shipped: the fixtures are the
key/shape listings of each model's `state_dict` (what a published file must match), one small
input and torchvision's outputs for it (`out`, `aux`) in eval mode.

    pip install torch torchvision safetensors numpy
    python bench/make_zoo_fixtures.py [--out tests/fixtures/zoo]

Models: fcn_resnet101, deeplabv3_resnet50, deeplabv3_resnet101, deeplabv3_mobilenet_v3_large (with
their aux heads), and the ImageNet backbones resnet101 / mobilenet_v3_large (listings only, for
`--backbone-weights`). FCN-ResNet50 and LR-ASPP are covered by the torchvision parity fixtures
(bench/make_parity_fixtures.py).
"""

import argparse
import json
import math
import os

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file

NUM_CLASSES = 4
# Odd sizes: every resize and strided convolution meets a non-divisible edge.
INPUT_HW = (57, 67)

SEGMENTATION = {
    "fcn-resnet101": lambda: torchvision.models.segmentation.fcn_resnet101(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=True),
    "deeplabv3-resnet50": lambda: torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=True),
    "deeplabv3-resnet101": lambda: torchvision.models.segmentation.deeplabv3_resnet101(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=True),
    "deeplabv3-mbv3l": lambda: torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=True),
}
BACKBONES = {
    "resnet101": lambda: torchvision.models.resnet101(weights=None),
    "mobilenet_v3_large": lambda: torchvision.models.mobilenet_v3_large(weights=None),
}

MASK64 = (1 << 64) - 1


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


def uniform(seed, n):
    """splitmix64(seed + i·φ) for i in 0..n, top 24 bits as [0, 1) — exact in float64 and float32."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def hashed_values(name, shape):
    """The value of tensor `name`: what Rust's `hashed_tensor` computes (f64 maths, then f32)."""
    n = int(np.prod(shape)) if len(shape) else 1
    u = uniform(fnv1a64(name), n)
    if name.endswith("running_var"):
        v = 0.5 + u
    elif name.endswith("running_mean") or name.endswith("bias"):
        v = (u - 0.5) * 0.02
    elif len(shape) == 1:  # a batch norm's γ
        v = 0.5 + u
    else:  # conv / linear weights: variance 1/fan_in
        fan_in = int(np.prod(shape[1:]))
        v = (2.0 * u - 1.0) * math.sqrt(3.0 / fan_in)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def fill(model):
    sd = model.state_dict()
    listing = []
    for name, t in sd.items():
        if name.endswith("num_batches_tracked"):
            continue
        sd[name] = hashed_values(name, tuple(t.shape))
        listing.append([name, list(t.shape)])
    model.load_state_dict(sd)
    return listing


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "zoo"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    x = hashed_values("input", (1, 3) + INPUT_HW) * 4.0
    listings = {}
    for name, build in SEGMENTATION.items():
        model = build().eval()
        listings[name] = fill(model)
        with torch.no_grad():
            out = model(x)
        tensors = {"input": x, "out": out["out"].contiguous(), "aux": out["aux"].contiguous()}
        save_file(tensors, os.path.join(args.out, f"{name}.safetensors"))
        print(f"{name}: {len(listings[name])} tensors, out {tuple(out['out'].shape)}, "
              f"max |out| {out['out'].abs().max():.3g}")
    for name, build in BACKBONES.items():
        listings[name] = fill(build())
        print(f"{name}: {len(listings[name])} tensors")
    meta = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "num_classes": NUM_CLASSES,
        "input_hw": list(INPUT_HW),
        "listings": listings,
    }
    with open(os.path.join(args.out, "zoo.json"), "w") as f:
        json.dump(meta, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
