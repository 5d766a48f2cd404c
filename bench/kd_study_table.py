#!/usr/bin/env python3
"""The table of bench/kd_study.sh: final-epoch validation mIoU, mean ± sample std over seeds, per
regime and distillation mode, with the teacher's own mIoU. Standard library only.

    python3 bench/kd_study_table.py WORK_DIR [STUDENT]
"""

import csv
import json
import os
import statistics
import sys


def final_miou(run_dir):
    """The last epoch's mIoU in metrics.csv, or None unless the run completed its epochs."""
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.isfile(path):
        return None
    with open(os.path.join(run_dir, "config.json")) as f:
        epochs = json.load(f)["epochs"]
    evaluated = []
    with open(path) as f:
        for row in csv.DictReader(f):
            if row["kind"] == "epoch" and row["miou"]:
                evaluated.append(float(row["miou"]))
    return evaluated[-1] if len(evaluated) >= epochs else None


def main():
    work = sys.argv[1]
    student = sys.argv[2] if len(sys.argv) > 2 else "mbv3s-tiny"
    runs = os.path.join(work, "runs")
    teacher = final_miou(os.path.join(runs, "teacher"))
    print(f"teacher mbv3s-aspp: mIoU {teacher:.3f}\n" if teacher is not None else "teacher: not trained\n")
    modes = ["none", "response", "feature", "combined"]
    print(f"| {student}: labelled images | " + " | ".join(modes) + " |")
    print("|---|" + "---|" * len(modes))
    regimes = [("all", "300 (all), 10 epochs"), ("few", "60, 10 epochs"), ("few-long", "60, 50 epochs (same steps)")]
    for regime, label in regimes:
        cells = []
        base = None
        for mode in modes:
            values = [final_miou(os.path.join(runs, f"{student}-{regime}-{mode}-s{s}")) for s in (0, 1, 2)]
            values = [v for v in values if v is not None]
            if not values:
                cells.append("—")
                continue
            mean = statistics.mean(values)
            spread = statistics.stdev(values) if len(values) > 1 else float("nan")
            if mode == "none":
                base = mean
                cells.append(f"{mean:.3f} ± {spread:.3f}")
            else:
                delta = f" ({mean - base:+.3f})" if base is not None else ""
                cells.append(f"{mean:.3f} ± {spread:.3f}{delta}")
            if len(values) < 3:
                cells[-1] += f" [{len(values)} seeds]"
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
