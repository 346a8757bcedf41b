#!/usr/bin/env bash
# Runs, on a GPU machine, what tools/device/pack.sh packed: every GPU test
# (a missing GPU fails rather than skips) and every benchmark, then any
# comparison scripts named with --python. Logs go to $OUT (or ./device-out).
#
#   tools/device/run.sh [--tests-only|--benches-only] [--filter=REGEX] [--sanitize]
#                       [--python=kernels/bench/bench_gemm_torch.py ...]
#
# --sanitize runs each test under compute-sanitizer's memcheck (out-of-bounds
# and misaligned accesses, leaks of device memory).
#
# Prints "N passed, N failed" for the tests last; exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

out="${OUT:-$PWD/device-out}"
mkdir -p "${out}"
run_tests=1 run_benches=1 filter='.' python_scripts=() wrapper=()
for arg in "$@"; do
  case "${arg}" in
    --tests-only) run_benches=0 ;;
    --benches-only) run_tests=0 ;;
    --filter=*) filter="${arg#*=}" ;;
    --python=*) python_scripts+=("${arg#*=}") ;;
    --sanitize) wrapper=(compute-sanitizer --tool memcheck --error-exitcode 1 --leak-check full) ;;
    *) echo "run.sh: unknown argument ${arg}" >&2; exit 2 ;;
  esac
done

pkg="$(mktemp -d -t maximus-device.XXXXXX)"
tar -C "${pkg}" -xf "${MAXIMUS_DEVICE_ARCHIVE:-.device/maximus-device.tar.gz}"
export MAXIMUS_REQUIRE_GPU=1

{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu \
    --format=csv 2>&1
  nproc
} > "${out}/machine.txt"
cat "${out}/machine.txt"

passed=0 failed=0
if ((run_tests)); then
  while read -r kind binary; do
    [[ "${kind}" == test && "${binary}" =~ ${filter} ]] || continue
    echo "== ${binary}" | tee -a "${out}/tests.log"
    if "${wrapper[@]}" "${pkg}/${binary}" --gtest_color=no >> "${out}/tests.log" 2>&1; then
      passed=$((passed + 1)); echo "PASSED ${binary}"
    else
      failed=$((failed + 1)); echo "FAILED ${binary}"
      tail -n 30 "${out}/tests.log"
    fi
  done < "${pkg}/manifest.txt"
fi

if ((run_benches)); then
  while read -r kind binary; do
    [[ "${kind}" == bench && "${binary}" =~ ${filter} ]] || continue
    echo "== ${binary}" | tee -a "${out}/benches.log"
    "${pkg}/${binary}" 2>&1 | tee -a "${out}/benches.log" || failed=$((failed + 1))
  done < "${pkg}/manifest.txt"
  for script in "${python_scripts[@]}"; do
    echo "== ${script}" | tee -a "${out}/benches.log"
    PYTHONUNBUFFERED=1 python3 "${script}" 2>&1 | tee -a "${out}/benches.log" || failed=$((failed + 1))
  done
fi

rm -rf "${pkg}"
echo "device: ${passed} passed, ${failed} failed"
((failed == 0))
