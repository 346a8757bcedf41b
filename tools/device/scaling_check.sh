#!/usr/bin/env bash
# On a machine with several GPUs: tokens/s of data-parallel training of the
# 270m preset (MAXIS, 8 x 2048 tokens per rank and step) on 1, 2, 4, ... GPUs,
# one rank per GPU over NCCL, from the packed //trainer:main and
# tools/launch.sh. Prints the median tokens/s over the steps after warmup and
# the ratio to one GPU (targets: 1.9x on 2, 3.6x on 4).
#
#   tools/device/scaling_check.sh [--steps=30] [--ranks=1,2,4,8] [-- extra trainer flags]
#
# Needs .device/maximus-device.tar.gz (or $MAXIMUS_DEVICE_ARCHIVE) with
# bin/trainer/main, and .device/gemma3_tokenizer.json.gz. Writes under $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=30 ranks="" extra=()
while (($#)); do
  case "$1" in
    --steps=*) steps="${1#*=}" ;;
    --ranks=*) ranks="${1#*=}" ;;
    --) shift; extra=("$@"); break ;;
    *) echo "scaling_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
gpus=$(nvidia-smi -L | wc -l)
if [[ -z "${ranks}" ]]; then
  ranks=1
  for n in 2 4 8; do if ((n <= gpus)); then ranks+=",${n}"; fi; done
fi
source tools/device/unpack.sh scaling
main="${pkg}/bin/trainer/main"
common=(--backend=cuda --preset=270m --batch=8 --seq_len=2048 --steps="${steps}" --warmup=5
  --tokenizer="${pkg}/tokenizer.json" --data="${pkg}/store" --ingest="${PWD}/data/austen"
  --eval_interval=0 --log_interval="${steps}" --checkpoint_interval=0 --sample_prompt=
  ${extra[@]+"${extra[@]}"})
"${main}" "${common[@]}" --steps=1 --out_dir="${pkg}/warm" > "${out}/scaling-warm.log" 2>&1 ||
  { tail -n 20 "${out}/scaling-warm.log"; exit 1; }
echo "== ${gpus} GPU(s); ranks ${ranks}; $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)"
for n in ${ranks//,/ }; do
  if ((n > gpus)); then echo "${n} ranks: skipped, ${gpus} GPU(s)"; continue; fi
  log="${out}/scaling-${n}.log"
  if ((n == 1)); then
    "${main}" "${common[@]}" --out_dir="${pkg}/run-${n}" > "${log}" 2>&1
  else
    NCCL_NVLS_ENABLE=0 tools/launch.sh "${n}" "${main}" "${common[@]}" --out_dir="${pkg}/run-${n}" \
      > "${log}" 2>&1
  fi || { echo "${n} ranks failed:"; tail -n 20 "${log}"; exit 1; }
  cp "${pkg}/run-${n}/metrics.csv" "${out}/scaling-${n}.csv"
done
python3 - "${out}" "${ranks}" "${gpus}" <<'PY'
import csv, sys
out, ranks, gpus = sys.argv[1], [int(n) for n in sys.argv[2].split(",")], int(sys.argv[3])
def rates(n):
    # tokens_per_second is cumulative from the start; per-step rates from tokens and wall time.
    rows = [r for r in csv.DictReader(open(f"{out}/scaling-{n}.csv")) if r["tag"] == "train/loss"]
    wall = [float(r["wall_seconds"]) for r in rows]
    per_step = 8 * 2048 * n
    steps = [per_step / (b - a) for a, b in zip(wall[5:], wall[6:])]
    steps.sort()
    return steps[len(steps) // 2]
base = None
print("ranks  tokens/s (median step)  vs 1 GPU")
for n in ranks:
    if n > gpus:
        continue
    r = rates(n)
    base = base or r
    print(f"{n:5d}  {r:22,.0f}  {r / base:.2f}x")
PY
