#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs every test suite: C++ unit tests, the
# ONNX backend node tests, and the end-to-end tests (CLI, whole models vs
# onnxruntime). GPU tests are built but skipped where no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export KILN_BIN="$PWD/build/kiln"
export KILN_ONNX_NODE_DATA="$(.venv/bin/python -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/node"))')"

echo "== unit tests"
build/tests/kiln_tests --gtest_brief=1
echo "== ONNX backend node tests"
build/tests/kiln_node_tests --data "$KILN_ONNX_NODE_DATA"
echo "== end-to-end tests"
.venv/bin/python -m pytest -q tests/e2e

# CI also runs the sanitizer builds and a short fuzz run (scripts/hardening.sh);
# set KILN_HARDENING=1 to run them locally.
if [ "${CI:-}" = "true" ] || [ "${KILN_HARDENING:-}" = "1" ]; then
  scripts/hardening.sh
fi
