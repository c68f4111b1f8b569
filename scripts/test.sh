#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs every test suite: C++ unit tests, the
# ONNX backend node tests, and the end-to-end tests (CLI, whole models vs
# onnxruntime). GPU tests are built but skipped where no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The build report's page is checked in headless Chromium (tests/e2e/test_report.py).
if ! dpkg -s chromium chromium-driver >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "selenium>=4.20"
export KILN_BIN="$PWD/build/kiln"
export KILN_PYTHON="$PWD/.venv/bin/python"  # numpy for the reference checks in the unit tests
export KILN_ONNX_NODE_DATA="$(.venv/bin/python -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/node"))')"

echo "== unit tests"
build/tests/kiln_tests --gtest_brief=1
echo "== ONNX backend node tests"
build/tests/kiln_node_tests --data "$KILN_ONNX_NODE_DATA"
echo "== end-to-end tests"
.venv/bin/python -m pytest -q tests/e2e
echo "== Python bindings (pip install . in a fresh venv)"
KILN_CUDA=OFF scripts/python_test.sh

# CI also runs the sanitizer builds and a short fuzz run (scripts/hardening.sh);
# set KILN_HARDENING=1 to run them locally.
if [ "${CI:-}" = "true" ] || [ "${KILN_HARDENING:-}" = "1" ]; then
  scripts/hardening.sh
fi
