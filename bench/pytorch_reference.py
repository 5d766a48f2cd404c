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

With --epoch-data DIR (a VOC-format dataset, as `segdistill bench --epoch-data`), also one timed
training epoch per (student, mode) over the first --epoch-images (default 64) ids of the train
split, loaded by a torch DataLoader (--workers processes, default min(4, cores); seeded shuffle;
drop_last when there is at least one full batch; pin_memory on CUDA) that decodes the JPEG/PNG
files with PIL and augments as segdistill's engine does by default: shorter side to --size, random
scale 0.5–2.0 (PIL bilinear; masks nearest), pad (image 0, mask 255) and random --size crop,
horizontal flip, the engine's colour jitter (brightness/contrast/saturation 0.3, hue 0.02),
ImageNet normalisation. Each step is the train_step above, plus reading the loss (as the engine
logs it). The clock runs from creating the loader's iterator (workers starting) to the last step
with the device synchronised; model building is outside it, as in segdistill's measurement:
  epoch/<model>/none          mode none;
  epoch/<model>/<mode>-live   distillation modes, teacher forward at every step (PyTorch has no
                              teacher cache, so there is no plain epoch/<model>/<mode> for these);
each with median = min = max = the epoch's milliseconds. The teacher takes --teacher-weights (a
torchvision FCN-ResNet50 .pth, zip or legacy; aux_classifier.* ignored) or, without it, stays
random (timing does not depend on its values; the output says so).
"""
import argparse
import json
import math
import os
import statistics
import sys
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


def train_one_step(student, teacher, mode, x, target, adapters, opt, params):
    """One optimisation step as segdistill's engine runs it; returns the loss (not read)."""
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
    return loss


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


def reset_peak_memory():
    """Restarts the peak resident-memory count (Linux: VmHWM via /proc/self/clear_refs), as
    segdistill's bench does per row. Returns whether it could."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


LAST_PEAK = {"mib": None}


def timed(device, warmup, repeats, fn):
    known = reset_peak_memory()
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
    LAST_PEAK["mib"] = peak_memory_mib() if known else None
    return ms


def result(name, batch, size, ms):
    """One row; peak memory comes from the `timed` call that produced `ms` (same JSON names as
    segdistill's bench)."""
    r = {"name": name, "batch": batch, "size": size, "median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms)}
    if LAST_PEAK["mib"] is not None:
        r["peak_rss_mib"] = LAST_PEAK["mib"]
        LAST_PEAK["mib"] = None
    return r


# ---------------------------------------------------------------------------------------------
# --epoch-data: one training epoch over real files, through a torch DataLoader

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
JITTER = (0.3, 0.3, 0.3, 0.02)  # segdistill's ColorJitter::default(): brightness, contrast, saturation, hue
SCALE = (0.5, 2.0)


def find_voc_root(path):
    """The VOC2012 folder under `path` (itself, VOC2012, VOCdevkit/VOC2012 or a few levels down),
    as segdistill's voc::find_root looks for it."""
    def is_root(d):
        return os.path.isdir(os.path.join(d, "ImageSets", "Segmentation")) or (
            os.path.isdir(os.path.join(d, "JPEGImages")) and os.path.isdir(os.path.join(d, "SegmentationClass")))

    if not os.path.isdir(path):
        raise SystemExit(f"--epoch-data {path}: not a folder")
    level = [path]
    for _ in range(5):
        level.sort(key=lambda p: (os.path.basename(p).lower() != "voc2012", os.path.basename(p).lower() != "vocdevkit", p))
        for d in level:
            if is_root(d):
                return d
        level = [os.path.join(d, n) for d in level for n in sorted(os.listdir(d))
                 if not n.startswith(".") and os.path.isdir(os.path.join(d, n))]
        if not level:
            break
    raise SystemExit(f"--epoch-data {path}: no VOC2012 folder (ImageSets/Segmentation, JPEGImages, SegmentationClass) inside")


def voc_train_files(root, limit):
    """(image, mask) paths of the first `limit` ids of the train split that have both files
    (ids listed twice kept once), as the engine's open_split: retain_present, then truncate."""
    split = os.path.join(root, "ImageSets", "Segmentation", "train.txt")
    with open(split, encoding="utf-8-sig") as f:
        ids = []
        for line in f:
            tok = line.split()
            if tok:
                ids.append(os.path.splitext(os.path.basename(tok[0]))[0] if "/" in tok[0] else tok[0])
    seen, files = set(), []
    for i in ids:
        if i in seen:
            continue
        seen.add(i)
        img, mask = os.path.join(root, "JPEGImages", f"{i}.jpg"), os.path.join(root, "SegmentationClass", f"{i}.png")
        if os.path.isfile(img) and os.path.isfile(mask):
            files.append((img, mask))
    return files[:limit]


def round_half_away(x):
    return int(math.floor(x + 0.5))


class VocTrainCrops(torch.utils.data.Dataset):
    """segdistill's training pipeline (Augment::train with the engine's defaults) on VOC files:
    shorter side to `size` × random scale 0.5–2.0 in one PIL bilinear resize (mask: nearest, pixel
    centres), pad (image 0, mask 255) + random size×size crop, flip with p ½, colour jitter,
    ImageNet normalisation. Each item's randomness comes from (seed, epoch, index)."""

    def __init__(self, files, size, seed=0, epoch=0):
        self.files, self.size, self.seed, self.epoch = files, size, seed, epoch

    def __len__(self):
        return len(self.files)

    @staticmethod
    def _read_mask(path):
        import numpy as np
        from PIL import Image

        m = Image.open(path)
        if m.mode in ("P", "L"):
            return np.asarray(m, dtype=np.uint8)
        # An RGB mask: back through the VOC colour map (unknown colours become void).
        rgb = np.asarray(m.convert("RGB"), dtype=np.int32)
        key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        out = np.full(key.shape, 255, np.uint8)
        for c in range(21):
            r = g = b = 0
            v = c
            for j in range(8):
                r |= ((v >> 0) & 1) << (7 - j)
                g |= ((v >> 1) & 1) << (7 - j)
                b |= ((v >> 2) & 1) << (7 - j)
                v >>= 3
            out[key == ((r << 16) | (g << 8) | b)] = c
        return out

    def __getitem__(self, i):
        import numpy as np
        from PIL import Image

        img_path, mask_path = self.files[i]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        img = Image.open(img_path).convert("RGB")
        mask = self._read_mask(mask_path)
        w, h = img.size
        if mask.shape != (h, w):
            raise ValueError(f"{mask_path}: mask {mask.shape[1]}x{mask.shape[0]} vs image {w}x{h}")
        s = self.size
        base = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
        scale = rng.uniform(*SCALE)
        sw, sh = max(1, round_half_away(base[0] * scale)), max(1, round_half_away(base[1] * scale))
        img = np.asarray(img.resize((sw, sh), Image.BILINEAR))
        ys = np.clip(np.floor((np.arange(sh) + 0.5) * h / sh).astype(np.int64), 0, h - 1)
        xs = np.clip(np.floor((np.arange(sw) + 0.5) * w / sw).astype(np.int64), 0, w - 1)
        mask = mask[ys[:, None], xs[None, :]]
        cx = int(rng.integers(0, max(sw, s) - s + 1))
        cy = int(rng.integers(0, max(sh, s) - s + 1))
        flipped = rng.random() < 0.5
        out_img = np.zeros((s, s, 3), np.uint8)
        out_mask = np.full((s, s), 255, np.uint8)
        cw, ch = min(max(sw - cx, 0), s), min(max(sh - cy, 0), s)
        out_img[:ch, :cw] = img[cy:cy + ch, cx:cx + cw]
        out_mask[:ch, :cw] = mask[cy:cy + ch, cx:cx + cw]
        if flipped:
            out_img, out_mask = out_img[:, ::-1], out_mask[:, ::-1]
        # Colour jitter, segdistill's formula (brightness, contrast about the mean grey,
        # saturation about each pixel's grey, hue as a rotation in YIQ), rounded back to bytes.
        bj, cj, sj, hj = JITTER
        b, c, sat = (1.0 + rng.uniform(-v, v) for v in (bj, cj, sj))
        hue = rng.uniform(-hj, hj) * 2 * math.pi
        gw = np.array([0.299, 0.587, 0.114], np.float32)
        v = out_img.astype(np.float32)
        mean_gray = float((v @ gw).mean()) * b
        v = (v * b - mean_gray) * c + mean_gray
        g = (v @ gw)[..., None]
        v = (v - g) * sat + g
        if hue != 0.0:
            ch_, sh_ = math.cos(hue), math.sin(hue)
            yiq = v @ np.array([[0.299, 0.596, 0.211], [0.587, -0.274, -0.523], [0.114, -0.322, 0.312]], np.float32)
            i2 = yiq[..., 1] * ch_ - yiq[..., 2] * sh_
            q2 = yiq[..., 1] * sh_ + yiq[..., 2] * ch_
            yiq = np.stack([yiq[..., 0], i2, q2], -1)
            v = yiq @ np.array([[1.0, 1.0, 1.0], [0.956, -0.272, -1.106], [0.621, -0.647, 1.703]], np.float32)
        v = np.clip(np.rint(v), 0, 255)
        mean = np.array(IMAGENET_MEAN, np.float32) * 255.0
        std = np.array(IMAGENET_STD, np.float32) * 255.0
        x = ((v - mean) / std).astype(np.float32).transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(out_mask))


def load_teacher_weights(teacher, path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "model" in sd and not any(k.startswith("backbone.") for k in sd):
        sd = sd["model"]
    sd = {k: v for k, v in sd.items() if not k.startswith("aux_classifier.")}
    teacher.net.load_state_dict(sd, strict=True)


def epoch_results(a, models, modes, teacher, device, report):
    """One timed epoch per (student, mode) over the first --epoch-images train images."""
    root = find_voc_root(a.epoch_data)
    files = voc_train_files(root, a.epoch_images)
    if not files:
        raise SystemExit(f"--epoch-data {root}: the train split has no image with its mask")
    if len(files) < a.epoch_images:
        print(f"note: the train split of {root} has {len(files)} usable images (< --epoch-images {a.epoch_images})",
              file=sys.stderr)
    workers = a.workers if a.workers is not None else min(4, os.cpu_count() or 1)
    drop_last = len(files) >= a.batch
    steps = len(files) // a.batch if drop_last else 1
    print(f"epoch data: {root}, {len(files)} images, batch {a.batch}, {steps} steps per epoch, {workers} loader "
          f"worker(s)", file=sys.stderr)
    for name in models:
        for mode in modes:
            torch.manual_seed(0)
            student = build_student(name).to(device).train()
            probe = torch.randn(1, 3, a.size, a.size, device=device)
            adapters = adapters_for(student, probe) if mode in ("feature", "combined") else nn.ModuleDict()
            params = list(student.parameters()) + list(adapters.parameters())
            opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
            data = VocTrainCrops(files, a.size, seed=0, epoch=0)
            loader = torch.utils.data.DataLoader(
                data, batch_size=a.batch, shuffle=True, drop_last=drop_last, num_workers=workers,
                pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
            sync(device)
            t0 = time.perf_counter()
            n = 0
            for x, y in loader:
                x = x.to(device, non_blocking=True)
                target = y.to(device, non_blocking=True).long()
                loss = train_one_step(student, teacher, mode, x, target, adapters, opt, params)
                loss.item()  # the engine reads (logs) every step's loss
                n += 1
            sync(device)
            ms = (time.perf_counter() - t0) * 1000
            suffix = "" if mode == "none" else "-live"
            report(result(f"epoch/{name}/{mode}{suffix}", a.batch, a.size, [ms]))
            del loader, student, adapters, opt


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
    ap.add_argument("--epoch-data", metavar="DIR", help="also time one training epoch per (model, mode) on this VOC dataset")
    ap.add_argument("--epoch-images", type=int, default=64, help="training images per measured epoch (default 64)")
    ap.add_argument("--teacher-weights", metavar="PATH", help="FCN-ResNet50 torchvision .pth for the teacher (default: random)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader worker processes for --epoch-data (default min(4, cores))")
    a = ap.parse_args()
    if a.epoch_images < 1:
        ap.error("--epoch-images must be at least 1")
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
    notes = []
    if teacher is not None and a.teacher_weights:
        load_teacher_weights(teacher, a.teacher_weights)
        notes.append(f"teacher weights: {a.teacher_weights}")
    elif a.epoch_data and any(m != "none" for m in modes):
        notes.append("no --teacher-weights: the epoch measurements' live teacher is randomly initialised "
                     "(timing does not depend on its values)")
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    results = []

    def report(r):
        results.append(r)
        ips = r["batch"] * 1000 / r["median_ms"]
        mem = f"  peak {r['peak_rss_mib']:>6.0f} MiB" if "peak_rss_mib" in r else ""
        print(f"{r['name']:<38} batch {r['batch']:>2} {r['size']:>4}px  median {r['median_ms']:>9.1f} ms  "
              f"(min {r['min_ms']:>8.1f}, max {r['max_ms']:>8.1f})  {ips:>8.1f} img/s{mem}", flush=True,
              file=__import__("sys").stderr)

    for name in models:
        for mode in modes:
            student = build_student(name).to(device).train()
            adapters = adapters_for(student, x) if mode in ("feature", "combined") else nn.ModuleDict()
            params = list(student.parameters()) + list(adapters.parameters())
            opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)

            def step():
                train_one_step(student, teacher, mode, x, target, adapters, opt, params)

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
    if a.epoch_data:
        epoch_results(a, models, modes, teacher, device, report)
    if a.json:
        threads = torch.get_num_threads() if device.type == "cpu" else 0
        name = f"cpu ({threads} threads)" if device.type == "cpu" else f"cuda:0 ({torch.cuda.get_device_name(0)})"
        doc = {"device": name, "threads": threads, "results": results}
        if notes:
            doc["notes"] = notes  # extra key: `segdistill bench --compare` reads device, threads, results
        print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
