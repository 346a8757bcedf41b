#!/usr/bin/env bash
# On a GPU machine: //trainer:bench_quality (MAXIS against exact CE, same
# data, steps and seed) on the corpus of tools/fetch_corpus.sh, packed here as
# .device/corpus.tar.xz:
#
#   (cd ~/.cache/maximus/corpus && tar -cJf - austen kernel python) > .device/corpus.tar.xz
#   MAXIMUS_DEVICE_ARCHIVE=.device/quality.tar.xz tools/device/pack.sh //trainer:bench_quality
#   # there:
#   MAXIMUS_DEVICE_ARCHIVE=.device/quality.tar.xz tools/device/quality_check.sh \
#       --preset=270m --batch=8 --seq_len=2048 --steps=650 --lr=1e-3
#
# Flags after the script's name go to bench_quality. Writes the report to
# $OUT/quality.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/device/unpack.sh quality
mkdir -p "${pkg}/corpus"
tar -C "${pkg}/corpus" -xf .device/corpus.tar.xz
paths="$(ls -d "${pkg}"/corpus/* | paste -sd, -)"
"${pkg}/bin/trainer/bench_quality" --backend=cuda --tokenizer="${pkg}/tokenizer.json" \
  --ingest="${paths}" --data="${pkg}/store" --out_dir="${pkg}/runs" "$@" \
  2> >(grep -v '^  step' >&2) | tee "${out}/quality.txt"
