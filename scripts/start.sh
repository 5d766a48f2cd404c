#!/usr/bin/env bash
# Installs what is needed, builds the release binary and starts the app.
# With a working NVIDIA driver (`nvidia-smi` runs) the cuda flavour is built, with the CUDA 13.0
# compiler installed from PyPI by scripts/cuda-toolchain.sh; otherwise the plain CPU build.
# SEGDISTILL_FLAVOUR=cpu|cuda overrides the choice.
# Extra arguments go to segdistill (e.g. `scripts/start.sh check-data --data DIR`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
flavour="${SEGDISTILL_FLAVOUR:-}"
if [ -z "$flavour" ]; then
  if command -v nvidia-smi > /dev/null && nvidia-smi > /dev/null 2>&1; then flavour=cuda; else flavour=cpu; fi
fi
if [ "$flavour" = cuda ]; then
  echo "== NVIDIA driver found: building the cuda flavour (first build ≈ 25 min on 2 cores: CUDA kernels)"
  bash scripts/install-deps.sh --python
  eval "$(scripts/cuda-toolchain.sh)"
  cargo build --release --locked --features cuda
else
  cargo build --release --locked
fi
exec target/release/segdistill "$@"
