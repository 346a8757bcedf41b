#!/usr/bin/env bash
# tools/launch.sh with tiny bash programs as ranks: the variables each rank
# sees, the "[rank i] " prefixes, a failing rank stopping the others (a
# sibling that ignores SIGTERM by SIGKILL), SIGTERM forwarded, usage errors.
# shellcheck disable=SC2016  # The ranks' programs expand their own variables.
set -euo pipefail
launch="$1"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "launch_test: $*" >&2; exit 1; }
now_ms() { echo $((${EPOCHREALTIME/[.,]/} / 1000)); }
# Whether process $1 runs (a zombie does not: it may wait long for a reaper).
runs() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ "${stat##*) }" != Z* ]]
}

# The variables of 3 ranks, on stdout and stderr, with their prefixes.
unset MASTER_ADDR MASTER_PORT CUDA_VISIBLE_DEVICES
"${launch}" 3 bash -c 'echo "RANK=$RANK LOCAL_RANK=$LOCAL_RANK WORLD_SIZE=$WORLD_SIZE" \
    "LOCAL_WORLD_SIZE=$LOCAL_WORLD_SIZE MASTER_ADDR=$MASTER_ADDR MASTER_PORT=$MASTER_PORT" \
    "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"
  echo "stderr of $RANK" >&2' >"${tmp}/out" 2>"${tmp}/err" || fail "exited $?: $(cat "${tmp}/err")"
[[ "$(wc -l <"${tmp}/out")" == 3 ]] || fail "not 3 lines: $(cat "${tmp}/out")"
port="$(sed -n 's/.*MASTER_PORT=\([0-9]*\) .*/\1/p' "${tmp}/out" | sort -u)"
if ! [[ "${port}" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
  fail "not one port for all ranks: ${port}"
fi
for rank in 0 1 2; do
  expected="[rank ${rank}] RANK=${rank} LOCAL_RANK=${rank} WORLD_SIZE=3 LOCAL_WORLD_SIZE=3"
  expected+=" MASTER_ADDR=127.0.0.1 MASTER_PORT=${port} CUDA_VISIBLE_DEVICES=unset"
  grep -qxF "${expected}" "${tmp}/out" || fail "no line \"${expected}\" in: $(cat "${tmp}/out")"
  grep -qxF "[rank ${rank}] stderr of ${rank}" "${tmp}/err" ||
    fail "no stderr line of rank ${rank} in: $(cat "${tmp}/err")"
done

# MASTER_ADDR and MASTER_PORT from the environment; arguments as given.
MASTER_ADDR=10.1.2.3 MASTER_PORT=1234 "${launch}" 2 bash -c \
  'echo "$MASTER_ADDR:$MASTER_PORT"; printf "<%s>" "$@"; echo' prog "a b" "" c >"${tmp}/out" ||
  fail "exited $?"
[[ "$(grep -c '^\[rank [01]\] 10.1.2.3:1234$' "${tmp}/out")" == 2 ]] ||
  fail "MASTER_ADDR/MASTER_PORT not passed: $(cat "${tmp}/out")"
[[ "$(grep -c '^\[rank [01]\] <a b><><c>$' "${tmp}/out")" == 2 ]] ||
  fail "arguments changed: $(cat "${tmp}/out")"

# Rank 1 fails: the script exits with its status at once, its sleeping
# siblings (and their children) killed.
start="$(now_ms)"
rc=0
"${launch}" 3 bash -c 'echo $$ >"$0/pid.$RANK"
  if [[ $RANK == 1 ]]; then sleep 0.3; exit 7; fi
  sleep 60 & echo $! >"$0/child.$RANK"; wait' "${tmp}" >"${tmp}/out" 2>"${tmp}/err" || rc=$?
took=$(($(now_ms) - start))
[[ "${rc}" == 7 ]] || fail "exit status ${rc}, not rank 1's 7: $(cat "${tmp}/err")"
((took < 5000)) || fail "took ${took} ms to stop the other ranks"
grep -q "rank 1 (pid [0-9]*) exited with status 7" "${tmp}/err" ||
  fail "the failing rank is not named: $(cat "${tmp}/err")"
for rank in 0 2; do
  for file in pid child; do
    pid="$(cat "${tmp}/${file}.${rank}")"
    for _ in $(seq 20); do runs "${pid}" || break; sleep 0.1; done
    ! runs "${pid}" || fail "rank ${rank}'s ${file} ${pid} still runs"
  done
done

# A sibling that ignores SIGTERM gets SIGKILL 10 s later.
start="$(now_ms)"
rc=0
"${launch}" 2 bash -c 'trap "" TERM
  if [[ $RANK == 1 ]]; then sleep 0.3; exit 3; fi
  sleep 60' >"${tmp}/out" 2>"${tmp}/err" || rc=$?
took=$(($(now_ms) - start))
[[ "${rc}" == 3 ]] || fail "exit status ${rc}, not 3: $(cat "${tmp}/err")"
((took >= 9000 && took < 15000)) || fail "took ${took} ms to kill a rank ignoring SIGTERM"
grep -q "rank(s) 0 still running 10 s after SIGTERM; sending SIGKILL" "${tmp}/err" ||
  fail "no SIGKILL message: $(cat "${tmp}/err")"

# A rank killed by a signal: 128 + its number, and named.
rc=0
"${launch}" 1 bash -c 'kill -SEGV $$' 2>"${tmp}/err" || rc=$?
[[ "${rc}" == 139 ]] || fail "exit status ${rc}, not 139"
grep -q "status 139 (killed by SIGSEGV)" "${tmp}/err" || fail "signal not named: $(cat "${tmp}/err")"

# SIGTERM to the script reaches every rank, which stops in its own time.
"${launch}" 2 bash -c 'trap "sleep 0.5; echo stopped; exit 0" TERM; echo ready
  while :; do sleep 0.05; done' >"${tmp}/out" 2>"${tmp}/err" &
launcher=$!
for _ in $(seq 100); do
  [[ "$(grep -c ready "${tmp}/out")" == 2 ]] && break
  sleep 0.1
done
kill -TERM "${launcher}"
rc=0
wait "${launcher}" || rc=$?
[[ "${rc}" == 143 ]] || fail "exit status ${rc} after SIGTERM, not 143: $(cat "${tmp}/err")"
[[ "$(grep -c '^\[rank [01]\] stopped$' "${tmp}/out")" == 2 ]] ||
  fail "SIGTERM not forwarded to both ranks: $(cat "${tmp}/out")"

# Usage errors.
for args in "" "3" "0 true" "x true" "-1 true"; do
  rc=0
  # shellcheck disable=SC2086  # Split on purpose.
  "${launch}" ${args} 2>/dev/null || rc=$?
  [[ "${rc}" == 2 ]] || fail "\"launch.sh ${args}\" exited ${rc}, not 2"
done

echo "launch_test: OK"
