#!/usr/bin/env bash
# GPU machine (16 cores, Python with `tokenizers`): runs //tokenizer:bench and
# bench_hf_tokenizers.py on the same text and vocabularies, one after the
# other, then prints Maximus / Hugging Face throughput ratios. Needs what
# tokenizer/bench/pack_device.sh put in .device/. Logs go to $OUT (or
# ./device-out).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-$PWD/device-out}"
mkdir -p "${out}"
work="$(mktemp -d -t maximus-tokenizer.XXXXXX)"
trap 'rm -rf "${work}"' EXIT
tar -C "${work}" -xzf .device/tokenizer/bench.tar.gz
for f in .device/tokenizer/data/*.xz; do
  xz -dc "${f}" > "${work}/$(basename "${f}" .xz)"
done
specs="gemma3=${work}/gemma3.json,llama3=${work}/llama3.json,gpt4o=${work}/gpt4o.json"
{ echo "== $(date -u +%FT%TZ) $(hostname), $(nproc) cores"; lscpu | grep -m1 'Model name'; } |
  tee "${out}/tokenizer_machine.txt"
"${work}/bin/tokenizer/bench" --text="${work}/english.txt" --tokenizers="${specs}" |
  tee "${out}/tokenizer_bench.txt"
python3 tokenizer/bench/bench_hf_tokenizers.py --text="${work}/english.txt" \
  --tokenizers="${specs}" | tee "${out}/tokenizer_hf.txt"
# Ratios: our columns 5 (1 thread) and 6 (batch) over their 4 and 5; checksums 8 and 6.
echo "ratio (Maximus MB/s / HF tokenizers MB/s), same checksum = same ids:" | tee -a "${out}/tokenizer_hf.txt"
join <(awk 'NR>2 {print $1, $5, $6, $8}' "${out}/tokenizer_bench.txt" | sort) \
     <(awk 'NR>2 {print $1, $4, $5, $6}' "${out}/tokenizer_hf.txt" | sort) |
  awk '{printf "%-8s 1-thread %.2fx  batch %.2fx  checksum %s\n", $1, $2/$5, $3/$6,
        ($4 == $7 ? "equal" : "DIFFERENT")}' | tee -a "${out}/tokenizer_hf.txt"
