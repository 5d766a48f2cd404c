#!/usr/bin/env python3
"""What each distillation loss term costs per training step, beside no KD (`ce` alone).

Runs `segdistill bench --loss ce,<term>` once per term list, one process per row so that each
row's peak resident memory is its own (the allocator keeps what earlier rows freed), the whole set
`--passes` times back to back, and prints the markdown table of docs/distillation.md: per term the
median step time of each pass, their spread, and the peak memory, with the extra cost over `ce`.

    python3 bench/loss_term_cost.py target/release/segdistill [--passes 2] [bench options...]

Bench options default to the demo study's sizes: student mbv3s-tiny, teacher mbv3s-aspp, batch 8,
crop 128, 2 warm-up and 5 timed steps, on the CPU.
"""

import json
import subprocess
import sys

TERMS = [
    "response", "feature", "kd", "cwd-logits", "cwd-features", "pairwise", "ifvd", "cirkd",
    "cirkd-region", "at", "fitnet", "dist",
]  # fmt: skip
DEFAULTS = [
    "--model", "mbv3s-tiny", "--teacher", "mbv3s-aspp", "--batch", "8", "--size", "128",
    "--warmup", "2", "--repeats", "5", "--no-teacher", "--no-infer",
]  # fmt: skip


def row(binary, loss, extra):
    cmd = [binary, "bench", *DEFAULTS, *extra, "--loss", loss, "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    (result,) = json.loads(out)["results"]
    return result["median_ms"], result.get("peak_rss_mib")


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    binary, rest = args[0], args[1:]
    passes = 2
    if rest[:1] == ["--passes"]:
        passes, rest = int(rest[1]), rest[2:]
    lists = ["ce"] + [f"ce,{t}" for t in TERMS]
    runs = []
    for p in range(passes):
        runs.append({loss: row(binary, loss, rest) for loss in lists})
        print(f"pass {p + 1} done", file=sys.stderr)

    def median(values):
        v = sorted(values)
        n = len(v)
        return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2

    base_ms = median([r["ce"][0] for r in runs])
    base_mib = max(r["ce"][1] or 0 for r in runs)
    head = " | ".join(f"pass {p + 1} ms" for p in range(passes))
    print(f"| loss | {head} | spread | ms/step | Δ ms vs ce | peak MiB | Δ MiB vs ce |")
    print("|---|" + "---:|" * (passes + 5))
    for loss in lists:
        ms = [r[loss][0] for r in runs]
        mib = max(r[loss][1] or 0 for r in runs)
        m = median(ms)
        spread = (max(ms) - min(ms)) / m * 100
        passes_ms = " | ".join(f"{v:.1f}" for v in ms)
        print(
            f"| {loss} | {passes_ms} | {spread:.1f} % | {m:.1f} | {m - base_ms:+.1f} | {mib:.0f} | {mib - base_mib:+.0f} |"
        )


if __name__ == "__main__":
    main()
