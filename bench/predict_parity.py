#!/usr/bin/env python3
"""Checks `segdistill predict --logits` against torchvision on the same image and weights.

Usage: predict_parity.py --model fcn-resnet50|lraspp-mbv3l --weights FILE --image IMG
                         [--resize none|N] [--segdistill target/release/segdistill]

Runs segdistill, then torchvision with the lab's preprocessing (PIL → RGB → optional
`Resize(N)` → `ToTensor` → ImageNet `Normalize`) and prints max |ours − torch| / max |torch|.
Exit 1 if it exceeds 1e-4.
"""
import argparse
import subprocess
import sys
import tempfile

import torch
import torchvision.transforms as T
from PIL import Image
from safetensors.torch import load_file
from torchvision.models import segmentation


def build(name, weights):
    if name == "fcn-resnet50":
        state = torch.load(weights, map_location="cpu", weights_only=True)
        aux = any(k.startswith("aux_classifier.") for k in state)
        classes = state["classifier.4.weight"].shape[0]
        model = segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=classes, aux_loss=aux)
    elif name == "lraspp-mbv3l":
        state = torch.load(weights, map_location="cpu", weights_only=True)
        classes = state["classifier.low_classifier.weight"].shape[0]
        model = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=classes)
    else:
        sys.exit(f"unsupported model {name}")
    model.load_state_dict(state)
    return model.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--resize", default="none")
    ap.add_argument("--segdistill", default="target/release/segdistill")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([a.segdistill, "predict", "--model", a.model, "--weights", a.weights, "--image", a.image,
                        "--resize", a.resize, "--out", f"{tmp}/m.png", "--logits", f"{tmp}/l.safetensors",
                        "--device", "cpu"], check=True, stdout=subprocess.DEVNULL)
        ours = load_file(f"{tmp}/l.safetensors")["logits"]
    steps = [] if a.resize == "none" else [T.Resize(int(a.resize))]
    tf = T.Compose(steps + [T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    x = tf(Image.open(a.image).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        ref = build(a.model, a.weights)(x)["out"]
    if ours.shape != ref.shape:
        sys.exit(f"shape {tuple(ours.shape)} vs torchvision {tuple(ref.shape)}")
    rel = ((ours - ref).abs().max() / ref.abs().max()).item()
    agree = (ours.argmax(1) == ref.argmax(1)).float().mean().item()
    print(f"{a.model} {a.image} resize={a.resize}: relative max diff {rel:.2e}, argmax agreement {agree:.5f}")
    sys.exit(0 if rel <= 1e-4 else 1)


if __name__ == "__main__":
    main()
