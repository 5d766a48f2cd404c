#!/usr/bin/env bash
# Installs what segdistill needs on Debian/Ubuntu: a Rust toolchain (rustup) if cargo is missing,
# and the run-time libraries the window needs (X11/Wayland, OpenGL via Mesa).
# Usage: install-deps.sh [--test|--python]   (--test adds what the test suite needs, --python
# what scripts/cuda-toolchain.sh needs to install the CUDA compiler)
set -euo pipefail

want_test=0
want_python=0
[ "${1:-}" = "--test" ] && want_test=1
[ "${1:-}" = "--python" ] && want_python=1

packages=(build-essential pkg-config curl ca-certificates
  libx11-6 libx11-xcb1 libxcursor1 libxrandr2 libxi6 libxkbcommon0 libxkbcommon-x11-0
  libfontconfig1 libdbus-1-3 libgl1 libglx-mesa0 libegl1 libegl-mesa0 libgl1-mesa-dri)
if [ "$want_test" = 1 ]; then
  packages+=(libvulkan1 mesa-vulkan-drivers)
fi
if [ "$want_python" = 1 ]; then
  packages+=(python3 python3-venv python3-pip)
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

if command -v dpkg-query >/dev/null && command -v apt-get >/dev/null; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
else
  echo "note: not a Debian/Ubuntu system; install the equivalents of: ${packages[*]}" >&2
fi

if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "== installing Rust (rustup)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
