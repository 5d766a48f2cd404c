#!/usr/bin/env bash
# The CUDA 13.0 compiler from PyPI, for building the `cuda` flavour on a machine with no CUDA
# toolkit (a GPU is not needed to build). Installs once into ~/.cache/segdistill-cu130 and prints
# the environment to evaluate:
#
#   eval "$(scripts/cuda-toolchain.sh)"
#   cargo build --release --features cuda
#
# CUDA 13.0 on purpose: NVIDIA driver 580 (CUDA 13.0) cannot JIT the PTX of newer compilers, and
# cudarc 0.19 refuses nvcc >= 13.5. Kernels target CUDA_COMPUTE_CAP (default 90, H100/H200; the
# driver compiles the PTX for newer GPUs). The binary links no CUDA library dynamically: cudarc
# loads the driver and libraries when a GPU is first opened, and the CUDA runtime that
# candle-kernels' MoE kernels need (`-lcudart`) is linked statically (`libcudart.a` below points at
# libcudart_static.a, which itself loads the driver lazily), so the binary starts on any machine.
set -euo pipefail
DIR="${1:-$HOME/.cache/segdistill-cu130}"
if [ ! -x "$DIR/venv/bin/python" ] || [ ! -e "$DIR/.complete" ]; then
  python3 -m venv "$DIR/venv" >&2 || { echo "echo 'cuda-toolchain: python3 -m venv failed (apt install python3-venv)' >&2; false"; exit 1; }
  "$DIR/venv/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 >&2
  touch "$DIR/.complete"
fi
CU=$(echo "$DIR"/venv/lib/python3*/site-packages/nvidia/cu13)
[ -x "$CU/bin/nvcc" ] || { echo "echo 'cuda-toolchain: nvcc missing under $CU' >&2; false"; exit 1; }
mkdir -p "$DIR/static"
ln -sf "$CU/lib/libcudart_static.a" "$DIR/static/libcudart.a"
cat <<ENV
export CUDA_ROOT="$CU" CUDA_PATH="$CU" CUDA_HOME="$CU"
export PATH="$CU/bin:\$PATH"
export LIBRARY_PATH="$DIR/static\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}
ENV
