#!/usr/bin/env bash
# The whole GPU verification as one command.
#
#   scripts/gpu-check.sh --pack [PACK_DIR]          build machine (Rust, network): build the cuda release
#                                                   binary and pack it into PACK_DIR (default
#                                                   gpu-pack/, git-ignored, ≤ 60 MiB)
#   scripts/gpu-check.sh [--device cuda|cpu] [--pack-dir DIR] [--quick] OUT_DIR
#                                                   on a machine with the NVIDIA driver and PyTorch
#                                                   (no Rust, no network needed): unpack, then
#                                                   selftest, bench, epochs and a 2-epoch training,
#                                                   writing OUT_DIR/results.json and results.md
#
# `--device cpu` dry-runs every step on the CPU with small sizes (the binary of `cargo build --release`
# when no pack exists). Each step has its own timeout, so one hang does not eat the others; a
# failed step is recorded in the results and the rest still run. The whole run is meant to take
# at most 8 minutes on an H100/H200.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PACK_DIR="$ROOT/gpu-pack"
MAX_PACK_MIB=60

pack() {
  local dir="${1:-$PACK_DIR}"
  set -e
  # shellcheck source=/dev/null
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  eval "$("$ROOT/scripts/cuda-toolchain.sh")"
  (cd "$ROOT" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-cuda}" cargo build --release --locked --features cuda)
  local bin="${CARGO_TARGET_DIR:-$ROOT/target-cuda}/release/segdistill"
  mkdir -p "$dir"
  rm -f "$dir/segdistill.xz"
  xz -9e -T0 -c "$bin" > "$dir/segdistill.xz.tmp" && mv "$dir/segdistill.xz.tmp" "$dir/segdistill.xz"
  (cd "$ROOT" && git rev-parse HEAD 2>/dev/null || echo unknown) > "$dir/commit"
  sha256sum "$bin" | cut -d' ' -f1 > "$dir/segdistill.sha256"
  local mib=$(( $(du -sk "$dir" | cut -f1) / 1024 ))
  echo "packed $dir: ${mib} MiB (binary $(( $(stat -c %s "$bin") / 1048576 )) MiB before xz)"
  if [ "$mib" -gt "$MAX_PACK_MIB" ]; then
    echo "error: the pack is ${mib} MiB, over the ${MAX_PACK_MIB} MiB a pack may take" >&2
    exit 1
  fi
}

if [ "${1:-}" = "--pack" ]; then
  shift
  pack "$@"
  exit $?
fi

DEVICE=cuda
QUICK=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --pack-dir) PACK_DIR="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h|--help) sed -n 2,18p "$0"; exit 0 ;;
    *) OUT="$1"; shift ;;
  esac
done
[ -n "$OUT" ] || { echo "usage: scripts/gpu-check.sh [--device cuda|cpu] OUT_DIR (or --pack)" >&2; exit 2; }
[ "$DEVICE" = cpu ] && QUICK=1
mkdir -p "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
# Bulky inputs (binary, fixtures, demo data, run folders) go to a work folder, so OUT holds only
# what should come back from a remote machine: results, logs and metrics.
WORK="${GPU_CHECK_WORK:-$(mktemp -d /tmp/segdistill-gpu-check.XXXXXX)}"
mkdir -p "$WORK"
STEPS="$OUT/steps.tsv"
printf 'step\tstatus\tseconds\n' > "$STEPS"

# step NAME TIMEOUT_S CMD...: runs CMD with stdout in logs/NAME.out and stderr in logs/NAME.log,
# and records its exit status and duration in steps.tsv.
step() {
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS
  echo "== $name (≤ ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/logs/$name.out" 2> "$OUT/logs/$name.log"
  local rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$STEPS"
  [ $rc -eq 0 ] || { echo "   exit $rc (see logs/$name.log)"; tail -5 "$OUT/logs/$name.log" | sed 's/^/   | /'; }
  return 0
}

# Python with PyTorch and torchvision: $PYTHON, else the virtual environment named by $TORCH_VENV,
# else python3.
PY="${PYTHON:-}"
for cand in "$PY" "${TORCH_VENV:+$TORCH_VENV/bin/python}" python3; do
  [ -n "$cand" ] && command -v "$cand" > /dev/null && "$cand" -c "import torch, torchvision" 2> /dev/null && { PY="$cand"; break; }
done
"$PY" -c "import torch" 2> /dev/null || { echo "error: no python with torch and torchvision (set PYTHON)" >&2; exit 2; }

# The binary: the pack's, else (CPU dry runs) the release build's.
BIN="$WORK/segdistill"
if [ -f "$PACK_DIR/segdistill.xz" ]; then
  "$PY" -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" \
    "$PACK_DIR/segdistill.xz" "$BIN" && chmod +x "$BIN"
  if [ -f "$PACK_DIR/segdistill.sha256" ] && [ "$(sha256sum "$BIN" | cut -d' ' -f1)" != "$(cat "$PACK_DIR/segdistill.sha256")" ]; then
    echo "error: the unpacked binary does not match $PACK_DIR/segdistill.sha256 (a damaged pack: run --pack again)" >&2
    exit 2
  fi
elif [ -x "$ROOT/target/release/segdistill" ]; then
  cp "$ROOT/target/release/segdistill" "$BIN"
else
  echo "error: no $PACK_DIR/segdistill.xz (run scripts/gpu-check.sh --pack) and no target/release/segdistill" >&2
  exit 2
fi

# The CUDA libraries of the local PyTorch install (site-packages/nvidia/*/lib).
NV_LIBS=$("$PY" - <<'PY'
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
print(":".join(sorted({d for r in roots for d in glob.glob(os.path.join(r, "nvidia", "*", "lib"))})))
PY
)
export LD_LIBRARY_PATH="${NV_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

{
  echo "date: $(date -u +%FT%TZ)"
  echo "device: $DEVICE"
  echo "commit: $(cat "$PACK_DIR/commit" 2> /dev/null || git -C "$ROOT" rev-parse HEAD 2> /dev/null)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
  echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2> /dev/null || echo none)"
  echo "glibc: $(ldd --version 2> /dev/null | head -1) (the binary needs ≥ 2.35)"
  echo "torch: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())')"
} > "$OUT/environment.txt"
cat "$OUT/environment.txt"

if [ "$QUICK" = 1 ]; then
  BATCHES="2"; SIZE=64; REPEATS=2; WARMUP=1; EPOCH_IMAGES=8; TRAIN_STEPS=5; DEMO="--train 16 --val 4 --size 96"
  MODELS=(--model mbv3s-tiny); FIX_ARGS=()
else
  BATCHES="8 32"; SIZE=256; REPEATS=5; WARMUP=2; EPOCH_IMAGES=256; TRAIN_STEPS=20; DEMO="--train 256 --val 32 --size 320"
  MODELS=(); FIX_ARGS=()
fi

step fixtures 240 "$PY" "$ROOT/bench/make_parity_fixtures.py" "$WORK/fixtures" "${FIX_ARGS[@]}"
PRECISIONS="fp32 tf32 bf16"
[ "$DEVICE" = cpu ] && PRECISIONS="fp32 tf32"   # bf16 autocast needs a GPU (candle's CPU has no bf16 products)
for p in $PRECISIONS; do
  step "selftest-$p" 240 "$BIN" selftest --device "$DEVICE" --precision "$p" --fixtures "$WORK/fixtures" \
    --train-steps "$TRAIN_STEPS" --json
done

for b in $BATCHES; do
  COMMON=(--device "$DEVICE" --batch "$b" --size "$SIZE" --warmup "$WARMUP" --repeats "$REPEATS" --json "${MODELS[@]}")
  step "bench-torch-b$b" 300 "$PY" "$ROOT/bench/pytorch_reference.py" "${COMMON[@]}"
  step "bench-ours-b$b" 300 "$BIN" bench "${COMMON[@]}"
done

step demo-data 120 "$BIN" demo-data --out "$WORK/demo" $DEMO --seed 0
TEACHER="$WORK/fixtures/fcn_resnet50_random_legacy.pth"
[ -f "$TEACHER" ] || TEACHER=""
EPOCH=(--device "$DEVICE" --batch 8 --size "$SIZE" --epoch-images "$EPOCH_IMAGES" "${MODELS[@]}" --mode none)
if [ -n "$TEACHER" ]; then EPOCH+=(--mode response --teacher-weights "$TEACHER"); fi
step epoch-torch 300 "$PY" "$ROOT/bench/pytorch_reference.py" "${EPOCH[@]}" --epoch-data "$WORK/demo" \
  --no-teacher --no-infer --warmup 0 --repeats 1 --json
step epoch-ours 300 "$BIN" bench "${EPOCH[@]}" --epoch-data "$WORK/demo" --no-teacher --no-infer --warmup 0 --repeats 1 --json

for d in "$DEVICE" cpu; do
  rm -rf "$WORK/runs/train-$d"
  step "train-$d" 300 "$BIN" train --data "$WORK/demo" --model mbv3s-tiny --distill none --epochs 2 --seed 0 \
    --batch 8 --size "$SIZE" --device "$d" --out "$WORK/runs/train-$d"
  mkdir -p "$OUT/runs/train-$d"
  cp "$WORK/runs/train-$d/metrics.csv" "$OUT/runs/train-$d/" 2> /dev/null
  [ "$DEVICE" = cpu ] && break
done

"$PY" "$ROOT/bench/gpu_check_report.py" "$OUT"
echo "results: $OUT/results.md, $OUT/results.json (inputs and run folders in $WORK)"
