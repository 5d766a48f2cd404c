#!/usr/bin/env python3
"""Writes torchvision parity fixtures into OUT_DIR, seeded, on the CPU. Three modes:

    python3 bench/make_parity_fixtures.py OUT_DIR [--seed N] [--skip-fcn] [--compare DIR]
    python3 bench/make_parity_fixtures.py --small tests/fixtures/torchvision
    python3 bench/make_parity_fixtures.py --torch-formats tests/fixtures/torch

The full set (first form, about 175 MB) writes the weights files themselves:

  fcn_resnet50_random_legacy.pth        legacy torch.save (pickle protocol 2, not a zip) of
                                        fcn_resnet50(num_classes=21, aux_loss=True): 334 keys
  mobilenet_v3_small_random.pth         zip torch.save of mobilenet_v3_small(): 244 keys
  lraspp_mobilenet_v3_large_random.pth  zip torch.save of lraspp_mobilenet_v3_large(num_classes=21)
  parity.safetensors                    inputs and torchvision's outputs for them (see README.md
                                        written next to them)
  README.md                             what is where, torch/torchvision versions and the seed

The outputs are computed from the weights written beside them. Weights are random but *calibrated*:
every BatchNorm gets running statistics from 3 forward passes in train mode on random input
(cumulative average, so `num_batches_tracked` = 3), then random affine parameters (weight
U(0.5, 1.5), bias N(0, 0.1)); all models run in eval mode.

--skip-fcn leaves out the 141 MB FCN weights file and the `fcn.*` keys (quick runs). Each part
draws from its own seed (derived from --seed), so the other files and keys are the same with or
without --skip-fcn.

--compare DIR checks OUT_DIR against another fixtures folder (e.g. an older full set): the
parity.safetensors key set, shapes and dtypes, and each weights file's format (zip or legacy),
key set, shapes and dtypes. Values are not compared. Prints every difference and exits 1 if any.
With --no-generate, only the comparison runs.

--small writes the set committed in `tests/fixtures/torchvision` (well under 1 MB): the same
`parity.safetensors` keys (smaller inputs: 1×3×33×41 for the models), and instead of weights
files a `weights.json` listing every key, shape and dtype of each model's torchvision state dict.
Every weight is the hashed formula of `bench/hashed_weights.py`, which segdistill computes bit for
bit alike (`segdistill::model::weights::hashed`), so the weights themselves never travel.
`segdistill selftest --fixtures DIR` takes either kind of folder.

--torch-formats writes real `torch.save` output for a small model (segdistill's `mbv3s-tiny`,
built in PyTorch by `python/segdistill_torch.py`, hashed weights, `num_batches_tracked` = 3): the
legacy format (`_use_new_zipfile_serialization=False`, pickle protocol 2, as torchvision's
published FCN-ResNet50 file) and the zip format, plus PyTorch's output for one input
(`reference.safetensors`: `input`, `out`).
"""
import argparse
import collections
import os
import sys
import zipfile

import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = 21
FCN_FILE = "fcn_resnet50_random_legacy.pth"
MBV3S_FILE = "mobilenet_v3_small_random.pth"
LRASPP_FILE = "lraspp_mobilenet_v3_large_random.pth"
PARITY_FILE = "parity.safetensors"
WEIGHT_FILES = [FCN_FILE, MBV3S_FILE, LRASPP_FILE]

# Per-part seed offsets: each part draws from seed * 100 + offset.
PARTS = {"fcn": 1, "mbv3s": 2, "lraspp": 3, "bilinear": 4, "loss": 5, "metric": 6}


def part_seed(seed, part):
    return seed * 100 + PARTS[part]


# ---------------------------------------------------------------------------------------------
# Calibrated random weights


def calibrate(model, make_input, seed, passes=3):
    """BN running statistics from `passes` train-mode forwards on random input (cumulative average),
    then random affine parameters; returns the model in eval mode."""
    torch.manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: running stats = mean of the batch stats
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            model(make_input())
        for bn, m in zip(bns, saved):
            bn.momentum = m
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
    return model.eval()


def save_zip(sd, path):
    torch.save(sd, path)  # zip format (the default since torch 1.6)
    assert zipfile.is_zipfile(path)


def save_legacy(sd, path):
    with open(path, "wb") as f:
        torch.save(sd, f, _use_new_zipfile_serialization=False, pickle_protocol=2)
    assert not zipfile.is_zipfile(path)


def check_reload(path, build, inp, expected, what):
    """The written file, loaded into a fresh model, gives the same outputs: weights and outputs agree."""
    model = build()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    with torch.no_grad():
        out = model(inp)
    out = out["out"] if isinstance(out, dict) else out
    d = (out - expected).abs().max().item()
    if d != 0.0:
        raise SystemExit(f"{what}: reloading {path} changes the output by {d:e}")


# ---------------------------------------------------------------------------------------------
# What each model's fixture keys hold: the input and the outputs (both sets write the same keys)

FCN_STAGES = ("layer1", "layer2", "layer3", "layer4")


def record_fcn(model, x, fx):
    """`fcn.input`, `fcn.out`, `fcn.aux` and the backbone's stages `fcn.layer1` … `fcn.layer4`
    (hooked) for input x; returns the model's output dict."""
    feats = {}
    hooks = [
        getattr(model.backbone, name).register_forward_hook(
            lambda _m, _i, o, name=name: feats.__setitem__(name, o.detach().clone())
        )
        for name in FCN_STAGES
    ]
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    fx["fcn.input"] = x
    fx["fcn.out"] = out["out"]
    fx["fcn.aux"] = out["aux"]
    for name in FCN_STAGES:
        fx[f"fcn.{name}"] = feats[name]
    return out


def record_mbv3s(model, x, fx):
    """`mbv3s.input`, every block's output `mbv3s.features.0` … `.12` (hooked) and `mbv3s.logits`
    for input x; returns the logits."""
    assert len(model.features) == 13
    feats = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, i=i: feats.__setitem__(i, o.detach().clone()))
        for i, m in enumerate(model.features)
    ]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    fx["mbv3s.input"] = x
    for i in range(13):
        fx[f"mbv3s.features.{i}"] = feats[i]
    fx["mbv3s.logits"] = logits
    return logits


def record_lraspp(model, x, fx):
    """`lraspp.input` and `lraspp.out` for input x; returns the output."""
    with torch.no_grad():
        out = model(x)["out"]
    fx["lraspp.input"] = x
    fx["lraspp.out"] = out
    return out


# ---------------------------------------------------------------------------------------------
# Parts


def fcn_part(out_dir, seed, fx):
    from torchvision.models.segmentation import fcn_resnet50

    def build():
        return fcn_resnet50(weights=None, weights_backbone=None, num_classes=CLASSES, aux_loss=True)

    torch.manual_seed(seed)
    model = build()
    shape = (2, 3, 75, 101)
    calibrate(model, lambda: torch.randn(shape), seed + 10_000)
    torch.manual_seed(seed + 20_000)
    x = torch.randn(shape)
    out = record_fcn(model, x, fx)
    sd = model.state_dict()
    assert len(sd) == 334, len(sd)
    params = sum(p.numel() for p in model.parameters())
    assert params == 35_322_218, params
    path = os.path.join(out_dir, FCN_FILE)
    save_legacy(sd, path)
    check_reload(path, build, x, out["out"], "fcn")


def mbv3s_part(out_dir, seed, fx):
    from torchvision.models import mobilenet_v3_small

    def build():
        return mobilenet_v3_small(weights=None)

    torch.manual_seed(seed)
    model = build()
    shape = (2, 3, 96, 128)
    calibrate(model, lambda: torch.randn(shape), seed + 10_000)
    torch.manual_seed(seed + 20_000)
    x = torch.randn(shape)
    logits = record_mbv3s(model, x, fx)
    sd = model.state_dict()
    assert len(sd) == 244, len(sd)
    path = os.path.join(out_dir, MBV3S_FILE)
    save_zip(sd, path)
    check_reload(path, build, x, logits, "mbv3s")


def lraspp_part(out_dir, seed, fx):
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    def build():
        return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=CLASSES)

    torch.manual_seed(seed)
    model = build()
    shape = (1, 3, 97, 131)
    # Calibrated at batch 2 (better-spread statistics than the single test image).
    calibrate(model, lambda: torch.randn((2,) + shape[1:]), seed + 10_000)
    torch.manual_seed(seed + 20_000)
    x = torch.randn(shape)
    out = record_lraspp(model, x, fx)
    params = sum(p.numel() for p in model.parameters())
    assert params == 3_221_538, params
    path = os.path.join(out_dir, LRASPP_FILE)
    save_zip(model.state_dict(), path)
    check_reload(path, build, x, out, "lraspp")


def bilinear_part(seed, fx):
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 5, 7)
    fx["bilinear.input"] = x
    fx["bilinear.up_16x20"] = F.interpolate(x, size=(16, 20), mode="bilinear", align_corners=False)
    fx["bilinear.down_3x4"] = F.interpolate(x, size=(3, 4), mode="bilinear", align_corners=False)


def scalar(t):
    """Scalars are stored with shape [1]."""
    return t.detach().reshape(1).clone()


def loss_part(seed, fx):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(2, CLASSES, 9, 11, generator=g) * 3.0
    teacher = torch.randn(2, CLASSES, 9, 11, generator=g) * 3.0
    target = torch.randint(0, CLASSES, (2, 9, 11), generator=g, dtype=torch.int64)
    target[torch.rand(2, 9, 11, generator=g) < 0.1] = 255
    fx["loss.student"] = student
    fx["loss.teacher"] = teacher
    fx["loss.target"] = target
    valid = target != 255

    def with_grad(f):
        s = student.clone().requires_grad_(True)
        loss = f(s)
        (grad,) = torch.autograd.grad(loss, s)
        return scalar(loss), grad

    fx["loss.ce_ignore255"], fx["loss.ce_ignore255.grad"] = with_grad(
        lambda s: F.cross_entropy(s, target, ignore_index=255)
    )
    for T in (1, 4):
        def kl(s, T=T):  # per pixel Σ_c p_t (log p_t − log p_s)
            log_pt = F.log_softmax(teacher / T, 1)
            return (log_pt.exp() * (log_pt - F.log_softmax(s / T, 1))).sum(1)

        def soft_ce(s, T=T):  # per pixel −Σ_c p_t log p_s
            return -(F.softmax(teacher / T, 1) * F.log_softmax(s / T, 1)).sum(1)

        fx[f"loss.kd_kl_allpix_T{T}"], fx[f"loss.kd_kl_allpix_T{T}.grad"] = with_grad(
            lambda s: T * T * kl(s).mean()
        )
        fx[f"loss.kd_kl_validpix_T{T}"] = scalar(T * T * kl(student)[valid].mean())
        fx[f"loss.kd_soft_ce_allpix_T{T}"] = scalar(soft_ce(student).mean())

    fs = torch.randn(2, 8, 5, 6, generator=g)
    ft = fs * 0.5 + torch.randn(2, 8, 5, 6, generator=g)  # partly aligned, so cos spans (−1, 1)
    fx["loss.feat_student"] = fs
    fx["loss.feat_teacher"] = ft
    s = fs.clone().requires_grad_(True)
    loss = (1 - F.cosine_similarity(s, ft, dim=1)).mean()
    (grad,) = torch.autograd.grad(loss, s)
    fx["loss.cosine"] = scalar(loss)
    fx["loss.cosine.grad"] = grad


def metric_part(seed, fx):
    """torchvision's references/segmentation ConfusionMatrix on a prediction that agrees with the
    target on ~60% of pixels; classes 7 and 13 absent from both; ~5% void."""
    g = torch.Generator().manual_seed(seed)
    shape = (4, 37, 53)

    def no_7_13(t):
        t = t.clone()
        t[(t == 7) | (t == 13)] = 0
        return t

    target = no_7_13(torch.randint(0, CLASSES, shape, generator=g, dtype=torch.int64))
    other = no_7_13(torch.randint(0, CLASSES, shape, generator=g, dtype=torch.int64))
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target, other)
    target[torch.rand(shape, generator=g) < 0.05] = 255
    fx["metric.pred"] = pred
    fx["metric.target"] = target

    n = CLASSES
    a, b = target.flatten(), pred.flatten()
    k = (a >= 0) & (a < n)
    inds = n * a[k] + b[k]
    mat = torch.bincount(inds, minlength=n**2).reshape(n, n).to(torch.int64)  # rows target, cols pred
    h = mat.double()
    acc_global = torch.diag(h).sum() / h.sum()
    iu = torch.diag(h) / (h.sum(1) + h.sum(0) - torch.diag(h))  # 0/0 = NaN where the union is 0
    assert torch.isnan(iu[7]) and torch.isnan(iu[13]) and int(torch.isnan(iu).sum()) == 2
    fx["metric.confusion"] = mat
    fx["metric.iou_per_class"] = iu.float()
    fx["metric.miou"] = scalar(iu.nanmean().float())
    fx["metric.pixel_acc"] = scalar(acc_global.float())


# ---------------------------------------------------------------------------------------------
# The small committed set: hashed weights, small inputs, no weights files


SMALL_HW = (33, 41)  # odd: every resize and strided convolution meets a non-divisible edge
WEIGHTS_LISTING = "weights.json"


def hashed_fill(model):
    """Every float tensor of the state dict from the hashed formula; the listing (name, shape,
    dtype) of every key, integer counters included, in state-dict order."""
    from hashed_weights import hashed_values

    sd = model.state_dict()
    listing = []
    for name, t in sd.items():
        if t.dtype == torch.float32:
            sd[name] = hashed_values(name, tuple(t.shape))
            listing.append([name, list(t.shape), "F32"])
        else:
            assert name.endswith("num_batches_tracked"), name
            listing.append([name, list(t.shape), "I64"])
    model.load_state_dict(sd)
    return listing


def small_models(seed, fx, listings):
    from torchvision.models import mobilenet_v3_small
    from torchvision.models.segmentation import fcn_resnet50, lraspp_mobilenet_v3_large

    shape = (1, 3) + SMALL_HW
    g = torch.Generator().manual_seed(seed)

    # FCN-ResNet50 with its aux head, backbone features hooked.
    model = fcn_resnet50(weights=None, weights_backbone=None, num_classes=CLASSES, aux_loss=True).eval()
    listings[FCN_FILE] = hashed_fill(model)
    assert len(listings[FCN_FILE]) == 334
    record_fcn(model, torch.randn(shape, generator=g), fx)

    # MobileNetV3-Small with its ImageNet classifier, every block's output.
    model = mobilenet_v3_small(weights=None).eval()
    listings[MBV3S_FILE] = hashed_fill(model)
    assert len(listings[MBV3S_FILE]) == 244
    record_mbv3s(model, torch.randn(shape, generator=g), fx)

    # LR-ASPP MobileNetV3-Large.
    model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=CLASSES).eval()
    listings[LRASPP_FILE] = hashed_fill(model)
    record_lraspp(model, torch.randn(shape, generator=g), fx)


def torch_formats(out_dir):
    """Real torch.save output of a small model in both formats, and PyTorch's output for it."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import segdistill_torch

    model = segdistill_torch.build("mbv3s-tiny", num_classes=CLASSES).eval()
    hashed_fill(model)
    sd = model.state_dict()
    for name, t in sd.items():
        if name.endswith("num_batches_tracked"):
            t.fill_(3)
    legacy = os.path.join(out_dir, "mbv3s_tiny_legacy.pth")
    save_legacy(sd, legacy)
    save_zip(sd, os.path.join(out_dir, "mbv3s_tiny_zip.pth"))
    x = torch.randn((1, 3) + SMALL_HW, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        out = model(x)["out"]
    for path in (legacy, os.path.join(out_dir, "mbv3s_tiny_zip.pth")):
        check_reload(path, lambda: segdistill_torch.build("mbv3s-tiny", num_classes=CLASSES), x, out, "mbv3s-tiny")
    import torchvision

    save_safetensors({"input": x, "out": out.contiguous()}, os.path.join(out_dir, "reference.safetensors"),
                     {"torch": torch.__version__, "torchvision": torchvision.__version__})
    print(f"wrote mbv3s-tiny ({len(sd)} keys) in both torch formats to {out_dir}")


# ---------------------------------------------------------------------------------------------
# README and comparison


README = """# torchvision parity fixtures (regenerated)

Made by `bench/make_parity_fixtures.py --seed {seed}{skip}` with torch {torch} and torchvision
{tv} (CPU, {threads} thread(s)). Same files, formats, keys, shapes and dtypes as the original
set; values differ (other random draws) but are self-consistent: every output was computed by
torchvision from the weights files next to it.

Weights are random but *calibrated*: every BatchNorm got running statistics from 3 forward passes
in train mode on random input (cumulative average), then random affine parameters (weight
U(0.5, 1.5), bias N(0, 0.1)), so eval-mode activations are well scaled and a mix-up of
mean/var/weight/bias shows. All models are in eval mode (dropout off). Tolerance to aim for:
max |a−b| ≤ 1e-4·max|ref| in f32 on CPU.

## Weights files (exactly the key names and formats of torchvision's published files)
| file | format | model |
|---|---|---|
| fcn_resnet50_random_legacy.pth{fcn_note} | **legacy** torch.save (pickle protocol 2, not a zip) | `fcn_resnet50(num_classes=21, aux_loss=True)`: 334 keys incl. `aux_classifier.*` and `num_batches_tracked` (int64) |
| mobilenet_v3_small_random.pth | zip torch.save | `mobilenet_v3_small()` ImageNet classifier, 244 keys |
| lraspp_mobilenet_v3_large_random.pth | zip torch.save | `lraspp_mobilenet_v3_large(num_classes=21)` |

## parity.safetensors (all f32 unless noted; scalars have shape [1])
Models (outputs of `model(input)` in eval mode):
- `fcn.input` [2,3,75,101] → `fcn.out`, `fcn.aux` [2,21,75,101] (torchvision's own bilinear resize back
  to input size included); backbone features `fcn.layer1` [2,256,19,26], `fcn.layer2` [2,512,10,13],
  `fcn.layer3` [2,1024,10,13], `fcn.layer4` [2,2048,10,13] (dilated ResNet: output stride 8).{fcn_note}
- `mbv3s.input` [2,3,96,128] → `mbv3s.features.0` … `mbv3s.features.12` (each block's output) and
  `mbv3s.logits` [2,1000].
- `lraspp.input` [1,3,97,131] → `lraspp.out` [1,21,97,131].

Ops and losses:
- `bilinear.input` [2,3,5,7] → `bilinear.up_16x20`, `bilinear.down_3x4`: `F.interpolate(mode="bilinear",
  align_corners=False)`.
- `loss.student`, `loss.teacher` [2,21,9,11] logits; `loss.target` [2,9,11] int64 with ~10% 255.
- `loss.ce_ignore255` = `F.cross_entropy(student, target, ignore_index=255)` (mean over non-void
  pixels); `loss.ce_ignore255.grad` = its gradient w.r.t. student.
- For T in {{1,4}}, with p_t = softmax(teacher/T), log p_s = log_softmax(student/T), per pixel
  kl = Σ_c p_t (log p_t − log p_s) and h = −Σ_c p_t log p_s:
  `loss.kd_kl_allpix_T{{T}}` = T²·mean over all B·H·W pixels of kl (+ `.grad`);
  `loss.kd_kl_validpix_T{{T}}` = T²·mean over non-void pixels of kl;
  `loss.kd_soft_ce_allpix_T{{T}}` = mean over all pixels of h (no T²).
- `loss.feat_student`, `loss.feat_teacher` [2,8,5,6] → `loss.cosine` = mean over (b,h,w) of
  1 − cos(student[b,:,h,w], teacher[b,:,h,w]) (+ `.grad` w.r.t. student).

Metric:
- `metric.pred`, `metric.target` [4,37,53] int64 (target has 255 = void; classes 7 and 13 absent
  from both) → `metric.confusion` [21,21] int64 (rows = target, cols = prediction, void skipped),
  `metric.iou_per_class` [21] (NaN where union is 0), `metric.miou` (mean over classes with union > 0),
  `metric.pixel_acc`.
"""


SMALL_README = """# torchvision parity fixtures (small, hashed weights)

Made by `bench/make_parity_fixtures.py --small --seed {seed}` with torch {torch} and torchvision
{tv} (CPU, {threads} thread(s)).

No weights files: `weights.json` lists every key of each model's torchvision state dict as
`[name, shape, dtype]` under the file name the full set would use
(`fcn_resnet50_random_legacy.pth`: `fcn_resnet50(num_classes=21, aux_loss=True)`, 334 keys;
`mobilenet_v3_small_random.pth`: `mobilenet_v3_small()`, 244 keys;
`lraspp_mobilenet_v3_large_random.pth`: `lraspp_mobilenet_v3_large(num_classes=21)`). Each float
tensor holds the hashed formula of `bench/hashed_weights.py` (splitmix64 seeded by the FNV-1a
hash of its name), which segdistill computes bit for bit alike
(`segdistill::model::weights::hashed`); the int64 `num_batches_tracked` counters are unused in
eval mode. Tolerance: max |a−b| ≤ 1e-4·max|ref| in f32 on CPU.

## parity.safetensors (all f32 unless noted; scalars have shape [1])
- `fcn.input` [1,3,33,41] → `fcn.out`, `fcn.aux` [1,21,33,41]; backbone features `fcn.layer1`
  [1,256,9,11], `fcn.layer2` … `fcn.layer4` [1,512|1024|2048,5,6].
- `mbv3s.input` [1,3,33,41] → `mbv3s.features.0` … `mbv3s.features.12` and `mbv3s.logits` [1,1000].
- `lraspp.input` [1,3,33,41] → `lraspp.out` [1,21,33,41].
- `bilinear.*`, `loss.*`, `metric.*`: as in the full set (see `bench/make_parity_fixtures.py`).
"""


def weights_summary(path):
    """(format, {key: (shape, dtype)}) of a torch weights file."""
    fmt = "zip" if zipfile.is_zipfile(path) else "legacy"
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return fmt, {k: (tuple(v.shape), str(v.dtype)) for k, v in sd.items()}


def save_safetensors(tensors, path, metadata):
    """The safetensors format written directly (8-byte header length, JSON header, raw
    little-endian data), so the script needs only torch: the GPU machines lack the package."""
    import json
    import struct

    dtypes = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        data = t.contiguous().cpu().numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def safetensors_summary(path):
    from safetensors import safe_open

    out = {}
    with safe_open(path, "pt") as f:
        for k in f.keys():
            sl = f.get_slice(k)
            out[k] = (tuple(sl.get_shape()), sl.get_dtype())
    return out


def diff_maps(what, ours, theirs, problems, ignore=lambda k: False):
    for k in sorted(set(theirs) - set(ours)):
        if not ignore(k):
            problems.append(f"{what}: key {k} missing here (there: {theirs[k]})")
    for k in sorted(set(ours) - set(theirs)):
        problems.append(f"{what}: extra key {k} {ours[k]}")
    for k in sorted(set(ours) & set(theirs)):
        if ours[k][0] != theirs[k][0]:
            problems.append(f"{what}: {k} shape {list(ours[k][0])} vs {list(theirs[k][0])}")
        if ours[k][1] != theirs[k][1]:
            problems.append(f"{what}: {k} dtype {ours[k][1]} vs {theirs[k][1]}")


def compare(ours_dir, ref_dir, skip_fcn):
    problems, notes = [], []
    ignore = (lambda k: k.startswith("fcn.")) if skip_fcn else (lambda k: False)
    ours = safetensors_summary(os.path.join(ours_dir, PARITY_FILE))
    theirs = safetensors_summary(os.path.join(ref_dir, PARITY_FILE))
    diff_maps(PARITY_FILE, ours, theirs, problems, ignore)
    notes.append(f"{PARITY_FILE}: {len(ours)} keys here, {len(theirs)} there")
    for name in WEIGHT_FILES:
        if skip_fcn and name == FCN_FILE:
            notes.append(f"{name}: skipped (--skip-fcn)")
            continue
        a, b = os.path.join(ours_dir, name), os.path.join(ref_dir, name)
        if not os.path.exists(a):
            problems.append(f"{name}: missing here")
            continue
        fa, ka = weights_summary(a)
        fb, kb = weights_summary(b)
        if fa != fb:
            problems.append(f"{name}: format {fa} vs {fb}")
        if list(ka) != list(kb) and set(ka) == set(kb):
            problems.append(f"{name}: same keys in another order")
        diff_maps(name, ka, kb, problems)
        notes.append(f"{name}: {fa}, {len(ka)} keys here, {len(kb)} there")
    for n in notes:
        print(f"compare: {n}")
    for p in problems:
        print(f"DIFFERENCE: {p}")
    print(f"compare: {len(problems)} difference(s) between {ours_dir} and {ref_dir}")
    return not problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-fcn", action="store_true", help="no FCN weights file (141 MB) and no fcn.* keys")
    ap.add_argument("--compare", metavar="DIR", help="check key set, shapes and dtypes against DIR; exit 1 on any difference")
    ap.add_argument("--no-generate", action="store_true", help="with --compare: only compare OUT_DIR as it is")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--small", action="store_true",
                    help="the small committed set: hashed weights listed in weights.json, no weights files")
    ap.add_argument("--torch-formats", action="store_true",
                    help="a small model's weights in the legacy and the zip torch.save format")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)

    if a.torch_formats:
        os.makedirs(a.out_dir, exist_ok=True)
        torch_formats(a.out_dir)
        return
    if not a.no_generate:
        import torchvision

        os.makedirs(a.out_dir, exist_ok=True)
        fx = collections.OrderedDict()
        listings = {}
        if a.small:
            small_models(part_seed(a.seed, "fcn"), fx, listings)
        else:
            steps = [] if a.skip_fcn else [("fcn", fcn_part)]
            steps += [("mbv3s", mbv3s_part), ("lraspp", lraspp_part)]
            for part, fn in steps:
                print(f"{part} …", file=sys.stderr, flush=True)
                fn(a.out_dir, part_seed(a.seed, part), fx)
        bilinear_part(part_seed(a.seed, "bilinear"), fx)
        loss_part(part_seed(a.seed, "loss"), fx)
        metric_part(part_seed(a.seed, "metric"), fx)
        for k, v in fx.items():
            assert v.device.type == "cpu" and v.dtype in (torch.float32, torch.int64), (k, v.dtype)
            if v.dtype == torch.float32 and not k.startswith("metric.iou_per_class"):
                assert torch.isfinite(v).all(), k
        tensors = {k: v.detach().contiguous() for k, v in fx.items()}
        meta = {"torch": torch.__version__, "torchvision": torchvision.__version__, "seed": str(a.seed),
                "skip_fcn": str(a.skip_fcn).lower(), "weights": "hashed" if a.small else "files"}
        save_safetensors(tensors, os.path.join(a.out_dir, PARITY_FILE), meta)
        if a.small:
            import json

            with open(os.path.join(a.out_dir, WEIGHTS_LISTING), "w") as f:
                json.dump({"weights": "hashed", "torch": torch.__version__, "torchvision": torchvision.__version__,
                           "files": listings}, f, separators=(",", ":"))
            for name in WEIGHT_FILES:  # stale: the outputs are those of the hashed weights
                if os.path.exists(os.path.join(a.out_dir, name)):
                    os.remove(os.path.join(a.out_dir, name))
        if a.skip_fcn and os.path.exists(os.path.join(a.out_dir, FCN_FILE)):
            os.remove(os.path.join(a.out_dir, FCN_FILE))  # stale: its outputs are not in parity.safetensors
        with open(os.path.join(a.out_dir, "README.md"), "w") as f:
            f.write((SMALL_README if a.small else README).format(
                seed=a.seed, skip=" --skip-fcn" if a.skip_fcn else "", torch=torch.__version__,
                tv=torchvision.__version__, threads=a.threads,
                fcn_note=" (**not written**: --skip-fcn)" if a.skip_fcn else "",
            ))
        print(f"wrote {len(tensors)} tensors to {os.path.join(a.out_dir, PARITY_FILE)} "
              f"(torch {torch.__version__}, torchvision {torchvision.__version__}, seed {a.seed})")
    if a.compare:
        if not compare(a.out_dir, a.compare, a.skip_fcn):
            sys.exit(1)


if __name__ == "__main__":
    main()
