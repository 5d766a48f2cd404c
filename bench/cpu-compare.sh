#!/usr/bin/env bash
# segdistill against PyTorch eager on this machine's CPU, back to back in one run: every `bench` row
# (train steps in four modes, teacher forward, batch-1 inference of each student), whole epochs
# through the engine vs a PyTorch DataLoader loop, peak memory of a no-KD training step at
# batches 2 / 8 / 16 (one process per row), and the step at 1 and 2 threads. Prints markdown tables
# for docs/performance.md and keeps every JSON under $OUT.
#
#   bash bench/cpu-compare.sh [--threads 2] [--out DIR] [--quick] [--teacher FILE]
#
# --teacher: the FCN-ResNet50 weights file the epochs distill from (torchvision's key names, any
# format). Without it, one is written under $OUT/fixtures by bench/make_parity_fixtures.py (random,
# calibrated weights in the legacy torch.save format, as torchvision's published file).
#
# Needs target/release/segdistill (`cargo build --release`) and a Python with torch + torchvision
# ($PYTHON, default python3). $TEACHER: FCN-ResNet50 weights for the epoch rows (default: generated). --quick: fewer repeats and no epochs (a smoke run of this script).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=2
OUT=${OUT:-/tmp/segdistill-cpu-compare}
QUICK=0
TEACHER=
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --teacher) TEACHER=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
BIN=${SEGDISTILL_BIN:-target/release/segdistill}
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release first" >&2; exit 1; }
"$PYTHON" -c "import torch, torchvision" 2>/dev/null || { echo "$PYTHON lacks torch/torchvision (pip install torch torchvision)" >&2; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT"/*.json  # rows of an earlier run must not mix in
export RAYON_NUM_THREADS=$THREADS
REPEATS=5; WARMUP=2
[ $QUICK = 1 ] && { REPEATS=1; WARMUP=1; }
if [ -z "$TEACHER" ]; then
  TEACHER="$OUT/fixtures/fcn_resnet50_random_legacy.pth"
  [ -f "$TEACHER" ] || "$PYTHON" bench/make_parity_fixtures.py "$OUT/fixtures" >&2
fi
[ -f "$TEACHER" ] || { echo "no teacher weights at $TEACHER" >&2; exit 1; }

ours() { "$BIN" bench --threads "$THREADS" --json "$@"; }
theirs() { "$PYTHON" bench/pytorch_reference.py --threads "$THREADS" --json "$@"; }

echo "== $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nproc) cores, $THREADS threads, $(date -u +%FT%TZ)" >&2
grep -o -m1 'avx512f' /proc/cpuinfo >/dev/null && echo "== AVX-512F present" >&2

step() { # name, then bench arguments common to both sides
  local name=$1; shift
  ours "$@" > "$OUT/$name.ours.json"
  theirs "$@" > "$OUT/$name.torch.json"
}

# 1. Every bench row: mbv3s-aspp in four modes + teacher + its inference, then the other students'
#    inference (their no-KD steps come along).
step main --model mbv3s-aspp --batch 8 --size 256 --warmup $WARMUP --repeats $REPEATS
for m in mbv3s-tiny lraspp-mbv3l; do
  step "infer-$m" --model $m --mode none --no-teacher --batch 8 --size 256 --warmup $WARMUP --repeats $REPEATS
done

# 2. Peak memory of a no-KD step per batch, one process per row.
for b in 2 8 16; do
  step "memory-b$b" --model mbv3s-aspp --mode none --no-teacher --no-infer --batch $b --size 256 --warmup 1 --repeats 2
done

# 3. Thread scaling of the no-KD step and the teacher.
for t in 1 2; do
  "$BIN" bench --threads $t --json --model mbv3s-aspp --mode none --no-infer --batch 8 --size 256 --warmup 1 --repeats 3 > "$OUT/threads-$t.ours.json"
  "$PYTHON" bench/pytorch_reference.py --threads $t --json --model mbv3s-aspp --mode none --no-infer --batch 8 --size 256 --warmup 1 --repeats 3 > "$OUT/threads-$t.torch.json"
done

# 4. Whole epochs on generated VOC-format data (64 images of 320 px, batch 8, 256² crops).
if [ $QUICK = 0 ]; then
  DEMO=$OUT/demo
  [ -d "$DEMO" ] || "$BIN" demo-data --out "$DEMO" --train 64 --val 4 --size 320 >&2
  step epochs --model mbv3s-aspp --mode none --mode response --warmup 0 --repeats 1 --no-teacher --no-infer \
    --batch 8 --size 256 --epoch-data "$DEMO" --teacher-weights "$TEACHER" --epoch-images 64
fi

"$PYTHON" - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(path):
    return json.load(open(path)) if os.path.exists(path) else {"results": []}
pairs = []
for f in sorted(os.listdir(out)):
    if not f.endswith(".ours.json"):
        continue
    tag = f[: -len(".ours.json")]
    ours, theirs = load(os.path.join(out, f)), load(os.path.join(out, tag + ".torch.json"))
    for o in ours["results"]:
        t = next((t for t in theirs["results"] if (t["name"], t["batch"], t["size"]) == (o["name"], o["batch"], o["size"])), None)
        pairs.append((tag, o, t))
print("| run | measurement | batch | segdistill ms | PyTorch ms | ratio | segdistill peak MiB | PyTorch peak MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
mib = lambda r: f"{r['peak_rss_mib']:.0f}" if r and "peak_rss_mib" in r else "—"
for tag, o, t in pairs:
    tm = f"{t['median_ms']:.1f}" if t else "—"
    ratio = f"**{o['median_ms'] / t['median_ms']:.2f}×**" if t else "—"
    print(f"| {tag} | {o['name']} | {o['batch']} | {o['median_ms']:.1f} ({o['min_ms']:.0f}–{o['max_ms']:.0f}) | {tm} | {ratio} | {mib(o)} | {mib(t)} |")
# The teacher cache against the lab scripts' way (a live teacher every step).
ep_o, ep_t = load(os.path.join(out, "epochs.ours.json"))["results"], load(os.path.join(out, "epochs.torch.json"))["results"]
cached = next((r for r in ep_o if r["name"].startswith("epoch/") and r["name"].endswith("/response")), None)
live = next((r for r in ep_t if r["name"].startswith("epoch/") and r["name"].endswith("/response-live")), None)
if cached and live:
    print(f"\nresponse-KD epoch with the teacher cache {cached['median_ms'] / 1000:.2f} s vs PyTorch's live-teacher epoch "
          f"{live['median_ms'] / 1000:.2f} s: **{cached['median_ms'] / live['median_ms']:.2f}×**")
# Memory growth per image between batch 8 and 16 (one process each).
def peak(tag, side):
    r = load(os.path.join(out, f"{tag}.{side}.json"))["results"]
    return r[0].get("peak_rss_mib") if r else None
for side, label in (("ours", "segdistill"), ("torch", "PyTorch")):
    p = [peak(f"memory-b{b}", side) for b in (2, 8, 16)]
    if None not in p:
        print(f"\n{label}: peak {p[0]:.0f} / {p[1]:.0f} / {p[2]:.0f} MiB at batch 2 / 8 / 16 → {(p[2] - p[1]) / 8:.1f} MiB per image (8→16)")
EOF
