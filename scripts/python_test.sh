#!/usr/bin/env bash
# Builds the kiln Python module with `pip install .` into a fresh venv
# (build-py-venv/) and runs the Python tests (tests/python) with it.
#
#   scripts/python_test.sh            # CPU-only module (default)
#   KILN_CUDA=ON scripts/python_test.sh   # with the CUDA backend
#   PYTHON=python3.12 scripts/python_test.sh
#   KEEP_VENV=1 scripts/python_test.sh    # reuse the venv (faster rerun)
#
# The CMake tree lives in build-pyproj/ (pyproject.toml), so a rerun only
# recompiles what changed; ccache is used when installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=build-py-venv

if [[ -z "${KEEP_VENV:-}" || ! -x "$VENV/bin/python" ]]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q pytest numpy onnx onnxruntime

# Two jobs by default: small shared build machines.
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
start=$(date +%s)
"$VENV/bin/python" -m pip install -v . 2>&1 | tee build-py-pip.log | grep -E "^\s*\[[ 0-9]+%\]|Successfully|error" || true
"$VENV/bin/python" -c "import kiln" || { echo "pip install . failed: see build-py-pip.log" >&2; exit 1; }
echo "pip install . took $(( $(date +%s) - start )) s"

# Run from tests/ so `import kiln` finds the installed package, not python/.
"$VENV/bin/python" -m pytest -q tests/python "$@"
