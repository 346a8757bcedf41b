#!/usr/bin/env bash
# Starts N ranks of a program on this machine, as `torchrun --nproc_per_node=N`
# does:
#
#   tools/launch.sh N PROGRAM [ARGS...]
#
# Rank i runs PROGRAM ARGS with RANK=i, LOCAL_RANK=i, WORLD_SIZE=N,
# LOCAL_WORLD_SIZE=N, MASTER_ADDR (from the environment, else 127.0.0.1) and
# MASTER_PORT (from the environment, else a free port found with python3, or
# 29500 without it). CUDA_VISIBLE_DEVICES is left as it is: each rank picks
# its device from LOCAL_RANK. The ranks' stdin is /dev/null; every line they
# print on stdout or stderr is prefixed with "[rank i] " on the same stream.
#
# When a rank exits with a non-zero status, the others get SIGTERM (their
# whole process groups), SIGKILL 10 s later if still running, and the script
# exits with that rank's status (128 + signal for a rank killed by a signal).
# SIGINT and SIGTERM sent to the script are forwarded to every rank, which may
# take their time to stop (a trainer saves a checkpoint); the script then
# exits with 128 + the signal's number. Otherwise it exits 0 once every rank
# has.
#
# Several machines: there is no --nnodes. On each machine run the program
# once per local device with RANK (global), WORLD_SIZE (all machines'
# ranks), LOCAL_RANK, LOCAL_WORLD_SIZE set by hand, and MASTER_ADDR and
# MASTER_PORT pointing at the host and port where rank 0 runs.
#
# Needs bash 5 or later.
set -uo pipefail

readonly KILL_AFTER_S=10

usage() {
  echo "usage: $0 N PROGRAM [ARGS...]  (N: number of ranks, 1 or more)" >&2
  exit 2
}
say() { echo "launch: $*" >&2; }

if ((BASH_VERSINFO[0] < 5)); then
  say "needs bash 5 or later, not ${BASH_VERSION}"
  exit 2
fi
(($# >= 2)) || usage
[[ "$1" =~ ^[1-9][0-9]*$ ]] || usage
readonly nproc="$1"
shift

# A port that is free now; rank 0 binds it moments later.
free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("", 0))
print(s.getsockname()[1])' 2>/dev/null || echo 29500
}
master_addr="${MASTER_ADDR:-127.0.0.1}"
master_port="${MASTER_PORT:-$(free_port)}"

# Copies stdin to stdout with "[rank $1] " before each line, at once. It
# ignores SIGINT and SIGTERM (Ctrl-C reaches this script's process group, and
# so the prefixers) so that ranks still stopping can print.
prefix() {
  trap '' INT TERM
  exec sed -u "s/^/[rank $1] /"
}

declare -a pids=()     # By rank.
declare -A rank_of=()  # By PID.
declare -A running=()  # PIDs of the ranks still running.
declare -a prefixers=()

# Set before the first rank starts: a signal during the start reaches the
# ranks started, and no more start.
signal=""
# shellcheck disable=SC2317  # Called by the traps below.
forward() {
  signal="$1"
  say "got SIG${signal}; forwarding it to the ranks"
  for pid in "${!running[@]}"; do kill -s "${signal}" -- "-${pid}" 2>/dev/null; done
}
trap 'forward INT' INT
trap 'forward TERM' TERM

# Job control while the ranks start: each runs in its own process group,
# which kill can reach as a whole (the rank's children too) and Ctrl-C at a
# terminal does not, so the ranks get a signal once, from forward(). Off
# again afterwards: with it, bash would run each poll's `sleep` in a process
# group of its own, in the terminal's foreground, where Ctrl-C would reach
# the `sleep` instead of this script.
set -m
for ((i = 0; i < nproc && ${#signal} == 0; i++)); do
  exec {out}> >(prefix "${i}")
  prefixers+=($!)
  exec {err}> >(prefix "${i}" >&2)
  prefixers+=($!)
  RANK="${i}" LOCAL_RANK="${i}" WORLD_SIZE="${nproc}" LOCAL_WORLD_SIZE="${nproc}" \
    MASTER_ADDR="${master_addr}" MASTER_PORT="${master_port}" \
    "$@" </dev/null >&"${out}" 2>&"${err}" {out}>&- {err}>&- &
  pids[i]=$!
  rank_of[$!]="${i}"
  running[$!]=1
  # The rank has them now; the prefixers end when it (and its children) do.
  exec {out}>&- {err}>&-
done
set +m

# Sets `exited` to the PIDs of the ranks that have exited since the last
# call, in rank order, and `status_of` to their statuses. Polled: `wait -n`
# misses jobs that bash reaped while it ran something else, whose statuses
# `wait PID` still has.
declare -a exited=()
declare -A status_of=()
reap() {
  exited=()
  local pid
  for pid in "${pids[@]}"; do
    [[ -n "${running[${pid}]+x}" ]] || continue
    kill -0 "${pid}" 2>/dev/null && continue
    # 2>/dev/null: bash's own report of a rank killed by a signal, which
    # quotes the launch line; the failure message below says it better.
    wait "${pid}" 2>/dev/null
    status_of[${pid}]=$?
    unset "running[${pid}]"
    exited+=("${pid}")
  done
}

# SIGTERM to every rank's process group, SIGKILL after KILL_AFTER_S;
# returns once every rank has exited.
stop_ranks() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM -- "-${pid}" 2>/dev/null; done
  local kill_at=$((${EPOCHREALTIME/[.,]/} + KILL_AFTER_S * 1000000))  # Microseconds.
  while ((${#running[@]} > 0)); do
    if ((${EPOCHREALTIME/[.,]/} >= kill_at)); then
      local left=()
      for pid in "${!running[@]}"; do left+=("${rank_of[${pid}]}"); done
      say "rank(s) ${left[*]} still running ${KILL_AFTER_S} s after SIGTERM; sending SIGKILL"
      for pid in "${pids[@]}"; do kill -KILL -- "-${pid}" 2>/dev/null; done
      kill_at=$((kill_at + 3600 * 1000000))
    fi
    { sleep 0.1; } 2>/dev/null  # Quiet: see reap().
    reap
  done
}

status=0
while ((${#running[@]} > 0)); do
  { sleep 0.1; } 2>/dev/null  # Quiet: see reap().
  reap
  # After a forwarded signal, ranks stop as they see fit.
  [[ -z "${signal}" ]] || continue
  for pid in "${exited[@]}"; do
    status="${status_of[${pid}]}"
    ((status == 0)) && continue
    failure="rank ${rank_of[${pid}]} (pid ${pid}) exited with status ${status}"
    if ((status > 128)) && name="$(kill -l "${status}" 2>/dev/null)"; then
      failure+=" (killed by SIG${name})"
    fi
    if ((${#running[@]} > 0)); then
      say "${failure}; stopping the other ranks"
      stop_ranks
    else
      say "${failure}"
    fi
    break 2
  done
done

# Every line the ranks printed, out before this script ends.
wait "${prefixers[@]}" 2>/dev/null
if [[ -n "${signal}" ]]; then
  exit $((128 + $(kill -l "${signal}")))
fi
exit "${status}"
