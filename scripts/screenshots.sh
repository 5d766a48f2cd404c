#!/usr/bin/env bash
# Screenshots of the real app for the README: the release binary under Xvfb, driven with xdotool.
#   screenshots/train.png   mid-training (live curves)
#   screenshots/runs.png    the Runs tab with finished runs selected
#   screenshots/browse.png  the Browse tab's detail view
# Needs: xvfb xauth imagemagick xdotool (apt). Usage: bash scripts/screenshots.sh [--teacher FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
teacher="${SEGDISTILL_TEACHER:-../shared/fixtures/torchvision/fcn_resnet50_random_legacy.pth}"
[ "${1:-}" = "--teacher" ] && teacher="$2"
bin=target/release/segdistill
[ -x "$bin" ] || cargo build --release --locked
work=$(mktemp -d)
trap 'kill %1 2>/dev/null || true; rm -rf "$work"' EXIT
export XDG_DATA_HOME="$work/xdg" HOME="$work/home"
mkdir -p "$XDG_DATA_HOME/segdistill" "$HOME" screenshots

echo "== demo data and two finished runs"
"$bin" demo-data --out "$work/demo" --train 120 --val 24 --size 128 --seed 5 >/dev/null
data="$work/demo/VOCdevkit/VOC2012"
common=(--data "$data" --model mbv3s-tiny --epochs 8 --batch 8 --size 96 --lr 5e-3 --schedule constant)
"$bin" train "${common[@]}" --distill none --out "$work/runs/tiny-none" 2>/dev/null
"$bin" train "${common[@]}" --distill feature --teacher-weights "$teacher" --out "$work/runs/tiny-feature" 2>/dev/null

# The app's saved settings: dataset, runs folder, form, the run to browse.
python3 - "$work" "$data" "$teacher" <<'PY'
import json, sys
work, data, teacher = sys.argv[1:4]
state = {
    "tab": "Train", "data_dir": data, "runs_dir": f"{work}/runs",
    "train": {"model": "mbv3s-aspp", "mode": "response", "epochs": 30, "batch": 8, "size": 96, "lr": 0.003,
              "teacher_weights": teacher, "name": "aspp-response"},
    "browse": {"run": f"{work}/runs/tiny-feature", "split": "val", "opacity": 0.55},
}
ron = '{\n    "app": ' + json.dumps(json.dumps(state)) + ',\n}\n'
open(f"{work}/xdg/segdistill/app.ron", "w").write(ron)
PY

shot() { import -window root "$1"; echo "wrote $1"; }
click() { xdotool mousemove "$1" "$2" click 1; sleep "${3:-1}"; }

echo "== starting the app under Xvfb"
Xvfb :99 -screen 0 1280x800x24 >/dev/null 2>&1 &
export DISPLAY=:99
sleep 2
"$bin" >/dev/null 2>&1 &
sleep 6
xdotool search --sync --name segdistill windowmove 0 0 windowsize 1280 800 >/dev/null
sleep 2
# Train tab: Start, then let the curves grow.
click "${START_X:-432}" "${START_Y:-52}" 45
shot screenshots/train.png
# Runs tab: the first visit overlays the runs found (the live one included).
click "${RUNS_TAB_X:-175}" "${TAB_Y:-12}" 8
shot screenshots/runs.png
# Browse tab: wait for the predictions, open one image.
click "${BROWSE_TAB_X:-235}" "${TAB_Y:-12}" 25
click "${THUMB_X:-80}" "${THUMB_Y:-170}" 3
shot screenshots/browse.png
