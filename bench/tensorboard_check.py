#!/usr/bin/env python3
"""Reads a segdistill run's TensorBoard log with TensorBoard's own reader (EventAccumulator).

Usage: python bench/tensorboard_check.py RUN_DIR [--json]

Prints the scalar tags with their number of points and last value, and the image tags with their
sizes; exits 1 when the log lacks the training loss, the validation mIoU or the overlay images.
Needs: tensorboard.
"""
import argparse
import json
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    acc = EventAccumulator(os.path.join(a.run_dir, "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}
    images = {t: [(e.step, e.width, e.height) for e in acc.Images(t)] for t in tags["images"]}
    if a.json:
        print(json.dumps({"scalars": scalars, "images": images}))
    else:
        for t, pts in sorted(scalars.items()):
            print(f"scalar {t}: {len(pts)} points, last {pts[-1][1]:.4f} at step {pts[-1][0]}")
        for t, imgs in sorted(images.items()):
            print(f"image {t}: {len(imgs)} images, last {imgs[-1][1]}×{imgs[-1][2]} at step {imgs[-1][0]}")
    needed = ["train/loss", "val/mIoU", "val/loss", "val/pixel_accuracy"]
    missing = [t for t in needed if t not in scalars] + [t for t in ["overlays/best", "overlays/worst"] if t not in images]
    if missing:
        print(f"missing: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
