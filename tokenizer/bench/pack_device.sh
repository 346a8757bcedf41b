#!/usr/bin/env bash
# Build machine: packs //tokenizer:bench (tools/device/pack.sh) and the data
# it needs, xz-compressed, into .device/ (about 25 MB in all):
#   .device/tokenizer/bench.tar.gz     the bench binary and its shared libraries
#   .device/tokenizer/data/*.xz        english.txt and the three tokenizer.json
# Carry the repository with .device/ to the GPU machine and run
# tokenizer/bench/run_device.sh there.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
MAXIMUS_DEVICE_ARCHIVE=.device/tokenizer/bench.tar.gz tools/device/pack.sh //tokenizer:bench
cache="$(tools/fetch_tokenizers.sh)"
external="$(./bazelw info output_base 2>/dev/null)/external"
data=.device/tokenizer/data
rm -rf "${data}" && mkdir -p "${data}"
xz -9 -T0 -c "${external}/english_corpus/english.txt" > "${data}/english.txt.xz"
for name in gemma3 llama3 gpt4o; do
  xz -9 -T0 -c "${cache}/${name}/tokenizer.json" > "${data}/${name}.json.xz"
done
du -ch .device/tokenizer/bench.tar.gz "${data}"/* | tail -n 1 | sed 's/total/pack_device.sh: .device payload/'
