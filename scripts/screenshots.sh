#!/usr/bin/env bash
# Screenshots of the real app for the README: the release binary under Xvfb, driven with xdotool.
#   screenshots/train.png   mid-training (live curves)
#   screenshots/runs.png    the Runs tab with finished runs selected
#   screenshots/browse.png  the Browse tab's detail view
# The teacher is trained here on the demo data (the app's teacher recipe, shortened), so the
# teacher column shows real predictions.
# Needs: xvfb xauth imagemagick xdotool (apt). Usage: bash scripts/screenshots.sh
# (SEGDISTILL_BIN=target/debug/segdistill uses a test build instead of building a release one.)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SEGDISTILL_BIN:-target/release/segdistill}
[ -x "$bin" ] || cargo build --release --locked
work=$(mktemp -d)
trap 'kill %1 2>/dev/null || true; rm -rf "$work"' EXIT
export XDG_DATA_HOME="$work/xdg" HOME="$work/home"
mkdir -p "$XDG_DATA_HOME/segdistill" "$HOME" screenshots

echo "== demo data, a teacher trained on it, and two finished students"
"$bin" demo-data --out "$work/demo" --train 120 --val 24 --size 128 --seed 5 >/dev/null
data="$work/demo/VOCdevkit/VOC2012"
"$bin" train --data "$data" --model mbv3s-aspp --epochs 20 --batch 8 --size 96 --lr 5e-3 \
    --out "$work/runs/teacher-mbv3s-aspp" 2>/dev/null
teacher="$work/runs/teacher-mbv3s-aspp/student.safetensors"
common=(--data "$data" --model mbv3s-tiny --epochs 8 --batch 8 --size 96 --lr 5e-3 --schedule constant)
"$bin" train "${common[@]}" --distill none --out "$work/runs/tiny-none" 2>/dev/null
"$bin" train "${common[@]}" --distill response --teacher-run "$work/runs/teacher-mbv3s-aspp" \
    --out "$work/runs/tiny-response" 2>/dev/null
# The comparison report measures each architecture's speed once, into the runs folder's speed/:
# the app's table shows those (it does not measure while it trains).
"$bin" report "$work/runs/teacher-mbv3s-aspp" "$work/runs/tiny-none" "$work/runs/tiny-response" \
    --out "$work/report" --overlays 0 >/dev/null 2>&1

# The app's saved settings: dataset, runs folder, form, the run to browse.
python3 - "$work" "$data" "$teacher" <<'PY'
import json, sys
work, data, teacher = sys.argv[1:4]
state = {
    "tab": "Train", "data_dir": data, "runs_dir": f"{work}/runs",
    "train": {
        "config": {"model": "mbv3s-tiny", "teacher": "mbv3s-aspp", "epochs": 30, "batch": 8, "size": 96,
                   "optimizer": {"lr": 0.005}, "name": "tiny-kd", "unlabeled": None},
        "terms": {"rows": [{"kind": "ce", "on": True, "weight": 1.0, "tau": None},
                           {"kind": "kd", "on": True, "weight": 1.0, "tau": 4.0}]},
        "teacher_weights": teacher,
    },
    "browse": {"run": f"{work}/runs/tiny-response", "split": "val", "opacity": 0.55},
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
