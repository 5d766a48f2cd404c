#!/usr/bin/env bash
# Installs what is needed, builds the release binary and starts the app.
# Extra arguments go to segdistill (e.g. `scripts/start.sh check-data --data DIR`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked
exec target/release/segdistill "$@"
