#!/usr/bin/env bash
# The first-run path, timed: the default demo data, the app's "Train a teacher for this dataset"
# recipe on it, then a compact student distilled on the labelled and the unlabelled images —
# what a new user does first, in the CLI's words.
#
#   bash bench/first_run.sh [WORK_DIR] [LOSS]    # default /tmp/first-run, ce=1,kd=1
#
# Prints each phase's wall time and the two models' validation mIoU. Needs a built binary
# (target/release/segdistill, else target/debug/segdistill). Run it on an idle machine.
set -euo pipefail
work=${1:-/tmp/first-run}
loss=${2:-ce=1,kd=1}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/target/release/segdistill
[ -x "$bin" ] || bin=$here/target/debug/segdistill
rm -rf "$work"
mkdir -p "$work"
cd "$work"
t0=$(date +%s)
"$bin" demo-data --out demo
t1=$(date +%s)
# TrainConfig::teacher_recipe on the demo data: mbv3s-aspp, 20 epochs, its own 128-px crop, lr 5e-3.
"$bin" train --data demo --model mbv3s-aspp --epochs 20 --size 128 --lr 5e-3 --out runs/teacher 2>teacher.log
t2=$(date +%s)
"$bin" train --data demo --model mbv3s-tiny --teacher-run runs/teacher --loss "$loss" --unlabeled unlabeled \
    --epochs 20 --size 128 --lr 5e-3 --out runs/student 2>student.log
t3=$(date +%s)
echo "demo data: $((t1 - t0)) s; teacher: $((t2 - t1)) s; distilled student: $((t3 - t2)) s; total: $((t3 - t0)) s"
grep -h "^finished" teacher.log student.log
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
