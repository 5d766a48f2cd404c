#!/usr/bin/env bash
# Runs the command examples of README.md: every fenced ```sh block, in order, in one temporary
# folder (so later blocks see what earlier ones made, e.g. the demo data and runs of the lab),
# with `segdistill` on the PATH. A block preceded by a comment line
#
#   <!-- readme-check: skip (REASON) -->
#
# is listed and skipped: blocks that need the network, a display, root, or take too long.
#
#   bash scripts/readme-check.sh [README]     (default: README.md of this checkout)
#
# The binary: $SEGDISTILL_BIN, else target/release/segdistill, else target/debug/segdistill (with
# CARGO_TARGET_DIR honoured), else `cargo build --locked` builds the debug one (optimised in this
# project). Each block runs under `bash -euo pipefail`; the script exits 1 naming every block that
# failed (its number, README line and first command) and keeps the folder for a look; 0 if all pass.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
README="$(realpath "${1:-$ROOT/README.md}")"
[ -f "$README" ] || { echo "readme-check: no $README" >&2; exit 2; }

find_bin() {
  local target="${CARGO_TARGET_DIR:-$ROOT/target}"
  if [ -n "${SEGDISTILL_BIN:-}" ]; then
    echo "$SEGDISTILL_BIN"
    return
  fi
  for b in "$target/release/segdistill" "$target/debug/segdistill"; do
    [ -x "$b" ] && { echo "$b"; return; }
  done
}
BIN="$(find_bin)"
if [ -z "$BIN" ]; then
  echo "== no segdistill binary: building it (cargo build --locked)" >&2
  # shellcheck source=/dev/null
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  (cd "$ROOT" && cargo build --locked) || { echo "readme-check: the build failed" >&2; exit 2; }
  BIN="$(find_bin)"
fi
[ -x "$BIN" ] || { echo "readme-check: $BIN is not an executable" >&2; exit 2; }
BIN="$(realpath "$BIN")"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/segdistill-readme-check.XXXXXX")"
mkdir -p "$WORK/bin" "$WORK/blocks"
ln -s "$BIN" "$WORK/bin/segdistill"

# Extract the blocks: WORK/blocks/NN.sh, with NN.line (README line of the opening fence) and
# NN.skip (the reason) for the skipped ones.
python3 - "$README" "$WORK/blocks" <<'EOF' || { echo "readme-check: cannot read the blocks" >&2; exit 2; }
import re, sys, pathlib
readme, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
lines = readme.read_text(encoding="utf-8").splitlines()
n, i, skip = 0, 0, None
while i < len(lines):
    line = lines[i]
    m = re.match(r"\s*<!--\s*readme-check:\s*skip\s*(?:\((.*)\))?\s*-->", line)
    if m:
        skip = m.group(1) or "marked skip"
        i += 1
        continue
    fence = re.match(r"(\s*)```(\w*)\s*$", line)
    if fence:
        indent, lang = fence.group(1), fence.group(2)
        start = i
        body = []
        i += 1
        while i < len(lines) and not re.match(r"\s*```\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        if lang == "sh":
            n += 1
            stem = out / f"{n:02d}"
            stem.with_suffix(".sh").write_text("\n".join(body) + "\n", encoding="utf-8")
            stem.with_suffix(".line").write_text(str(start + 1), encoding="utf-8")
            if skip:
                stem.with_suffix(".skip").write_text(skip, encoding="utf-8")
        skip = None
        i += 1
        continue
    if line.strip():
        skip = None  # a marker applies to the block right after it (blank lines allowed)
    i += 1
EOF

echo "== readme-check: $README"
echo "== binary $BIN ($("$BIN" --version 2>/dev/null)); working in $WORK"
failed=()
ran=0
skipped=0
t_all=$SECONDS
for block in "$WORK"/blocks/*.sh; do
  [ -e "$block" ] || continue
  nn="$(basename "$block" .sh)"
  line="$(cat "${block%.sh}.line")"
  first="$(grep -v -E '^\s*(#|$)' "$block" | head -n 1)"
  label="block $nn ($(basename "$README") line $line: $first)"
  if [ -f "${block%.sh}.skip" ]; then
    echo "-- skip $label: $(cat "${block%.sh}.skip")"
    skipped=$((skipped + 1))
    continue
  fi
  echo "-- run  $label"
  t0=$SECONDS
  (cd "$WORK" && PATH="$WORK/bin:$PATH" bash -euo pipefail "$block") > "$WORK/blocks/$nn.log" 2>&1
  rc=$?
  ran=$((ran + 1))
  if [ $rc -eq 0 ]; then
    echo "   ok ($((SECONDS - t0)) s)"
  else
    echo "   FAILED with exit status $rc after $((SECONDS - t0)) s; last lines of its output:"
    tail -n 15 "$WORK/blocks/$nn.log" | sed 's/^/   | /'
    failed+=("$label")
  fi
done

echo "== $ran block(s) run, $skipped skipped, ${#failed[@]} failed, $((SECONDS - t_all)) s"
if [ ${#failed[@]} -gt 0 ]; then
  for f in "${failed[@]}"; do echo "FAILED: $f"; done
  echo "(outputs kept in $WORK/blocks/*.log)"
  exit 1
fi
rm -rf "$WORK"
exit 0
