"""segdistill's models in PyTorch, loading segdistill's safetensors weights.

Every tensor name in a segdistill weights file (`RUN_DIR/student.safetensors`, or a file written
by `train --export`) is the name PyTorch uses for the same parameter or buffer, so loading is a
plain `load_state_dict` (only BatchNorm's `num_batches_tracked` counters, which segdistill does not
keep, are filled in).

    from segdistill_torch import load
    model = load("runs/mbv3s-aspp-none/student.safetensors", "mbv3s-aspp")   # eval mode
    logits = model(x)["out"]        # x: (N, 3, H, W), ImageNet-normalised RGB

Models: the students `mbv3s-aspp` and `mbv3s-tiny` (built here from torchvision's blocks), and
torchvision's own `lraspp-mbv3l`, `fcn-resnet50`, `fcn-resnet101`, `deeplabv3-resnet50`,
`deeplabv3-resnet101`, `deeplabv3-mbv3l` (any of them trained or fine-tuned in segdistill).
Needs: torch, torchvision, safetensors. Checked against segdistill's own outputs by
`tests/pytorch_loader.rs` (through `bench/pytorch_loader_check.py`).
"""
from functools import partial

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torchvision.models import mobilenet_v3_small
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation import (
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
    fcn_resnet50,
    fcn_resnet101,
    lraspp_mobilenet_v3_large,
)
from torchvision.models.segmentation.lraspp import LRASPP
from torchvision.ops.misc import Conv2dNormActivation

__all__ = ["build", "load", "MODELS"]

# Conv → BatchNorm (PyTorch's defaults, as segdistill's heads) → ReLU.
_cbr = partial(Conv2dNormActivation, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU)


def _small_features():
    # MobileNetV3-Small with its last stage dilated (output stride 16), as segdistill's students.
    return mobilenet_v3_small(weights=None, dilated=True).features


class Aspp(nn.Module):
    """segdistill's light ASPP: 1×1, three depthwise-separable atrous branches, image pooling."""

    def __init__(self, in_c, out_c, rates):
        super().__init__()
        self.b0 = _cbr(in_c, out_c, 1)
        for i, r in enumerate(rates):
            branch = nn.Module()
            branch.dw = _cbr(in_c, in_c, 3, groups=in_c, dilation=r)
            branch.pw = _cbr(in_c, out_c, 1)
            setattr(self, f"b{i + 1}", branch)
        self.rates = rates
        self.pool = _cbr(in_c, out_c, 1)
        self.project = _cbr(out_c * (len(rates) + 2), out_c, 1)

    def forward(self, x):
        branches = [self.b0(x)]
        for i in range(len(self.rates)):
            b = getattr(self, f"b{i + 1}")
            branches.append(b.pw(b.dw(x)))
        pooled = self.pool(F.adaptive_avg_pool2d(x, 1))
        branches.append(pooled.expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(branches, 1))


class Mbv3sAspp(nn.Module):
    """`mbv3s-aspp`: MobileNetV3-Small, light ASPP on the last map, a DeepLabV3+-style decoder
    with the stride-4 map."""

    LOW, HIGH = 1, 12

    def __init__(self, num_classes):
        super().__init__()
        self.backbone = _small_features()
        self.aspp = Aspp(576, 128, [6, 12, 18])
        self.decoder = nn.Module()
        self.decoder.low = _cbr(16, 32, 1)
        self.decoder.fuse = _cbr(128 + 32, 128, 3)
        self.decoder.classifier = nn.Conv2d(128, num_classes, 1)

    def forward(self, x):
        low = high = None
        y = x
        for i, m in enumerate(self.backbone):
            y = m(y)
            if i == self.LOW:
                low = y
            if i == self.HIGH:
                high = y
        context = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decoder.fuse(torch.cat([context, self.decoder.low(low)], 1))
        logits = self.decoder.classifier(y)
        return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def _mbv3s_tiny(num_classes):
    """`mbv3s-tiny`: MobileNetV3-Small up to its 8th block with torchvision's LR-ASPP head."""
    features = _small_features()
    backbone = IntermediateLayerGetter(features, return_layers={"3": "low", "8": "high"})
    return LRASPP(backbone, low_channels=24, high_channels=48, num_classes=num_classes, inter_channels=64)


def _torchvision(fn, aux):
    return lambda num_classes: fn(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux)


MODELS = {
    "mbv3s-aspp": Mbv3sAspp,
    "mbv3s-tiny": _mbv3s_tiny,
    "lraspp-mbv3l": lambda n: lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=n),
    "fcn-resnet50": (fcn_resnet50, "classifier.4.weight"),
    "fcn-resnet101": (fcn_resnet101, "classifier.4.weight"),
    "deeplabv3-resnet50": (deeplabv3_resnet50, "classifier.4.weight"),
    "deeplabv3-resnet101": (deeplabv3_resnet101, "classifier.4.weight"),
    "deeplabv3-mbv3l": (deeplabv3_mobilenet_v3_large, "classifier.4.weight"),
}

_CLASSIFIER = {"mbv3s-aspp": "decoder.classifier.weight", "mbv3s-tiny": "classifier.low_classifier.weight",
               "lraspp-mbv3l": "classifier.low_classifier.weight"}


def build(name, num_classes=21, aux=False):
    """An untrained model of segdistill's architecture `name`."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    entry = MODELS[name]
    if isinstance(entry, tuple):
        return _torchvision(entry[0], aux)(num_classes)
    return entry(num_classes)


def load(path, name):
    """The model `name` with the weights of the segdistill file at `path`, in eval mode."""
    state = load_file(path)
    classifier = _CLASSIFIER.get(name, "classifier.4.weight")
    if classifier not in state:
        raise ValueError(f"{path} has no {classifier}: is it a {name}?")
    aux = any(k.startswith("aux_classifier.") for k in state)
    model = build(name, num_classes=state[classifier].shape[0], aux=aux)
    own = model.state_dict()
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value  # not kept by segdistill; unused in eval mode
    model.load_state_dict(state, strict=True)
    return model.eval()
