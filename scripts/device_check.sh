#!/usr/bin/env bash
# The GPU test suites in one command, for a GPU machine holding a bundle from
# scripts/device_bundle.sh. Each step has a time limit and writes its full
# log to OUTDIR (default ./device-check); a summary line per step goes to
# stdout. Steps (all by default, or those named):
#   unit       kiln_tests (GPU tests run; nothing skipped for want of a GPU)
#   e2e        tests/e2e GPU suites: layers, NMS vs onnxruntime and torchvision
#   models     tests/e2e/test_gpu_vs_cpu.py (whole torchvision models, slow)
#   memcheck   compute-sanitizer memcheck over the CUDA unit tests
#   racecheck  compute-sanitizer racecheck over kiln's own kernels (library
#              GEMM kernels are left out: racecheck reports their
#              asynchronous-barrier handoffs as hazards)
#   usage: scripts/device_check.sh [OUTDIR] [step ...]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-device-check}
shift || true
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(unit e2e models memcheck racecheck)
mkdir -p "$out"
source scripts/device_env.sh
tests=.carry/dist/kiln_tests
own='CudaElementwise*:CudaPool*:CudaReduce*:CudaArg*:CudaSoftmax*:CudaResize*:CudaTensor*:EfficientNmsCuda*:OnnxNmsCuda*'
status=0
step() {  # name, seconds, command...
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  [ $rc -ne 0 ] && status=1
  local summary
  summary=$(grep -E "PASSED|FAILED|passed|failed|ERROR SUMMARY|RACECHECK SUMMARY" "$out/$name.txt" | tail -n 3 | tr '\n' ' ')
  printf '%-10s rc=%-3s %4ss  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$summary"
}
for s in "${steps[@]}"; do
  case $s in
    unit) step unit 300 "$tests" --gtest_brief=1 ;;
    e2e) step e2e 300 python3 -m pytest -q tests/e2e/test_gpu_layers.py tests/e2e/test_nms_vs_onnxruntime.py \
           tests/e2e/test_nms_vs_torchvision.py ;;
    models) step models 600 python3 -m pytest -q tests/e2e/test_gpu_vs_cpu.py ;;
    memcheck) step memcheck 400 compute-sanitizer --tool memcheck --error-exitcode 9 "$tests" --gtest_brief=1 \
                --gtest_filter='Cuda*:EfficientNmsCuda*:OnnxNmsCuda*:AssignFormats*' ;;
    racecheck) step racecheck 400 compute-sanitizer --tool racecheck --error-exitcode 9 "$tests" --gtest_brief=1 \
                 --gtest_filter="$own" ;;
    *) echo "unknown step '$s'" >&2; exit 2 ;;
  esac
done
exit $status
