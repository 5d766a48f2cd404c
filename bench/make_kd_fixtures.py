#!/usr/bin/env python3
"""Reference values for the distillation loss terms (src/distill/terms.rs), from PyTorch.

Each term is written here from its paper's definition and its reference implementation's
reduction (CIRKD's losses for CWD, IFVD, AT, FitNet and the cross-image pixel relations; the
structured-KD code's pairwise loss; the DIST code's segmentation loss). For each term this writes
`tests/fixtures/kd/<term>.safetensors` holding the seeded inputs, the hyper-parameters, the loss
value and its gradient with respect to the student's input. Computed in float64 from float32
inputs; stored as float32.

    python3 bench/make_kd_fixtures.py [--out tests/fixtures/kd]
"""

import argparse
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

VOID = 255
B, K, CS, CT = 2, 5, 8, 12
LOGIT_HW = (6, 8)
FEAT_HW = (7, 10)  # the pairwise pooling's last window row is partial (ceil mode)
TEACHER_FEAT_HW = (4, 5)  # resized bilinearly to the student's grid


def labels(gen, hw):
    lab = torch.randint(0, K, (B, *hw), generator=gen)
    void = torch.rand((B, *hw), generator=gen) < 0.2
    lab[void] = VOID
    return lab


def resize_teacher(t, hw):
    return F.interpolate(t, size=hw, mode="bilinear", align_corners=False)


def kd(s, t, lab, tau):
    """Hinton's tau^2 KL(p_t || p_s) per pixel over classes, averaged over labelled pixels."""
    log_ps = F.log_softmax(s / tau, dim=1)
    log_pt = F.log_softmax(t / tau, dim=1)
    per = (log_pt.exp() * (log_pt - log_ps)).sum(1) * tau * tau
    valid = (lab != VOID).to(s.dtype)
    return (per * valid).sum() / valid.sum()


def cwd(s, t, tau):
    """Channel-wise distillation: softmax over each channel's positions, KL, tau^2, / (N*C)."""
    n, c, h, w = s.shape
    log_ps = F.log_softmax(s.reshape(n, c, -1) / tau, dim=-1)
    log_pt = F.log_softmax(t.reshape(n, c, -1) / tau, dim=-1)
    return (log_pt.exp() * (log_pt - log_ps)).sum() / (n * c) * tau * tau


def maxpool_nodes(x, scale):
    h, w = x.shape[2:]
    kh, kw = int(h * scale), int(w * scale)
    return F.max_pool2d(x, kernel_size=(kh, kw), stride=(kh, kw), padding=0, ceil_mode=True)


def similarity(f):
    # Structured KD: each node divided by its (detached) L2 norm + 1e-8, then all pairs' dot products.
    norm = (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-8).detach()
    f = (f / norm).flatten(2)
    return torch.einsum("icm,icn->imn", f, f)


def pairwise(s, t, scale):
    ps, pt = maxpool_nodes(s, scale), maxpool_nodes(t, scale)
    nodes = ps.shape[2] * ps.shape[3]
    return ((similarity(pt) - similarity(ps)) ** 2).sum() / nodes**2 / s.shape[0]


def ifvd(s, t, lab, num_classes):
    h, w = s.shape[2:]
    lab = F.interpolate(lab[:, None].to(s.dtype), size=(h, w), mode="nearest")

    def centres(f):
        m = lab.expand(f.shape)
        c = f.clone()
        for k in range(num_classes):
            mk = (m == k).to(f.dtype)
            proto = (mk * f).sum((-1, -2)) / (mk.sum((-1, -2)) + 1e-6)
            c = (1 - mk) * c + mk * proto[..., None, None]
        return c

    cos_s = F.cosine_similarity(s, centres(s), dim=1)
    cos_t = F.cosine_similarity(t, centres(t), dim=1)
    return F.mse_loss(cos_s, cos_t)


def cirkd_pixel(s, t, tau):
    """Cross-image pixel-to-pixel relations: for every ordered pair of images (i, j), KL at tau
    between the rows of the teacher's and student's similarity matrices, batchmean, / B^2."""
    s, t = F.normalize(s, p=2, dim=1), F.normalize(t, p=2, dim=1)
    b, c = s.shape[:2]
    total = s.new_zeros(())
    for i in range(b):
        for j in range(b):
            ss = s[i].reshape(c, -1).T @ s[j].reshape(c, -1)
            tt = t[i].reshape(t.shape[1], -1).T @ t[j].reshape(t.shape[1], -1)
            log_ps = F.log_softmax(ss / tau, dim=1)
            pt = F.softmax(tt / tau, dim=1)
            total = total + F.kl_div(log_ps, pt, reduction="batchmean")
    return total / (b * b)


def region_enqueue(memory, nxt, filled, t, lab):
    """CIRKD's region queue (`StudentSegContrast._dequeue_and_enqueue`): per image, for each class
    present (ascending), the normalised mean of the teacher's unit features over the class's pixels
    goes into that class's next slot of its ring."""
    memory, nxt, filled = memory.clone(), nxt.clone(), filled.clone()
    slots = memory.shape[1]
    t = F.normalize(t, p=2, dim=1)
    for i in range(t.shape[0]):
        f = t[i].reshape(t.shape[1], -1)
        lab_i = lab[i].reshape(-1)
        for c in torch.unique(lab_i).tolist():
            if c == VOID or c >= memory.shape[0]:
                continue
            ptr = int(nxt[c])
            memory[c, ptr] = F.normalize(f[:, lab_i == c].mean(1), p=2, dim=0)
            nxt[c] = (ptr + 1) % slots
            filled[c] = min(int(filled[c]) + 1, slots)
    return memory, nxt, filled


def cirkd_region(s_adapted, t, lab, memory, filled, tau):
    """Pixel-to-region relations: each labelled pixel's similarities to every region held in the
    memory, / tau, softmax; KL(teacher || student), batchmean over the labelled pixels."""
    s, t = F.normalize(s_adapted, p=2, dim=1), F.normalize(t, p=2, dim=1)
    regions = torch.cat([memory[c, : int(filled[c])] for c in range(memory.shape[0])])
    anchors = lab.reshape(-1) != VOID
    s_rows = s.permute(0, 2, 3, 1).reshape(-1, s.shape[1])[anchors]
    t_rows = t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])[anchors]
    log_ps = F.log_softmax(s_rows @ regions.T / tau, dim=1)
    pt = F.softmax(t_rows @ regions.T / tau, dim=1)
    return F.kl_div(log_ps, pt, reduction="batchmean")


def at(s, t):
    def att(f):
        return F.normalize(f.pow(2).mean(1).flatten(1))

    return (att(s) - att(t)).pow(2).mean()


def fitnet(s_adapted, t):
    return ((s_adapted - t) ** 2).mean()


def dist(s, t, tau, beta, gamma):
    c = s.shape[1]
    ys = F.softmax(s / tau, dim=1).permute(0, 2, 3, 1).reshape(-1, c)
    yt = F.softmax(t / tau, dim=1).permute(0, 2, 3, 1).reshape(-1, c)

    def pearson_loss(a, b):
        a = a - a.mean(1, keepdim=True)
        b = b - b.mean(1, keepdim=True)
        p = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-8)
        return 1 - p.mean()

    inter = pearson_loss(ys, yt)
    intra = pearson_loss(ys.T, yt.T)
    return tau * tau * (beta * inter + gamma * intra)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "kd"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gen = torch.Generator().manual_seed(20260)

    def randn(*shape, std=1.0):
        return (torch.randn(shape, generator=gen) * std).float()

    def write(name, loss_fn, student, tensors, params):
        x = student.double().requires_grad_(True)
        loss = loss_fn(x)
        loss.backward()
        out = {k: v.contiguous() for k, v in tensors.items()}
        out["student"] = student.contiguous()
        out["loss"] = loss.detach().float().reshape(1)
        out["grad"] = x.grad.float().contiguous()
        for k, v in params.items():
            out[f"param.{k}"] = torch.tensor([float(v)], dtype=torch.float32)
        save_file(out, os.path.join(args.out, f"{name}.safetensors"), metadata={"term": name})
        print(f"{name}: loss {loss.item():.6g}")

    d = lambda x: x.double()  # noqa: E731

    # Logit terms: student/teacher logits (B, K, 6, 8).
    s, t = randn(B, K, *LOGIT_HW, std=3.0), randn(B, K, *LOGIT_HW, std=3.0)
    lab = labels(gen, LOGIT_HW)
    write("kd", lambda x: kd(x, d(t), lab, 4.0), s, {"teacher": t, "labels": lab.to(torch.int64)}, {"tau": 4.0})
    s, t = randn(B, K, *LOGIT_HW, std=3.0), randn(B, K, *LOGIT_HW, std=3.0)
    write("cwd-logits", lambda x: cwd(x, d(t), 4.0), s, {"teacher": t}, {"tau": 4.0})
    s, t = randn(B, K, *LOGIT_HW, std=3.0), randn(B, K, *LOGIT_HW, std=3.0)
    write("dist", lambda x: dist(x, d(t), 1.0, 1.0, 1.0), s, {"teacher": t}, {"tau": 1.0, "beta": 1.0, "gamma": 1.0})
    s, t = randn(B, K, *LOGIT_HW, std=3.0), randn(B, K, *LOGIT_HW, std=3.0)
    write("dist.tau4", lambda x: dist(x, d(t), 4.0, 1.0, 2.0), s, {"teacher": t}, {"tau": 4.0, "beta": 1.0, "gamma": 2.0})

    # Feature terms: student (B, 8, 7, 10), teacher (B, 12, 4, 5) resized to 7x10.
    def feats():
        return randn(B, CS, *FEAT_HW), randn(B, CT, *TEACHER_FEAT_HW).relu() + 0.05

    def adapter():
        return randn(CT, CS, 1, 1, std=0.3), randn(CT, std=0.1)

    s, t = feats()
    wt, bs = adapter()
    write(
        "cwd-features",
        lambda x: cwd(F.conv2d(x, d(wt), d(bs)), resize_teacher(d(t), FEAT_HW), 4.0),
        s,
        {"teacher": t, "adapter.weight": wt, "adapter.bias": bs},
        {"tau": 4.0},
    )
    s, t = feats()
    wt, bs = adapter()
    write(
        "fitnet",
        lambda x: fitnet(F.conv2d(x, d(wt), d(bs)), resize_teacher(d(t), FEAT_HW)),
        s,
        {"teacher": t, "adapter.weight": wt, "adapter.bias": bs},
        {},
    )
    s, t = feats()
    write("pairwise", lambda x: pairwise(x, resize_teacher(d(t), FEAT_HW), 0.5), s, {"teacher": t}, {"scale": 0.5})
    s, t = feats()
    lab = labels(gen, (2 * FEAT_HW[0], 2 * FEAT_HW[1]))
    write(
        "ifvd",
        lambda x: ifvd(x, resize_teacher(d(t), FEAT_HW), lab, K),
        s,
        {"teacher": t, "labels": lab.to(torch.int64)},
        {"classes": K},
    )
    s, t = feats()
    write("cirkd", lambda x: cirkd_pixel(x, resize_teacher(d(t), FEAT_HW), 0.1), s, {"teacher": t}, {"tau": 0.1})
    s, t = feats()
    write("at", lambda x: at(x, resize_teacher(d(t), FEAT_HW)), s, {"teacher": t}, {})

    # cirkd-region: three images, the middle one without labels (it writes no region and has no
    # anchor); a memory of 3 slots per class, met part-written: class 0 full (its ring wraps),
    # classes 1 and 3 part-written, 2 and 4 empty.
    s = randn(3, CS, *FEAT_HW)
    t = randn(3, CT, *TEACHER_FEAT_HW).relu() + 0.05
    lab = torch.randint(0, 3, (3, 2 * FEAT_HW[0], 2 * FEAT_HW[1]), generator=gen)
    lab[torch.rand(lab.shape, generator=gen) < 0.2] = VOID
    lab[1] = VOID
    wt, bs = adapter()
    slots = 3
    filled = torch.tensor([3, 1, 0, 2, 0])
    nxt = torch.tensor([1, 1, 0, 2, 0])
    memory = torch.zeros(K, slots, CT)
    for c in range(K):
        memory[c, : filled[c]] = F.normalize(randn(int(filled[c]), CT), p=2, dim=1)
    lab_grid = F.interpolate(lab[:, None].double(), size=FEAT_HW, mode="nearest")[:, 0].long()
    t_grid = resize_teacher(d(t), FEAT_HW)
    after, nxt_after, filled_after = region_enqueue(d(memory), nxt, filled, t_grid, lab_grid)
    write(
        "cirkd-region",
        lambda x: cirkd_region(F.conv2d(x, d(wt), d(bs)), t_grid, lab_grid, after, filled_after, 0.1),
        s,
        {
            "teacher": t,
            "labels": lab.to(torch.int64),
            "adapter.weight": wt,
            "adapter.bias": bs,
            "memory": memory,
            "memory.next": nxt.float(),
            "memory.filled": filled.float(),
            "memory.after": after.float(),
            "memory.next.after": nxt_after.float(),
            "memory.filled.after": filled_after.float(),
        },
        {"tau": 0.1, "classes": K},
    )


if __name__ == "__main__":
    main()
