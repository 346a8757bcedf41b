#!/usr/bin/env bash
# On a GPU machine: data-parallel training on the CUDA backend, from the
# packed //trainer:main and tools/launch.sh.
#   1. 2 ranks x batch B against 1 rank x batch 2B (exact CE), and 2 MAXIS
#      ranks against 1 rank accumulating both ranks' micro-batches: the
#      largest relative loss difference per step.
#   2. The same 2-rank MAXIS run with ZeRO-1 and with a dense embedding
#      reduction: the same losses bit for bit.
#   3. With one GPU, the ranks share it through --communicator=gloo (host
#      staging); with two or more, each takes its own and NCCL runs too.
#
#   tools/device/data_parallel_check.sh [--preset=270m] [--steps=20]
#
# Needs .device/maximus-device.tar.gz (or $MAXIMUS_DEVICE_ARCHIVE) with
# bin/trainer/main, and .device/gemma3_tokenizer.json.gz. Writes under $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
preset=270m steps=20
for arg in "$@"; do
  case "${arg}" in
    --preset=*) preset="${arg#*=}" ;;
    --steps=*) steps="${arg#*=}" ;;
    *) echo "data_parallel_check.sh: unknown argument ${arg}" >&2; exit 2 ;;
  esac
done
source tools/device/unpack.sh dp
main="${pkg}/bin/trainer/main"
gpus=$(nvidia-smi -L | wc -l)
if ((gpus >= 2)); then
  communicators=(nccl gloo) device=()
else
  communicators=(gloo) device=(--device=0)
fi
echo "== ${gpus} GPU(s): communicators ${communicators[*]}"
common=(--backend=cuda --preset="${preset}" --steps="${steps}" --seq_len=1024 --warmup=5
  --tokenizer="${pkg}/tokenizer.json" --data="${pkg}/store" --ingest="${PWD}/data/austen"
  --eval_interval="${steps}" --eval_batches=2 --log_interval="${steps}" --checkpoint_interval=0
  --sample_prompt= "${device[@]}")
# Fills the store once.
"${main}" "${common[@]}" --steps=1 --eval_interval=0 --out_dir="${pkg}/warm" > "${out}/warm.log" 2>&1 ||
  { tail -n 20 "${out}/warm.log"; exit 1; }

# run NAME RANKS [FLAGS...]: trains; metrics in $out/NAME.csv.
run() {
  local name=$1 ranks=$2; shift 2
  local start=$(date +%s.%N)
  if ((ranks == 1)); then
    "${main}" "${common[@]}" --out_dir="${pkg}/${name}" "$@" > "${out}/${name}.log" 2>&1
  else
    tools/launch.sh "${ranks}" "${main}" "${common[@]}" --out_dir="${pkg}/${name}" "$@" \
      > "${out}/${name}.log" 2>&1
  fi || { echo "${name} failed:"; tail -n 20 "${out}/${name}.log"; return 1; }
  cp "${pkg}/${name}/metrics.csv" "${out}/${name}.csv"
  echo "${name}: $(python3 -c "import time; print(round(time.time() - ${start}, 1))") s"
}

run ce_one 1 --loss=ce --batch=4 --eval_batches=1
run maxis_one 1 --loss=maxis --batch=2 --accumulation=2
for comm in "${communicators[@]}"; do
  run "ce_two_${comm}" 2 --loss=ce --batch=2 --communicator="${comm}"
  run "maxis_two_${comm}" 2 --loss=maxis --batch=2 --communicator="${comm}"
  run "maxis_two_${comm}_again" 2 --loss=maxis --batch=2 --communicator="${comm}"
  run "maxis_two_${comm}_zero1" 2 --loss=maxis --batch=2 --communicator="${comm}" \
    --shard_optimizer_state
  run "maxis_two_${comm}_dense" 2 --loss=maxis --batch=2 --communicator="${comm}" \
    --sparse_embedding_fraction=0
done
if ((gpus < 2)); then
  echo "== NCCL with both ranks on the one GPU (expected to be refused)"
  run nccl_one_gpu 2 --loss=maxis --batch=2 --communicator=nccl || true
fi

python3 - "${out}" "${communicators[@]}" <<'PY'
import csv, sys
out, comms = sys.argv[1], sys.argv[2:]
def series(name, tag="train/loss"):
    return {int(r["step"]): float(r["value"]) for r in csv.DictReader(open(f"{out}/{name}.csv")) if r["tag"] == tag}
def worst(a, b):
    return max(abs(a[s] - b[s]) / abs(b[s]) for s in b)
for comm in comms:
    ce, ce1 = series(f"ce_two_{comm}"), series("ce_one")
    mx, mx1 = series(f"maxis_two_{comm}"), series("maxis_one")
    print(f"{comm}: exact CE, 2 ranks x 2 vs 1 rank x 4: largest relative loss difference {worst(ce, ce1):.2e} over {len(ce)} steps")
    print(f"{comm}: MAXIS, 2 ranks vs 1 rank accumulating 2: {worst(mx, mx1):.2e}")
    print(f"{comm}: validation loss at the end: CE {series(f'ce_two_{comm}', 'val/loss')} vs {series('ce_one', 'val/loss')}")
    for variant in ("again", "zero1", "dense"):
        other = series(f"maxis_two_{comm}_{variant}")
        same = "identical" if other == mx else f"largest relative difference {worst(other, mx):.2e}"
        print(f"{comm}: MAXIS {variant}: losses {same} against the 2-rank run")
    rows = series(f"maxis_two_{comm}", "dist/embedding_rows_reduced")
    dense = series(f"maxis_two_{comm}", "dist/dense_floats_reduced")
    dense_all = series(f"maxis_two_{comm}_dense", "dist/dense_floats_reduced")
    if rows:
        r = sorted(rows.values())[len(rows) // 2]
        print(f"{comm}: sparse embedding reduction: median {r:.0f} rows of the vocabulary per step; "
              f"floats reduced per step {sorted(dense.values())[len(dense)//2]:.4g} vs {sorted(dense_all.values())[len(dense_all)//2]:.4g} dense")
PY
