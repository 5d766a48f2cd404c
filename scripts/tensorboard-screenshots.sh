#!/usr/bin/env bash
# Screenshots of TensorBoard reading segdistill runs, for docs/deploying.md: three demo runs (a
# teacher, a student without and with response KD), `tensorboard --logdir`, headless Chromium.
# Needs: tensorboard (pip), chromium (apt). Usage: bash scripts/tensorboard-screenshots.sh
# (SEGDISTILL_BIN=target/debug/segdistill uses a test build; TENSORBOARD=path/to/tensorboard.)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SEGDISTILL_BIN:-target/release/segdistill}
tb=${TENSORBOARD:-tensorboard}
[ -x "$bin" ] || cargo build --release --locked
work=$(mktemp -d)
trap 'kill %1 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin" demo-data --out "$work/demo" --train 60 --val 16 --size 96 --seed 3 >/dev/null
data="$work/demo/VOCdevkit/VOC2012"
common=(--data "$data" --epochs 12 --batch 8 --size 80 --lr 5e-3)
"$bin" train "${common[@]}" --model mbv3s-aspp --out "$work/runs/teacher-mbv3s-aspp" >/dev/null 2>&1
"$bin" train "${common[@]}" --model mbv3s-tiny --out "$work/runs/tiny-none" >/dev/null 2>&1
"$bin" train "${common[@]}" --model mbv3s-tiny --distill response --teacher-run "$work/runs/teacher-mbv3s-aspp" \
    --out "$work/runs/tiny-response" >/dev/null 2>&1
"$tb" --logdir "$work/runs" --port 6007 >/dev/null 2>&1 &
sleep 8
mkdir -p docs/images
shot() {
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1000 \
        --virtual-time-budget=20000 --screenshot="$1" "$2" 2>/dev/null
    echo "wrote $1"
}
shot docs/images/tensorboard_scalars.png "http://localhost:6007/?darkMode=false#scalars&tagFilter=val%2FmIoU%7Ctrain%2Floss"
shot docs/images/tensorboard_images.png "http://localhost:6007/?darkMode=false#timeseries"
