#!/usr/bin/env bash
# The main demo: set up (scripts/setup.sh), build an SSD engine with and
# without graph passes, run it next to onnxruntime, print the before/after table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export KILN_BIN="$PWD/build/kiln"
.venv/bin/python bench/demo.py "$@"
