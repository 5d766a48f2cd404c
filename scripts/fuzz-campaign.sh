#!/usr/bin/env bash
# The long fuzz campaign (not in CI; see docs/reliability.md): builds the fuzz test binary, copies it
# out of target/ (so later builds cannot replace it mid-run) and runs lanes side by side, each lane
# its targets one after the other. Logs and progress go to target/fuzz-campaign/.
#
# Usage: scripts/fuzz-campaign.sh "jpeg_image:600 mask_png:600" "pth_legacy:600 png_image:600" …
#        (one quoted argument per lane; target:seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/fuzz-campaign
mkdir -p "$out"
bin=$(cargo test --locked --test fuzz --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*fuzz-[^"]*\)".*/\1/p' | tail -n 1)
[ -n "$bin" ] || { echo "could not build the fuzz test binary" >&2; exit 2; }
cp "$bin" "$out/fuzz-bin"
git rev-parse --short HEAD > "$out/commit.txt"

lane() {
  local name=$1; shift
  for spec in "$@"; do
    local t=${spec%:*} secs=${spec#*:} rc=0
    echo "== $t start $(date -u +%FT%TZ) (${secs} s)" >> "$out/progress-$name.txt"
    ( ulimit -v 16000000
      TMPDIR=/dev/shm SEGDISTILL_FUZZ_SECS=$secs SEGDISTILL_FUZZ_TARGET=$t \
        nice -n 10 "$out/fuzz-bin" decoders_survive_mutated_inputs --nocapture ) > "$out/$t.log" 2>&1 || rc=$?
    echo "== $t end $(date -u +%FT%TZ) rc=$rc" >> "$out/progress-$name.txt"
  done
}

n=0
for specs in "$@"; do
  n=$((n + 1))
  # shellcheck disable=SC2086 # one lane's specs, split on spaces
  lane "$n" $specs &
done
wait
grep -h "^fuzz [a-z_]*: [0-9]* inputs" "$out"/*.log
