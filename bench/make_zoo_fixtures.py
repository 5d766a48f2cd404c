#!/usr/bin/env python3
"""Reference outputs of torchvision's segmentation zoo for `tests/zoo.rs`, small enough for the repo.

Every parameter and buffer is filled by a formula both sides compute exactly (`hashed_values` in
`bench/hashed_weights.py`; `segdistill::model::weights::hashed` in Rust), so no weights travel: the
fixtures are the key/shape listings of each model's `state_dict` (what a published file must match), one small
input and torchvision's outputs for it (`out`, `aux`) in eval mode.

    pip install torch torchvision safetensors numpy
    python bench/make_zoo_fixtures.py [--out tests/fixtures/zoo]

Models: fcn_resnet101, deeplabv3_resnet50, deeplabv3_resnet101, deeplabv3_mobilenet_v3_large (with
their aux heads), and the ImageNet backbones resnet101 / mobilenet_v3_large (listings only, for
`--backbone-weights`). FCN-ResNet50, MobileNetV3-Small and LR-ASPP are covered by
`bench/make_parity_fixtures.py --small` (`tests/fixtures/torchvision`).
"""

import argparse
import json
import os

import torch
import torchvision
from safetensors.torch import save_file

from hashed_weights import hashed_values

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
