#!/usr/bin/env python3
"""The PyTorch side of `segdistill bench`: the same models, batch, size, losses and optimizer,
timed the same way, printing the same JSON (same names) so the two can be compared:

    python3 bench/pytorch_reference.py --json > torch.json
    segdistill bench --compare torch.json

Flags match `segdistill bench`: --device cpu|cuda --model NAME --mode M (repeatable) --batch B
--size S --warmup W --repeats R --threads T --no-teacher --no-infer --json.

Measurements (after W warm-up runs, device synchronised around each of R timed runs):
  train_step/<model>/<mode>   teacher forward under no_grad when the mode needs it, student forward
                              in train mode, α·CE + β·KD(soft CE, τ) + γ·feature(1 − cos) exactly as
                              segdistill defines them, backward, clip_grad_norm_(5), AdamW(lr 1e-3,
                              wd 1e-4) step;
  teacher_forward/fcn-resnet50  torchvision FCN-ResNet50 (aux off) in eval mode under no_grad;
  infer/<model>               the student at batch 1 in eval mode under no_grad.
Weights are random: timing does not depend on them.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import mobilenet_v3_small
from torchvision.models.segmentation import fcn_resnet50, lraspp_mobilenet_v3_large
from torchvision.models.segmentation.lraspp import LRASPPHead

CLASSES = 21
ALPHA, BETA, GAMMA, TAU = 1.0, 0.5, 0.3, 4.0
STUDENTS = ["mbv3s-aspp", "mbv3s-tiny", "lraspp-mbv3l"]
MODES = ["none", "response", "feature", "combined"]


def cba(cin, cout, k=1, dilation=1, groups=1):
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Aspp(nn.Module):
    """segdistill's ASPP: 1×1, three depthwise-separable atrous 3×3 (rates 6, 12, 18), pooling."""

    def __init__(self, cin, cout=128, rates=(6, 12, 18)):
        super().__init__()
        self.b0 = cba(cin, cout)
        self.atrous = nn.ModuleList(nn.Sequential(cba(cin, cin, 3, r, cin), cba(cin, cout)) for r in rates)
        self.pool = cba(cin, cout)
        self.project = cba(cout * (len(rates) + 2), cout)

    def forward(self, x):
        h, w = x.shape[-2:]
        branches = [self.b0(x)] + [m(x) for m in self.atrous]
        pooled = self.pool(F.adaptive_avg_pool2d(x, 1))
        branches.append(pooled.expand(-1, -1, h, w))
        return self.project(torch.cat(branches, 1))


class Mbv3sAspp(nn.Module):
    """MobileNetV3-Small (dilated, modules 0..12) + ASPP + DeepLabV3+-style decoder."""

    LOW, MID, HIGH = 1, 3, 12

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.backbone = mobilenet_v3_small(weights=None, dilated=True).features[: self.HIGH + 1]
        self.aspp = Aspp(576)
        self.low = cba(16, 32)
        self.fuse = cba(128 + 32, 128, 3)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Conv2d(128, classes, 1)

    def taps(self, x):
        feats = {}
        for i, m in enumerate(self.backbone):
            x = m(x)
            if i in (self.LOW, self.MID, self.HIGH):
                feats[{self.LOW: "low", self.MID: "mid", self.HIGH: "high"}[i]] = x
        return feats

    def forward(self, x):
        h, w = x.shape[-2:]
        f = self.taps(x)
        low = f["low"]
        ctx = F.interpolate(self.aspp(f["high"]), size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.fuse(torch.cat([ctx, self.low(low)], 1))
        logits = self.classifier(self.dropout(y))
        return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False), f


class Mbv3sTiny(nn.Module):
    """MobileNetV3-Small (dilated, modules 0..8) + LR-ASPP head (64 channels)."""

    LOW, MID, HIGH = 1, 3, 8

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.backbone = mobilenet_v3_small(weights=None, dilated=True).features[: self.HIGH + 1]
        self.head = LRASPPHead(24, 48, classes, 64)

    def forward(self, x):
        h, w = x.shape[-2:]
        f = {}
        y = x
        for i, m in enumerate(self.backbone):
            y = m(y)
            if i in (self.LOW, self.MID, self.HIGH):
                f[{self.LOW: "low", self.MID: "mid", self.HIGH: "high"}[i]] = y
        out = self.head({"low": f["mid"], "high": f["high"]})
        return F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False), f


class Lraspp(nn.Module):
    """torchvision's LR-ASPP MobileNetV3-Large, with its taps exposed (modules 3, 6, 16)."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=classes)
        self.backbone = self.net.backbone  # IntermediateLayerGetter: low = 6 (40 ch), high = 16 (960 ch)

    def forward(self, x):
        h, w = x.shape[-2:]
        f = {}
        y = x
        for name, m in self.backbone.items():
            y = m(y)
            i = int(name)
            if i in (3, 6, 16):
                f[{3: "low", 6: "mid", 16: "high"}[i]] = y
        out = self.net.classifier({"low": f["mid"], "high": f["high"]})
        return F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False), f


def build_student(name):
    return {"mbv3s-aspp": Mbv3sAspp, "mbv3s-tiny": Mbv3sTiny, "lraspp-mbv3l": Lraspp}[name]()


class Teacher(nn.Module):
    """torchvision FCN-ResNet50 returning logits (at the input size) and layer1/2/4 features."""

    def __init__(self):
        super().__init__()
        self.net = fcn_resnet50(weights=None, weights_backbone=None, num_classes=CLASSES, aux_loss=False)
        self.net.backbone.return_layers = {"layer1": "layer1", "layer2": "layer2", "layer4": "out"}

    def forward(self, x):
        h, w = x.shape[-2:]
        f = self.net.backbone(x)
        logits = F.interpolate(self.net.classifier(f["out"]), size=(h, w), mode="bilinear", align_corners=False)
        return logits, {"layer1": f["layer1"], "layer2": f["layer2"], "layer4": f["out"]}


PAIRS = [("low", "layer1"), ("mid", "layer2"), ("high", "layer4")]
TEACHER_CHANNELS = {"layer1": 256, "layer2": 512, "layer4": 2048}


def adapters_for(student, x):
    student.eval()
    with torch.no_grad():
        _, f = student(x[:1])
    student.train()
    return nn.ModuleDict({s: nn.Conv2d(f[s].shape[1], TEACHER_CHANNELS[t], 1) for s, t in PAIRS}).to(x.device)


def loss_fn(mode, logits, feats, target, t_logits, t_feats, adapters):
    loss = ALPHA * F.cross_entropy(logits, target, ignore_index=255)
    if mode in ("response", "combined"):
        pt = F.softmax(t_logits / TAU, 1)
        kd = -(pt * F.log_softmax(logits / TAU, 1)).sum(1).mean()
        loss = loss + BETA * kd
    if mode in ("feature", "combined"):
        parts = []
        for s, t in PAIRS:
            sf = adapters[s](feats[s])
            tf = F.interpolate(t_feats[t], size=sf.shape[-2:], mode="bilinear", align_corners=False)
            parts.append((1 - F.cosine_similarity(sf, tf, dim=1, eps=1e-8)).mean())
        loss = loss + GAMMA * sum(parts) / len(parts)
    return loss


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(device, warmup, repeats, fn):
    for _ in range(warmup):
        fn()
    sync(device)
    ms = []
    for _ in range(max(1, repeats)):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        ms.append((time.perf_counter() - t0) * 1000)
    return ms


def result(name, batch, size, ms):
    return {"name": name, "batch": batch, "size": size, "median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--model", choices=STUDENTS)
    ap.add_argument("--mode", action="append", choices=MODES)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    ap.add_argument("--no-teacher", action="store_true")
    ap.add_argument("--no-infer", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    models = [a.model] if a.model else STUDENTS
    modes = a.mode or MODES
    torch.manual_seed(0)
    x = torch.randn(a.batch, 3, a.size, a.size, device=device)
    target = torch.randint(0, CLASSES, (a.batch, a.size, a.size), device=device)
    needs_teacher = not a.no_teacher or any(m != "none" for m in modes)
    teacher = Teacher().to(device).eval() if needs_teacher else None
    results = []

    def report(r):
        results.append(r)
        ips = r["batch"] * 1000 / r["median_ms"]
        print(f"{r['name']:<38} batch {r['batch']:>2} {r['size']:>4}px  median {r['median_ms']:>9.1f} ms  "
              f"(min {r['min_ms']:>8.1f}, max {r['max_ms']:>8.1f})  {ips:>8.1f} img/s", flush=True,
              file=__import__("sys").stderr)

    for name in models:
        for mode in modes:
            student = build_student(name).to(device).train()
            adapters = adapters_for(student, x) if mode in ("feature", "combined") else nn.ModuleDict()
            params = list(student.parameters()) + list(adapters.parameters())
            opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)

            def step():
                t_logits, t_feats = None, None
                if mode != "none":
                    with torch.no_grad():
                        t_logits, t_feats = teacher(x)
                logits, feats = student(x)
                loss = loss_fn(mode, logits, feats, target, t_logits, t_feats, adapters)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()

            report(result(f"train_step/{name}/{mode}", a.batch, a.size, timed(device, a.warmup, a.repeats, step)))
    if not a.no_teacher:
        def fwd():
            with torch.no_grad():
                teacher(x)
        report(result("teacher_forward/fcn-resnet50", a.batch, a.size, timed(device, a.warmup, a.repeats, fwd)))
    if not a.no_infer:
        x1 = x[:1].contiguous()
        for name in models:
            student = build_student(name).to(device).eval()

            def infer():
                with torch.no_grad():
                    student(x1)
            report(result(f"infer/{name}", 1, a.size, timed(device, a.warmup, a.repeats, infer)))
    if a.json:
        threads = torch.get_num_threads() if device.type == "cpu" else 0
        name = f"cpu ({threads} threads)" if device.type == "cpu" else f"cuda:0 ({torch.cuda.get_device_name(0)})"
        print(json.dumps({"device": name, "threads": threads, "results": results}, indent=2))


if __name__ == "__main__":
    main()
