#!/usr/bin/env bash
# Hardening checks (CI runs them after the test suites): the unit and ONNX
# node tests again under ASan + UBSan (build-asan/, CPU backend), the
# concurrency tests under TSan (build-tsan/), and a short
# libFuzzer run of every reader, images included (scripts/fuzz.sh,
# FUZZ_SECONDS each, default 60; scripts/fuzz_long.sh for long runs).
# Installs clang and its fuzzer runtime where missing. Exits non-zero on any
# sanitizer report, test failure or fuzz crash.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== unit and node tests under ASan + UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_CUDA=OFF -DKILN_SANITIZE=ON >/dev/null
build() {  # quiet build; the log's tail on failure
  cmake --build "$1" -j"$(nproc)" --target "${@:2}" >"$1/build.log" 2>&1 || { tail -40 "$1/build.log"; exit 1; }
}
build build-asan kiln_tests kiln_node_tests kiln_example_plugin
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
KILN_SOURCE_DIR="$PWD" build-asan/tests/kiln_tests --gtest_brief=1
build-asan/tests/kiln_node_tests --data "$(.venv/bin/python -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/node"))')" | tail -3

echo "== concurrent contexts under ThreadSanitizer"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_CUDA=OFF -DKILN_TSAN=ON >/dev/null
build build-tsan kiln_tests
TSAN_OPTIONS=halt_on_error=1 KILN_SOURCE_DIR="$PWD" build-tsan/tests/kiln_tests --gtest_brief=1 \
  --gtest_filter='Concurrency.*:Engine.ContextsRunConcurrently'

echo "== libFuzzer, ${FUZZ_SECONDS:-60} s per reader"
# Every target by name, the image decoder of `kiln detect` included.
FUZZ_SECONDS="${FUZZ_SECONDS:-60}" scripts/fuzz.sh onnx_importer_fuzz plan_reader_fuzz npy_reader_fuzz image_decode_fuzz calib_cache_fuzz
