#!/usr/bin/env bash
# Builds kiln's libFuzzer targets with clang + ASan + UBSan in build-fuzz/ and
# runs each for FUZZ_SECONDS (default 60). Crash inputs land in
# build-fuzz/crashes/<target>/; exits non-zero if any target found one.
#   FUZZ_SECONDS=120 scripts/fuzz.sh            # all targets
#   scripts/fuzz.sh npy_reader_fuzz              # only the named ones
#   FUZZ_KEEP_GOING=1 scripts/fuzz.sh            # collect every crash, not just the first
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
JOBS="${FUZZ_JOBS:-2}"
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(onnx_importer_fuzz plan_reader_fuzz npy_reader_fuzz image_decode_fuzz calib_cache_fuzz)

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }

SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# clang ignores `#pragma GCC target` (src/backends/cpu/eltwise_util.h), so the
# AVX-512 helpers only compile with AVX-512 enabled for the whole build; the
# fuzz binaries therefore need an AVX-512 machine.
SAN="$SAN -mavx512f -mavx512vl -mavx512bw -mavx512dq"
cmake -S "$ROOT" -B "$BUILD" -DKILN_CUDA=OFF -DKILN_FUZZ=ON -DKILN_BUILD_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_C_FLAGS="$SAN" >/dev/null || exit 2
make -C "$BUILD" -j"$JOBS" "${TARGETS[@]}" make_plan_seed >/dev/null || { echo "fuzz.sh: build failed" >&2; exit 2; }

# Inputs larger than these only slow the search down: the readers' checks are
# all in the first few KB (headers, shapes, small graphs).
max_len() {
  case "$1" in
    onnx_importer_fuzz) echo 16384 ;;
    plan_reader_fuzz) echo 16384 ;;
    npy_reader_fuzz) echo 4096 ;;
    *) echo 4096 ;;
  esac
}

# Stop at the first crash by default; keep-going mode forks a worker per run
# and records each crash, so one known bug cannot hide the others.
EXTRA=()
[ "${FUZZ_KEEP_GOING:-0}" = 1 ] && EXTRA=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

status=0
for t in "${TARGETS[@]}"; do
  corpus="$BUILD/corpus/$t"      # grows while fuzzing; the seeds stay untouched
  crashes="$BUILD/crashes/$t"
  mkdir -p "$corpus" "$crashes"
  before=$(ls "$crashes" | wc -l)
  echo "== $t: ${SECONDS_PER_TARGET}s"
  dirs=("$corpus")  # new inputs go to the first folder
  for d in "$ROOT/fuzz/corpus/$t" "$ROOT/fuzz/regressions/$t"; do [ -d "$d" ] && dirs+=("$d"); done
  "$BUILD/fuzz/$t" "${dirs[@]}" \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$t")" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$crashes/" -print_final_stats=1 "${EXTRA[@]}" 2>"$BUILD/$t.log"
  rc=$?
  # Final stats (fork mode prints its own progress lines instead).
  grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)" "$BUILD/$t.log" ||
    grep -E "^#[0-9]+: cov:" "$BUILD/$t.log" | tail -1
  if [ $rc -ne 0 ] || [ "$(ls "$crashes" | wc -l)" -ne "$before" ]; then
    echo "$t: crash found (exit $rc), see $BUILD/$t.log and $crashes/" >&2
    grep -m1 -E "ERROR: |runtime error:|==ERROR" "$BUILD/$t.log" >&2
    status=1
  fi
done
exit $status
