"""The hashed-weights formula shared with Rust (`segdistill::model::weights::hashed`): every
parameter and buffer of a model is a pure function of its name and shape, computed bit for bit
alike on both sides, so parity fixtures need to carry only inputs and reference outputs."""

import math

import numpy as np
import torch

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
    """The value of tensor `name`: what Rust's `hashed_values` computes (f64 maths, then f32)."""
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
