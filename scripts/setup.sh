#!/usr/bin/env bash
# Installs kiln's build dependencies (Debian/Ubuntu packages), a Python venv
# for tests and benchmarks (.venv), and builds kiln into build/.
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(cmake g++ make ccache libonnx-dev libprotobuf-dev protobuf-compiler libopenblas-dev
      nlohmann-json3-dev libcli11-dev libgtest-dev libbenchmark-dev libstb-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-test.txt
# CUTLASS headers for the sm_90a convolution tactics (header-only: the wheel's
# Python dependencies are not needed). Used only when CUDA is built.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "nvidia-cutlass>=3.5"

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA="${KILN_CUDA:-AUTO}" \
      -DKILN_PYTHON3="$PWD/.venv/bin/python" >/dev/null
cmake --build build -j"$(nproc)"
