#!/usr/bin/env bash
# Long libFuzzer run of every fuzz target at once, from prebuilt binaries (no
# compiler needed on the machine that runs it). The cores (nproc, or --jobs)
# are split evenly between the targets; each target runs in libFuzzer's fork
# mode with that many worker processes, starts from fuzz/corpus/<target>/ and
# fuzz/regressions/<target>/, grows a fresh corpus under the work folder and
# keeps going after a crash so that one bug cannot hide another. Prints one
# table: target, workers, seconds, executions, crashes, leaks, timeouts, OOMs,
# corpus size. Exits 1 if any target found anything, 2 if one could not run.
#
#   scripts/fuzz_long.sh                          # 600 s, binaries from build-fuzz/fuzz
#   scripts/fuzz_long.sh 1800 --jobs 8
#   scripts/fuzz_long.sh --targets image_decode_fuzz,npy_reader_fuzz 300
#
# On another machine: build here (scripts/fuzz.sh, or make the *_fuzz targets
# in a clang fuzz build), pack the binaries with the shared libraries they
# need that are not part of a base system, and carry the archive along:
#   scripts/fuzz_long.sh --pack .carry/fuzzbin.tar.xz      # here
#   scripts/fuzz_long.sh --bin-dir .carry/fuzzbin.tar.xz 540   # there, from the repo root
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECS=600
BIN="$ROOT/build-fuzz/fuzz"
JOBS="$(nproc)"
WORK=""
ONLY=""
PACK=""
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) BIN="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --targets) ONLY="$2"; shift 2 ;;
    --pack) PACK="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    [0-9]*) SECS="$1"; shift ;;
    *) echo "fuzz_long.sh: unknown argument '$1'" >&2; usage 2 ;;
  esac
done

# --pack: the binaries without debug info (symbols stay for stack traces) and
# every library ldd resolves outside the C/C++ runtime, as one archive.
if [ -n "$PACK" ]; then
  stage="$(mktemp -d)"
  mkdir "$stage/fuzzbin"
  n=0
  for b in "$BIN"/*_fuzz; do
    [ -x "$b" ] || continue
    cp "$b" "$stage/fuzzbin/" && strip --strip-debug "$stage/fuzzbin/$(basename "$b")" && n=$((n + 1))
  done
  [ "$n" -gt 0 ] || { echo "fuzz_long.sh: no *_fuzz binaries in $BIN" >&2; rm -rf "$stage"; exit 2; }
  ldd "$stage"/fuzzbin/*_fuzz | awk '/=> \//{print $3}' | sort -u |
    grep -Ev '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so' |
    while read -r lib; do cp -L "$lib" "$stage/fuzzbin/"; done
  mkdir -p "$(dirname "$PACK")"
  XZ_OPT="${XZ_OPT:--T0}" tar -C "$stage" -cJf "$PACK" fuzzbin
  rm -rf "$stage"
  echo "packed $n fuzz targets and their libraries into $PACK ($(du -h "$PACK" | cut -f1))"
  exit 0
fi

[ -n "$WORK" ] || WORK="$ROOT/build-fuzz-long/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$WORK" || exit 2
WORK="$(cd "$WORK" && pwd)"
if [ -f "$BIN" ]; then  # an archive made by --pack
  tar -C "$WORK" -xJf "$BIN" || { echo "fuzz_long.sh: cannot unpack $BIN" >&2; exit 2; }
  BIN="$WORK/fuzzbin"
fi
[ -d "$BIN" ] || { echo "fuzz_long.sh: no binary folder $BIN (give --bin-dir)" >&2; exit 2; }
BIN="$(cd "$BIN" && pwd)"
export LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

targets=()
if [ -n "$ONLY" ]; then
  IFS=, read -r -a targets <<<"$ONLY"
else
  for b in "$BIN"/*_fuzz; do [ -x "$b" ] && targets+=("$(basename "$b")"); done
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz_long.sh: no *_fuzz binaries in $BIN" >&2; exit 2; }
for t in "${targets[@]}"; do
  [ -x "$BIN/$t" ] || { echo "fuzz_long.sh: $BIN/$t missing" >&2; exit 2; }
  missing="$(ldd "$BIN/$t" 2>/dev/null | awk '/not found/{print $1}' | tr '\n' ' ')"
  [ -z "$missing" ] || { echo "fuzz_long.sh: $t needs $missing(pack the binaries with --pack)" >&2; exit 2; }
done
# kiln's fuzz build enables AVX-512 for the whole library (see scripts/fuzz.sh).
grep -q avx512f /proc/cpuinfo || echo "fuzz_long.sh: warning: no AVX-512 on this CPU; targets linking kiln may die of SIGILL" >&2

# Inputs larger than these only slow the search down (same as scripts/fuzz.sh).
max_len() {
  case "$1" in
    onnx_importer_fuzz|plan_reader_fuzz) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

n=${#targets[@]}
per=$((JOBS / n)); [ "$per" -ge 1 ] || per=1
extra=$((JOBS - per * n)); [ "$extra" -ge 0 ] || extra=0
echo "== ${#targets[@]} targets, $JOBS processes, ${SECS}s; work folder $WORK"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
declare -A workers pid
i=0
for t in "${targets[@]}"; do
  w=$per; [ $i -lt $extra ] && w=$((w + 1))
  workers[$t]=$w
  mkdir -p "$WORK/$t/corpus" "$WORK/$t/artifacts"
  dirs=("$WORK/$t/corpus")  # new inputs go to the first folder
  for d in "$ROOT/fuzz/corpus/$t" "$ROOT/fuzz/regressions/$t"; do [ -d "$d" ] && dirs+=("$d"); done
  # Fork mode stops its workers once the time is up; the outer timeout only
  # guards against a wrap-up that hangs.
  (cd "$WORK/$t" && exec timeout --kill-after=30 $((SECS + 90)) "$BIN/$t" "${dirs[@]}" \
    -fork="$w" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -max_total_time="$SECS" \
    -max_len="$(max_len "$t")" -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$WORK/$t/artifacts/" \
    >"$WORK/$t/fuzz.log" 2>&1) &
  pid[$t]=$!
  i=$((i + 1))
done
for t in "${targets[@]}"; do wait "${pid[$t]}"; done

count() { find "$WORK/$1/artifacts" -maxdepth 1 -name "$2-*" | wc -l; }
status=0
printf '\n%-22s %7s %7s %12s %7s %6s %8s %5s %8s\n' target workers seconds executions crashes leaks timeouts ooms corpus
for t in "${targets[@]}"; do
  log="$WORK/$t/fuzz.log"
  # Fork mode's progress line: "#<runs>: cov: .. ft: .. corp: <n> exec/s .. oom/timeout/crash: a/b/c time: <s>s ..."
  last="$(grep -E '^#[0-9]+: cov:' "$log" | tail -1)"
  runs="$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")"
  secs="$(sed -nE 's/.* time: ([0-9]+)s.*/\1/p' <<<"$last")"
  corp="$(sed -nE 's/.* corp: ([0-9]+) .*/\1/p' <<<"$last")"
  c=$(count "$t" crash) l=$(count "$t" leak) to=$(count "$t" timeout) o=$(count "$t" oom)
  printf '%-22s %7s %7s %12s %7s %6s %8s %5s %8s\n' "$t" "${workers[$t]}" "${secs:--}" "${runs:--}" "$c" "$l" "$to" "$o" \
    "${corp:--}"
  if [ -z "$last" ]; then
    echo "   $t did not run: see $log" >&2
    tail -5 "$log" >&2
    [ $status -eq 0 ] && status=2
  elif [ $((c + l + to + o)) -gt 0 ]; then
    echo "   $t: inputs in $WORK/$t/artifacts/; first reports:" >&2
    grep -E 'ERROR: |runtime error:' "$log" | sort | uniq -c | sort -rn | head -5 >&2
    status=1
  fi
done
echo "corpora, artifacts and logs: $WORK"
exit $status
