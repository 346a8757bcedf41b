#!/usr/bin/env bash
# Data-parallel training as users run it: trainer/main processes on the CPU
# backend, Gloo over loopback, the real Gemma 3 tokenizer and sample text.
#   A. 2 ranks through tools/launch.sh, 8 steps: the reference.
#   B. the same run started rank by rank (as on several machines), rank 1
#      killed with SIGKILL after the step-2 checkpoint: rank 0 fails within
#      seconds naming the broken collective (no hang); the run resumed from
#      its checkpoint by tools/launch.sh has A's losses exactly.
#   C. resumed from the same checkpoint by one rank accumulating both ranks'
#      micro-batches: A's losses within fp32 rounding.
#   D. ZeRO-1 (--shard_optimizer_state): A's losses exactly.
#   E. rank 1 stopped (SIGSTOP) mid-run: rank 0 gives up after
#      --collective_timeout instead of waiting forever.
set -euo pipefail
main=$1 launch=$2 tokenizer_json=$3 corpus=$4
work="${TEST_TMPDIR}/dp"
rm -rf "${work}"
mkdir -p "${work}"
fail() { echo "data_parallel_test: $*" >&2; exit 1; }
log() { echo "data_parallel_test: $*" >&2; }

echo '{"preset": "tiny", "layers": 2, "hidden": 128, "mlp_hidden": 256, "heads": 2}' \
  > "${work}/model.json"
STEPS=8
FLAGS=(--backend=cpu --preset="${work}/model.json" --steps="${STEPS}" --batch=2 --seq_len=64
  --warmup=2 --log_interval=1 --eval_interval=4 --eval_batches=2 --checkpoint_interval=2
  --keep_checkpoints=10 --sample_prompt= --tokenizer="${tokenizer_json}"
  --data="${work}/store" --ingest="${corpus}" --collective_timeout=60s)

# The training losses of a run directory: "step loss" lines.
losses() { awk -F, '$3 == "train/loss" { print $1, $4 }' "$1/metrics.csv"; }

# A. The reference, through tools/launch.sh.
timeout 600 "${launch}" 2 "${main}" "${FLAGS[@]}" --out_dir="${work}/a" > "${work}/a.log" 2>&1 ||
  { cat "${work}/a.log" >&2; fail "A: the 2-rank run failed"; }
grep -q '\[rank 1\]' "${work}/a.log" || fail "A: no prefixed output of rank 1"
grep -q 'data parallel: rank 0 of 2' "${work}/a.log" || fail "A: rank 0 did not report its group"
[[ "$(losses "${work}/a" | wc -l)" == "${STEPS}" ]] || fail "A: $(losses "${work}/a" | wc -l) steps"
log "A: 2 ranks trained ${STEPS} steps (last loss $(losses "${work}/a" | tail -n1 | cut -d' ' -f2))"

# B. Two ranks started by hand; rank 1 killed after the step-2 checkpoint.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# start_rank RANK NAME [FLAGS...]: rank RANK of 2 with run directory NAME.
start_rank() {
  local rank=$1 name=$2; shift 2
  RANK=${rank} WORLD_SIZE=2 LOCAL_RANK=${rank} MASTER_ADDR=127.0.0.1 MASTER_PORT=${port} \
    "${main}" "${FLAGS[@]}" --out_dir="${work}/${name}" "$@" > "${work}/${name}${rank}.log" 2>&1 &
}
# wait_checkpoint NAME PID: until NAME's step-2 checkpoint exists.
wait_checkpoint() {
  for _ in $(seq 1 3000); do
    [[ -d "${work}/$1/checkpoints/step-00000002" ]] && return 0
    kill -0 "$2" 2>/dev/null || { cat "${work}/${1}0.log" >&2; fail "$1: rank 0 ended early"; }
    sleep 0.1
  done
  fail "$1: no step-2 checkpoint in 300 s"
}
start_rank 0 b; pid0=$!
start_rank 1 b; pid1=$!
wait_checkpoint b "${pid0}"
kill -9 "${pid1}"
killed_at=$(date +%s)
status=0
wait "${pid0}" || status=$?
took=$(( $(date +%s) - killed_at ))
[[ "${status}" != 0 ]] || fail "B: rank 0 exited 0 after its peer was killed"
(( took < 60 )) || fail "B: rank 0 took ${took} s to notice"
grep -q -i 'gloo' "${work}/b0.log" || { cat "${work}/b0.log" >&2; fail "B: rank 0's error does not name the collective"; }
log "B: rank 1 killed; rank 0 failed after ${took} s: $(grep -i gloo "${work}/b0.log" | tail -n1)"
latest=$(cat "${work}/b/checkpoints/latest")
log "B: resuming from ${latest}"
timeout 600 "${launch}" 2 "${main}" "${FLAGS[@]}" --out_dir="${work}/b" --resume="${work}/b" \
  > "${work}/b_resumed.log" 2>&1 ||
  { cat "${work}/b_resumed.log" >&2; fail "B: the resumed run failed"; }
diff <(losses "${work}/a") <(losses "${work}/b") >&2 ||
  fail "B: the killed and resumed run's losses differ from A's (left: A)"
log "B: resumed run has A's losses at every step"

# C. One rank, accumulation 2, from B's step-2 checkpoint.
mkdir -p "${work}/c/checkpoints"
cp -r "${work}/b/checkpoints/step-00000002" "${work}/c/checkpoints/"
echo step-00000002 > "${work}/c/checkpoints/latest"
timeout 600 "${main}" "${FLAGS[@]}" --accumulation=2 --out_dir="${work}/c" --resume="${work}/c" \
  > "${work}/c.log" 2>&1 || { cat "${work}/c.log" >&2; fail "C: the 1-rank resume failed"; }
python3 - "${work}/a/metrics.csv" "${work}/c/metrics.csv" <<'PY' || fail "C: losses differ"
import csv, sys
def losses(path):
    return {int(r[0]): float(r[3]) for r in csv.reader(open(path)) if len(r) == 4 and r[2] == "train/loss"}
a, c = losses(sys.argv[1]), losses(sys.argv[2])
steps = sorted(s for s in c if s > 2)
assert steps == list(range(3, 9)), steps
worst = max(abs(a[s] - c[s]) / abs(a[s]) for s in steps)
assert worst < 1e-4, f"relative difference {worst}"
print(f"data_parallel_test: C: 1 rank x accumulation 2 resumed at step 3; largest relative loss difference from A {worst:.2e}", file=sys.stderr)
PY

# D. ZeRO-1.
timeout 600 "${launch}" 2 "${main}" "${FLAGS[@]}" --shard_optimizer_state --out_dir="${work}/d" \
  > "${work}/d.log" 2>&1 || { cat "${work}/d.log" >&2; fail "D: the sharded run failed"; }
diff <(losses "${work}/a") <(losses "${work}/d") >&2 || fail "D: ZeRO-1 changed the losses"
log "D: optimizer state sharded over 2 ranks: A's losses at every step"

# E. Rank 1 stopped, not dead: its connections stay open, so only the
# timeout can end rank 0's wait.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_rank 0 e --collective_timeout=15s; pid0=$!
start_rank 1 e --collective_timeout=15s; pid1=$!
wait_checkpoint e "${pid0}"
kill -STOP "${pid1}"
stopped_at=$(date +%s)
status=0
wait "${pid0}" || status=$?
took=$(( $(date +%s) - stopped_at ))
kill -9 "${pid1}" 2>/dev/null || true
wait "${pid1}" 2>/dev/null || true
[[ "${status}" != 0 ]] || fail "E: rank 0 exited 0 with its peer stopped"
(( took < 60 )) || fail "E: rank 0 took ${took} s with a 15 s timeout"
grep -q 'DEADLINE_EXCEEDED' "${work}/e0.log" || { cat "${work}/e0.log" >&2; fail "E: no DEADLINE_EXCEEDED"; }
log "E: rank 1 stopped; rank 0 gave up after ${took} s: $(grep DEADLINE_EXCEEDED "${work}/e0.log" | tail -n1)"
log "PASS"
