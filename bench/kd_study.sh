#!/usr/bin/env bash
# The demo-task distillation study of README's "Does distillation help?" table: a teacher trained
# here on the generated demo dataset, then students with no KD / response / feature / combined KD,
# three seeds each, same schedule, in three regimes: every labelled image for 10 epochs; only 60
# of them for 10 epochs (a fifth of the steps); only 60 for 50 epochs (the same 370 steps).
#
#   bash bench/kd_study.sh [WORK_DIR] [STUDENT]     # default /tmp/kd-study, mbv3s-tiny
#   python3 bench/kd_study_table.py WORK_DIR         # the table (mean ± std over seeds)
#
# Needs a built binary (target/release/segdistill, else target/debug/segdistill). On a 2-core
# EPYC it takes about 12 min for the teacher and 1 min per mbv3s-tiny run (docs/distillation.md).
set -euo pipefail
work=${1:-/tmp/kd-study}
student=${2:-mbv3s-tiny}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/target/release/segdistill
[ -x "$bin" ] || bin=$here/target/debug/segdistill
mkdir -p "$work/runs"
[ -d "$work/demo" ] || "$bin" demo-data --out "$work/demo"

# The teacher: the app's "Train a teacher for this dataset" recipe (TrainConfig::teacher_recipe).
teacher=$work/runs/teacher
if [ ! -f "$teacher/student.safetensors" ]; then
    "$bin" train --data "$work/demo" --model mbv3s-aspp --epochs 30 --size 128 --batch 8 --lr 5e-3 \
        --seed 0 --out "$teacher"
fi

common=(--data "$work/demo" --model "$student" --size 128 --batch 8 --lr 5e-3)
for regime in all:300:10 few:60:10 few-long:60:50; do
    IFS=: read -r name limit epochs <<< "$regime"
    for seed in 0 1 2; do
        for mode in none response feature combined; do
            out=$work/runs/$student-$name-$mode-s$seed
            extra=()
            if [ -f "$out/metrics.csv" ]; then
                # Completed runs are kept; an interrupted one continues where it stopped.
                [ "$(grep -c '^epoch,' "$out/metrics.csv")" -ge "$epochs" ] && continue
                "$bin" train --resume --out "$out"
                continue
            fi
            [ "$mode" != none ] && extra=(--distill "$mode" --teacher-run "$teacher")
            "$bin" train "${common[@]}" --epochs "$epochs" --train-limit "$limit" --seed "$seed" "${extra[@]}" \
                --out "$out"
        done
    done
done
