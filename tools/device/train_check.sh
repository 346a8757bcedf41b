#!/usr/bin/env bash
# On a GPU machine: the same training run of the default preset on the GPU and
# on the CPU backend, from the packed //trainer:main (tools/device/pack.sh),
# then //trainer:score of one text with each run's checkpoint on each
# backend, and //trainer:generate (greedy) with the GPU-trained one on each.
# Prints the validation curves side by side and the largest log-probability
# difference between backends for the same checkpoint.
#
#   tools/device/train_check.sh [--steps=200] [-- extra trainer flags]
#
# Needs .device/maximus-device.tar.gz (or $MAXIMUS_DEVICE_ARCHIVE) with
# bin/trainer/{main,score,generate}, and .device/gemma3_tokenizer.json.gz.
# Writes under $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=200
extra=()
while (($#)); do
  case "$1" in
    --steps=*) steps="${1#*=}" ;;
    --) shift; extra=("$@"); break ;;
    *) echo "train_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
source tools/device/unpack.sh train
common=(--tokenizer="${pkg}/tokenizer.json" --ingest="${PWD}/data/austen" --steps="${steps}"
        --eval_interval=50 --log_interval=50 --checkpoint_interval=0)

for backend in cuda cpu; do
  run="${pkg}/run-${backend}"
  echo "== ${backend}: main --steps=${steps} ${extra[*]:-}"
  start=$(date +%s.%N)
  "${pkg}/bin/trainer/main" "${common[@]}" --backend="${backend}" --data="${pkg}/store-${backend}" \
    --out_dir="${run}" ${extra[@]+"${extra[@]}"} 2>&1 | grep -v '^  step' | tail -n 12
  echo "wall seconds: $(python3 -c "import time; print(round(time.time() - ${start}, 1))")"
  cp "${run}/metrics.csv" "${out}/metrics-${backend}.csv"
done

echo "== validation loss (exact CE) by step"
python3 - "${out}/metrics-cuda.csv" "${out}/metrics-cpu.csv" <<'PY'
import csv, sys
def val(path):
    return {int(r["step"]): float(r["value"]) for r in csv.DictReader(open(path)) if r["tag"] == "val/loss"}
gpu, cpu = val(sys.argv[1]), val(sys.argv[2])
print("step  cpu      cuda     diff")
for step in sorted(set(gpu) | set(cpu)):
    g, c = gpu.get(step, float("nan")), cpu.get(step, float("nan"))
    print(f"{step:4d}  {c:.4f}  {g:.4f}  {g - c:+.4f}")
PY

echo "== score: each checkpoint on each backend"
head -c 6000 data/austen/*.txt | tail -c 4000 > "${pkg}/text.txt"
for ckpt in cuda cpu; do
  for backend in cuda cpu; do
    "${pkg}/bin/trainer/score" --checkpoint="${pkg}/run-${ckpt}" --backend="${backend}" \
      --tokenizer="${pkg}/tokenizer.json" --text_file="${pkg}/text.txt" \
      > "${pkg}/score-${ckpt}-${backend}.json"
  done
  python3 - "${pkg}/score-${ckpt}-cuda.json" "${pkg}/score-${ckpt}-cpu.json" "${ckpt}" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
diff = max(abs(x - y) for x, y in zip(a["logprobs"], b["logprobs"]))
print(f"checkpoint trained on {sys.argv[3]}: {len(a['logprobs'])} tokens, mean log-prob "
      f"cuda {sum(a['logprobs'])/len(a['logprobs']):.5f} cpu {sum(b['logprobs'])/len(b['logprobs']):.5f}, "
      f"largest difference {diff:.2e}")
PY
done
echo "== generate: greedy continuation with the GPU-trained checkpoint on each backend"
for backend in cuda cpu; do
  printf '%s: ' "${backend}"
  "${pkg}/bin/trainer/generate" --checkpoint="${pkg}/run-cuda" --backend="${backend}" \
    --tokenizer="${pkg}/tokenizer.json" --prompt="Anne Elliot" --max_new_tokens=24 \
    --temperature=0 2> "${pkg}/generate-${backend}.log" | tr '\n' ' ' ||
    { echo "generate failed:"; cat "${pkg}/generate-${backend}.log"; exit 1; }
  echo
done
